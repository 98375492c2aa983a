// The kiosk touchscreen: talks only to the kiosk agent's own /api (never to the hub).
"use strict";

const $ = (id) => document.getElementById(id);
const ALNUM = "1234567890ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const MAX_LEN = { code: 16, phone: 15, otp: 8 };
const MIN_LEN = { code: 4, phone: 5, otp: 6 };

// Every failure the agent can report: what happened and what to do next, in both languages.
const FAILURES = {
  not_found: ["未找到车票", "No tickets found",
    "请检查输入后重试，或到售票窗口咨询", "Check what you entered and try again, or ask at the box office"],
  wrong_code: ["验证码错误", "Wrong code",
    "请重新输入短信验证码", "Please enter the SMS code again"],
  code_expired: ["验证码已过期", "Code expired",
    "请重新获取短信验证码", "Please request a new SMS code"],
  locked: ["已暂时锁定", "Temporarily locked",
    "尝试次数过多，请稍后再试或到售票窗口", "Too many attempts. Try later or go to the box office"],
  rate_limited: ["操作过于频繁", "Too many requests",
    "请稍后再试", "Please wait and try again"],
  already_collected: ["票已取出", "Already collected",
    "该票已经取过，请联系工作人员", "These tickets were already collected. Please ask a member of staff"],
  nothing_collectable: ["没有可取的票", "Nothing to collect",
    "这些票已取出或已退票，请联系工作人员", "These tickets were collected or refunded. Please ask a member of staff"],
  not_collectable: ["无法取票", "Cannot collect",
    "该票无法取出，请联系工作人员", "This ticket cannot be collected. Please ask a member of staff"],
  lookup_expired: ["操作超时", "Timed out", "请重新查询", "Please look up your tickets again"],
  not_in_lookup: ["操作超时", "Timed out", "请重新查询", "Please look up your tickets again"],
  print_failed: ["打印失败", "Printing failed",
    "请联系工作人员", "Please ask a member of staff"],
  out_of_service: ["暂停服务", "Out of service",
    "本机暂时无法打印，请到售票窗口", "This kiosk cannot print now. Please go to the box office"],
  expired: ["操作超时", "Timed out",
    "请重新查询", "Please look up your tickets again"],
  invalid: ["输入有误", "Invalid input",
    "请检查后重新输入", "Please check and enter again"],
  network: ["网络故障，请到售票窗口", "Network problem, please go to the box office",
    "本机暂时无法连接售票系统", "This kiosk cannot reach the ticket system right now"],
};

const state = {
  screen: "start", entry: { code: "", phone: "", otp: "" }, tickets: [], selected: new Set(),
  lastTouch: Date.now(), idleTimeout: 60, idSeq: null, idTimer: null, retry: "start", jobs: [],
  printTimer: null, blocked: null,
};

function show(name) {
  state.screen = name;
  document.querySelectorAll(".screen").forEach((s) => { s.hidden = s.id !== "screen-" + name; });
  document.body.dataset.screen = name;
}

function bilingual(el, zh, en) {
  el.replaceChildren();
  for (const [cls, text] of [["zh", zh], ["en", en]]) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    el.appendChild(span);
  }
}

async function api(method, path, body) {
  try {
    const r = await fetch("/api" + path, {
      method, headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    return await r.json();
  } catch (e) {
    return { ok: false, error: "agent_unreachable" };
  }
}

function fail(result, retry) {
  const code = FAILURES[result.error] ? result.error : "network";
  if (code === "network") { state.blocked = "network"; show("network"); return; }
  const [tz, te, xz, xe] = FAILURES[code];
  let extraZh = "", extraEn = "";
  if (result.attempts_left !== undefined && result.attempts_left !== null) {
    extraZh = `（还可尝试 ${result.attempts_left} 次）`; extraEn = ` (${result.attempts_left} attempts left)`;
  }
  if (result.retry_after) {
    extraZh += `（${Math.ceil(result.retry_after)} 秒后）`; extraEn += ` (in ${Math.ceil(result.retry_after)} s)`;
  }
  bilingual($("error-title"), tz, te);
  bilingual($("error-text"), xz + extraZh, xe + extraEn);
  document.body.dataset.error = code;
  state.retry = retry || "start";
  $("error-retry").hidden = !retry;
  show("error");
}

function home() {
  stopIdPolling();
  clearTimeout(state.printTimer);
  state.entry = { code: "", phone: "", otp: "" };
  state.tickets = []; state.selected.clear(); state.jobs = [];
  delete document.body.dataset.error;
  updateDisplays();
  api("POST", "/reset");
  show("start");
}

// ---- keypads ------------------------------------------------------------------------------------
function key(label, cls, onPress, testid) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls || "";
  b.innerHTML = label;
  if (testid) b.dataset.key = testid;
  b.addEventListener("click", onPress);
  return b;
}

function buildKeypad(pad) {
  const target = pad.dataset.target;
  const press = (ch) => () => {
    if (state.entry[target].length < MAX_LEN[target]) state.entry[target] += ch;
    updateDisplays();
  };
  const del = key("⌫", "del", () => { state.entry[target] = state.entry[target].slice(0, -1); updateDisplays(); }, "del");
  const ok = key("确定<br>OK", "ok", () => submit(target), "ok");
  if (pad.classList.contains("alnum")) {
    for (const ch of ALNUM) pad.appendChild(key(ch, "", press(ch), ch));
    pad.appendChild(del);
    ok.classList.add("wide");
    pad.appendChild(ok);
  } else {
    for (const ch of "123456789") pad.appendChild(key(ch, "", press(ch), ch));
    pad.appendChild(del);
    pad.appendChild(key("0", "", press("0"), "0"));
    pad.appendChild(ok);
  }
}

function updateDisplays() {
  for (const t of ["code", "phone", "otp"]) {
    $(t + "-display").textContent = state.entry[t];
    const ok = document.querySelector(`.keypad[data-target="${t}"] .ok`);
    if (ok) ok.disabled = state.entry[t].length < MIN_LEN[t];
  }
}

async function submit(target) {
  const value = state.entry[target];
  if (target === "code") {
    const r = await api("POST", "/lookup/code", { code: value });
    return r.ok ? showTickets(r.tickets) : fail(r, "code");
  }
  if (target === "phone") {
    const r = await api("POST", "/otp", { phone: value });
    if (!r.ok) return fail(r, "phone");
    state.entry.otp = ""; updateDisplays();
    return show("otp");
  }
  const r = await api("POST", "/lookup/phone", { phone: state.entry.phone, otp: value });
  if (!r.ok) { state.entry.otp = ""; updateDisplays(); return fail(r, r.error === "wrong_code" ? "otp" : "phone"); }
  return showTickets(r.tickets);
}

// ---- the ID-card reader ---------------------------------------------------------------------------
async function startIdCard() {
  show("idcard");
  bilingual($("idcard-hint"), "正在等待读卡…", "Waiting for the card…");
  const r = await api("POST", "/idcard/poll", { after: null });
  state.idSeq = r.seq === undefined ? 0 : r.seq;
  pollIdCard();
}

function stopIdPolling() { clearTimeout(state.idTimer); state.idTimer = null; }

async function pollIdCard() {
  stopIdPolling();
  if (state.screen !== "idcard") return;
  const r = await api("POST", "/idcard/poll", { after: state.idSeq });
  if (state.screen !== "idcard") return;
  if (r.seq !== undefined) state.idSeq = r.seq;
  if (r.error === "bad_read") {
    bilingual($("idcard-hint"), "请重新放置身份证", "Please place the card again");
    document.body.dataset.idcard = "bad_read";
  } else if (!r.ok) {
    return fail(r, "idcard");
  } else if (r.event === "card") {
    return showTickets(r.tickets);
  }
  state.idTimer = setTimeout(pollIdCard, 300);
}

// ---- tickets and printing ---------------------------------------------------------------------------
function typeName(t) {
  const tt = t.ticket_type;
  if (tt && typeof tt === "object") return [tt.zh || tt.name_zh || "", tt.en || tt.name || ""];
  return [tt || "", ""];
}

function when(t) {
  const s = t.starts_at;
  const d = typeof s === "number" ? new Date(s * 1000) : new Date(s);
  if (isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

const STATUS = { collected: ["已取票", "Collected"], refunded: ["已退票", "Refunded"] };

function showTickets(tickets) {
  state.tickets = tickets || [];
  state.selected = new Set(state.tickets.filter((t) => t.status === "collectable").map((t) => t.ticket_id));
  if (!state.selected.size) {
    const allCollected = state.tickets.length && state.tickets.every((t) => t.status === "collected");
    return fail({ error: allCollected ? "already_collected" : state.tickets.length ? "nothing_collectable" : "not_found" });
  }
  const list = $("ticket-list");
  list.replaceChildren();
  for (const t of state.tickets) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.className = "ticket";
    b.dataset.ticket = t.ticket_id;
    const [zh, en] = typeName(t);
    const st = STATUS[t.status];
    b.innerHTML = '<span class="box"></span><span class="what"><b></b><br><span class="meta"></span></span>' +
      '<span class="state"></span>';
    b.querySelector("b").textContent = t.performance_name || "";
    b.querySelector(".meta").textContent =
      `${when(t)} · ${zh}${en ? " " + en : ""} · ${t.persons || 1}人/person(s) · ${t.holder || ""}`;
    b.querySelector(".state").textContent = st ? `${st[0]} ${st[1]}` : "";
    b.disabled = t.status !== "collectable";
    b.setAttribute("aria-pressed", String(state.selected.has(t.ticket_id)));
    b.addEventListener("click", () => {
      if (state.selected.has(t.ticket_id)) state.selected.delete(t.ticket_id); else state.selected.add(t.ticket_id);
      b.setAttribute("aria-pressed", String(state.selected.has(t.ticket_id)));
      $("print").disabled = !state.selected.size;
    });
    li.appendChild(b);
    list.appendChild(li);
  }
  $("print").disabled = !state.selected.size;
  show("tickets");
}

async function print() {
  $("print").disabled = true;
  const r = await api("POST", "/collect", { ticket_ids: [...state.selected] });
  if (!r.ok) return fail(r);
  state.jobs = r.jobs.map((j) => ({ ...j, status: "queued" }));
  state.printStarted = Date.now();
  bilingual($("printing-hint"), "请稍候，正在打印您的票", "Please wait while your tickets print");
  show("printing");
  pollJobs();
}

async function pollJobs() {
  if (state.screen !== "printing") return;
  for (const j of state.jobs.filter((j) => j.status === "queued")) {
    const r = await api("GET", "/jobs/" + encodeURIComponent(j.job_id));
    if (r.ok) { j.status = r.status; j.reason = r.reason; }
  }
  if (state.screen !== "printing") return;
  const failed = state.jobs.find((j) => j.status === "failed" || j.status === "refused");
  if (failed) return fail({ error: "print_failed" });
  if (state.jobs.every((j) => j.status === "printed" || j.status === "duplicate")) return show("done");
  if (Date.now() - state.printStarted > 4000) {
    bilingual($("printing-hint"), "等待打印机…如长时间未出票请联系工作人员",
      "Waiting for the printer… If nothing prints, please ask a member of staff");
    document.body.dataset.printing = "waiting";
  }
  state.lastTouch = Date.now(); // printing is not idleness
  state.printTimer = setTimeout(pollJobs, 700);
}

// ---- kiosk status, idle timeout ----------------------------------------------------------------------
async function pollStatus() {
  const r = await api("GET", "/status");
  if (r.idle_timeout_s) state.idleTimeout = r.idle_timeout_s;
  const block = r.error === "agent_unreachable" || r.network === false ? "network"
    : r.in_service === false ? "out-of-service" : null;
  if (block && state.screen !== "printing") {
    if (block === "out-of-service") $("oos-reason").textContent = r.reason ? `(${r.reason})` : "";
    if (state.screen !== block) { stopIdPolling(); show(block); }
    state.blocked = block;
  } else if (!block && state.blocked) {
    state.blocked = null;
    home();
  }
  setTimeout(pollStatus, 1000);
}

function checkIdle() {
  const idle = (Date.now() - state.lastTouch) / 1000;
  if (!state.blocked && state.screen !== "start" && idle >= state.idleTimeout) home();
}

function init() {
  document.querySelectorAll(".keypad").forEach(buildKeypad);
  updateDisplays();
  $("go-code").addEventListener("click", () => { state.entry.code = ""; updateDisplays(); show("code"); });
  $("go-phone").addEventListener("click", () => { state.entry.phone = ""; updateDisplays(); show("phone"); });
  $("go-idcard").addEventListener("click", startIdCard);
  document.querySelectorAll("button.back, button.home").forEach((b) => b.addEventListener("click", home));
  $("print").addEventListener("click", print);
  $("error-retry").addEventListener("click", () => {
    if (state.retry === "idcard") return startIdCard();
    updateDisplays(); show(state.retry);
  });
  for (const ev of ["pointerdown", "keydown", "touchstart"]) {
    document.addEventListener(ev, () => { state.lastTouch = Date.now(); }, { passive: true });
  }
  setInterval(checkIdle, 500);
  show("start");
  pollStatus();
}

init();
