"""Driving the staff console as a person would: a user per role, a log-in through the page, screenshots.

    with console_browser() as browser:
        page = console_page(browser, hub, "manager")            # a new user with that role, logged in
        page.goto(hub.base_url + "/console/live")
        shot(page, "live", "01-first-scan")                       # test-artifacts/console/live/01-first-scan.png

Every page is checked at the venue's two screen sizes: ``DESKTOP`` (1280x800) and ``TABLET`` (a 10" tablet,
1280x800 at 1.5 device pixels in portrait: 800x1280 CSS px).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.support.browser import ARTIFACTS, chromium
from tests.support.processes import HubProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 800, "height": 1280}
SHOTS = ARTIFACTS / "console"


def shot(page: Page, area: str, name: str) -> Path:
    """A full-page screenshot under ``test-artifacts/console/<area>/<name>.png``."""
    path = SHOTS / area / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def make_user(hub: HubProcess, role: str, username: str | None = None, **extra: Any) -> tuple[str, str]:
    """A hub user with ``role`` (created by the bootstrap admin); returns (username, password)."""
    username = username or f"{role.replace('_', '')}-user"
    password = f"{username}-password-1"
    hub.call("POST", "/users", json={"username": username, "password": password, "role": role, **extra})
    return username, password


def login(page: Page, hub: HubProcess, username: str, password: str, next_path: str = "") -> None:
    """Log in through the page at ``/console`` (``next_path``: the page to go on to, e.g. /console/live)."""
    target = hub.base_url + "/console" + (f"?next={next_path}" if next_path else "")
    page.goto(target)
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-button")
    if next_path:
        # the login page's own URL ends with ?next=<next_path>: wait for the path itself, not a glob
        page.wait_for_url(lambda url: urlsplit(url).path == next_path, timeout=5000)
    else:
        page.wait_for_function("() => sessionStorage.getItem('console.token') !== null", timeout=5000)
        # roles without the emergency board go on to their own page (console-nav.js): wait until they are there
        page.wait_for_function("() => location.pathname !== '/console' || !document.querySelector('nav').hidden",
                               timeout=5000)


def console_page(browser: Browser, hub: HubProcess, role: str, *, username: str | None = None,
                 next_path: str = "", viewport: dict[str, int] | None = None, errors: list[str] | None = None,
                 **context: Any) -> Page:
    """A fresh browser context (its own session) with a new user of ``role`` logged in. ``errors``
    collects the page's uncaught exceptions and console errors, for an assert at the end of the test."""
    name, password = make_user(hub, role, username)
    page = browser.new_context(viewport=viewport or DESKTOP, locale="zh-CN", **context).new_page()
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    login(page, hub, name, password, next_path)
    return page


@contextmanager
def console_browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser
