// What every page of the staff console shares: the API client, the session, the page shell (top bar,
// navigation by role, log-out), bilingual text, formatting, DOM building without innerHTML, a server-sent
// events reader that sends the bearer token, and downloads. Plain ES module, no build step, no network.
"use strict";

export const API = "/api/v1";

// The console's pages, in the order of the navigation; `roles` may open them (the API checks again).
export const PAGES = [
  { id: "emergency", path: "/console", zh: "紧急疏散", en: "Emergency",
    roles: ["security", "admin", "ops", "viewer", "manager"] },
  { id: "live", path: "/console/live", zh: "实时检票", en: "Live check-in",
    roles: ["manager", "security", "viewer", "admin", "ops"] },
  { id: "devices", path: "/console/devices", zh: "设备", en: "Devices", roles: ["ops", "admin"] },
  { id: "boxoffice", path: "/console/boxoffice", zh: "票务", en: "Box office", roles: ["box_office", "admin"] },
  { id: "reports", path: "/console/reports", zh: "报表", en: "Reports", roles: ["manager", "finance", "viewer", "admin"] },
  { id: "users", path: "/console/users", zh: "用户与审计", en: "Users & audit", roles: ["admin"] },
];

export const ROLE_NAMES = {
  admin: "管理员 Admin", box_office: "票务员 Box office", security: "安全员 Security", ops: "运维 Ops",
  viewer: "观察员 Viewer", manager: "前场经理 Front-of-house manager", finance: "财务 Finance", kiosk: "自助机 Kiosk",
};

export const MSG = {
  unreachable: "无法连接中心服务器,请检查网络后重试。 / Cannot reach the hub; check the network and try again.",
  expired: "登录已过期,请重新登录。 / Your session has expired; log in again.",
  forbidden: "您的角色无权进行此操作,请联系管理员。 / Your role may not do this; ask an admin.",
  tooMany: "请求过于频繁,请稍后再试。 / Too many requests; wait a moment and try again.",
};

/** "中文 English": every label and message in Simplified Chinese and English, side by side. */
// Check-in results (protocol/reasons.py) as staff read them: [中文, English]
export const REASONS = {
  admitted: ["通过", "Admitted"], malformed: ["无法识别", "Unreadable"], forged: ["伪造票", "Forged"],
  unknown: ["无此票", "Unknown ticket"], revoked: ["已退或作废", "Refunded or void"],
  wrong_performance: ["非本场次", "Wrong performance"], wrong_channel: ["通道不符", "Wrong channel"],
  too_early: ["未到检票时间", "Too early"], too_late: ["演出已结束", "Too late"],
  already_used: ["此票已检", "Already used"], daily_limit: ["今日已入场", "Daily limit"],
  cooldown: ["刚刚已入场", "Cool-down"], no_reentry: ["不可再次入场", "No re-entry"],
  still_inside: ["尚未离场", "Still inside"], latecomer: ["迟到", "Latecomer"], not_today: ["今日不可用", "Not today"],
  channel_closed: ["通道已关闭", "Channel closed"], annulled: ["入场已撤销", "Entry annulled"],
  exit: ["出场", "Exit"], emergency: ["紧急疏散", "Emergency"],
};

export function t(zh, en) { return `${zh} ${en}`; }
/** "中文。 / English.": a sentence in both languages. */
export function say(zh, en) { return `${zh} / ${en}`; }

export const $ = (id) => document.getElementById(id);

export const session = {
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

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

export function detailText(body) {
  if (!body || body.detail === undefined) return "";
  if (typeof body.detail === "string") return body.detail_zh ? say(body.detail_zh, body.detail) : body.detail;
  if (Array.isArray(body.detail)) {  // a 422 from FastAPI: name the fields
    return body.detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return JSON.stringify(body.detail);
}

function authHeaders(extra) {
  const headers = { Accept: "application/json", ...(extra || {}) };
  if (session.token) headers.Authorization = "Bearer " + session.token;
  return headers;
}

/** Call the hub's JSON API; an ApiError (status 0: the hub is unreachable) with a message for the user. */
export async function api(method, path, body) {
  const headers = authHeaders(body === undefined ? {} : { "Content-Type": "application/json" });
  let response;
  try {
    response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, MSG.unreachable);
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) {
    if (response.status === 401) expireSession();
    const fallback = response.status === 403 ? MSG.forbidden : response.status === 429 ? MSG.tooMany : response.statusText;
    throw new ApiError(response.status, detailText(data) || fallback, data);
  }
  return data;
}

/** A query string from an object, leaving out empty values: qs({a: 1, b: ""}) == "?a=1". */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x)); else q.append(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

/**
 * Read a server-sent events stream with the bearer token (EventSource cannot send one); reconnects with
 * backoff until `signal` aborts. onEvent(name, data) gets each event (data parsed as JSON when it is);
 * onState("open" | "retry" | "closed", error) reports the connection for a banner.
 */
export async function streamEvents(path, onEvent, { signal, onState } = {}) {
  let delay = 500;
  while (!signal || !signal.aborted) {
    try {
      const response = await fetch(API + path, { headers: authHeaders({ Accept: "text/event-stream" }), signal });
      if (response.status === 401) { expireSession(); return; }
      if (!response.ok || !response.body) throw new ApiError(response.status, response.statusText);
      delay = 500;
      if (onState) onState("open");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (!data.length) continue;
          let parsed = data.join("\n");
          try { parsed = JSON.parse(parsed); } catch (err) { /* plain text */ }
          onEvent(name, parsed);
        }
      }
    } catch (err) {
      if (signal && signal.aborted) break;
      if (onState) onState("retry", err);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 8000);
  }
  if (onState) onState("closed");
}

/** Fetch `path` with the token and save it as `filename` (small files; big exports use a download link). */
export async function download(path, filename) {
  let response;
  try {
    response = await fetch(API + path, { headers: authHeaders({ Accept: "*/*" }) });
  } catch (err) {
    throw new ApiError(0, MSG.unreachable);
  }
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    throw new ApiError(response.status, detailText(data) || response.statusText, data);
  }
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * Build an element: el("td", {class: "num", dataset: {id: 1}}, "text", child). Text is always text (no
 * innerHTML anywhere): names and reasons come from devices and people.
 */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replace a table body's rows: rows is a list of lists of cells (text or nodes, or [value, "num"]). */
export function fillRows(tbody, rows, emptyText) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, cells.map((c) => (
    Array.isArray(c) ? el("td", { class: c[1] }, c[0]) : el("td", {}, c)
  )))));
  if (!rows.length && emptyText) {
    const cols = tbody.closest("table")?.querySelectorAll("thead th").length || 1;
    tbody.append(el("tr", {}, el("td", { colspan: cols, class: "empty" }, emptyText)));
  }
}

export function show(node, text, cls) {
  node.textContent = text || "";
  node.hidden = !text;
  if (cls !== undefined) node.className = cls;
}

export function fmtTime(v) {
  if (v === null || v === undefined || v === "") return "—";
  const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  const time = d.toLocaleTimeString("zh-CN", { hour12: false });
  return d.toDateString() === new Date().toDateString() ? time : d.toLocaleDateString("zh-CN") + " " + time;
}

export function fmtNumber(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("zh-CN");
}

/** An <input type="datetime-local"> value as unix seconds (local time), or null when empty. */
export function unixOf(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

export function pageFor(role) {
  return PAGES.find((p) => p.roles.includes(role)) || null;
}

function expireSession() {
  session.clear();
  const here = location.pathname + location.search;
  location.assign("/console?expired=1&next=" + encodeURIComponent(here));
}

export function logout() {
  const token = session.token;
  session.clear();
  const done = () => location.assign("/console");
  if (!token) { done(); return; }
  fetch(API + "/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + token } }).finally(done);
}

/** The navigation links for `role` into `nav` (a <nav>), the current page marked for screen readers. */
export function renderNav(nav, role, current) {
  nav.setAttribute("aria-label", "页面 Pages");
  nav.replaceChildren(...PAGES.filter((p) => p.roles.includes(role)).map((p) => el("a", {
    href: p.path, class: p.id === current ? "current" : null, "aria-current": p.id === current ? "page" : null,
  }, t(p.zh, p.en))));
}

/**
 * Set up a page: the top bar (brand, navigation, user, log-out) and the role check. Without a login it
 * goes to the log-in page (and comes back here after); a role that may not open the page gets a message
 * saying which roles may and a link to its own page. Returns the session's role, or null if the page must
 * not run.
 */
export function mountShell(pageId) {
  const page = PAGES.find((p) => p.id === pageId);
  if (!session.token) {
    location.assign("/console?next=" + encodeURIComponent(location.pathname + location.search));
    return null;
  }
  const role = session.role;
  const bar = $("topbar");
  const nav = el("nav", { class: "nav" });
  renderNav(nav, role, pageId);
  bar.replaceChildren(
    el("span", { class: "brand" }, "场馆中控台 Venue console"), nav,
    el("span", { class: "who", id: "who" }, `${session.user} · ${ROLE_NAMES[role] || role}`),
    el("button", { type: "button", class: "plain", id: "logout", onclick: () => logout() }, "退出 Log out"),
  );
  if (page && !page.roles.includes(role)) {
    const home = pageFor(role);
    const main = document.querySelector("main");
    main.replaceChildren(el("div", { class: "card", role: "alert" },
      el("p", { class: "note" }, say(
        `您的角色(${ROLE_NAMES[role] || role})不能打开此页面;可打开的角色:${page.roles.map((r) => ROLE_NAMES[r] || r).join("、")}。`,
        `Your role (${role}) cannot open this page; it is for: ${page.roles.join(", ")}.`)),
      home ? el("a", { href: home.path }, say(`前往${home.zh}`, `Go to ${home.en}`)) : null));
    return null;
  }
  return role;
}
