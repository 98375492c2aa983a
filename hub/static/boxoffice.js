// Box office (box_office, admin): sell a ticket, find one by collection code, phone, ID number, ticket id or
// the start of the holder's name, read it (holder data as the API gives it: masked unless the role may read
// it), refund or void it with a reason, reprint it, and see its check-in history. Only the hub's API:
// POST /tickets, GET /tickets?..., /tickets/{id}/qr.svg, refund, void, reprint, print-jobs, GET /checkins.
import { $, api, API, ApiError, el, fillRows, fmtTime, mountShell, qs, REASONS, say, session, show, t } from "/console/common.js";

const STATUS = {
  valid: ["有效", "Valid", "ok"], refunded: ["已退票", "Refunded", "bad"], void: ["已作废", "Void", "bad"],
};
const JOB_STATUS = {
  queued: ["排队中", "Queued"], printed: ["已打印", "Printed"], failed: ["打印失败", "Failed"],
  duplicate: ["重复任务", "Duplicate"], refused: ["打印机拒绝", "Refused"],
};
// The search keys: what the box office types, checked here as the API bounds them (hub/api/routes_boxoffice.py).
const KINDS = {
  collection_code: { max: 20, mode: "text", ok: (v) => /^[A-Za-z0-9 -]{4,20}$/.test(v),
    hint: ["取票码 4-20 位字母和数字", "4-20 letters and digits"] },
  phone: { max: 40, mode: "tel", ok: (v) => /^\+?[0-9][0-9 -]{3,38}[0-9]$/.test(v),
    hint: ["完整手机号", "The whole phone number"] },
  id_number: { max: 40, mode: "text", ok: (v) => /^[0-9A-Za-z]{4,40}$/.test(v),
    hint: ["完整身份证号", "The whole ID number"] },
  ticket_id: { max: 10, mode: "numeric", ok: (v) => /^[0-9]{1,10}$/.test(v) && +v >= 1 && +v <= 2147483647,
    hint: ["票面上的票号", "The number on the ticket"] },
  holder_name: { max: 200, mode: "text", ok: (v) => v.length >= 1 && v.length <= 200,
    hint: ["姓名的开头几个字", "The first letters of the name"] },
};

let performances = new Map();
let ticketTypes = new Map();
let channels = new Map();
let current = null; // the ticket in the detail panel (GET /tickets row)
let opening = 0; // the newest openTicket call: older answers are dropped
let qrUrl = null;
let pendingCancel = null; // "refund" | "void" while the reason dialog is open
let jobWatch = null;

const role = mountShell("boxoffice");
if (role) start();

function start() {
  $("sell-form").addEventListener("submit", onSell);
  $("sell-type").addEventListener("change", showPrice);
  $("find-kind").addEventListener("change", () => { setKind(); $("find-value").focus(); });
  $("find-form").addEventListener("submit", onFind);
  $("detail-refresh").addEventListener("click", () => current && openTicket(current.id, { keepMsg: true }));
  $("detail-close").addEventListener("click", closeTicket);
  $("refund-button").addEventListener("click", () => askReason("refund"));
  $("void-button").addEventListener("click", () => askReason("void"));
  $("cancel-form").addEventListener("submit", onConfirmCancel);
  $("cancel-back").addEventListener("click", () => $("cancel-dialog").close());
  $("cancel-dialog").addEventListener("close", () => { pendingCancel = null; });
  $("reprint-form").addEventListener("submit", onReprint);
  setKind();
  loadCatalog();
}

/** What went wrong, in both languages, and what to do next. */
function explain(err) {
  if (!(err instanceof ApiError) || err.status === 0) return err.message;
  const detail = err.message;
  if (err.status === 409) {
    let m = /is already (refunded|void)/.exec(detail);
    if (m) return say(`该票${m[1] === "void" ? "已作废" : "已退票"},无需再操作;如观众仍需入场,请重新售票`, detail);
    m = /was replaced by ticket (\d+)/.exec(detail);
    if (m) return say(`该票已被 ${m[1]} 号纸质票替换,请查找并补打那张票`, detail);
    if (/not been collected/.test(detail)) return say("该票尚未取票(仍为电子票),请观众出示电子票或在自助机取票", detail);
    if (/cannot be printed/.test(detail)) return say("该票已退或已作废,不能打印", detail);
    if (/retired/.test(detail)) return say("该场次或票类已停售,请选择其他场次或票类", detail);
    return say("操作与票的当前状态冲突,请刷新后重试", detail);
  }
  if (err.status === 404) return say("找不到该票或场次,请核对号码", detail);
  if (err.status === 403) return say("您的角色无权进行此操作,请联系管理员", detail);
  if (err.status === 422) return say("输入有误,请检查后重试", detail);
  if (err.status === 429) return err.message;
  return say("操作失败,请稍后重试;如仍失败请联系运维", detail);
}

const money = (cents) => "¥" + (cents / 100).toFixed(2);
const label = (map, key) => (map[key] ? t(map[key][0], map[key][1]) : key);

function statusBadge(status) {
  const s = STATUS[status] || [status, status, "warn"];
  return el("span", { class: "badge " + s[2], dataset: { status } }, t(s[0], s[1]));
}

async function loadCatalog() {
  try {
    const [perfs, types, chans] = await Promise.all([
      api("GET", "/performances"), api("GET", "/ticket-types"), api("GET", "/channels")]);
    performances = new Map(perfs.map((p) => [p.id, p]));
    ticketTypes = new Map(types.map((k) => [k.id, k]));
    channels = new Map(chans.map((c) => [c.id, c]));
  } catch (err) {
    show($("page-msg"), say("无法读取场次和票类", "Cannot read the performances and ticket types") + " — " + explain(err));
    return;
  }
  const now = Date.now() / 1000;
  const onSale = [...performances.values()].filter((p) => !p.retired && p.ends_at > now)
    .sort((a, b) => a.starts_at - b.starts_at);
  const kinds = [...ticketTypes.values()].filter((k) => !k.retired);
  fillSelect($("sell-performance"), onSale.map((p) => [p.id, `${p.name} · ${fmtTime(p.starts_at)}`]),
    t("没有在售场次", "No performance on sale"));
  fillSelect($("sell-type"), kinds.map((k) => [k.id, `${k.name_zh} ${k.name} · ${money(k.price_cents)}`]),
    t("没有在售票类", "No ticket type on sale"));
  $("sell-button").disabled = !onSale.length || !kinds.length;
  if (!onSale.length || !kinds.length) {
    show($("sell-msg"), say("现在没有可售的场次或票类;请管理员添加或恢复", "Nothing is on sale now; ask an admin to "
      + "add or bring back a performance or ticket type"), "msg bad");
  }
  showPrice();
}

function fillSelect(select, options, emptyText) {
  select.replaceChildren(...(options.length
    ? options.map(([value, text]) => el("option", { value }, text))
    : [el("option", { value: "", disabled: true, selected: true }, emptyText)]));
}

function showPrice() {
  const kind = ticketTypes.get(Number($("sell-type").value));
  $("sell-price").textContent = kind ? t("票价", "Price") + " " + money(kind.price_cents) : "";
}

// ---- Sell ----

async function onSell(ev) {
  ev.preventDefault();
  const msg = $("sell-msg");
  const persons = Number($("sell-persons").value);
  const name = $("sell-name").value.trim();
  const phone = $("sell-phone").value.trim().replace(/[\s-]/g, "");
  const idNumber = $("sell-id").value.trim().toUpperCase();
  let problem = null;
  if (!$("sell-performance").value || !$("sell-type").value) problem = say("请选择场次和票类", "Choose a performance and a ticket type");
  else if (!Number.isInteger(persons) || persons < 1 || persons > 255) problem = say("人数应为 1 到 255", "Persons: 1 to 255");
  else if (!name) problem = say("请填写持票人姓名", "Enter the holder's name");
  else if (phone && !/^\+?[0-9]{5,39}$/.test(phone)) problem = say("手机号只能包含数字", "The phone number may hold digits only");
  else if (idNumber && !/^[0-9A-Z]{4,40}$/.test(idNumber)) problem = say("身份证号只能包含数字和字母", "The ID number may hold digits and letters only");
  if (problem) { show(msg, problem, "msg bad"); return; }
  const button = $("sell-button");
  button.disabled = true;
  show(msg, say("正在售票…", "Selling…"), "msg");
  try {
    const ticket = await api("POST", "/tickets", {
      performance_id: Number($("sell-performance").value), ticket_type_id: Number($("sell-type").value), persons,
      holder_name: name, holder_phone: phone || null, holder_id_number: idNumber || null,
    });
    show(msg, say(`已售出:票号 ${ticket.id},取票码 ${ticket.collection_code}`,
      `Sold: ticket ${ticket.id}, collection code ${ticket.collection_code}`), "msg");
    for (const id of ["sell-name", "sell-phone", "sell-id"]) $(id).value = "";
    $("sell-persons").value = "1";
    openTicket(ticket.id);
  } catch (err) {
    show(msg, explain(err), "msg bad");
  } finally {
    button.disabled = false;
  }
}

// ---- Find ----

function setKind() {
  const kind = KINDS[$("find-kind").value];
  const input = $("find-value");
  input.maxLength = kind.max;
  input.inputMode = kind.mode;
  $("find-hint").textContent = say(...kind.hint);
}

async function onFind(ev) {
  ev.preventDefault();
  const key = $("find-kind").value;
  const value = $("find-value").value.trim();
  const msg = $("find-msg");
  if (!KINDS[key].ok(value)) {
    show(msg, say("请按提示输入", "Enter it as the hint says") + ": " + say(...KINDS[key].hint), "msg bad");
    return;
  }
  const button = $("find-button");
  button.disabled = true;
  show(msg, say("正在查询…", "Searching…"), "msg");
  try {
    const found = await api("GET", "/tickets" + qs({ [key]: value, limit: 50 }));
    showResults(found);
  } catch (err) {
    show(msg, explain(err), "msg bad");
  } finally {
    button.disabled = false;
  }
}

function showResults(found) {
  const rows = found.tickets;
  fillRows($("result-rows"), rows.map((tk) => [
    [String(tk.id), "num"], tk.holder_name, `${tk.performance_name} · ${fmtTime(tk.starts_at)}`, statusBadge(tk.status),
    el("button", { type: "button", class: "secondary", dataset: { ticket: tk.id },
                   "aria-label": t("查看", "Open") + " " + tk.id, onclick: () => openTicket(tk.id) }, t("查看", "Open")),
  ]), say("没有找到", "Nothing found"));
  const msg = $("find-msg");
  if (!rows.length) show(msg, say("没有找到符合的票;请核对后重试,或换一种方式查询", "No ticket matches; check what you "
    + "typed, or search another way"), "msg bad");
  else if (found.truncated) show(msg, say(`找到的票超过 ${rows.length} 张,只显示最新的;请缩小查询范围`,
    `More than ${rows.length} tickets match; the newest are shown. Narrow the search`), "msg");
  else show(msg, say(`找到 ${rows.length} 张票`, `${rows.length} ticket(s) found`), "msg");
  if (rows.length === 1) openTicket(rows[0].id);
}

// ---- The ticket ----

async function openTicket(id, { keepMsg = false } = {}) {
  const call = ++opening;
  let found;
  try {
    found = await api("GET", "/tickets" + qs({ ticket_id: id }));
  } catch (err) {
    show($("page-msg"), explain(err));
    return;
  }
  if (call !== opening) return;
  const ticket = found.tickets[0];
  if (!ticket) { show($("page-msg"), say(`找不到 ${id} 号票`, `There is no ticket ${id}`)); return; }
  show($("page-msg"), "");
  const fresh = !current || current.id !== ticket.id;
  current = ticket;
  if (fresh && !keepMsg) { show($("action-msg"), ""); stopJobWatch(); $("reprint-reason").value = ""; }
  renderTicket(ticket);
  const panel = $("detail");
  panel.hidden = false;
  if (fresh) { panel.scrollIntoView({ block: "start" }); panel.focus({ preventScroll: true }); }
  await Promise.all([loadQr(ticket, call), loadHistory(ticket.id, call), loadPrinters()]);
}

function closeTicket() {
  opening++;
  current = null;
  stopJobWatch();
  $("detail").hidden = true;
  setQr(null);
}

function field(name, dt, ...dd) {
  return [el("dt", {}, dt), el("dd", { dataset: { field: name } }, ...dd)];
}

function jump(id, text) {
  return el("button", { type: "button", class: "link", dataset: { ticket: id }, onclick: () => openTicket(id) }, text);
}

function renderTicket(tk) {
  $("detail-title").textContent = t("票号", "Ticket") + " " + tk.id;
  const type = `${tk.ticket_type_name_zh} ${tk.ticket_type_name} · ${money(tk.price_cents)}`;
  const status = [statusBadge(tk.status)];
  if (tk.status !== "valid") status.push(" ", fmtTime(tk.status_at), tk.status_reason ? ` — ${tk.status_reason}` : "");
  $("detail-fields").replaceChildren(
    ...field("status", t("状态", "Status"), ...status),
    ...field("performance", t("场次", "Performance"), `${tk.performance_name} · ${fmtTime(tk.starts_at)}`),
    ...field("type", t("票类", "Ticket type"), type),
    ...field("holder", t("持票人", "Holder"), tk.holder_name),
    ...field("phone", t("手机号", "Phone"), tk.holder_phone || "—"),
    ...field("id_number", t("身份证号", "ID number"), tk.holder_id_number || "—"),
    ...field("persons", t("人数", "Persons"), String(tk.persons)),
    ...field("used", t("入场次数", "Entries"), String(tk.used)),
    ...field("code", t("取票码", "Collection code"), el("strong", { class: "code" }, tk.collection_code || "—")),
    ...field("collected", t("取票", "Collection"), tk.collected_at
      ? t("已取票", "Collected") + " " + fmtTime(tk.collected_at) : t("未取票(电子票)", "Not collected (e-ticket)")),
    ...field("sold", t("售出时间", "Sold at"), fmtTime(tk.created_at)),
    ...(tk.replaced_by ? field("replaced_by", t("已被替换", "Replaced by"),
      jump(tk.replaced_by, t("打印票", "printed ticket") + " " + tk.replaced_by)) : []),
    ...(tk.replaces ? field("replaces", t("替换了", "Replaces"),
      jump(tk.replaces, t("电子票", "e-ticket") + " " + tk.replaces)) : []),
  );
}

function setQr(url) {
  if (qrUrl) URL.revokeObjectURL(qrUrl);
  qrUrl = url;
  const img = $("detail-qr");
  if (url) img.src = url; else img.removeAttribute("src");
  img.hidden = !url;
}

/** The QR code needs the bearer token, so it is fetched and shown from a blob: URL (the CSP allows blob:). */
async function loadQr(tk, call) {
  const note = $("qr-note");
  if (tk.status !== "valid") {
    setQr(null);
    note.textContent = say("此票已失效,二维码不能入场", "This ticket no longer admits; no QR code");
    return;
  }
  try {
    const response = await fetch(`${API}/tickets/${tk.id}/qr.svg`, { headers: { Authorization: "Bearer " + session.token } });
    if (!response.ok) throw new Error(String(response.status));
    const blob = await response.blob();
    if (call !== opening) return;
    setQr(URL.createObjectURL(blob));
    $("detail-qr").alt = t("票号", "Ticket") + ` ${tk.id} ` + t("入场二维码", "entry QR code");
    note.textContent = t("入场二维码", "Entry QR code");
  } catch (err) {
    if (call !== opening) return;
    setQr(null);
    note.textContent = say("无法读取二维码,请点击刷新", "Cannot load the QR code; press Refresh");
  }
}

async function loadHistory(ticketId, call) {
  let rows;
  try {
    rows = await api("GET", "/checkins" + qs({ ticket_id: ticketId, limit: 200 }));
  } catch (err) {
    if (call === opening) show($("history-msg"), explain(err), "msg bad");
    return;
  }
  if (call !== opening) return;
  show($("history-msg"), "");
  fillRows($("history-rows"), rows.map((c) => {
    const chan = channels.get(c.channel_id);
    const result = el("span", { class: "badge " + (c.reason === "admitted" ? "ok" : c.reason === "exit" ? "" : "bad"),
                                dataset: { reason: c.reason } }, label(REASONS, c.reason));
    return [
      fmtTime(c.scanned_at), c.device_id, chan ? chan.name : `#${c.channel_id}`,
      c.direction === "exit" ? t("出场", "Exit") : t("入场", "Entry"),
      el("span", {}, result, c.forced_by ? ` (${t("强制放行", "forced by")} ${c.forced_by})` : "",
         c.conflict ? ` ${t("冲突", "conflict")}` : ""),
      [String(c.persons), "num"],
      c.offline ? t("离线", "Offline") : t("在线", "Online"),
    ];
  }), say("尚无检票记录", "Not scanned yet"));
}

// ---- Refund and void ----

function askReason(kind) {
  if (!current) return;
  pendingCancel = kind;
  const refund = kind === "refund";
  $("cancel-title").textContent = (refund ? t("退票", "Refund ticket") : t("作废", "Void ticket")) + " " + current.id;
  $("cancel-text").textContent = refund
    ? say("退票后此票在所有闸机立即失效", "After the refund every gate refuses this ticket")
    : say("作废用于错售或重复售出的票;作废后所有闸机拒绝此票", "Void a ticket sold by mistake or twice; every gate "
      + "then refuses it");
  $("cancel-confirm").textContent = refund ? t("确认退票", "Refund") : t("确认作废", "Void");
  $("cancel-reason").value = "";
  show($("cancel-error"), "");
  $("cancel-dialog").showModal();
  $("cancel-reason").focus();
}

async function onConfirmCancel(ev) {
  ev.preventDefault();
  const kind = pendingCancel;
  const reason = $("cancel-reason").value.trim();
  if (!kind || !current) return;
  if (!reason) { show($("cancel-error"), say("请填写原因", "Enter a reason")); return; }
  const id = current.id;
  const button = $("cancel-confirm");
  button.disabled = true;
  try {
    await api("POST", `/tickets/${id}/${kind}`, { reason });
    $("cancel-dialog").close();
    show($("action-msg"), kind === "refund"
      ? say(`${id} 号票已退票,所有闸机将拒绝此票`, `Ticket ${id} is refunded; every gate will refuse it`)
      : say(`${id} 号票已作废,所有闸机将拒绝此票`, `Ticket ${id} is void; every gate will refuse it`), "msg");
    openTicket(id, { keepMsg: true });
  } catch (err) {
    if (err.status === 409 || err.status === 404) {
      $("cancel-dialog").close();
      show($("action-msg"), explain(err), "msg bad");
      openTicket(id, { keepMsg: true });
    } else {
      show($("cancel-error"), explain(err));
    }
  } finally {
    button.disabled = false;
  }
}

// ---- Reprint ----

async function loadPrinters() {
  const select = $("reprint-printer");
  const chosen = select.value;
  let printers = [];
  try {
    printers = (await api("GET", "/devices")).filter((d) => d.kind === "printer");
  } catch (err) {
    fillSelect(select, [], t("无法读取打印机", "Cannot read the printers"));
    return;
  }
  printers.sort((a, b) => (a.state === "online" ? 0 : 1) - (b.state === "online" ? 0 : 1)
    || a.device_id.localeCompare(b.device_id));
  fillSelect(select, printers.map((p) => [p.device_id, `${p.device_id} · ${
    p.state === "online" ? t("在线", "online") : t("离线", "offline")}`]), t("没有打印机", "No printers"));
  if (printers.some((p) => p.device_id === chosen)) select.value = chosen;
}

async function onReprint(ev) {
  ev.preventDefault();
  if (!current) return;
  const msg = $("action-msg");
  const printer = $("reprint-printer").value;
  const reason = $("reprint-reason").value.trim();
  if (!printer) { show(msg, say("没有可选的打印机;请运维检查打印机是否在线", "No printer to choose; ask ops to check the printers"), "msg bad"); return; }
  if (!reason) { show(msg, say("请填写补打原因", "Enter the reason for the reprint"), "msg bad"); $("reprint-reason").focus(); return; }
  const id = current.id;
  const button = $("reprint-button");
  button.disabled = true;
  show(msg, say("正在发送打印任务…", "Sending the print job…"), "msg");
  try {
    const { jobs } = await api("POST", `/tickets/${id}/reprint`, { printer_id: printer, reason });
    const job = jobs[0];
    const sent = say(`已发送到打印机 ${printer}`, `Sent to printer ${printer}`);
    const replaced = job.ticket_id !== id
      ? " " + say(`打印的是新票 ${job.ticket_id},本票二维码已失效`, `It prints as new ticket ${job.ticket_id}; this one's QR code no longer admits`)
      : "";
    show(msg, sent + replaced, "msg");
    $("reprint-reason").value = "";
    watchJob(id, job.job_id, sent + replaced);
    openTicket(id, { keepMsg: true });
  } catch (err) {
    show(msg, explain(err), "msg bad");
  } finally {
    button.disabled = false;
  }
}

function stopJobWatch() {
  if (jobWatch) clearTimeout(jobWatch);
  jobWatch = null;
}

/** Follow one print job until the printer answers (every 2 s, for at most a minute). */
function watchJob(ticketId, jobId, prefix, tries = 0) {
  stopJobWatch();
  jobWatch = setTimeout(async () => {
    let job = null;
    try {
      job = (await api("GET", `/tickets/${ticketId}/print-jobs`)).find((j) => j.job_id === jobId) || null;
    } catch (err) { /* keep the last message; try again */ }
    if (!current || current.id !== ticketId) return;
    if (job) {
      const status = label(JOB_STATUS, job.status) + (job.reason ? ` (${job.reason})` : "");
      show($("action-msg"), `${prefix} — ${t("打印结果", "Print result")}: ${status}`,
        job.status === "printed" || job.status === "queued" ? "msg" : "msg bad");
      if (job.status !== "queued") return;
    }
    if (tries < 30) watchJob(ticketId, jobId, prefix, tries + 1);
    else show($("action-msg"), `${prefix} — ` + say("打印机尚未回应,请检查打印机", "The printer has not answered; check it"), "msg bad");
  }, 2000);
}
