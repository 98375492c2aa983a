// Users and audit (admin): create users, set roles and device logins, reset passwords, disable and enable
// users, and read the audit log with filters. Everything here is the API's: /users, /users/{id}/..., /audit.
import {
  $, api, el, fillRows, fmtTime, mountShell, qs, ROLE_NAMES, say, session, show, t, unixOf,
} from "/console/common.js";

const ROLES = Object.keys(ROLE_NAMES);
let users = [];
let current = null; // the user in the manage panel
let auditOldest = null; // the id of the last audit row shown (paging back)

const role = mountShell("users");
if (role) start();

function start() {
  for (const select of [$("new-role"), $("edit-role")]) {
    select.replaceChildren(...ROLES.map((r) => el("option", { value: r }, ROLE_NAMES[r])));
  }
  $("new-role").value = "viewer";
  $("create-form").addEventListener("submit", onCreate);
  $("role-form").addEventListener("submit", onSaveRole);
  $("password-form").addEventListener("submit", onResetPassword);
  $("toggle-button").addEventListener("click", onToggle);
  $("close-manage").addEventListener("click", () => closeManage());
  $("reload-users").addEventListener("click", () => loadUsers());
  $("audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadAudit(false); });
  $("audit-form").addEventListener("reset", () => setTimeout(() => loadAudit(false), 0));
  $("audit-older").addEventListener("click", () => loadAudit(true));
  $("confirm-cancel").addEventListener("click", () => $("confirm").close("cancel"));
  loadUsers();
  loadAudit(false);
}

function failure(node, err) {
  show(node, err.status === 0 ? err.message : say("操作失败:", "It did not work:") + " " + err.message, "msg bad");
}

function stateBadge(u) {
  return u.disabled
    ? el("span", { class: "badge bad" }, t("已停用", "Disabled"), " ", fmtTime(u.disabled_at))
    : el("span", { class: "badge ok" }, t("启用", "Enabled"));
}

async function loadUsers() {
  try {
    users = await api("GET", "/users");
  } catch (err) {
    failure($("users-msg"), err);
    return;
  }
  show($("users-msg"), "");
  fillRows($("user-rows"), users.map((u) => [
    [String(u.id), "num"], u.username, ROLE_NAMES[u.role] || u.role, u.device_id || "—", fmtTime(u.created_at),
    stateBadge(u),
    el("button", { type: "button", class: "secondary", dataset: { user: u.username },
                   "aria-label": t("管理", "Manage") + " " + u.username, onclick: () => openManage(u.id) },
       t("管理", "Manage")),
  ]), say("还没有用户。", "No users yet."));
  if (current) {
    const fresh = users.find((u) => u.id === current.id);
    if (fresh) fillManage(fresh);
  }
}

async function onCreate(ev) {
  ev.preventDefault();
  const body = { username: $("new-username").value.trim(), password: $("new-password").value, role: $("new-role").value };
  const device = $("new-device").value.trim();
  if (device) body.device_id = device;
  $("create-button").disabled = true;
  try {
    const made = await api("POST", "/users", body);
    show($("create-msg"), say(`已创建用户 ${made.username}(${ROLE_NAMES[made.role]})。`,
      `Created user ${made.username} (${made.role}).`), "msg");
    $("create-form").reset();
    $("new-role").value = "viewer";
    await loadUsers();
    loadAudit(false);
  } catch (err) {
    failure($("create-msg"), err);
  } finally {
    $("create-button").disabled = false;
  }
}

function fillManage(u) {
  current = u;
  $("manage-title").textContent = t("管理用户", "Manage user") + ": " + u.username;
  $("manage-state").replaceChildren(t("角色", "Role"), ": ", ROLE_NAMES[u.role] || u.role, " · ", stateBadge(u));
  $("edit-role").value = u.role;
  $("edit-device").value = u.device_id || "";
  $("toggle-button").textContent = u.disabled ? t("启用", "Enable") : t("停用", "Disable");
  $("toggle-button").className = u.disabled ? "primary" : "danger";
}

function openManage(id) {
  const u = users.find((x) => x.id === id);
  if (!u) return;
  fillManage(u);
  show($("manage-msg"), "");
  $("password-form").reset();
  $("manage").hidden = false;
  $("edit-role").focus();
}

function closeManage() {
  current = null;
  $("manage").hidden = true;
}

async function act(method, path, body, okText) {
  const id = current.id;
  try {
    const u = await api(method, path, body);
    show($("manage-msg"), okText(u), "msg");
    await loadUsers();
    loadAudit(false);
    return u;
  } catch (err) {
    failure($("manage-msg"), err);
    if (err.status === 404) { await loadUsers(); if (!users.some((x) => x.id === id)) closeManage(); }
    return null;
  }
}

async function onSaveRole(ev) {
  ev.preventDefault();
  const body = { role: $("edit-role").value, device_id: $("edit-device").value.trim() || null };
  await act("PATCH", `/users/${current.id}`, body, (u) => say(
    `已保存:${u.username} 现在是 ${ROLE_NAMES[u.role]},下一次请求起生效。`,
    `Saved: ${u.username} is now ${u.role}, from their next request.`));
}

async function onResetPassword(ev) {
  ev.preventDefault();
  const a = $("reset-password").value;
  if (a !== $("reset-password2").value) {
    show($("manage-msg"), say("两次输入的密码不一致,请重新输入。", "The two passwords differ; type them again."), "msg bad");
    $("reset-password2").focus();
    return;
  }
  const name = current.username;
  const done = await act("POST", `/users/${current.id}/password`, { password: a }, () => say(
    `已重置 ${name} 的密码,其所有登录已失效。请把新密码告知本人。`,
    `The password of ${name} is reset and every session of theirs has ended. Tell them the new one.`));
  if (done) $("password-form").reset();
}

/** Ask before a change that locks someone out; resolves true when confirmed. */
function confirmDialog(title, text, okLabel) {
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  const dialog = $("confirm");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    $("confirm-ok").value = "ok";
    dialog.showModal();
  });
}

async function onToggle() {
  const u = current;
  if (u.disabled) {
    await act("POST", `/users/${u.id}/enable`, undefined, () => say(`已启用 ${u.username}。`, `${u.username} is enabled.`));
    return;
  }
  const ok = await confirmDialog(t("停用用户", "Disable user") + " " + u.username,
    say(`停用后 ${u.username} 立即退出所有登录,且无法再登录,直到重新启用。`,
      `${u.username} is logged out everywhere at once and cannot log in until enabled again.`),
    t("停用", "Disable") + " " + u.username);
  if (!ok) return;
  const self = u.username === session.user;
  await act("POST", `/users/${u.id}/disable`, undefined, () => say(`已停用 ${u.username}。`, `${u.username} is disabled.`));
  if (self && users.find((x) => x.id === u.id)?.disabled) location.assign("/console");
}

async function loadAudit(older) {
  const params = {
    username: $("f-username").value.trim(), action: $("f-action").value.trim(), target: $("f-target").value.trim(),
    since: unixOf($("f-since").value), until: unixOf($("f-until").value), limit: $("f-limit").value,
    before_id: older ? auditOldest : null,
  };
  if (params.until !== null) params.until += 59; // the whole minute shown
  $("audit-search").disabled = true;
  show($("audit-msg"), say("正在查询…", "Searching…"), "msg");
  let rows;
  try {
    rows = await api("GET", "/audit" + qs(params));
  } catch (err) {
    failure($("audit-msg"), err);
    return;
  } finally {
    $("audit-search").disabled = false;
  }
  const cells = rows.map((a) => [[String(a.id), "num"], fmtTime(a.at), a.username, a.action, a.target,
    [a.detail, "detail-cell"]]);
  const body = $("audit-rows");
  if (older) {
    const extra = document.createElement("tbody");
    fillRows(extra, cells);
    body.append(...extra.children);
  } else {
    fillRows(body, cells, say("没有符合条件的记录。", "No entries match these filters."));
  }
  if (rows.length) auditOldest = rows[rows.length - 1].id;
  const shown = body.querySelectorAll("tr:not(:has(td.empty))").length;
  show($("audit-msg"), say(`显示 ${shown} 条记录(最新在前)。`, `Showing ${shown} entries, newest first.`), "msg");
  $("audit-older").hidden = rows.length < Number(params.limit);
}
