// The log-in page's part of the shell: after a log-in, go on to the page asked for (`?next=`) or to the
// role's own page when the emergency board is not for it; otherwise show the navigation on the board.
// Module scripts run before the deferred console.js's DOMContentLoaded handler, so this listens first.
import { PAGES, pageFor, renderNav, $ } from "/console/common.js";

const EMERGENCY = PAGES.find((p) => p.id === "emergency");

function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  // only our own pages: never an absolute URL or //host (an open redirect)
  return /^\/console\/[a-z]+$/.test(next) && PAGES.some((p) => p.path === next) ? next : null;
}

document.addEventListener("console:enter", (ev) => {
  const role = ev.detail.role;
  const next = nextPage();
  const target = next && PAGES.find((p) => p.path === next);
  if (target && target.roles.includes(role)) {
    ev.preventDefault();
    location.assign(next);
    return;
  }
  if (!EMERGENCY.roles.includes(role)) {
    const home = pageFor(role);
    if (home) { ev.preventDefault(); location.assign(home.path); return; }
  }
  const nav = $("nav");
  renderNav(nav, role, "emergency");
  nav.hidden = false;
});
