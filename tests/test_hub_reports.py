"""Issue 12, page 4: the reports count what the hub itself believes.

Two registered gates publish signed event batches over a real Mosquitto to a real hub: admissions of
single and group tickets, a partial and a full annulment, a refusal, a second (conflicting) admission of
one ticket on another gate and an exit. The check-in summary, its filters, the detail's keyset paging,
the sales summary and the chart must agree with that journal and with the hub's evacuation count.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from protocol.messages import CheckinEvent, EventBatch
from protocol.reasons import Reason
from tests.hubkit import Hub, mqtt_hub_fixture, sell, setup_show  # noqa: F401  (fixture)
from tests.support.broker import Mosquitto
from tests.support.devices import TestDevice, register
from tests.test_hub_device_trust import acked
from tests.test_hub_emergency import TOPICS, board
from tests.test_hub_mqtt import gate

T0 = time.time() - 1800  # the scans happened in the last half hour


def scan(device: str, show: dict[str, int], ticket_id: int | None, at: float, reason: Reason = Reason.ADMITTED,
         persons: int = 0, **extra: Any) -> CheckinEvent:
    return CheckinEvent(event_id=uuid.uuid4().hex, device_id=device, group_id=show["group"],
                        channel_id=show["channel"], seq=int(at - T0) + 1, reason=reason, ticket_id=ticket_id,
                        performance_id=show["performance"] if ticket_id else None,
                        ticket_type_id=show["adult"] if ticket_id else None, persons=persons,
                        scanned_at=at, offline=True, excerpt=None, **extra)


async def publish(broker: Mosquitto, hub: Hub, device: TestDevice, events: list[CheckinEvent]) -> None:
    """Publish one signed batch as the gate does and wait for the hub's ack (the events are committed)."""
    async with gate(broker, device.device_id, TOPICS.ack(device.device_id)) as client:
        await client.publish(TOPICS.events(device.device_id),
                             device.batch(EventBatch(device_id=device.device_id, events=events)), qos=1)
        assert sorted((await acked(client, hub)).event_ids) == sorted(e.event_id for e in events)


def get(hub: Hub, path: str, headers: dict[str, str] | None = None, status: int = 200, **query: Any) -> Any:
    r = hub.client.get("/api/v1/reports" + path, params=query, headers=headers or hub.admin)
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(name="evening")
async def evening_fixture(mqtt_hub: Hub, broker: Mosquitto) -> dict[str, Any]:
    """The journal of one evening at Gate A, as two gates reported it."""
    show = setup_show(mqtt_hub)
    single, family, late, refunded = (sell(mqtt_hub, show, persons=p)["id"] for p in (1, 3, 1, 1))
    mqtt_hub.post(f"/tickets/{refunded}/refund", {"reason": "changed plans"}, status=200)
    gate1 = register(mqtt_hub.post, "gate-1", show["group"], show["channel"])
    gate2 = register(mqtt_hub.post, "gate-2", show["group"], show["channel"])
    family_in = scan("gate-1", show, family, T0 + 20, persons=3)
    late_in = scan("gate-1", show, late, T0 + 40, persons=1)
    first = [
        scan("gate-1", show, single, T0 + 10, persons=1),
        family_in,
        scan("gate-1", show, family, T0 + 25, Reason.ANNULLED, persons=1, annuls=family_in.event_id),  # 2 of 3 passed
        late_in,
        scan("gate-1", show, late, T0 + 45, Reason.ANNULLED, persons=1, annuls=late_in.event_id),  # nobody passed
        scan("gate-1", show, single, T0 + 300, Reason.ALREADY_USED),
        scan("gate-1", show, None, T0 + 400, Reason.MALFORMED),
        scan("gate-1", show, single, T0 + 4000, Reason.EXIT, persons=1, direction="exit"),
    ]
    await publish(broker, mqtt_hub, gate1, first)
    second = [scan("gate-2", show, single, T0 + 200, persons=1)]  # offline too: the same ticket again
    await publish(broker, mqtt_hub, gate2, second)
    return {"show": show, "events": first + second, "tickets": (single, family, late, refunded)}


def test_the_summary_counts_admissions_persons_annulments_and_conflicts_as_the_hub_does(
        mqtt_hub: Hub, evening: dict[str, Any]) -> None:
    summary = get(mqtt_hub, "/checkins/summary")
    assert len(summary["rows"]) == 2  # the malformed scan has no ticket type: a row of its own
    totals = summary["totals"]
    assert (totals["scans"], totals["admitted"], totals["persons"], totals["annulled"], totals["exits"],
            totals["denied"], totals["conflicts"], totals["forced"]) == (9, 3, 4, 2, 1, 2, 1, 0)
    assert totals["offline_share"] == 1.0
    row = next(r for r in summary["rows"] if r["ticket_type_id"] == evening["show"]["adult"])
    assert (row["performance"], row["group"], row["channel"], row["ticket_type"]) == (
        "Swan Lake", "Main hall", "Gate A", "成人票 Adult")
    assert [c["key"] for c in summary["columns"]][:4] == ["performance", "group", "channel", "ticket_type"]
    assert summary["timezone"] == "Asia/Shanghai"
    inside = next(g for g in board(mqtt_hub)["evacuation"]["groups"] if g["group_id"] == evening["show"]["group"])
    assert inside["inside"] == totals["persons"] - totals["exits"]  # the evacuation count agrees


def test_filters_narrow_the_summary_to_a_reason_a_device_or_online_scans(
        mqtt_hub: Hub, evening: dict[str, Any]) -> None:
    perf = evening["show"]["performance"]
    refused = get(mqtt_hub, "/checkins/summary", performance_id=perf, reason="already_used")["totals"]
    assert (refused["scans"], refused["denied"], refused["admitted"]) == (1, 1, 0)
    second_gate = get(mqtt_hub, "/checkins/summary", device_id="gate-2")["totals"]
    assert (second_gate["scans"], second_gate["admitted"], second_gate["conflicts"]) == (1, 1, 1)
    assert get(mqtt_hub, "/checkins/summary", offline="false")["rows"] == []
    first_minute = get(mqtt_hub, "/checkins/summary", since=T0, until=T0 + 60)["totals"]
    assert (first_minute["scans"], first_minute["admitted"], first_minute["persons"]) == (5, 2, 3)
    assert get(mqtt_hub, "/checkins/summary", performance_id=perf + 1000)["rows"] == []


def test_the_detail_pages_through_every_event_once_in_scan_order(mqtt_hub: Hub, evening: dict[str, Any]) -> None:
    first = get(mqtt_hub, "/checkins/detail", limit=4, with_total="true")
    assert first["total"] == 9 and len(first["rows"]) == 4
    seen, page = list(first["rows"]), first
    while page["next_cursor"] is not None:
        page = get(mqtt_hub, "/checkins/detail", limit=4, after=page["next_cursor"])
        seen += page["rows"]
    expected = sorted(evening["events"], key=lambda e: (e.scanned_at, e.event_id))
    assert [r["event_id"] for r in seen] == [e.event_id for e in expected]
    exit_row = seen[-1]
    assert (exit_row["direction"], exit_row["reason"], exit_row["reason_zh"], exit_row["channel"]) == (
        "exit", "exit", Reason.EXIT.text_zh, "Gate A")
    conflict = next(r for r in seen if r["device_id"] == "gate-2")
    assert conflict["conflict"] and conflict["performance"] == "Swan Lake"
    annulled = get(mqtt_hub, "/checkins/detail", reason="annulled")["rows"]
    assert [r["persons"] for r in annulled] == [1, 1] and all(r["annuls"] for r in annulled)


def test_the_sales_summary_counts_each_purchase_refunds_and_revenue(mqtt_hub: Hub, evening: dict[str, Any]) -> None:
    sales = get(mqtt_hub, "/sales", performance_id=evening["show"]["performance"])
    assert len(sales["rows"]) == 1
    t = sales["totals"]
    assert (t["sold"], t["persons"], t["refunded"], t["void"], t["valid"], t["revenue_cents"]) == (
        4, 6, 1, 0, 3, 3 * 28000)
    assert t["checked_in"] == 2  # the single and the family ticket; the late one's entry was annulled


def test_the_chart_draws_the_persons_admitted_per_channel(mqtt_hub: Hub, evening: dict[str, Any]) -> None:
    chart = get(mqtt_hub, "/chart", since=T0 - 600, until=T0 + 3000)
    assert chart["bucket_seconds"] * len(chart["buckets"]) >= 3600
    assert [(s["channel"], s["total"]) for s in chart["series"]] == [("Gate A", 4)]
    assert len(chart["series"][0]["values"]) == len(chart["buckets"]) <= 48


def test_reports_are_for_managers_finance_and_viewers_only(mqtt_hub: Hub, evening: dict[str, Any]) -> None:
    for role in ("manager", "finance", "viewer"):
        assert get(mqtt_hub, "/checkins/summary", mqtt_hub.user(f"r-{role}", role))["totals"]["scans"] == 9
    for role in ("box_office", "security", "kiosk"):
        get(mqtt_hub, "/checkins/summary", mqtt_hub.user(f"r-{role}", role), status=403)
    mqtt_hub.client.headers.pop("Authorization", None)
    assert mqtt_hub.client.get("/api/v1/reports/sales").status_code == 401


@pytest.mark.parametrize(("path", "query"), [
    ("/checkins/summary", {"since": 2000, "until": 1000}),
    ("/checkins/summary", {"colour": "red"}),
    ("/checkins/summary", {"reason": "bored"}),
    ("/checkins/summary", {"device_id": "gate 1"}),
    ("/checkins/detail", {"after": "yesterday"}),
    ("/checkins/detail", {"after": "99999999999:" + "0" * 32}),
    ("/checkins/detail", {"limit": 5000}),
    ("/chart", {"performance_id": 0}),
])
def test_bad_filters_are_refused_with_what_to_change(mqtt_hub: Hub, path: str, query: dict[str, Any]) -> None:
    r = mqtt_hub.client.get("/api/v1/reports" + path, params=query, headers=mqtt_hub.admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
