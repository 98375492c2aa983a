// Reports (manager, finance, viewer, admin): the check-in summary with its totals row, persons admitted over
// time by channel (SVG drawn here, no library, with a table for screen readers), the check-in detail in
// cursor pages, the sales summary, and the exports (report-exports.js). Everything is the API's:
// GET /reports/checkins/summary, /reports/checkins/detail, /reports/chart, /reports/sales, with the same
// filters (hub/services/reports.py ReportFilters). Times are shown in the venue's zone the API names, and the
// From/Until boxes are read in that zone too.
import {
  $, api, el, fillRows, fmtNumber, mountShell, qs, REASONS, say, show, t,
} from "/console/common.js";
import { mountExports } from "/console/report-exports.js";

const SVG = "http://www.w3.org/2000/svg";
const DEFAULT_ZONE = "Asia/Shanghai";
const DEVICE_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const COLOURS = 8; // .s0 … .s7 in reports.css
const SOURCES = { serial: ["扫码枪", "Scanner"], qr: ["摄像头扫码", "Camera QR"], nfc: ["NFC 卡", "NFC tag"],
  online: ["在线核验", "Online check"], keyboard: ["手工输入", "Typed in"] };
const TEXT_KEYS = new Set(["performance", "group", "channel", "ticket_type", "device_id", "reason", "direction",
  "offline", "source", "conflict", "forced_by", "event_id", "scanned_at"]);
const FILTER_INPUTS = ["f-since", "f-until", "f-performance", "f-group", "f-channel", "f-type", "f-device",
  "f-reason", "f-offline"];

const state = {
  venues: [], performances: [], channels: [], groups: [], types: [],
  applied: {}, // the filters the tables show (and the exports use), as the API takes them
  zone: DEFAULT_ZONE, // the venue's zone: what the tables show and the From/Until boxes mean
  run: 0, // the current load: answers of an older one are dropped
  cursors: [null], // after= of each page seen so far; the last is the page shown
  nextCursor: null,
  total: null,
  detailBusy: false,
};

const role = mountShell("reports");
if (role) start();

async function start() {
  fillReasons();
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
  $("reset").addEventListener("click", onReset);
  $("f-group").addEventListener("change", fillChannels);
  $("f-performance").addEventListener("change", () => { state.zone = inputZone(); });
  for (const id of FILTER_INPUTS) $(id).addEventListener("input", () => clearInvalid($(id)));
  $("prev-page").addEventListener("click", () => turnPage(-1));
  $("next-page").addEventListener("click", () => turnPage(1));
  $("page-size").addEventListener("change", () => { state.cursors = [null]; loadDetail(state.run, true); });
  mountExports($("exports"), () => currentFilters(), { report: "checkin_summary" });
  await loadCatalogue();
  apply();
}

// ---- filters ---------------------------------------------------------------------------------------

function fillReasons() {
  $("f-reason").append(...Object.entries(REASONS).map(([code, [zh, en]]) => el("option", { value: code }, t(zh, en))));
}

async function loadCatalogue() {
  const parts = [["/venues", "venues"], ["/performances", "performances"], ["/checkin-groups", "groups"],
    ["/channels", "channels"], ["/ticket-types", "types"]];
  const results = await Promise.allSettled(parts.map(([path]) => api("GET", path)));
  const failed = results.find((r) => r.status === "rejected");
  results.forEach((r, i) => { if (r.status === "fulfilled") state[parts[i][1]] = r.value; });
  const retired = (x) => (x.retired ? ` (${t("已停用", "retired")})` : "");
  const perfs = [...state.performances].sort((a, b) => b.starts_at - a.starts_at);
  $("f-performance").append(...perfs.map((p) => el("option", { value: p.id },
    `${p.name} · ${fmtDateTime(p.starts_at, zoneOfVenue(p.venue_id)).slice(0, 16)}${retired(p)}`)));
  $("f-group").append(...state.groups.map((g) => el("option", { value: g.id }, g.name)));
  $("f-type").append(...state.types.map((x) => el("option", { value: x.id },
    (x.name_zh && x.name_zh !== x.name ? `${x.name_zh} ${x.name}` : x.name) + retired(x))));
  fillChannels();
  state.zone = inputZone();
  if (failed) {
    show($("filter-error"), say("无法载入部分筛选选项,仍可查看全部数据;请稍后刷新页面重试。",
      "Some filter choices could not be loaded; all data can still be shown. Reload the page later to filter.")
      + " " + failed.reason.message);
  }
}

/** The channel list, narrowed to the chosen check-in group (the choice is kept when it still fits). */
function fillChannels() {
  const select = $("f-channel");
  const keep = select.value;
  const group = Number($("f-group").value) || null;
  const groupName = new Map(state.groups.map((g) => [g.id, g.name]));
  const shown = state.channels.filter((c) => group === null || c.group_id === group);
  select.replaceChildren(el("option", { value: "" }, t("全部通道", "All channels")),
    ...shown.map((c) => el("option", { value: c.id },
      `${c.name} · ${groupName.get(c.group_id) || "#" + c.group_id}${c.retired ? ` (${t("已停用", "retired")})` : ""}`)));
  select.value = shown.some((c) => String(c.id) === keep) ? keep : "";
}

function zoneOfVenue(venueId) {
  const venue = state.venues.find((v) => v.id === venueId) || state.venues[0];
  return (venue && venue.timezone) || DEFAULT_ZONE;
}

/** The zone the From/Until boxes are read in: the chosen performance's venue, else the first venue. */
function inputZone() {
  const perf = state.performances.find((p) => String(p.id) === $("f-performance").value);
  return zoneOfVenue(perf ? perf.venue_id : null);
}

function clearInvalid(node) {
  node.removeAttribute("aria-invalid");
}

function invalid(node, zh, en) {
  node.setAttribute("aria-invalid", "true");
  show($("filter-error"), say(zh, en));
  node.focus();
  return null;
}

/** The form's filters as the API takes them, or null (with the reason shown and the field focused). */
function readFilters() {
  for (const id of FILTER_INPUTS) clearInvalid($(id));
  show($("filter-error"), "");
  const zone = inputZone();
  const sinceBox = $("f-since"), untilBox = $("f-until"), deviceBox = $("f-device");
  if (sinceBox.validity.badInput) {
    return invalid(sinceBox, "开始时间不完整,请填写完整的日期和时间,或清空。",
      "'From' is incomplete; enter a whole date and time, or clear it.");
  }
  if (untilBox.validity.badInput) {
    return invalid(untilBox, "结束时间不完整,请填写完整的日期和时间,或清空。",
      "'Until' is incomplete; enter a whole date and time, or clear it.");
  }
  const since = zonedUnix(sinceBox.value, zone);
  const until = zonedUnix(untilBox.value, zone);
  if (since !== null && until !== null && until <= since) {
    return invalid(untilBox, "结束时间须晚于开始时间,请修改结束时间或清空。",
      "'Until' must be later than 'From'; change 'Until' or clear it.");
  }
  const device = deviceBox.value.trim();
  if (device && !DEVICE_PATTERN.test(device)) {
    return invalid(deviceBox, "设备编号只能包含字母、数字、- 和 _(最多 64 个),请修改后重试,例如 gate-01。",
      "A device id has only letters, digits, - and _ (at most 64); correct it and try again, e.g. gate-01.");
  }
  const filters = {
    since, until,
    performance_id: $("f-performance").value, group_id: $("f-group").value, channel_id: $("f-channel").value,
    ticket_type_id: $("f-type").value, device_id: device, reason: $("f-reason").value, offline: $("f-offline").value,
  };
  for (const k of Object.keys(filters)) if (filters[k] === null || filters[k] === "") delete filters[k];
  return filters;
}

/** What the exports use: the filters of the tables on screen (the last "Show"). */
function currentFilters() {
  const out = { ...state.applied };
  for (const k of ["performance_id", "group_id", "channel_id", "ticket_type_id"]) if (k in out) out[k] = Number(out[k]);
  if ("offline" in out) out.offline = out.offline === "true";
  return out;
}

function onReset() {
  // not form.reset(): the button's id "reset" shadows that method on the form
  HTMLFormElement.prototype.reset.call($("filters"));
  for (const id of FILTER_INPUTS) clearInvalid($(id));
  fillChannels();
  state.zone = inputZone();
  apply();
  $("f-since").focus();
}

// ---- time in the venue's zone ---------------------------------------------------------------------

const formatters = new Map();
function partsIn(ms, zone) {
  let f = formatters.get(zone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-CA", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    } catch (err) {
      f = new Intl.DateTimeFormat("en-CA", { timeZone: "UTC", hourCycle: "h23", year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    }
    formatters.set(zone, f);
  }
  const p = {};
  for (const part of f.formatToParts(new Date(ms))) p[part.type] = part.value;
  return p;
}

/** "2026-12-02 19:05:00" in `zone`, from unix seconds. */
function fmtDateTime(unix, zone) {
  if (unix === null || unix === undefined) return "—";
  const p = partsIn(unix * 1000, zone || state.zone);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

function offsetMs(ms, zone) {
  const p = partsIn(ms, zone);
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
}

/** A datetime-local value ("2026-12-02T19:05") read as wall-clock time in `zone`, as unix seconds; null if empty. */
function zonedUnix(value, zone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value || "");
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  let guess = wall - offsetMs(wall, zone);
  guess = wall - offsetMs(guess, zone); // once more across a DST change
  return Math.floor(guess / 1000);
}

// ---- loading ---------------------------------------------------------------------------------------

function apply() {
  const filters = readFilters();
  if (!filters) return;
  state.applied = filters;
  state.cursors = [null];
  state.total = null;
  state.run += 1;
  loadAll(state.run);
}

function explain(err) {
  if (err.status === 0) return err.message;
  if (err.status === 422) {
    return say("筛选条件不被接受,请检查时间和设备编号后重新查询:", "The hub refused the filters; check the times and the "
      + "device id and press Show again:") + " " + err.message;
  }
  if (err.status === 403) return err.message;
  if (err.status === 404) return say("所选项目已不存在,请刷新页面后重新选择筛选条件。",
    "Something chosen no longer exists; reload the page and choose the filters again.");
  return say("载入失败,请稍后按“查询”重试;如仍失败请联系管理员。", "Loading failed; press Show again in a moment, "
    + "and ask an admin if it keeps failing.") + " " + err.message;
}

async function loadAll(run) {
  show($("report-error"), "");
  $("report-status").textContent = say("正在载入…", "Loading…");
  // "Show" stays enabled (disabling it would drop the focus); a newer load simply replaces this one
  $("filters").setAttribute("aria-busy", "true");
  const q = qs(state.applied);
  const jobs = [
    api("GET", "/reports/checkins/summary" + q).then((d) => { if (run === state.run) drawSummary(d); }),
    api("GET", "/reports/chart" + q).then((d) => { if (run === state.run) drawChart(d); }),
    loadDetail(run, false, true),
    api("GET", "/reports/sales" + q).then((d) => { if (run === state.run) drawSales(d); }),
  ];
  const results = await Promise.allSettled(jobs);
  if (run !== state.run) return;
  $("filters").setAttribute("aria-busy", "false");
  const failed = results.find((r) => r.status === "rejected");
  if (failed) {
    show($("report-error"), explain(failed.reason));
    $("report-status").textContent = say("部分报表未能载入", "Some reports could not be loaded");
    return;
  }
  const now = fmtDateTime(Date.now() / 1000).slice(11);
  $("report-status").textContent = say(`已更新 ${now}(${state.zone})`, `Updated ${now} (${state.zone})`);
}

/** One page of the detail (state.cursors' last); `fresh`: a new page size or filters, so count again. */
async function loadDetail(run, fresh, rethrow = false) {
  const after = state.cursors[state.cursors.length - 1];
  const wantTotal = state.total === null || fresh;
  state.detailBusy = true;
  setPager();
  const path = "/reports/checkins/detail" + qs({ ...state.applied, after, limit: $("page-size").value,
    with_total: wantTotal ? "true" : "" });
  try {
    const data = await api("GET", path);
    if (run !== state.run) return;
    if (wantTotal) state.total = data.total;
    state.nextCursor = data.next_cursor;
    drawDetail(data);
  } catch (err) {
    if (run !== state.run) return;
    if (rethrow) throw err;
    show($("report-error"), explain(err));
  } finally {
    if (run === state.run) {
      state.detailBusy = false;
      setPager();
    }
  }
}

function turnPage(step) {
  if (state.detailBusy) return;
  if (step > 0) {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
  } else {
    if (state.cursors.length < 2) return;
    state.cursors.pop();
  }
  show($("report-error"), "");
  const clicked = step > 0 ? $("next-page") : $("prev-page");
  const other = step > 0 ? $("prev-page") : $("next-page");
  loadDetail(state.run, false).then(() => {
    // the first or last page disables the button pressed: move the focus to the other one, not to the page
    if (clicked.disabled && (document.activeElement === clicked || document.activeElement === document.body)) {
      other.focus();
    }
  });
}

function setPager() {
  const page = state.cursors.length;
  const size = Number($("page-size").value);
  // not disabled while a page loads (the focus would fall off the button): turnPage ignores the click instead
  $("prev-page").disabled = page < 2;
  $("next-page").disabled = !state.nextCursor;
  $("detail-table").setAttribute("aria-busy", state.detailBusy ? "true" : "false");
  const pages = state.total === null ? null : Math.max(1, Math.ceil(state.total / size));
  $("page-label").textContent = pages === null ? t(`第 ${page} 页`, `Page ${page}`)
    : t(`第 ${page} 页,共 ${fmtNumber(pages)} 页`, `Page ${page} of ${fmtNumber(pages)}`);
}

// ---- tables ----------------------------------------------------------------------------------------

function headCells(row, columns) {
  row.replaceChildren(...columns.map((c) => el("th", { scope: "col", class: TEXT_KEYS.has(c.key) ? null : "num",
    dataset: { key: c.key } }, t(c.zh, c.en))));
}

function pct(share) {
  return `${(Number(share || 0) * 100).toFixed(1)}%`;
}

function setZone(zone) {
  if (zone) state.zone = zone;
  $("summary-zone").textContent = t("时区", "Time zone") + " " + state.zone;
}

function summaryCell(key, row) {
  if (key === "offline_share") return [pct(row[key]), "num"];
  if (TEXT_KEYS.has(key)) return row[key] === undefined || row[key] === null ? "—" : String(row[key]);
  return [fmtNumber(row[key]), "num"];
}

function drawSummary(data) {
  setZone(data.timezone);
  const columns = data.columns;
  headCells($("summary-head"), columns);
  fillRows($("summary-rows"), data.rows.map((r) => columns.map((c) => summaryCell(c.key, r))),
    say("所选条件下没有检票记录。", "No check-ins match these filters."));
  $("summary-rows").querySelectorAll("tr").forEach((tr, i) => {
    const r = data.rows[i];
    if (r) Object.assign(tr.dataset, { performance: r.performance_id ?? "", channel: r.channel_id ?? "",
      type: r.ticket_type_id ?? "" });
  });
  const firstNum = columns.findIndex((c) => !TEXT_KEYS.has(c.key));
  const foot = el("tr", { class: "totals" },
    el("th", { scope: "row", colspan: Math.max(1, firstNum) }, t("合计", "Total")),
    columns.slice(Math.max(1, firstNum)).map((c) => {
      const [text, cls] = summaryCell(c.key, data.totals);
      return el("td", { class: cls, dataset: { key: c.key } }, text);
    }));
  $("summary-foot").replaceChildren(foot);
}

function reasonLabel(code) {
  const r = REASONS[code];
  return r ? t(r[0], r[1]) : code;
}

function detailCell(key, r) {
  switch (key) {
    case "scanned_at": return fmtDateTime(r.scanned_at);
    case "reason": {
      const ok = r.reason === "admitted";
      const cls = ok ? "badge ok" : r.reason === "exit" ? "badge" : r.reason === "annulled" ? "badge warn" : "badge bad";
      return el("span", { class: cls, title: r.reason_zh && r.reason_en ? say(r.reason_zh, r.reason_en) : null },
        reasonLabel(r.reason));
    }
    case "direction": return r.direction === "exit" ? t("出场", "Exit") : t("入场", "Entry");
    case "offline": return r.offline ? t("离线", "Offline") : t("在线", "Online");
    case "conflict": return r.conflict ? t("冲突", "Conflict") : "—";
    case "source": return SOURCES[r.source] ? t(...SOURCES[r.source]) : (r.source || "—");
    case "forced_by": return r.forced_by || "—";
    case "event_id": return el("code", { title: r.event_id }, String(r.event_id).slice(0, 8) + "…");
    case "persons": case "ticket_id": return [r[key] === null || r[key] === undefined ? "—" : String(r[key]), "num"];
    default: return r[key] === null || r[key] === undefined ? "—" : String(r[key]);
  }
}

function drawDetail(data) {
  setZone(data.timezone);
  const columns = data.columns;
  headCells($("detail-head"), columns);
  fillRows($("detail-rows"), data.rows.map((r) => columns.map((c) => detailCell(c.key, r))),
    say("所选条件下没有检票记录。", "No check-ins match these filters."));
  $("detail-rows").querySelectorAll("tr").forEach((tr, i) => {
    if (data.rows[i]) tr.dataset.event = data.rows[i].event_id;
  });
  const size = Number($("page-size").value);
  const first = (state.cursors.length - 1) * size + 1;
  const last = first + data.rows.length - 1;
  $("detail-count").textContent = state.total === null
    ? t(`本页 ${data.rows.length} 行`, `${data.rows.length} rows on this page`)
    : data.rows.length
      ? t(`第 ${fmtNumber(first)}–${fmtNumber(last)} 行,共 ${fmtNumber(state.total)} 行`,
        `Rows ${fmtNumber(first)}–${fmtNumber(last)} of ${fmtNumber(state.total)}`)
      : t(`共 ${fmtNumber(state.total)} 行`, `${fmtNumber(state.total)} rows`);
}

function yuan(cents) {
  return "¥" + (Number(cents || 0) / 100).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function salesCell(key, row) {
  if (key === "revenue_cents") return [yuan(row[key]), "num"];
  if (key === "performance" || key === "ticket_type") return row[key] === null || row[key] === undefined ? "—" : String(row[key]);
  return [fmtNumber(row[key]), "num"];
}

function drawSales(data) {
  const columns = data.columns.map((c) => (c.key === "revenue_cents" ? { key: c.key, zh: "收入(元)", en: "Revenue (CNY)" } : c));
  const row = $("sales-head");
  row.replaceChildren(...columns.map((c) => el("th", { scope: "col", dataset: { key: c.key },
    class: c.key === "performance" || c.key === "ticket_type" ? null : "num" }, t(c.zh, c.en))));
  fillRows($("sales-rows"), data.rows.map((r) => columns.map((c) => salesCell(c.key, r))),
    say("所选条件下没有售票记录。", "No sales match these filters."));
  $("sales-foot").replaceChildren(el("tr", { class: "totals" },
    el("th", { scope: "row", colspan: 2 }, t("合计", "Total")),
    columns.slice(2).map((c) => {
      const [text, cls] = salesCell(c.key, data.totals);
      return el("td", { class: cls, dataset: { key: c.key } }, text);
    })));
}

// ---- chart -----------------------------------------------------------------------------------------

function bucketName(seconds) {
  if (seconds < 3600) return t(`每 ${seconds / 60} 分钟`, `Per ${seconds / 60} min`);
  if (seconds < 86400) return t(`每 ${seconds / 3600} 小时`, `Per ${seconds / 3600} h`);
  if (seconds < 7 * 86400) return t(`每 ${seconds / 86400} 天`, `Per ${seconds / 86400} day`);
  if (seconds < 30 * 86400) return t("每周", "Per week");
  return t("每 30 天", "Per 30 days");
}

/** A bucket's start as the axis shows it: the time of day for short buckets, the date for long ones. */
function bucketLabel(unix, size, spansDays) {
  const text = fmtDateTime(unix);
  if (size >= 86400) return text.slice(5, 10);
  return spansDays ? text.slice(5, 16) : text.slice(11, 16);
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((f) => f * p).find((c) => c >= v);
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(data) {
  setZone(data.timezone);
  const buckets = data.buckets || [];
  const series = data.series || [];
  const size = data.bucket_seconds;
  const spansDays = buckets.length > 0
    && fmtDateTime(buckets[0]).slice(0, 10) !== fmtDateTime(buckets[buckets.length - 1] + size - 1).slice(0, 10);
  $("chart-bucket").textContent = buckets.length ? bucketName(size) : "";
  const W = 1000, H = 280, L = 48, R = 12, T = 12, B = 30;
  const n = Math.max(1, buckets.length);
  const stackTop = buckets.map((_, i) => series.reduce((sum, s) => sum + Math.max(0, s.values[i] || 0), 0));
  const top = niceCeil(Math.max(1, ...stackTop));
  const slot = (W - L - R) / n;
  const barW = Math.max(2, slot * 0.72);
  const x = (i) => L + i * slot + (slot - barW) / 2;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", id: "chart-svg",
    "aria-label": say(`入场 ${fmtNumber(data.total)} 人,共 ${series.length} 个通道;数据见下方“以表格查看”。`,
      `${fmtNumber(data.total)} persons admitted over ${series.length} channels; the figures are in "Show as a table" below.`) });
  for (const v of [0, top / 2, top]) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line" }));
    svg.append(svgEl("text", { x: L - 6, y: y(v) + 4, class: "axis end" }, fmtNumber(v)));
  }
  const every = Math.max(1, Math.ceil(buckets.length / (spansDays ? 6 : 8)));
  buckets.forEach((b, i) => {
    if (i % every === 0) {
      svg.append(svgEl("text", { x: x(i) + barW / 2, y: H - 10, class: "axis middle" }, bucketLabel(b, size, spansDays)));
    }
  });
  buckets.forEach((b, i) => {
    let base = 0;
    series.forEach((s, k) => {
      const v = Math.max(0, s.values[i] || 0);
      if (!v) return;
      const rect = svgEl("rect", { x: x(i).toFixed(1), width: barW.toFixed(1), y: y(base + v).toFixed(1),
        height: Math.max(0.5, y(base) - y(base + v)).toFixed(1), class: `bar s${k % COLOURS}`,
        "data-channel": s.channel_id ?? "other", "data-bucket": b, "data-value": s.values[i] });
      rect.append(svgEl("title", {}, `${fmtDateTime(b).slice(0, 16)} · ${s.channel} · ${fmtNumber(s.values[i])}`));
      svg.append(rect);
      base += v;
    });
  });
  if (!series.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, class: "axis middle" }, t("所选条件下无入场", "No admissions for these filters")));
  }
  $("chart").replaceChildren(svg);
  $("chart-legend").replaceChildren(...series.map((s, k) => el("li", { dataset: { channel: s.channel_id ?? "other" } },
    el("span", { class: `swatch s${k % COLOURS}`, "aria-hidden": "true" }), `${s.channel}: ${fmtNumber(s.total)}`)));
  $("chart-caption").textContent = buckets.length
    ? say(`${fmtDateTime(data.start).slice(0, 16)} 至 ${fmtDateTime(data.end).slice(0, 16)}(${state.zone}),入场共 ${fmtNumber(data.total)} 人`,
      `${fmtDateTime(data.start).slice(0, 16)} to ${fmtDateTime(data.end).slice(0, 16)} (${state.zone}), ${fmtNumber(data.total)} persons admitted`)
    : "";
  const rows = [];
  buckets.forEach((b, i) => {
    for (const s of series) {
      if (s.values[i]) rows.push([fmtDateTime(b).slice(0, 16), s.channel, [fmtNumber(s.values[i]), "num"]]);
    }
  });
  fillRows($("chart-rows"), rows, say("所选条件下无入场。", "No admissions for these filters."));
}
