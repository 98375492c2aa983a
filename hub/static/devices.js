// Devices (ops, admin): every gate, handheld, kiosk and printer with its liveness, health per part,
// whitelist lag, outbox, versions and config drift; pending enrolments to approve (typing the fingerprint
// the device shows) or reject; commands with their result; credential rotation and revocation.
// Every figure and action is the API's: /provisioning/devices, /devices, /provisioning/requests,
// /provisioning/commands/{id}. The table refreshes every 5 s (one request set per browser, not a feed).
import { $, ApiError, api, el, fillRows, fmtNumber, fmtTime, mountShell, say, show, t } from "/console/common.js";

const REFRESH_MS = 5000;
const COMMAND_WAIT_S = 30;
const KINDS = { gate: t("闸机", "Gate"), handheld: t("手持机", "Handheld"), kiosk: t("自助机", "Kiosk"),
  printer: t("打印机", "Printer") };
const COMMANDS = { diagnostics: t("诊断", "Diagnostics"), resync_whitelist: t("重新同步白名单", "Resync whitelist"),
  restart: t("重启", "Restart"), rotate_credentials: t("更换登录密码", "Rotate credentials") };
const CHECKIN_KINDS = ["gate", "handheld"];

let rows = []; // the merged fleet: registry devices and devices only heard of
let requests = [];
let groups = [];
let channels = [];
let selected = null; // device id in the detail panel
let busy = false; // a command is being waited for
let timer = null;
let onConfirm = null; // what the confirmation dialog runs

const role = mountShell("devices");
if (role) start();

function start() {
  $("refresh").addEventListener("click", () => refresh());
  $("f-kind").addEventListener("change", renderFleet);
  $("f-offline").addEventListener("change", renderFleet);
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("close-detail").addEventListener("click", () => { selected = null; $("detail").hidden = true; });
  for (const b of document.querySelectorAll("[data-command]")) {
    b.addEventListener("click", () => sendCommand(b.dataset.command));
  }
  $("rotate").addEventListener("click", askRotate);
  $("revoke").addEventListener("click", askRevoke);
  $("approve-form").addEventListener("submit", onApprove);
  $("approve-cancel").addEventListener("click", () => $("approve-dialog").close());
  $("a-group").addEventListener("change", fillChannels);
  $("confirm-form").addEventListener("submit", onConfirmSubmit);
  $("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close());
  loadCatalog();
  refresh();
}

// ---- data -------------------------------------------------------------------------------------------
async function loadCatalog() {
  try {
    [groups, channels] = await Promise.all([api("GET", "/checkin-groups"), api("GET", "/channels")]);
  } catch (err) {
    groups = [];
    channels = [];
  }
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [registry, heard, pending] = await Promise.all([
      api("GET", "/provisioning/devices"), api("GET", "/devices"), api("GET", "/provisioning/requests")]);
    rows = merge(registry, heard);
    requests = pending;
    show($("page-msg"), "");
    $("updated").textContent = t("已更新", "Updated") + " " + fmtTime(Date.now() / 1000) + " · "
      + t("每 5 秒刷新", "refreshes every 5 s");
    renderRequests();
    renderFleet();
    renderDetail();
  } catch (err) {
    const hint = err.status === 404 ? say("此中心未运行设备入网服务。", "Provisioning is not running in this hub.")
      : say("请检查网络,页面会自动重试。", "Check the network; the page retries by itself.");
    show($("page-msg"), say("设备列表未能更新。", "The device list could not be updated.") + " " + err.message + " " + hint,
      "msg bad");
  } finally {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

/** Registry devices (with their heartbeat figures), then devices only heard of (not registered). */
function merge(registry, heard) {
  const known = new Set(registry.map((d) => d.device_id));
  const extra = heard.filter((h) => !known.has(h.device_id)).map((h) => ({
    device_id: h.device_id, kind: h.kind, status: "unregistered", online: h.state === "online", state: h.state,
    state_since: null, last_seen: h.last_seen, health: h.health, outbox: h.outbox, set_aside: h.set_aside,
    whitelist_seq: h.whitelist_seq, hub_whitelist_seq: null, whitelist_lag: null, software_version: h.version,
    group_id: h.group_id, channel_id: h.channel_id, commands: [], heard_only: true,
  }));
  return [...registry, ...extra].sort((a, b) => a.device_id.localeCompare(b.device_id));
}

// ---- cells --------------------------------------------------------------------------------------------
function stateCell(d) {
  if (d.status === "revoked") return el("span", { class: "badge bad" }, t("已吊销", "Revoked"));
  if (!d.state) return el("span", { class: "badge" }, t("从未上线", "Never heard"));
  const since = d.state_since ? " " + t("自", "since") + " " + fmtTime(d.state_since) : "";
  return d.online ? el("span", { class: "badge ok" }, t("在线", "Online") + since)
    : el("span", { class: "badge bad" }, t("离线", "Offline") + since);
}

function healthCell(d) {
  const parts = Object.entries(d.health || {});
  if (!parts.length) return "—";
  const bad = parts.filter(([, s]) => s !== "ok" && s !== "disabled");
  return bad.length ? el("span", { class: "badge bad" }, bad.map(([p, s]) => `${p}: ${s}`).join(", "))
    : el("span", { class: "badge ok" }, t("正常", "OK") + ` (${parts.length})`);
}

function whitelistCell(d) {
  if (!CHECKIN_KINDS.includes(d.kind)) return "—";
  const seq = `${d.whitelist_seq ?? "—"} / ${d.hub_whitelist_seq ?? "—"}`;
  if (d.whitelist_lag === null || d.whitelist_lag === undefined) return seq;
  const lag = d.whitelist_lag;
  return el("span", {}, seq, " ", lag > 0 ? el("span", { class: "badge warn" }, t("落后", "behind") + " " + fmtNumber(lag))
    : el("span", { class: "badge ok" }, t("最新", "current")));
}

function configCell(d) {
  if (d.heard_only) return "—";
  const text = `v${d.config_version}`;
  if (d.ack_error) return el("span", {}, text, " ", el("span", { class: "badge bad" }, t("应用失败", "Not applied")));
  if (d.config_drift) {
    return el("span", {}, text, " ", el("span", { class: "badge warn" },
      t("未同步", "Drift") + ` (${t("设备", "device")} ${d.acked_version === null ? "—" : "v" + d.acked_version})`));
  }
  return el("span", {}, text, " ", el("span", { class: "badge ok" }, t("已应用", "Applied")));
}

function registryCell(d) {
  if (d.status === "active") return el("span", { class: "badge ok" }, t("已登记", "Active"));
  if (d.status === "revoked") return el("span", { class: "badge bad" }, t("已吊销", "Revoked"));
  return el("span", { class: "badge warn" }, t("未登记", "Unregistered"));
}

// ---- render -------------------------------------------------------------------------------------------
function renderRequests() {
  fillRows($("request-rows"), requests.map((r) => [
    r.serial, KINDS[r.kind] || r.kind, r.hardware_model, r.software_version,
    el("span", {}, el("code", { class: "fingerprint" }, r.fingerprint),
      r.contested ? el("span", { class: "badge bad" }, t("有争议", "Contested")) : null),
    fmtTime(r.received_at),
    el("span", { class: "row-actions" },
      el("button", { type: "button", class: "primary", "aria-label": t("批准", "Approve") + " " + r.serial,
                     onclick: () => openApprove(r) }, t("批准", "Approve")),
      el("button", { type: "button", class: "secondary", "aria-label": t("拒绝", "Reject") + " " + r.serial,
                     onclick: () => askReject(r) }, t("拒绝", "Reject"))),
  ]), say("没有待批准的申请。", "No enrolment is waiting."));
}

function renderFleet() {
  const kind = $("f-kind").value;
  const offline = $("f-offline").checked;
  const shown = rows.filter((d) => (!kind || d.kind === kind) && (!offline || (!d.online && d.status !== "revoked")));
  fillRows($("device-rows"), shown.map((d) => [
    el("strong", {}, d.device_id), KINDS[d.kind] || d.kind, stateCell(d), fmtTime(d.last_seen), healthCell(d),
    [whitelistCell(d), "num"], [fmtNumber(d.outbox), "num"], d.software_version || "—", configCell(d),
    registryCell(d),
    el("button", { type: "button", class: "secondary", "aria-label": t("详情", "Details") + " " + d.device_id,
                   onclick: () => openDetail(d.device_id) }, t("详情", "Details")),
  ]), offline ? say("没有离线设备。", "No device is offline.") : say("没有设备。", "No devices."));
  for (const tr of $("device-rows").children) {
    const id = tr.querySelector("strong")?.textContent;
    if (id) tr.dataset.device = id;
  }
  $("fleet-count").textContent = t("显示", "Showing") + ` ${shown.length} / ${rows.length}`;
}

function fact(label, value) {
  return [el("dt", {}, label), el("dd", {}, value === null || value === undefined || value === "" ? "—" : value)];
}

function groupName(id) {
  if (id === null || id === undefined) return null;
  const g = groups.find((x) => x.id === id);
  return g ? `${g.name} (#${id})` : `#${id}`;
}

function channelName(id) {
  if (id === null || id === undefined) return null;
  const c = channels.find((x) => x.id === id);
  return c ? `${c.name} (#${id})` : `#${id}`;
}

function openDetail(id) {
  selected = id;
  $("detail").hidden = false;
  $("command-box").hidden = true;
  renderDetail();
  $("detail-title").focus();
}

function renderDetail() {
  if (!selected) return;
  const d = rows.find((x) => x.device_id === selected);
  if (!d) {
    $("detail-facts").replaceChildren(...fact(t("设备", "Device"), selected + " — " + t("已不在列表中", "no longer listed")));
    return;
  }
  $("detail-title").textContent = t("设备详情", "Device") + ": " + d.device_id;
  $("detail-title").tabIndex = -1;
  const wl = CHECKIN_KINDS.includes(d.kind) ? `${d.whitelist_seq ?? "—"} / ${d.hub_whitelist_seq ?? "—"}`
    + (d.whitelist_lag === null || d.whitelist_lag === undefined ? "" : ` · ${t("落后", "lag")} ${d.whitelist_lag}`) : null;
  $("detail-facts").replaceChildren(
    ...fact(t("类型", "Kind"), KINDS[d.kind] || d.kind),
    ...fact(t("序列号", "Serial"), d.serial),
    ...fact(t("位置", "Site"), d.site),
    ...fact(t("检票分组", "Check-in group"), groupName(d.group_id)),
    ...fact(t("通道", "Channel"), channelName(d.channel_id)),
    ...fact(t("密钥指纹", "Key fingerprint"), d.fingerprint ? el("code", { class: "fingerprint" }, d.fingerprint) : null),
    ...fact(t("登记", "Registry"), el("span", {}, registryCell(d), d.status_reason ? " " + d.status_reason : "")),
    ...fact(t("在线状态", "Liveness"), stateCell(d)),
    ...fact(t("最后心跳", "Last heartbeat"), fmtTime(d.last_seen)),
    ...fact(t("启动次数 / 重启", "Boots / restarts"), d.heard_only ? null : `${d.birth ?? "—"} / ${d.reboots ?? 0}`),
    ...fact(t("白名单 设备/中心", "Whitelist device / hub"), wl),
    ...fact(t("待传事件", "Outbox"), d.outbox === null || d.outbox === undefined ? null
      : fmtNumber(d.outbox) + (d.set_aside ? ` (${t("搁置", "set aside")} ${d.set_aside})` : "")),
    ...fact(t("软件版本", "Software version"), d.software_version),
    ...fact(t("配置版本", "Config version"), d.heard_only ? null : el("span", {},
      `${t("指定", "assigned")} v${d.config_version} · ${t("已确认", "acked")} ${d.acked_version ?? "—"} · `
      + `${t("心跳报告", "reported")} ${d.reported_config_version ?? "—"} `, configCell(d),
      d.ack_error ? " " + d.ack_error : "")),
  );
  const health = Object.entries(d.health || {});
  fillRows($("health-rows"), health.map(([part, state]) => [part,
    el("span", { class: "badge " + (state === "ok" ? "ok" : state === "disabled" ? "" : "bad") }, state)]),
  say("设备未报告部件状态。", "The device has not reported its parts."));
  const usable = d.status === "active";
  for (const b of document.querySelectorAll("#actions button")) b.disabled = !usable || busy;
  show($("detail-note"), usable ? "" : d.heard_only
    ? say("此设备未登记,中心不接受其事件;请先登记(provision 命令或 POST /api/v1/provisioning/devices)。",
      "This device is not registered and the hub refuses its events: register it first (the provision CLI or POST /api/v1/provisioning/devices).")
    : say("此设备已吊销,不能再发命令。", "This device is revoked: it takes no commands."));
  fillRows($("command-rows"), (d.commands || []).map((c) => [COMMANDS[c.name] || c.name, commandState(c, d),
    c.issued_by, fmtTime(c.issued_at), fmtTime(c.done_at), [c.error || summary(c.result), "result-cell"]]),
  say("还没有命令。", "No commands yet."));
}

/** A command's state; a pending one to a device that is not online waits for it: the hub sends it again
 * when the device's heartbeat comes back, until it expires (the device runs each command once). */
function commandState(c, d) {
  const cls = { ok: "ok", failed: "bad", timed_out: "bad", pending: "warn" }[c.state];
  const text = { ok: t("成功", "OK"), failed: t("失败", "Failed"), timed_out: t("超时", "Timed out"),
    pending: t("等待中", "Pending") }[c.state] || c.state;
  const away = c.state === "pending" && d && !d.online ? " · " + t("待设备上线", "until the device is back online") : "";
  return el("span", { class: "badge " + cls, title: away ? say("设备上线后中心会重发此命令,直至过期。",
    "The hub sends it again when the device comes back online, until it expires.") : null }, text + away);
}

/** While waiting for an answer: a device that is not online gets the command when it is back. */
function awayNote(id) {
  const d = rows.find((x) => x.device_id === id);
  return d && !d.online ? " " + say("设备当前不在线:命令待设备上线后送达(中心会重发,直至过期)。",
    "It is not online now: the command is pending until it is back (the hub sends it again until it expires).") : "";
}

function summary(result) {
  if (!result) return "—";
  return Object.entries(result).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

// ---- commands ---------------------------------------------------------------------------------------
function setBusy(on) {
  busy = on;
  for (const b of document.querySelectorAll("#actions button")) b.disabled = on;
  if (!on) renderDetail();
}

async function sendCommand(name) {
  const id = selected;
  await runAndWait(id, COMMANDS[name], () => api("POST", `/provisioning/devices/${encodeURIComponent(id)}/command`, { name }));
}

/** Start a command, then poll its state once a second for at most 30 s, showing progress and the result. */
async function runAndWait(id, label, issue) {
  const box = $("command-box");
  const msg = $("command-msg");
  const bar = $("command-progress");
  box.hidden = false;
  msg.className = "msg";
  $("command-result").replaceChildren();
  msg.textContent = say(`正在向 ${id} 发送「${label}」…`, `Sending ${label} to ${id}…`);
  setBusy(true);
  try {
    const issued = await issue();
    const commandId = issued.command_id;
    bar.hidden = false;
    for (let waited = 0; waited <= COMMAND_WAIT_S; waited++) {
      const c = await api("GET", `/provisioning/commands/${commandId}`);
      if (c.state !== "pending") { showResult(id, label, c); return; }
      bar.value = waited;
      msg.textContent = say(`已发送「${label}」,等待 ${id} 回应… ${waited} / ${COMMAND_WAIT_S} 秒`,
        `${label} sent; waiting for ${id} to answer… ${waited} / ${COMMAND_WAIT_S} s`) + awayNote(id);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    show(msg, say(`${id} 在 ${COMMAND_WAIT_S} 秒内未回应「${label}」。设备可能离线或忙碌:命令仍待执行,设备上线后中心会重发直至过期;`
      + "请查看下方命令列表。",
      `${id} did not answer ${label} within ${COMMAND_WAIT_S} s. It may be offline or busy: the command stays pending `
      + "and the hub sends it again when the device is back, until it expires; see its state in the commands below."),
    "msg bad");
  } catch (err) {
    show(msg, say(`「${label}」未能发送:`, `${label} could not be sent:`) + " " + err.message, "msg bad");
  } finally {
    bar.hidden = true;
    setBusy(false);
    refresh();
  }
}

function showResult(id, label, c) {
  const msg = $("command-msg");
  if (c.state === "ok") {
    show(msg, say(`${id} 已完成「${label}」。`, `${id} did ${label}: OK.`), "msg ok");
  } else if (c.state === "failed") {
    show(msg, say(`${id} 执行「${label}」失败:`, `${id} could not do ${label}:`) + " " + (c.error || "—"), "msg bad");
  } else {
    show(msg, say(`${id} 未在有效期内回应「${label}」,请查看设备后重试。`,
      `${id} did not answer ${label} before it expired; check the device and try again.`), "msg bad");
  }
  $("command-result").replaceChildren(...Object.entries(c.result || {}).flatMap(([k, v]) => fact(k,
    typeof v === "object" && v !== null ? JSON.stringify(v) : String(v))));
}

// ---- confirmation dialog (rotate, revoke, reject) -----------------------------------------------------
function confirmAction({ title, text, reason, okLabel, run }) {
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("reason-field").hidden = !reason;
  $("confirm-reason").value = "";
  $("confirm-ok").textContent = okLabel;
  show($("confirm-error"), "");
  onConfirm = { reason, run };
  $("confirm-dialog").showModal();
  (reason ? $("confirm-reason") : $("confirm-cancel")).focus();
}

async function onConfirmSubmit(ev) {
  ev.preventDefault();
  const { reason, run } = onConfirm;
  const text = $("confirm-reason").value.trim();
  if (reason && !text) {
    show($("confirm-error"), say("请填写原因。", "Enter a reason."));
    $("confirm-reason").focus();
    return;
  }
  $("confirm-ok").disabled = true;
  try {
    await run(text);
    $("confirm-dialog").close();
  } catch (err) {
    show($("confirm-error"), err instanceof ApiError ? err.message : String(err));
  } finally {
    $("confirm-ok").disabled = false;
  }
}

function askRotate() {
  const id = selected;
  confirmAction({
    title: t("更换登录密码", "Rotate credentials") + ": " + id,
    text: say(`中心将把新的代理登录密码加密发给 ${id},设备确认后旧密码失效。设备需在线。`,
      `The hub sends ${id} a new broker password, sealed to its key; the old one stops working once the device `
      + "confirms. The device must be online."),
    reason: false, okLabel: t("更换", "Rotate") + " " + id,
    run: async () => {
      setTimeout(() => runAndWait(id, COMMANDS.rotate_credentials,
        () => api("POST", `/provisioning/devices/${encodeURIComponent(id)}/rotate`, {})), 0);
    },
  });
}

function askRevoke() {
  const id = selected;
  confirmAction({
    title: t("吊销设备", "Revoke device") + ": " + id,
    text: say(`吊销后 ${id} 的代理登录立即删除,中心不再接受其事件。此操作不能撤销;设备需重新入网。`,
      `${id} loses its broker login now and the hub refuses its events from now on. This cannot be undone: `
      + "the device must enrol again."),
    reason: true, okLabel: t("吊销", "Revoke") + " " + id,
    run: async (reason) => {
      await api("POST", `/provisioning/devices/${encodeURIComponent(id)}/revoke`, { reason });
      $("command-box").hidden = false;
      show($("command-msg"), say(`已吊销 ${id}。`, `${id} is revoked.`), "msg");
      $("command-result").replaceChildren();
      await refresh();
    },
  });
}

function askReject(r) {
  confirmAction({
    title: t("拒绝入网申请", "Reject enrolment") + ": " + r.serial,
    text: say(`拒绝序列号 ${r.serial} 指纹 ${r.fingerprint} 的申请;该序列号的其他密钥仍待处理。`,
      `Reject the request of serial ${r.serial} with fingerprint ${r.fingerprint}; other keys of that serial stay pending.`),
    reason: true, okLabel: t("拒绝", "Reject") + " " + r.serial,
    run: async (reason) => {
      await api("POST", `/provisioning/requests/${encodeURIComponent(r.serial)}/reject`,
        { reason, fingerprint: r.fingerprint });
      show($("requests-msg"), say(`已拒绝 ${r.serial}(${r.fingerprint})。`, `Rejected ${r.serial} (${r.fingerprint}).`), "msg");
      await refresh();
    },
  });
}

// ---- approve ----------------------------------------------------------------------------------------
let approving = null;

async function openApprove(r) {
  approving = r;
  await loadCatalog();
  $("approve-text").textContent = say(
    `序列号 ${r.serial}(${r.hardware_model},软件 ${r.software_version})。列表中的指纹:${r.fingerprint}。`,
    `Serial ${r.serial} (${r.hardware_model}, software ${r.software_version}). Fingerprint listed: ${r.fingerprint}.`)
    + (r.contested ? " " + say("注意:此序列号有多个密钥申请,只批准设备自己显示的那个。",
      "Careful: more than one key claims this serial; approve only the one the device itself shows.") : "");
  $("a-fingerprint").value = "";
  $("a-device").value = "";
  $("a-site").value = "";
  $("a-kind").value = r.kind;
  $("a-fire").checked = false;
  $("a-group").replaceChildren(el("option", { value: "" }, t("无", "None")),
    ...groups.map((g) => el("option", { value: String(g.id) }, `${g.name} (#${g.id})`)));
  fillChannels();
  show($("approve-error"), "");
  $("approve-dialog").showModal();
  $("a-fingerprint").focus();
}

function fillChannels() {
  const gid = Number($("a-group").value) || null;
  $("a-channel").replaceChildren(el("option", { value: "" }, t("无", "None")),
    ...channels.filter((c) => gid !== null && c.group_id === gid && !c.retired)
      .map((c) => el("option", { value: String(c.id) }, `${c.name} (#${c.id})`)));
}

async function onApprove(ev) {
  ev.preventDefault();
  const r = approving;
  const body = {
    fingerprint: $("a-fingerprint").value.trim(), device_id: $("a-device").value.trim(), site: $("a-site").value.trim(),
    kind: $("a-kind").value, fire_input: $("a-fire").checked,
  };
  if ($("a-group").value) body.group_id = Number($("a-group").value);
  if ($("a-channel").value) body.channel_id = Number($("a-channel").value);
  const missing = [];
  if (!body.fingerprint) missing.push(t("指纹", "fingerprint"));
  if (!body.device_id) missing.push(t("设备编号", "device id"));
  if (!body.site) missing.push(t("位置", "site"));
  if (CHECKIN_KINDS.includes(body.kind) && !body.group_id) missing.push(t("检票分组", "check-in group"));
  if (missing.length) {
    show($("approve-error"), say("请填写:", "Please fill in:") + " " + missing.join(", "));
    return;
  }
  $("approve-ok").disabled = true;
  try {
    await api("POST", `/provisioning/requests/${encodeURIComponent(r.serial)}/approve`, body);
    $("approve-dialog").close();
    show($("requests-msg"), say(`已批准 ${r.serial},设备编号 ${body.device_id}。设备连上后将显示为在线。`,
      `Approved ${r.serial} as ${body.device_id}; it shows online once it connects.`), "msg");
    await refresh();
  } catch (err) {
    const hint = err.status === 409 || err.status === 422
      ? " " + say("请核对设备上显示的指纹和设备编号。", "Check the fingerprint the device shows, and the device id.") : "";
    show($("approve-error"), err.message + hint);
  } finally {
    $("approve-ok").disabled = false;
  }
}
