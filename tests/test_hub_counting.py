"""Counting at the hub: per counting scope, replayed in scan-time order whatever order gates report in.

Conflicts land on the later scan, partial annulments give persons back, groups count separately unless
linked, admissions of tickets newer than a gate's whitelist are checked, a printed ticket carries the
e-ticket's usage, cards count per venue day, acks echo the whitelist seq, exits count persons."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from hub.services import evacuation, ingest
from protocol.envelope import open_envelope
from protocol.messages import AckPayload, EventBatch
from protocol.reasons import Reason
from protocol.whitelist import Delta
from tests.hubkit import Hub
from tests.rulekit import DAY, Clock, Gate, channel_with, check, journal, sell, send, show_at, ticket, venue_time
from tests.test_hub_cards import card_body
from tests.test_hub_kiosk import kiosk, kiosk_hub  # noqa: F401  (fixture "hub", with an SMS file)


def flags(hub: Hub, ticket_id: int) -> dict[str, bool]:
    return {r["device_id"]: r["conflict"] for r in journal(hub, ticket_id=ticket_id) if r["reason"] == "admitted"}


def test_two_offline_admissions_flag_the_later_scan_even_when_it_arrives_first(hub: Hub) -> None:
    show = show_at(hub)
    t = sell(hub, show)
    late = Gate("gate-2", show).admit(t["id"], venue_time("19:20"))
    early = Gate("gate-1", show).admit(t["id"], venue_time("19:05"))
    deltas = send(hub, late)  # gate 2 comes back first
    assert flags(hub, t["id"]) == {"gate-2": False}
    assert [(d.entry.used, d.entry.state.last_entry) for d in deltas if d.entry] == [(1, int(late.scanned_at))]
    send(hub, early)
    assert flags(hub, t["id"]) == {"gate-1": False, "gate-2": True}  # the flag moved to the later scan
    assert ticket(hub, t["id"])["used"] == 2
    rows = journal(hub, ticket_id=t["id"])
    assert [r["device_id"] for r in rows] == ["gate-2", "gate-1"]  # newest scan first
    assert rows[0]["received_at"] < rows[1]["received_at"]  # although it arrived first
    assert [r["device_id"] for r in journal(hub, conflict="true")] == ["gate-2"]


def test_a_partial_annulment_lets_the_other_persons_in_later(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    family = sell(hub, show, persons=4)
    gate = Gate("gate-1", show)
    admission = gate.admit(family["id"], venue_time("19:05"), persons=4)
    deltas = send(hub, admission, gate.annul(admission, 2, venue_time("19:06")))  # 2 passed, then a timeout
    state = [d.entry.state for d in deltas if d.entry][-1]
    assert (state.entries, state.credit) == (1, 2)
    clock.at("19:15")
    rest = check(hub, family, show["channel"])
    assert rest["admitted"] and rest["persons"] == 2 and rest["credit"]
    assert check(hub, family, show["channel"])["reason"] == "already_used"
    assert ticket(hub, family["id"])["used"] == 1
    online = [r for r in journal(hub, ticket_id=family["id"]) if r["source"] == "online" and r["reason"] == "admitted"]
    assert [(r["persons"], r["credit"], r["conflict"]) for r in online] == [(2, True, False)]


def test_groups_count_separately_unless_linked(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub, max_entries=1)
    lounge = hub.post("/checkin-groups", {"name": "Lounge", "venue_id": show["venue"],
                                          "performance_ids": [show["performance"]]})["id"]
    bar = channel_with(hub, lounge, "Lounge door", [show["adult"]])
    first, second = sell(hub, show), sell(hub, show)
    clock.at("19:05")
    assert check(hub, first, show["channel"])["admitted"]
    assert check(hub, first, bar)["admitted"]  # the lounge counts on its own
    assert ticket(hub, first["id"])["used"] == 2  # used: entries summed over the scopes

    published: list[tuple[str, bytes]] = []
    hub.ctx.publish = lambda topic, payload: published.append((topic, payload))
    r = hub.client.patch(f"/api/v1/checkin-groups/{lounge}", json={"counter_group_id": show["group"]},
                         headers=hub.admin)
    assert r.status_code == 200 and r.json()["counter_group_id"] == show["group"]
    lounge_topic = hub.ctx.topics.group_whitelist(lounge)
    used = [Delta.from_wire(open_envelope(p, hub.keyring)[1]) for t, p in published if t == lounge_topic]
    assert {(d.op, d.entry.ticket_id, d.entry.used) for d in used if d.entry} == {("used", first["id"], 2)}
    assert check(hub, second, show["channel"])["admitted"]
    assert check(hub, second, bar)["reason"] == "already_used"  # linked: one count for both

    for body, words in (({"counter_group_id": lounge}, "counts with group"),  # a cycle
                        ({"counter_group_id": show["group"]}, "itself")):
        target = show["group"]
        r = hub.client.patch(f"/api/v1/checkin-groups/{target}", json=body, headers=hub.admin)
        assert r.status_code == 422 and words in r.json()["detail"], r.text
    foyer = hub.post("/checkin-groups", {"name": "Foyer", "venue_id": show["venue"]})["id"]
    r = hub.client.patch(f"/api/v1/checkin-groups/{show['group']}", json={"counter_group_id": foyer}, headers=hub.admin)
    assert r.status_code == 422 and "other groups count with group" in r.json()["detail"]  # no chains
    elsewhere = hub.post("/venues", {"name": "Elsewhere"})["id"]
    far = hub.post("/checkin-groups", {"name": "Far", "venue_id": elsewhere})["id"]
    r = hub.client.patch(f"/api/v1/checkin-groups/{far}", json={"counter_group_id": show["group"]}, headers=hub.admin)
    assert r.status_code == 422 and "another venue" in r.json()["detail"]

    r = hub.client.patch(f"/api/v1/checkin-groups/{lounge}", json={"counter_group_id": None}, headers=hub.admin)
    assert r.status_code == 200 and r.json()["counter_group_id"] is None
    third = sell(hub, show)
    assert check(hub, third, show["channel"])["admitted"] and check(hub, third, bar)["admitted"]


def test_admissions_of_tickets_newer_than_the_whitelist_are_checked(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    other = hub.post("/performances", {"venue_id": show["venue"], "name": "Giselle",
                                       "doors_open": "2026-12-01T19:00:00+08:00",
                                       "starts_at": "2026-12-01T19:30:00+08:00",
                                       "ends_at": "2026-12-01T22:00:00+08:00"})["id"]
    good, refunded = sell(hub, show), sell(hub, show)
    elsewhere = hub.post("/tickets", {"performance_id": other, "ticket_type_id": show["adult"],
                                      "holder_name": "Wang"})
    clock.at("19:01")
    hub.post(f"/tickets/{refunded['id']}/refund", {"reason": "ill"}, status=200)  # before the scan
    gate = Gate("gate-1", show)
    at = venue_time("19:05")
    events = {"good": gate.admit(good["id"], at, unlisted=True),
              "refunded": gate.admit(refunded["id"], at, unlisted=True),
              "elsewhere": gate.admit(elsewhere["id"], at, unlisted=True),
              "unknown": gate.admit(99_999, at, unlisted=True)}
    send(hub, *events.values())
    stored = {r["event_id"]: r for r in journal(hub, device_id="gate-1")}
    assert {k: stored[e.event_id]["conflict"] for k, e in events.items()} == {
        "good": False, "refunded": True, "elsewhere": True, "unknown": True}
    assert all(stored[e.event_id]["unlisted"] for e in events.values())
    assert ticket(hub, good["id"])["used"] == 1


def test_a_printed_ticket_carries_the_e_tickets_usage(hub: Hub) -> None:
    clock = Clock(hub)
    show = show_at(hub)
    used_once = sell(hub, show, collection_code="AB23CD45")
    family = sell(hub, show, persons=4, collection_code="AB23CD45")
    clock.at("19:05")
    assert check(hub, used_once, show["channel"])["admitted"]
    gate = Gate("gate-1", show)
    admission = gate.admit(family["id"], venue_time("19:06"), persons=4)
    send(hub, admission, gate.annul(admission, 2, venue_time("19:07")))

    box = hub.user("kim", "kiosk")
    found = kiosk(hub, "lookup/code", {"code": "AB23CD45"}, box)
    jobs = kiosk(hub, "collect", {"lookup_token": found["lookup_token"], "ticket_ids": [used_once["id"], family["id"]],
                                  "printer_id": "printer-1"}, box)["jobs"]
    printed = {j["ticket_id"]: ticket(hub, j["ticket_id"]) for j in jobs}
    by_persons = {t["persons"]: t for t in printed.values()}
    assert by_persons[1]["used"] == 1 and by_persons[4]["used"] == 1
    clock.at("19:20")
    assert check(hub, by_persons[1], show["channel"])["reason"] == "already_used"  # one purchase, one entry
    rest = check(hub, by_persons[4], show["channel"])
    assert rest["admitted"] and rest["persons"] == 2 and rest["credit"]  # the credit carried over
    assert check(hub, by_persons[4], show["channel"])["reason"] == "already_used"
    assert check(hub, used_once, show["channel"])["reason"] == "revoked"


def test_card_admissions_count_per_venue_day_and_conflicts_land_on_the_later_scan(hub: Hub) -> None:
    show = show_at(hub, "09:00", "09:00", "22:00", end_day=DAY + timedelta(days=2))
    card = hub.post("/cards", card_body(show["channel"], entries_per_day=1))
    gate_a, gate_b = Gate("gate-a", show), Gate("gate-b", show)

    def tap(gate: Gate, hhmm: str, day: Any = DAY) -> Any:
        return gate.event(Reason.ADMITTED, None, venue_time(hhmm, day), 1, card_id=card["id"],
                          performance_id=None, ticket_type_id=None, source="nfc")

    late_evening = tap(gate_b, "23:50")
    after_midnight = tap(gate_b, "00:10", DAY + timedelta(days=1))  # 16:10 UTC: same machine day
    out = send(hub, late_evening, after_midnight)
    assert sorted((d.card_used.day, d.card_used.entries) for d in out if d.card_used) == [
        (DAY.isoformat(), 1), ((DAY + timedelta(days=1)).isoformat(), 1)]
    earlier = tap(gate_a, "20:00")  # gate A was offline; its tap came first
    send(hub, earlier)
    rows = {r["event_id"]: r["conflict"] for r in journal(hub, device_id="gate-a") + journal(hub, device_id="gate-b")}
    assert (rows[earlier.event_id], rows[late_evening.event_id], rows[after_midnight.event_id]) == (False, True, False)


def test_the_ack_echoes_the_group_seq_that_includes_the_counts(hub: Hub) -> None:
    show = show_at(hub)
    t = sell(hub, show)
    batch = EventBatch(device_id="gate-1", events=[Gate("gate-1", show).admit(t["id"], venue_time("19:05"))])
    out = ingest.store_batches(hub.ctx, [batch])
    ack = next(AckPayload.model_validate(open_envelope(p, hub.keyring)[1]) for topic, p in out if "ack" in topic)
    seq = hub.client.get("/api/v1/checkin-groups", headers=hub.admin).json()[0]["seq"]
    assert ack.echo_seq == seq
    used = [p for topic, p in out if topic == hub.ctx.topics.group_whitelist(show["group"])]
    assert len(used) == 1  # the "used" delta is the seq the ack names


def test_exit_scans_count_the_tickets_persons_in_the_evacuation_count(hub: Hub) -> None:
    show = show_at(hub)
    family = sell(hub, show, persons=3)
    gate, now = Gate("gate-1", show), time.time()
    send(hub, gate.admit(family["id"], now - 60, persons=3), gate.exit(None, now - 30, persons=1))
    assert evacuation.count(hub.ctx)["total_inside"] == 2
    send(hub, gate.exit(family["id"], now - 10, persons=3))
    assert evacuation.count(hub.ctx)["total_inside"] == 0


def test_the_checkin_list_is_by_scan_time_and_filters_by_group_and_time(hub: Hub) -> None:
    show = show_at(hub)
    lounge = hub.post("/checkin-groups", {"name": "Lounge", "venue_id": show["venue"],
                                          "performance_ids": [show["performance"]]})["id"]
    bar = channel_with(hub, lounge, "Lounge door", [show["adult"]])
    t = sell(hub, show, persons=2)
    main, side = Gate("gate-1", show), Gate("bar-1", show, channel=bar, group=lounge)
    send(hub, side.admit(t["id"], venue_time("20:00")))
    send(hub, main.admit(t["id"], venue_time("19:00")), main.event(Reason.ALREADY_USED, t["id"], venue_time("19:30")))
    assert [r["scanned_at"] for r in journal(hub)] == [venue_time(x) for x in ("20:00", "19:30", "19:00")]
    assert [r["device_id"] for r in journal(hub, group_id=lounge)] == ["bar-1"]
    window = journal(hub, since=venue_time("19:15"), until=venue_time("19:45"))
    assert [r["reason"] for r in window] == ["already_used"]
    assert not any(r["conflict"] for r in journal(hub))  # two groups, two scopes
    for bad in ({"since": -1}, {"until": 2**40}, {"group_id": 0}):
        assert hub.client.get("/api/v1/checkins", params=bad, headers=hub.admin).status_code == 422
