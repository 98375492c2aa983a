// The hub console's emergency page: plain JavaScript, no build step, no external resources.
// Every label and message is given in Simplified Chinese and English, side by side.
"use strict";

const API = "/api/v1";
const POLL_MS = 1000;
const STALE_MS = 5000;
const ACT_ROLES = ["security"];
const VIEW_ROLES = ["security", "admin", "ops", "viewer"];
const WORDS = { open: ["OPEN", "开闸"], clear: ["CLEAR", "解除"] };

const MSG = {
  badLogin: "用户名或密码错误,请检查后重试。 / Wrong user name or password; check both and try again.",
  unreachable: "无法连接中心服务器,请检查网络后重试。 / Cannot reach the hub; check the network and try again.",
  expired: "登录已过期,请重新登录。 / Your session has expired; log in again.",
  needSecurity: "需要安全员(security)角色。请用安全员账号登录。 / Needs the security role; log in with a security account.",
  reason: "请填写原因。 / Enter a reason.",
  noZones: "请至少选择一个区域。 / Select at least one zone.",
};

const $ = (id) => document.getElementById(id);
const session = {
  get token() { return sessionStorage.getItem("console.token"); },
  get role() { return sessionStorage.getItem("console.role"); },
  get user() { return sessionStorage.getItem("console.user"); },
  save(token, role, user) {
    sessionStorage.setItem("console.token", token);
    sessionStorage.setItem("console.role", role);
    sessionStorage.setItem("console.user", user);
  },
  clear() { ["console.token", "console.role", "console.user"].forEach((k) => sessionStorage.removeItem(k)); },
};

let pollTimer = null;
let lastOk = 0;
let lastState = null;
let groupNames = new Map();
let channelNames = new Map();
let pending = null; // the action the guard dialog is confirming

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function detailText(body) {
  if (!body || body.detail === undefined) return "";
  if (typeof body.detail === "string") return body.detail_zh ? `${body.detail_zh} / ${body.detail}` : body.detail;
  return JSON.stringify(body.detail);
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = "Bearer " + session.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, MSG.unreachable);
  }
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) throw new ApiError(response.status, detailText(data) || response.statusText);
  return data;
}

function show(el, text, cls) {
  el.textContent = text;
  el.hidden = !text;
  if (cls !== undefined) el.className = cls;
}

function fmtTime(v) {
  if (v === null || v === undefined || v === "") return "—";
  const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  const time = d.toLocaleTimeString("zh-CN", { hour12: false });
  return d.toDateString() === new Date().toDateString() ? time : d.toLocaleDateString("zh-CN") + " " + time;
}

function zoneName(id) {
  if (id === null || id === undefined) return "—";
  return groupNames.has(id) ? `${groupNames.get(id)} (#${id})` : `#${id}`;
}

function channelName(id) {
  if (id === null || id === undefined) return "—";
  return channelNames.has(id) ? `${channelNames.get(id)} (#${id})` : `#${id}`;
}

// ---- login / logout -------------------------------------------------------------------------

async function onLogin(ev) {
  ev.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  show($("login-error"), "");
  $("login-button").disabled = true;
  try {
    const out = await api("POST", "/auth/login", { username, password });
    session.save(out.token, out.role, username);
    $("password").value = "";
    enter();
  } catch (err) {
    show($("login-error"), err.status === 401 ? MSG.badLogin : err.status === 0 ? MSG.unreachable : err.message);
  } finally {
    $("login-button").disabled = false;
  }
}

function logout(message) {
  clearTimeout(pollTimer);
  pollTimer = null;
  session.clear();
  lastState = null;
  $("emergency-view").hidden = true;
  $("login-view").hidden = false;
  $("who").hidden = true;
  $("logout").hidden = true;
  show($("login-error"), message || "");
}

function enter() {
  const role = session.role;
  // console-nav.js (the shell's module): a `next` page or this role's own page; the nav for this one
  const ev = new CustomEvent("console:enter", { cancelable: true, detail: { role } });
  if (!document.dispatchEvent(ev)) return;  // it is going to another page
  $("login-view").hidden = true;
  $("emergency-view").hidden = false;
  $("who").textContent = `${session.user} · 角色 Role: ${role}`;
  $("who").hidden = false;
  $("logout").hidden = false;
  const canAct = ACT_ROLES.includes(role);
  for (const id of ["open-all", "clear-all", "open-zones", "clear-zones"]) {
    $(id).disabled = !canAct;
    $(id).title = canAct ? "" : "需要安全员(security)角色 / Needs the security role";
  }
  $("role-note").hidden = canAct;
  show($("action-msg"), "");
  if (!VIEW_ROLES.includes(role)) {
    show($("conn-banner"), `您的角色(${role})无权查看紧急状态,请联系管理员分配 security、ops 或 viewer 角色。 / ` +
      `Your role (${role}) cannot view the emergency state; ask an admin for the security, ops or viewer role.`);
    return;
  }
  loadNames();
  poll();
}

// ---- data -----------------------------------------------------------------------------------

async function loadNames() {
  try {
    const [groups, channels] = await Promise.all([api("GET", "/checkin-groups"), api("GET", "/channels")]);
    groupNames = new Map(groups.map((g) => [g.id, g.name]));
    channelNames = new Map(channels.map((c) => [c.id, c.name]));
    renderZones(groups);
    if (lastState) render(lastState);
  } catch (err) {
    if (err.status === 401) logout(MSG.expired);
  }
}

async function poll() {
  clearTimeout(pollTimer);
  try {
    const state = await api("GET", "/emergency");
    lastOk = Date.now();
    lastState = state;
    render(state);
    show($("conn-banner"), "");
  } catch (err) {
    if (err.status === 401) { logout(MSG.expired); return; }
    if (err.status === 403) {
      show($("conn-banner"), `您的角色无权查看紧急状态。 / Your role cannot view the emergency state. (${err.message})`);
    } else {
      const since = lastOk ? fmtTime(lastOk / 1000) : "—";
      if (!lastOk || Date.now() - lastOk > STALE_MS || err.status === 0) {
        show($("conn-banner"), `与中心失去连接,显示的是 ${since} 的数据,正在重试… / ` +
          `Lost contact with the hub; showing data from ${since}, retrying… (${err.message})`);
      }
    }
  }
  if (session.token) pollTimer = setTimeout(poll, POLL_MS);
}

// ---- rendering ------------------------------------------------------------------------------

function isActive(s) {
  return Boolean(s.open_all) || (s.open_group_ids || []).length > 0 || (s.open_channel_ids || []).length > 0;
}

function gateOnline(g) {
  if (typeof g.online === "boolean") return g.online;
  if (typeof g.device_state === "string") return g.device_state === "online";
  return null;
}

// The board: {command: {seq, open_all, open_group_ids, open_channel_ids, issued_at, issued_by, reason},
//             active, gates: [...], gates_confirmed, gates_unconfirmed, evacuation: {groups, total_inside, formula}}
function render(board) {
  const s = board.command || board;
  const active = typeof board.active === "boolean" ? board.active : isActive(s);
  const stateEl = $("state-text");
  if (!active) {
    stateEl.textContent = "正常 Normal";
    stateEl.className = "state normal";
  } else if (s.open_all) {
    stateEl.textContent = "紧急开闸中 EMERGENCY OPEN";
    stateEl.className = "state open";
  } else {
    stateEl.textContent = "紧急开闸中(部分区域) EMERGENCY OPEN (some zones)";
    stateEl.className = "state open";
  }
  const lines = [];
  if (active && !s.open_all) {
    const zones = (s.open_group_ids || []).map(zoneName);
    const chans = (s.open_channel_ids || []).map(channelName);
    if (zones.length) lines.push(`开闸区域 Open zones: ${zones.join(", ")}`);
    if (chans.length) lines.push(`开闸通道 Open channels: ${chans.join(", ")}`);
  }
  if (s.seq) {
    lines.push(`指令序号 Command seq: ${s.seq} · ${fmtTime(s.issued_at)} · 操作人 By: ${s.issued_by || "—"}`);
    if (s.reason) lines.push(`原因 Reason: ${s.reason}`);
  }
  $("state-detail").textContent = lines.join("\n");
  renderInside(board.evacuation || { groups: board.inside, total_inside: board.inside_total });
  renderGates(board.gates || [], active);
  $("updated").textContent = `更新于 Updated ${fmtTime(Date.now() / 1000)} · 每秒刷新 refreshed every second`;
}

function renderInside(ev) {
  const total = ev.total_inside;
  $("inside-total").textContent = total === undefined || total === null ? "—" : String(total);
  $("inside-total").title = ev.formula || "";
  const body = $("inside-rows");
  body.replaceChildren();
  for (const z of ev.groups || []) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = z.name ? `${z.name} (#${z.group_id})` : zoneName(z.group_id);
    const n = document.createElement("td");
    n.className = "num";
    n.textContent = String(z.inside);
    tr.append(name, n);
    body.append(tr);
  }
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function stateLabel(state) {
  if (state === "open") return "开闸 Open";
  if (state === "normal") return "正常 Normal";
  return "未上报 Not reported";
}

function renderGates(all, active) {
  // Turnstiles only (kind "gate"; null: a device that reported an emergency state but never its status).
  const gates = all.filter((g) => g.kind === "gate" || g.kind === null || g.kind === undefined);
  const relevant = active ? gates.filter((g) => g.in_scope) : gates;
  const confirmed = relevant.filter((g) => g.confirmed).length;
  const count = $("confirm-count");
  count.textContent = `${active ? "已确认开闸 Confirmed open" : "已确认 Confirmed"} ${confirmed} / ${relevant.length}`;
  count.className = "confirm-count " + (confirmed === relevant.length ? "all" : "partial");
  const rows = [...gates].sort((a, b) => (b.in_scope ? 1 : 0) - (a.in_scope ? 1 : 0) ||
    String(a.device_id).localeCompare(String(b.device_id)));
  const body = $("gate-rows");
  body.replaceChildren();
  for (const g of rows) {
    const tr = document.createElement("tr");
    tr.dataset.device = g.device_id;
    if (active && g.in_scope) tr.className = "in-scope";
    const online = gateOnline(g);
    tr.append(
      cell(g.device_id),
      cell(zoneName(g.group_id)),
      cell(channelName(g.channel_id)),
      cell((online === null ? "—" : online ? "在线 Online" : "离线 Offline") +
        ((g.stale || []).length ? ` ⚠ ${g.stale.join("/")} 过期 stale` : ""),
        online === false || (g.stale || []).length ? "no" : ""),
      cell(stateLabel(g.state) + (g.cause && g.cause !== "command" ? ` (${causeLabel(g.cause)})` : "")),
      cell(g.confirmed ? "✔" : "✘", g.confirmed ? "yes confirmed" : "no"),
      cell(fmtTime(g.confirmed_at)),
    );
    body.append(tr);
  }
  $("no-gates").hidden = gates.length > 0;
}

function causeLabel(cause) {
  if (cause === "fire") return "本地火警 local fire alarm";
  if (cause === "button") return "本地紧急按钮 local emergency button";
  return cause;
}

function renderZones(groups) {
  const list = $("zone-list");
  list.replaceChildren();
  for (const g of groups) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = String(g.id);
    box.className = "zone-box";
    box.disabled = !ACT_ROLES.includes(session.role);
    label.append(box, ` ${g.name} (#${g.id})`);
    list.append(label);
  }
}

// ---- guarded actions ------------------------------------------------------------------------

function selectedZones() {
  return [...document.querySelectorAll(".zone-box:checked")].map((b) => Number(b.value));
}

function ask(action, scope, title, text) {
  if (!ACT_ROLES.includes(session.role)) { show($("action-msg"), MSG.needSecurity, "msg bad"); return; }
  pending = { action, scope };
  $("guard-title").textContent = title;
  $("guard-text").textContent = text;
  $("guard-word-hint").textContent = WORDS[action].join(" 或 or ");
  $("guard-reason").value = "";
  $("guard-word").value = "";
  show($("guard-error"), "");
  $("guard-confirm").textContent = action === "open" ? "确认开闸 Confirm open" : "确认解除 Confirm clear";
  $("guard").showModal();
  $("guard-reason").focus();
}

async function onGuardSubmit(ev) {
  ev.preventDefault();
  if (!pending) return;
  const reason = $("guard-reason").value.trim();
  const word = $("guard-word").value.trim();
  const words = WORDS[pending.action];
  if (!reason) { show($("guard-error"), MSG.reason); $("guard-reason").focus(); return; }
  if (!words.some((w) => w.toUpperCase() === word.toUpperCase())) {
    show($("guard-error"), `确认词不对:请输入 ${words.join(" 或 ")}。 / Wrong confirmation word: type ${words.join(" or ")}.`);
    $("guard-word").focus();
    return;
  }
  const { action, scope } = pending;
  $("guard-confirm").disabled = true;
  try {
    const out = await api("POST", `/emergency/${action}`, { scope, reason });
    pending = null;
    $("guard").close();
    show($("action-msg"), action === "open"
      ? `已发出开闸指令(序号 ${out.seq}),等待闸机确认。 / Open command sent (seq ${out.seq}); waiting for the gates to confirm.`
      : `已发出解除指令(序号 ${out.seq}),等待闸机确认。 / Clear command sent (seq ${out.seq}); waiting for the gates to confirm.`,
    "msg");
    poll();
  } catch (err) {
    if (err.status === 401) { $("guard").close(); logout(MSG.expired); return; }
    show($("guard-error"), err.status === 403 ? MSG.needSecurity
      : `${err.status ? "错误 Error " + err.status + ": " : ""}${err.message}`);
  } finally {
    $("guard-confirm").disabled = false;
  }
}

function wire() {
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => {
    if (session.token) api("POST", "/auth/logout").catch(() => {});  // revoke the token at the hub too
    logout("");
  });
  $("open-all").addEventListener("click", () => ask("open", { all: true },
    "确认全部开闸 Confirm: open all gates",
    "所有闸机将停止检票并常开,直到解除。 / Every gate stops checking tickets and stands open until cleared."));
  $("clear-all").addEventListener("click", () => ask("clear", { all: true },
    "确认解除紧急状态 Confirm: clear the emergency",
    "所有闸机恢复正常检票。请确认现场已安全。 / Every gate returns to normal checking. Make sure the venue is safe."));
  $("open-zones").addEventListener("click", () => {
    const ids = selectedZones();
    if (!ids.length) { show($("action-msg"), MSG.noZones, "msg bad"); return; }
    ask("open", { group_ids: ids, channel_ids: [] }, "确认区域开闸 Confirm: open the selected zones",
      `所选区域 Zones: ${ids.map(zoneName).join(", ")}`);
  });
  $("clear-zones").addEventListener("click", () => {
    const ids = selectedZones();
    if (!ids.length) { show($("action-msg"), MSG.noZones, "msg bad"); return; }
    ask("clear", { group_ids: ids, channel_ids: [] }, "确认解除区域 Confirm: clear the selected zones",
      `所选区域 Zones: ${ids.map(zoneName).join(", ")}`);
  });
  $("guard-form").addEventListener("submit", onGuardSubmit);
  $("guard-cancel").addEventListener("click", () => { pending = null; $("guard").close(); });
  $("guard").addEventListener("close", () => { pending = null; });
  if (new URLSearchParams(location.search).has("expired")) show($("login-error"), MSG.expired);
  if (session.token) enter();
}

document.addEventListener("DOMContentLoaded", wire);
