"""The console's live check-in page in a real headless Chromium, against a real hub and Mosquitto.

A registered stand-in gate (tests/test_hub_live.py) publishes signed batches and heartbeats as a gate agent
does; the page must show them without a reload. Screenshots go to ``test-artifacts/console/live/``.
"""

from __future__ import annotations

import re
import signal

from protocol.reasons import Reason
from tests.support.browser import require_chromium
from tests.support.console import TABLET, console_browser, console_page, shot
from tests.support.processes import HubProcess
from tests.support.scenario import Show, sell
from tests.test_hub_live import StandInGate, gate_a  # noqa: F401  (fixture)

LIVE = "/console/live"
WAIT = 5000  # ms: the page updates within a second of the hub storing a batch; slack for a loaded machine


def test_a_manager_watches_a_gates_batch_arrive(hub_process: HubProcess, show: Show, gate_a: StandInGate) -> None:  # noqa: F811
    require_chromium()
    from playwright.sync_api import expect

    hub = hub_process
    hub.call("PATCH", f"/checkin-groups/{show.group_id}", json={"capacity": 4})
    family, used = sell(hub, show, persons=2), sell(hub, show)
    errors: list[str] = []
    with console_browser() as browser:
        page = console_page(browser, hub, "manager", next_path=LIVE, errors=errors)
        expect(page.locator("#live-status")).to_contain_text("Live", timeout=WAIT)
        zone = page.locator("#zone-list li", has_text="Main hall")
        expect(zone.locator(".zone-figure")).to_have_text("0 / 4")
        expect(page.locator("#scan-rows")).to_contain_text("No scans in the last 60 minutes")
        expect(page.locator("#device-rows")).to_contain_text("Every device is online")
        expect(page.locator("#device-summary")).to_contain_text("1 of 1 online")
        shot(page, "live", "01-desktop-before")

        # A batch arrives: a family of two admitted, a used ticket refused. No reload.
        gate_a.send([gate_a.event(Reason.ADMITTED, family["id"], show, persons=2),
                     gate_a.event(Reason.ALREADY_USED, used["id"], show)])
        expect(page.locator("#admitted-total")).to_have_text("2", timeout=WAIT)
        expect(zone.locator(".zone-figure")).to_have_text("2 / 4")
        expect(zone.locator("meter")).to_have_attribute("value", "2")
        denied = page.locator('#denial-rows tr[data-reason="already_used"]')
        expect(denied).to_contain_text("此票已检 Ticket already used.")
        expect(page.locator('#denial-rows tr[data-reason="already_used"] td.num')).to_have_text("1")
        expect(page.locator("#scan-rows tr")).to_have_count(2)
        first = page.locator("#scan-rows tr").first  # both scanned in the same second: either may be first
        expect(first).to_contain_text("gate-A1")
        expect(page.locator("#scan-rows")).to_contain_text(str(family["id"]))
        expect(page.locator("#scan-rows")).not_to_contain_text("13800000000")  # no holder phone
        expect(page.locator("#chart polyline")).to_have_count(1)
        expect(page.locator("#legend")).to_have_text("Gate A A口")
        page.locator("#chart-table summary").click()
        expect(page.locator("#minute-rows tr")).to_have_count(1)
        expect(page.locator("#minute-rows tr")).to_contain_text("Gate A A口")
        shot(page, "live", "02-desktop-batch-arrived")

        # Per gate instead of per channel.
        page.click("#mode-gate")
        expect(page.locator("#mode-gate")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#legend")).to_have_text("gate-A1")
        expect(page.locator("#minute-rows tr")).to_contain_text("gate-A1")

        # Two more pass: the zone is full, its figure turns red.
        gate_a.send([gate_a.event(Reason.ADMITTED, sell(hub, show, persons=2)["id"], show, persons=2)])
        expect(zone.locator(".zone-figure")).to_have_text("4 / 4", timeout=WAIT)
        expect(zone.locator(".zone-figure")).to_have_class(re.compile(r"\bover\b"))
        expect(page.locator("#admitted-total")).to_have_text("4")

        # The gate loses the network with 5 events in its outbox.
        gate_a.heartbeat(outbox=5)
        row = page.locator('#device-rows tr[data-device="gate-A1"]')
        expect(row.locator("td.outbox")).to_have_text("5", timeout=WAIT)
        gate_a.heartbeat(state="offline")
        expect(row).to_contain_text("离线 Offline", timeout=WAIT)
        expect(page.locator("#device-summary")).to_contain_text("0 of 1 online")
        shot(page, "live", "03-desktop-gate-offline")

        page.set_viewport_size(TABLET)
        expect(page.locator("#zone-list")).to_be_visible()
        shot(page, "live", "04-tablet")
        assert not errors, errors

        # The hub stops: the open stream does not hold it up (the hub ends it with "end: stopping" before
        # uvicorn waits for open responses), and the page says what it shows.
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGTERM)
        assert hub.proc.wait(timeout=15) == 0, hub.logs()[-2000:]
        expect(page.locator("#conn-banner")).to_contain_text(re.compile(r"Reconnecting… showing data from \d\d:\d\d"),
                                                             timeout=WAIT)
        expect(page.locator("#zone-list .zone-figure")).to_have_text("4 / 4")  # the last data stays on screen
        shot(page, "live", "05-hub-down-banner")


def test_viewer_and_security_may_open_it_box_office_may_not(hub_process: HubProcess, show: Show,
                                                             gate_a: StandInGate) -> None:  # noqa: F811
    require_chromium()
    from playwright.sync_api import expect

    hub = hub_process
    gate_a.send([gate_a.event(Reason.ADMITTED, sell(hub, show)["id"], show),
                 gate_a.event(Reason.WRONG_CHANNEL, None, show)])
    errors: list[str] = []
    with console_browser() as browser:
        viewer = console_page(browser, hub, "viewer", next_path=LIVE, viewport=TABLET, errors=errors)
        expect(viewer.locator("#scan-rows tr")).to_have_count(2, timeout=WAIT)
        expect(viewer.locator("#admitted-total")).to_have_text("1")
        expect(viewer.locator('#denial-rows tr[data-reason="wrong_channel"] td.num')).to_have_text("1")
        shot(viewer, "live", "06-tablet-viewer")

        guard = console_page(browser, hub, "security", next_path=LIVE, errors=errors)
        expect(guard.locator("#zone-list .zone-figure")).to_have_text("1")  # no capacity set: the count alone
        expect(guard.locator("#zone-list")).to_contain_text("No capacity set")
        # A zone filter: the stream reconnects narrowed to that zone.
        guard.select_option("#filter-group", label="Main hall 主厅")
        expect(guard.locator("#scan-rows tr")).to_have_count(2, timeout=WAIT)
        shot(guard, "live", "07-desktop-security-filtered")

        clerk = console_page(browser, hub, "box_office")  # logged in, on the box office's own page
        clerk.wait_for_url("**/console/boxoffice", timeout=WAIT)
        clerk.goto(hub.base_url + LIVE)
        expect(clerk.locator("main [role=alert]")).to_contain_text("cannot open this page")
        expect(clerk.locator("main [role=alert]")).to_contain_text("manager, security, viewer")
        expect(clerk.locator("#scan-rows")).to_have_count(0)
        shot(clerk, "live", "08-box-office-refused")
    assert not errors, errors
