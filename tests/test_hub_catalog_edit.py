"""Editing the catalogue: moving a performance reaches the gates within a second and sold tickets follow
it; retiring stops sales; venue time zones, group performances and admit_unlisted reach the gates;
supervisors are managed without ever showing a PIN hash or card UID; forced admissions are stored."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from hub.services import whitelist
from protocol.cards import card_key, parse_uid
from protocol.envelope import open_envelope
from protocol.reasons import Reason
from protocol.supervisor import pin_matches
from protocol.whitelist import Delta, Schedule, Snapshot
from tests.hubkit import Hub, hub_fixture, mqtt_hub_fixture  # noqa: F401  (fixtures)
from tests.rulekit import DAY, Clock, Gate, check, iso_at, journal, sell, send, show_at, venue_time
from tests.support.broker import Mosquitto
from tests.test_hub_mqtt import gate, receive

NEXT_DAY = DAY + timedelta(days=1)


def patch(hub: Hub, path: str, body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Any:
    r = hub.client.patch("/api/v1" + path, json=body, headers=headers or hub.admin)
    assert r.status_code == status, r.text
    return r.json()


def capture(hub: Hub) -> list[Delta]:
    deltas: list[Delta] = []

    def publish(topic: str, payload: bytes) -> None:
        if topic.endswith("/whitelist"):
            deltas.append(Delta.from_wire(open_envelope(payload, hub.keyring)[1]))

    hub.ctx.publish = publish
    return deltas


def group_rules_now(hub: Hub, group: int) -> Any:
    return Snapshot.from_wire(open_envelope(whitelist.snapshot(hub.ctx, group), hub.keyring)[1]).rules


async def test_moving_a_performance_reaches_the_gates_within_a_second_and_sold_tickets_follow(
        mqtt_hub: Hub, broker: Mosquitto) -> None:
    hub = mqtt_hub
    clock = Clock(hub)
    show = show_at(hub, "19:00", "19:30", "22:00")
    sold = sell(hub, show)  # its token carries tonight's window
    moved = {"doors_open": iso_at("19:00", NEXT_DAY), "starts_at": iso_at("19:30", NEXT_DAY),
             "ends_at": iso_at("22:00", NEXT_DAY)}
    async with gate(broker, "gate-1", hub.ctx.topics.group_whitelist(show["group"])) as client:
        started = time.monotonic()
        await asyncio.to_thread(patch, hub, f"/performances/{show['performance']}", moved)
        delta = Delta.from_wire(open_envelope(bytes((await receive(client, 1.0)).payload), hub.keyring)[1])
        assert time.monotonic() - started < 1.0
    assert delta.op == "rules" and delta.rules is not None
    assert delta.rules.schedule[show["performance"]] == Schedule(
        int(venue_time("19:00", NEXT_DAY)), int(venue_time("19:30", NEXT_DAY)), int(venue_time("22:00", NEXT_DAY)))
    clock.at("19:10")  # the old time: doors are not open any more tonight
    too_early = check(hub, sold, show["channel"])
    assert too_early["reason"] == "too_early" and too_early["next_at"] == venue_time("19:00", NEXT_DAY)
    clock.at("19:10", NEXT_DAY)  # outside the token's own window, inside the new one
    assert check(hub, sold, show["channel"])["admitted"]


def test_performance_edits_are_validated_audited_and_retiring_stops_sales(hub: Hub) -> None:
    show = show_at(hub)
    perf = f"/performances/{show['performance']}"
    assert "doors_open <= starts_at" in patch(hub, perf, {"starts_at": iso_at("23:00")}, 422)["detail"]
    assert "ends_at" in str(patch(hub, perf, {"ends_at": "2107-01-01T00:00:00+00:00"}, 422)["detail"])
    patch(hub, "/performances/999", {"name": "x"}, 404)
    deltas = capture(hub)
    assert patch(hub, perf, {"name": "Swan Lake (matinee)"})["name"] == "Swan Lake (matinee)"
    assert [d.op for d in deltas] == ["rules"]

    r = hub.client.delete(f"/api/v1{perf}", headers=hub.admin)  # alias of retired: true
    assert r.status_code == 200 and r.json()["retired"]
    refused = hub.post("/tickets", {"performance_id": show["performance"], "ticket_type_id": show["adult"],
                                    "holder_name": "Li"}, status=409)["detail"]
    assert "retired" in refused and '"retired": false' in refused
    patch(hub, perf, {"retired": False})
    sell(hub, show)

    kind = patch(hub, f"/ticket-types/{show['child']}", {"retired": True, "price_cents": 9900})
    assert kind["retired"] and kind["price_cents"] == 9900
    refused = hub.post("/tickets", {"performance_id": show["performance"], "ticket_type_id": show["child"],
                                    "holder_name": "Li"}, status=409)["detail"]
    assert "ticket type" in refused and "choose another type" in refused
    assert hub.client.get("/api/v1/ticket-types", headers=hub.admin).json()[1]["retired"]
    viewer = hub.user("vic", "viewer")
    patch(hub, f"/ticket-types/{show['child']}", {"retired": False}, 403, viewer)
    actions = {a["action"] for a in hub.client.get("/api/v1/audit", headers=hub.admin).json()}
    assert {"performance.update", "ticket_type.update"} <= actions


def test_venue_time_zone_group_performances_and_admit_unlisted_reach_the_gates(hub: Hub) -> None:
    show = show_at(hub)
    assert "timezone" in patch(hub, f"/venues/{show['venue']}", {"timezone": "Mars/Olympus"}, 422)["detail"]
    assert hub.post("/venues", {"name": "V", "timezone": "Nowhere/Land"}, status=422)
    deltas = capture(hub)
    assert patch(hub, f"/venues/{show['venue']}", {"timezone": "Europe/London"})["timezone"] == "Europe/London"
    assert [(d.op, d.rules.timezone) for d in deltas if d.rules] == [("rules", "Europe/London")]
    patch(hub, f"/venues/{show['venue']}", {"timezone": "Asia/Shanghai"})

    other = hub.post("/performances", {"venue_id": show["venue"], "name": "Giselle", "doors_open": iso_at("13:00"),
                                       "starts_at": iso_at("14:00"), "ends_at": iso_at("16:00")})["id"]
    matinee = hub.post("/tickets", {"performance_id": other, "ticket_type_id": show["adult"], "holder_name": "Wu"})
    deltas.clear()
    group = patch(hub, f"/checkin-groups/{show['group']}", {"performance_ids": [show["performance"], other],
                                                             "admit_unlisted": False})
    assert group["performance_ids"] == sorted([show["performance"], other]) and not group["admit_unlisted"]
    assert [d.op for d in deltas] == ["rules", "sale"]
    assert deltas[0].rules is not None and not deltas[0].rules.admit_unlisted
    assert deltas[0].rules.schedule[other].starts_at == int(venue_time("14:00"))
    assert deltas[1].entry is not None and deltas[1].entry.ticket_id == matinee["id"]
    patch(hub, f"/checkin-groups/{show['group']}", {"performance_ids": [999]}, 404)
    assert "group.update" in {a["action"] for a in hub.client.get("/api/v1/audit", headers=hub.admin).json()}


def test_supervisors_are_managed_without_showing_pins_or_card_uids(hub: Hub) -> None:
    show = show_at(hub)
    box = hub.user("bo", "box_office")
    body = {"name": "Zhang Wei", "pin": "246810", "card_uid": "04:A1:B2:C3:D4:E5:F6"}
    hub.post("/supervisors", body, box, status=403)
    assert "card_uid" in hub.post("/supervisors", {**body, "card_uid": "zz"}, status=422)["detail"]
    hub.post("/supervisors", {**body, "pin": "12"}, status=422)
    deltas = capture(hub)
    created = hub.post("/supervisors", body)
    assert created == {"id": created["id"], "name": "Zhang Wei", "has_pin": True, "has_card": True,
                       "retired": False, "created_at": created["created_at"]}
    assert {(d.op, d.group_id) for d in deltas} >= {("rules", show["group"])}  # to every group
    assert {d.op for d in deltas} == {"rules"}
    assert "already belongs" in hub.post("/supervisors", {**body, "name": "Li", "pin": "97531"}, status=409)["detail"]
    listed = hub.client.get("/api/v1/supervisors", headers=hub.user("sam", "security")).json()
    assert listed == [created]

    (sup,) = group_rules_now(hub, show["group"]).supervisors
    assert sup.name == "Zhang Wei" and sup.pin_hash is not None and pin_matches(sup.pin_hash, "246810")
    assert sup.card_key == card_key(parse_uid(body["card_uid"]))
    patch(hub, f"/supervisors/{created['id']}", {"pin": "13579"})
    (sup,) = group_rules_now(hub, show["group"]).supervisors
    assert sup.pin_hash is not None and pin_matches(sup.pin_hash, "13579") and not pin_matches(sup.pin_hash, "246810")
    assert not patch(hub, f"/supervisors/{created['id']}", {"card_uid": ""})["has_card"]
    assert patch(hub, f"/supervisors/{created['id']}", {"retired": True})["retired"]
    assert group_rules_now(hub, show["group"]).supervisors == ()
    patch(hub, "/supervisors/999", {"retired": True}, 404)
    audit = hub.client.get("/api/v1/audit", headers=hub.admin).json()
    assert {"supervisor.create", "supervisor.update"} <= {a["action"] for a in audit}
    assert not any(pin in a["detail"] for a in audit for pin in ("246810", "13579"))


def test_forced_admissions_are_stored_with_who_and_why_and_are_no_conflict(hub: Hub) -> None:
    show = show_at(hub)
    t = sell(hub, show)
    handheld = Gate("hh-1", show)
    first = handheld.admit(t["id"], venue_time("19:05"))
    forced = handheld.admit(t["id"], venue_time("19:30"), forced_by="Zhang Wei", denied=Reason.ALREADY_USED)
    send(hub, first, forced)
    rows = {r["event_id"]: r for r in journal(hub, ticket_id=t["id"])}
    assert (rows[forced.event_id]["forced_by"], rows[forced.event_id]["denied"]) == ("Zhang Wei", "already_used")
    assert not rows[forced.event_id]["conflict"] and rows[first.event_id]["forced_by"] is None
    assert hub.client.get(f"/api/v1/tickets/{t['id']}", headers=hub.admin).json()["used"] == 2
