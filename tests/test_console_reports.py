"""The console's Reports page in a real headless Chromium against a real hub and Mosquitto, as a manager and a
viewer would use it: the summary's totals are the API's, filters (channel, result, a From time in the venue's
zone) change the numbers, the detail pages through with its cursor, the chart draws a bar per channel and
period, the sales table adds up; a box office user is told the page is not for them; on a 10" tablet nothing
scrolls sideways. Screenshots go to ``test-artifacts/console/reports/``."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.browser import require_chromium
from tests.support.bulk_events import add_events
from tests.support.console import TABLET, console_browser, console_page, shot
from tests.support.processes import HubProcess
from tests.support.scenario import Show, sell

pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'")
from playwright.sync_api import Page, expect

REPORTS = "/console/reports"
EVENTS = 250  # three pages of 100; every tenth refused (already_used), two channels
EVERY = 30.0  # seconds between events: about two hours, 5-minute buckets
WAIT = 10_000


def seed(hub: HubProcess, show: Show) -> dict[str, Any]:
    gate_b = hub.call("POST", f"/checkin-groups/{show.group_id}/channels", json={
        "name": "Gate B B口", "ticket_type_ids": [show.adult_type]})["id"]
    start = math.floor(time.time() - 3 * 3600)
    counts = add_events(hub.workdir / "hub.db", count=EVENTS, performance_id=show.performance_id,
                        group_id=show.group_id, channel_ids=[show.channel_id, gate_b],
                        ticket_type_id=show.adult_type, start=start, every=EVERY)
    sell(hub, show)
    sell(hub, show, persons=3)
    sell(hub, show, ticket_type=show.staff_type)
    return {"gate_b": gate_b, "start": start, "counts": counts}


def totals(hub: HubProcess, **params: Any) -> dict[str, Any]:
    return dict(hub.call("GET", "/reports/checkins/summary", params=params)["totals"])


def n(value: int) -> str:
    return f"{value:,}"  # as the page shows numbers (zh-CN grouping)


def expect_totals(page: Page, want: dict[str, Any]) -> None:
    foot = page.locator("#summary-foot")
    for key in ("scans", "admitted", "persons", "denied", "exits"):
        expect(foot.locator(f'td[data-key="{key}"]')).to_have_text(n(want[key]), timeout=WAIT)


def wait_updated(page: Page) -> None:
    expect(page.locator("#report-status")).to_contain_text("已更新", timeout=WAIT)
    expect(page.locator("#apply")).to_be_enabled()


def show_filters(page: Page) -> None:
    page.click("#apply")
    wait_updated(page)


def venue_wall_clock(unix: float) -> str:
    """A datetime-local value: the venue's (Asia/Shanghai) wall clock, whatever the browser's zone is."""
    return datetime.fromtimestamp(unix, ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%dT%H:%M")


def no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_a_manager_reads_filters_and_pages_the_reports(
        hub_process: HubProcess, show: Show) -> None:
    require_chromium()
    hub = hub_process
    seeded = seed(hub, show)
    counts = seeded["counts"]
    everything = totals(hub)
    assert everything["scans"] == EVENTS and everything["denied"] == counts["already_used"]
    errors: list[str] = []
    with console_browser() as browser:
        page = console_page(browser, hub, "manager", next_path=REPORTS, errors=errors)
        wait_updated(page)
        expect(page.locator("#report-error")).to_be_hidden()
        expect_totals(page, everything)
        expect(page.locator("#summary-foot th")).to_have_text("合计 Total")
        expect(page.locator("#summary-rows tr")).to_have_count(2)  # one per channel
        expect(page.locator("#summary-zone")).to_contain_text("Asia/Shanghai")

        # the chart: a bar per channel and period; together they are the persons admitted
        chart = hub.call("GET", "/reports/chart")
        bars = page.locator("#chart rect.bar")
        assert bars.count() > 10
        drawn = sum(int(v) for v in bars.evaluate_all("(rs) => rs.map((r) => r.dataset.value)"))
        assert drawn == chart["total"] == everything["persons"]
        expect(page.locator("#chart-legend li")).to_have_count(2)
        expect(page.locator("#chart-legend")).to_contain_text("Gate B B口")
        page.locator("#chart-details summary").click()
        expect(page.locator("#chart-rows tr").first).to_be_visible()
        shown = sum(int(c.replace(",", "")) for c in page.locator("#chart-rows td.num").all_inner_texts())
        assert shown == chart["total"]

        # the sales summary: the API's rows and totals
        sales = hub.call("GET", "/reports/sales")
        expect(page.locator("#sales-rows tr")).to_have_count(len(sales["rows"]))
        expect(page.locator('#sales-foot td[data-key="sold"]')).to_have_text(n(sales["totals"]["sold"]))
        expect(page.locator('#sales-foot td[data-key="persons"]')).to_have_text(n(sales["totals"]["persons"]))
        expect(page.locator('#sales-foot td[data-key="revenue_cents"]')).to_have_text(
            f"¥{sales['totals']['revenue_cents'] / 100:,.2f}")
        shot(page, "reports", "01-desktop-all")

        # the detail: 100 rows a page, the cursor forward and back, the total count
        rows = page.locator("#detail-rows tr")
        expect(rows).to_have_count(100)
        expect(page.locator("#detail-count")).to_contain_text(f"共 {EVENTS} 行")
        expect(page.locator("#page-label")).to_have_text("第 1 页,共 3 页 Page 1 of 3")
        expect(page.locator("#prev-page")).to_be_disabled()
        first_page = rows.first.get_attribute("data-event")
        page.click("#next-page")
        expect(page.locator("#page-label")).to_have_text("第 2 页,共 3 页 Page 2 of 3")
        expect(rows).to_have_count(100)
        assert rows.first.get_attribute("data-event") != first_page
        expect(page.locator("#detail-count")).to_contain_text("第 101–200 行")
        page.click("#next-page")
        expect(rows).to_have_count(EVENTS - 200)
        expect(page.locator("#next-page")).to_be_disabled()
        assert page.evaluate("() => document.activeElement.id") == "prev-page"  # focus stays on a working button
        shot(page, "reports", "02-desktop-detail-last-page")
        page.click("#prev-page")
        page.click("#prev-page")
        expect(page.locator("#page-label")).to_have_text("第 1 页,共 3 页 Page 1 of 3")
        expect(rows.first).to_have_attribute("data-event", first_page or "")
        page.select_option("#page-size", "50")
        expect(page.locator("#page-label")).to_have_text("第 1 页,共 5 页 Page 1 of 5")
        expect(rows).to_have_count(50)
        page.select_option("#page-size", "100")
        expect(rows).to_have_count(100)

        # filter by channel: Gate B's numbers only
        page.select_option("#f-channel", str(seeded["gate_b"]))
        show_filters(page)
        gate_b = totals(hub, channel_id=seeded["gate_b"])
        assert gate_b["scans"] < everything["scans"]
        expect_totals(page, gate_b)
        expect(page.locator("#summary-rows tr")).to_have_count(1)
        expect(page.locator("#chart-legend li")).to_have_count(1)
        expect(page.locator("#detail-count")).to_contain_text(f"共 {gate_b['scans']} 行")
        shot(page, "reports", "03-desktop-gate-b")

        # filter by result: the refused scans of both channels
        page.select_option("#f-channel", "")
        page.select_option("#f-reason", "already_used")
        show_filters(page)
        used = totals(hub, reason="already_used")
        assert used["denied"] == used["scans"] == counts["already_used"] and used["persons"] == 0
        expect_totals(page, used)
        expect(page.locator("#detail-rows tr").first).to_contain_text("此票已检 Already used")
        expect(page.locator("#page-label")).to_have_text("第 1 页,共 1 页 Page 1 of 1")
        expect(page.locator("#chart-rows")).to_contain_text("所选条件下无入场")
        shot(page, "reports", "04-desktop-already-used")

        # a From time, typed as the venue's wall clock (Asia/Shanghai), not the browser's
        page.select_option("#f-reason", "")
        since = seeded["start"] + 60 * 60 + 30
        since -= since % 60  # the box takes whole minutes
        page.fill("#f-since", venue_wall_clock(since))
        show_filters(page)
        later = totals(hub, since=since)
        assert 0 < later["scans"] < EVENTS
        expect_totals(page, later)

        # wrong filters are explained, the field is focused, nothing is asked of the hub
        page.fill("#f-until", venue_wall_clock(since - 3600))
        page.click("#apply")
        expect(page.locator("#filter-error")).to_contain_text("结束时间须晚于开始时间")
        expect(page.locator("#filter-error")).to_contain_text("'Until' must be later than 'From'")
        assert page.evaluate("() => document.activeElement.id") == "f-until"
        expect(page.locator("#f-until")).to_have_attribute("aria-invalid", "true")
        expect_totals(page, later)  # the tables still show the last good answer
        page.fill("#f-until", "")
        page.fill("#f-device", "gate 01!")
        page.click("#apply")
        expect(page.locator("#filter-error")).to_contain_text("设备编号只能包含字母、数字")
        assert page.evaluate("() => document.activeElement.id") == "f-device"
        shot(page, "reports", "05-desktop-bad-filter")
        page.fill("#f-device", "gate-a2")
        show_filters(page)
        expect(page.locator("#filter-error")).to_be_hidden()
        expect_totals(page, totals(hub, since=since, device_id="gate-a2"))

        page.click("#reset")
        wait_updated(page)
        expect_totals(page, everything)
        expect(page.locator("#f-device")).to_have_value("")
        no_sideways_scroll(page)
    assert errors == []


def test_a_viewer_reads_the_reports_on_a_tablet_and_box_office_is_sent_elsewhere(
        hub_process: HubProcess, show: Show) -> None:
    require_chromium()
    hub = hub_process
    seed(hub, show)
    everything = totals(hub)
    errors: list[str] = []
    with console_browser() as browser:
        viewer = console_page(browser, hub, "viewer", next_path=REPORTS, viewport=TABLET, errors=errors)
        wait_updated(viewer)
        expect_totals(viewer, everything)
        expect(viewer.locator("#chart rect.bar").first).to_be_visible()
        expect(viewer.locator("#detail-rows tr")).to_have_count(100)
        expect(viewer.locator("nav a.current")).to_have_attribute("href", REPORTS)
        no_sideways_scroll(viewer)
        viewer.locator("#chart-details summary").click()
        no_sideways_scroll(viewer)
        shot(viewer, "reports", "06-tablet-viewer")
        viewer.click("#next-page")
        expect(viewer.locator("#page-label")).to_contain_text("第 2 页")
        no_sideways_scroll(viewer)

        clerk = console_page(browser, hub, "box_office", errors=errors)  # logged in, on the box office's own page
        clerk.wait_for_url("**/console/boxoffice", timeout=WAIT)
        clerk.goto(hub.base_url + REPORTS)
        alert = clerk.locator("main [role=alert]")
        expect(alert).to_contain_text("不能打开此页面")
        expect(alert).to_contain_text("it is for: manager, finance, viewer, admin")
        expect(clerk.locator("main a")).to_have_attribute("href", "/console/boxoffice")
        expect(clerk.locator("#summary-table")).to_have_count(0)
        shot(clerk, "reports", "07-box-office-refused")
    assert errors == []
