// Live check-in: one server-sent events stream (GET /api/v1/live/stream). The first event is a snapshot of the
// last hour; every later "scans" event carries new scans with their tally (admissions per minute by channel
// and by gate, denials by reason, zone terms) that this page adds up; "devices" events replace device rows.
// The chart is drawn here as SVG (no library), with a table for screen readers.
import {
  $, api, el, fillRows, fmtNumber, fmtTime, mountShell, qs, say, show, streamEvents, t,
} from "/console/common.js";

const WINDOW_MIN = 60;
const LAST_SCANS = 50;
const SVG = "http://www.w3.org/2000/svg";
const KINDS = { gate: t("闸机", "Gate"), handheld: t("手持机", "Handheld"), kiosk: t("自助机", "Kiosk"),
  printer: t("打印机", "Printer") };

const state = {
  mode: "channel", reasons: {}, channels: new Map(), zones: new Map(), denials: new Map(), scans: [],
  devices: new Map(), minutes: { channel: new Map(), gate: new Map() }, updated: null, live: false,
};
let controller = null;
let drawPending = false;

const role = mountShell("live");
if (role) start();

function start() {
  $("mode-channel").addEventListener("click", () => setMode("channel"));
  $("mode-gate").addEventListener("click", () => setMode("gate"));
  $("filter-performance").addEventListener("change", connect);
  $("filter-group").addEventListener("change", connect);
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  loadFilters();
  connect();
  setInterval(() => { if (state.updated) draw(); }, 30000);  // the window moves on even when nothing arrives
}

async function loadFilters() {
  try {
    const [performances, groups] = await Promise.all([api("GET", "/performances"), api("GET", "/checkin-groups")]);
    const perf = $("filter-performance");
    for (const p of performances.filter((x) => !x.retired)) perf.append(el("option", { value: p.id }, p.name));
    const group = $("filter-group");
    for (const g of groups) group.append(el("option", { value: g.id }, g.name));
  } catch (err) {
    show($("filter-error"), say("无法载入场次与区域,可先查看全部数据;稍后刷新页面重试。",
      "Could not load performances and zones; all data is shown. Reload the page later to filter.") +
      " " + err.message);
  }
}

function connect() {
  if (controller) controller.abort();
  controller = new AbortController();
  const params = qs({ performance_id: $("filter-performance").value, group_id: $("filter-group").value });
  state.live = false;
  streamEvents("/live/stream" + params, onEvent, { signal: controller.signal, onState });
}

function onState(what, err) {
  if (what === "open") return;  // the snapshot event says we are live
  if (what === "retry") down(err);
}

function down(err) {
  state.live = false;
  const since = state.updated ? hhmm(state.updated) : null;
  let text = since
    ? say(`正在重新连接…显示的是 ${since} 的数据`, `Reconnecting… showing data from ${since}`)
    : say("正在连接中心服务器…", "Connecting to the hub…");
  if (err && err.status === 403) {
    text = say("您的角色不能查看实时检票,请联系管理员。", "Your role may not view live check-in; ask an admin.");
  } else if (err && err.status === 404) {
    text = say("所选场次或区域已不存在,请重新选择筛选条件。", "The chosen performance or zone no longer exists; choose another filter.");
  }
  show($("conn-banner"), text);
  show($("live-status"), say("未连接", "Not connected"));
}

function onEvent(name, data) {
  if (name === "snapshot") applySnapshot(data);
  else if (name === "scans") applyScans(data);
  else if (name === "devices") applyDevices(data.devices);
  else if (name === "end") down(null);  // the hub ends the stream (it stops, or we fell behind): reconnecting
}

// -- the model ----------------------------------------------------------------------------------------------
function applySnapshot(s) {
  state.reasons = s.reasons;
  state.channels = new Map(s.channels.map((c) => [String(c.id), c.name]));
  state.zones = new Map(s.zones.map((z) => [String(z.group_id), { ...z }]));
  state.denials = new Map(s.denials.map((d) => [d.reason, d.count]));
  state.scans = s.scans.slice(0, LAST_SCANS);
  state.devices = new Map(s.devices.map((d) => [d.device_id, d]));
  state.minutes = { channel: new Map(), gate: new Map() };
  addMinutes(s.admissions);
  state.live = true;
  touched();
}

function applyScans(d) {
  addMinutes(d.admissions);
  for (const [reason, n] of Object.entries(d.denials)) state.denials.set(reason, (state.denials.get(reason) || 0) + n);
  for (const [gid, z] of Object.entries(d.zones)) {
    const zone = state.zones.get(gid);
    if (!zone) continue;  // a zone outside the filter
    zone.admitted += z.admitted; zone.annulled += z.annulled; zone.exits += z.exits;
    zone.inside = Math.max(0, zone.admitted - zone.annulled - zone.exits);
  }
  state.scans = d.scans.concat(state.scans)
    .sort((a, b) => b.scanned_at - a.scanned_at).slice(0, LAST_SCANS);
  touched();
}

function applyDevices(rows) {
  for (const d of rows) state.devices.set(d.device_id, d);
  touched();
}

function addMinutes(admissions) {
  for (const [mode, list] of [["channel", admissions.by_channel], ["gate", admissions.by_gate]]) {
    const byMinute = state.minutes[mode];
    for (const c of list) {
      const row = byMinute.get(c.minute) || new Map();
      row.set(c.key, (row.get(c.key) || 0) + c.persons);
      byMinute.set(c.minute, row);
    }
  }
}

function touched() {
  state.updated = new Date();
  show($("conn-banner"), "");
  show($("live-status"), say(`实时 · 更新于 ${fmtTime(state.updated.getTime() / 1000)}`,
    `Live · updated ${fmtTime(state.updated.getTime() / 1000)}`));
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; draw(); });
}

function setMode(mode) {
  state.mode = mode;
  $("mode-channel").setAttribute("aria-pressed", String(mode === "channel"));
  $("mode-gate").setAttribute("aria-pressed", String(mode === "gate"));
  draw();
}

// -- drawing ------------------------------------------------------------------------------------------------
function hhmm(date) {
  return date.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false });
}

function reasonText(code) {
  const r = state.reasons[code];
  return r ? t(r.zh, r.en) : code;
}

function seriesName(key) {
  return state.mode === "channel" ? (state.channels.get(key) || t("通道", "Channel") + " " + key) : key;
}

function draw() {
  drawChart();
  drawZones();
  drawDenials();
  drawScans();
  drawDevices();
}

function windowMinutes() {
  const last = Math.floor(Date.now() / 60000) * 60;
  return Array.from({ length: WINDOW_MIN + 1 }, (_, i) => last - (WINDOW_MIN - i) * 60);
}

function drawChart() {
  const minutes = windowMinutes();
  const byMinute = state.minutes[state.mode];
  for (const m of byMinute.keys()) if (m < minutes[0]) byMinute.delete(m);  // out of the window
  const keys = [...new Set([...byMinute.values()].flatMap((row) => [...row.keys()]))].sort();
  const total = [...byMinute.values()].reduce((sum, row) => sum + [...row.values()].reduce((a, b) => a + b, 0), 0);
  $("admitted-total").textContent = fmtNumber(total);
  const max = Math.max(1, ...minutes.map((m) => Math.max(0, ...(byMinute.get(m) ? [...byMinute.get(m).values()] : [0]))));
  const top = niceCeil(max);
  const W = 760, H = 240, L = 44, R = 12, T = 12, B = 28;
  const x = (i) => L + (i * (W - L - R)) / WINDOW_MIN;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg",
    "aria-label": say(`近60分钟入场 ${total} 人,见下方表格`, `${total} admitted in the last 60 minutes; see the table below`) });
  for (const v of [0, top / 2, top]) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line" }));
    svg.append(svgText(L - 6, y(v) + 4, fmtNumber(v), "axis end"));
  }
  minutes.forEach((m, i) => {
    if (i % 10 === 0) svg.append(svgText(x(i), H - 8, hhmm(new Date(m * 1000)), "axis middle"));
  });
  keys.forEach((key, s) => {
    const points = minutes.map((m, i) => `${x(i).toFixed(1)},${y((byMinute.get(m) || new Map()).get(key) || 0).toFixed(1)}`);
    svg.append(svgEl("polyline", { points: points.join(" "), class: `series s${s % 8}`, "data-key": key }));
  });
  if (!keys.length) svg.append(svgText(W / 2, H / 2, t("近60分钟无入场", "No admissions in the last 60 minutes"), "axis middle"));
  $("chart").replaceChildren(svg);
  $("legend").replaceChildren(...keys.map((key, s) => el("li", {}, el("span", { class: `swatch s${s % 8}` }), seriesName(key))));
  $("series-head").textContent = state.mode === "channel" ? t("通道", "Channel") : t("闸机", "Gate");
  const rows = [];
  for (const m of [...byMinute.keys()].sort((a, b) => b - a)) {
    for (const [key, n] of [...byMinute.get(m).entries()].sort()) rows.push([hhmm(new Date(m * 1000)), seriesName(key), [fmtNumber(n), "num"]]);
  }
  fillRows($("minute-rows"), rows, t("近60分钟无入场", "No admissions in the last 60 minutes"));
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((f) => f * p).find((c) => c >= v);
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function svgText(xPos, yPos, text, cls) {
  const node = svgEl("text", { x: xPos, y: yPos, class: cls });
  node.textContent = text;
  return node;
}

function drawZones() {
  const zones = [...state.zones.values()];
  const list = $("zone-list");
  if (!zones.length) {
    list.replaceChildren(el("li", { class: "empty" }, t("无区域", "No zones")));
    return;
  }
  list.replaceChildren(...zones.map((z) => {
    const full = z.capacity ? z.inside / z.capacity : null;
    const figure = z.capacity !== null && z.capacity !== undefined
      ? `${fmtNumber(z.inside)} / ${fmtNumber(z.capacity)}` : fmtNumber(z.inside);
    return el("li", { class: "zone", dataset: { group: z.group_id } },
      el("div", { class: "zone-head" }, el("span", { class: "zone-name", id: `zone-name-${z.group_id}` }, z.name),
        el("span", { class: "zone-figure" + (full !== null && full >= 1 ? " over" : "") }, figure)),
      z.capacity
        ? el("meter", { min: 0, max: z.capacity, low: Math.round(z.capacity * 0.8), high: Math.round(z.capacity * 0.95),
          optimum: 0, value: Math.min(z.inside, z.capacity), "aria-labelledby": `zone-name-${z.group_id}` })
        : el("span", { class: "label" }, t("未设容量", "No capacity set")),
      full !== null ? el("span", { class: "label" }, `${Math.round(full * 100)}%`) : null);
  }));
}

function drawDenials() {
  const rows = [...state.denials.entries()].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => el("tr", { dataset: { reason } }, el("td", {}, reasonText(reason)),
      el("td", { class: "num" }, fmtNumber(n))));
  const body = $("denial-rows");
  if (rows.length) body.replaceChildren(...rows);
  else fillRows(body, [], t("近60分钟无拒绝", "No denials in the last 60 minutes"));
}

function drawScans() {
  const rows = state.scans.map((s) => {
    const ok = s.reason === "admitted";
    const channel = state.channels.get(String(s.channel_id)) || String(s.channel_id);
    return el("tr", { dataset: { event: s.event_id }, class: ok ? "admitted" : s.reason === "exit" ? "exit" : "denied" },
      el("td", {}, fmtTime(s.scanned_at)), el("td", {}, s.device_id), el("td", {}, channel),
      el("td", { class: "num" }, s.ticket_id === null ? "—" : String(s.ticket_id)),
      el("td", { class: "reason" }, el("span", { class: "badge " + (ok ? "ok" : s.reason === "exit" ? "" : "bad") },
        reasonText(s.reason))),
      el("td", { class: "num" }, String(s.persons)));
  });
  const body = $("scan-rows");
  if (rows.length) body.replaceChildren(...rows);
  else fillRows(body, [], t("近60分钟无检票", "No scans in the last 60 minutes"));
}

function drawDevices() {
  const all = [...state.devices.values()];
  const online = all.filter((d) => d.online).length;
  $("device-summary").textContent = t(`在线 ${online} / 共 ${all.length} 台`, `${online} of ${all.length} online`);
  const shown = all.filter((d) => !d.online || (d.outbox || 0) > 0)
    .sort((a, b) => Number(a.online) - Number(b.online) || (b.outbox || 0) - (a.outbox || 0));
  const rows = shown.map((d) => el("tr", { dataset: { device: d.device_id } },
    el("td", {}, d.device_id), el("td", {}, KINDS[d.kind] || d.kind),
    el("td", {}, el("span", { class: "badge " + (d.online ? "ok" : "bad") }, d.online ? t("在线", "Online") : t("离线", "Offline"))),
    el("td", { class: "num outbox" }, d.outbox === null || d.outbox === undefined ? "—" : fmtNumber(d.outbox)),
    el("td", {}, fmtTime(d.heard_at || d.last_seen))));
  const body = $("device-rows");
  if (rows.length) body.replaceChildren(...rows);
  else fillRows(body, [], t("所有设备在线,无待上传记录", "Every device is online with nothing waiting to upload"));
}
