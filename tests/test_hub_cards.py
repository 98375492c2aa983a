"""Member cards at the hub: issue/list/revoke with roles and audit; card deltas and snapshot cards
verify and apply at a real gate store; card check-ins from gates are stored with their card id."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gate_agent.actuator import LoggingActuator
from gate_agent.checkin import Checker, Station
from gate_agent.store import Store
from gate_agent.sync import Outcome, apply, verify
from hub.services import ingest, whitelist
from protocol.cards import card_key, parse_uid
from protocol.envelope import open_envelope
from protocol.messages import AckPayload, CheckinEvent, EventBatch
from protocol.reasons import Reason
from protocol.whitelist import Delta
from tests.hubkit import Hub, hub_fixture, iso, setup_show  # noqa: F401  (fixture)

UID = "04:A1:B2:C3:D4:E5:F6"


def card_body(channel: int, **over: object) -> dict[str, object]:
    now = datetime.now(UTC)
    body: dict[str, object] = {"uid": UID, "kind": "annual", "holder_name": "Han Meimei",
                               "valid_from": iso(now - timedelta(days=1)),
                               "valid_until": iso(now + timedelta(days=365)),
                               "channel_ids": [channel], "entries_per_day": 1}
    return {**body, **over}


def sync_gate(hub: Hub, store: Store, group: int) -> list[Outcome]:
    """What the gate's link does: a snapshot first, then the deltas after its seq, each verified."""
    keyring = hub.keyring
    if not store.installed:
        r = hub.client.get(f"/api/v1/whitelists/{group}/snapshot", headers=hub.admin)
        assert r.status_code == 200
        return [apply(*verify(r.content, keyring), store, group)]
    return [apply(*verify(env, keyring), store, group)
            for env in whitelist.catch_up(hub.ctx, group, store.whitelist_seq)]


def test_cards_roles_audit_and_validation(hub: Hub) -> None:
    show = setup_show(hub)
    viewer, box = hub.user("vic", "viewer"), hub.user("bo", "box_office")
    hub.post("/cards", card_body(show["channel"]), viewer, status=403)
    issued = hub.post("/cards", card_body(show["channel"]), box)
    assert issued["holder_name"] == "Han Meimei" and issued["channel_ids"] == [show["channel"]]
    assert "uid" not in issued and "uid_hash" not in issued
    # the same card, written another way, cannot be registered twice
    assert "already registered" in hub.post("/cards", card_body(show["channel"], uid="04a1b2c3d4e5f6"),
                                            box, status=409)["detail"]
    assert "GET /api/v1/channels" in hub.post("/cards", card_body(999, uid="0102030405"), box, status=404)["detail"]
    hub.post("/cards", card_body(show["channel"], uid="not hex!"), box, status=422)
    hub.post("/cards", card_body(show["channel"], uid="01020304",
                                 valid_from="2026-01-01T00:00:00"), box, status=422)  # naive time
    hub.post("/cards", card_body(show["channel"], uid="01020304", kind="vip"), box, status=422)

    listed_viewer = hub.client.get("/api/v1/cards", headers=viewer).json()
    listed_box = hub.client.get("/api/v1/cards", headers=box).json()
    assert [c["id"] for c in listed_viewer] == [issued["id"]] and "holder_name" not in listed_viewer[0]
    assert listed_box[0]["holder_name"] == "Han Meimei"

    r = hub.client.post(f"/api/v1/cards/{issued['id']}/revoke", json={"reason": "lost"}, headers=viewer)
    assert r.status_code == 403
    revoked = hub.post(f"/cards/{issued['id']}/revoke", {"reason": "lost"}, box, status=200)
    assert revoked["revoked"] and revoked["revoked_reason"] == "lost"
    hub.post(f"/cards/{issued['id']}/revoke", {}, box, status=409)
    hub.post("/cards/999/revoke", {}, box, status=404)

    audit = hub.client.get("/api/v1/audit", headers=hub.admin).json()
    assert {("card.create", "bo"), ("card.revoke", "bo")} <= {(a["action"], a["username"]) for a in audit}
    uid_hex = parse_uid(UID).hex()
    assert not any(uid_hex in (a["detail"] + a["target"]).lower() for a in audit)


def test_card_deltas_and_snapshots_apply_at_a_gate_and_card_events_are_stored(hub: Hub, tmp_path: Path) -> None:
    show = setup_show(hub)
    group, channel = show["group"], show["channel"]
    other = hub.post("/checkin-groups", {"name": "Side hall", "venue_id": show["venue"]})["id"]
    other_channel = hub.post(f"/checkin-groups/{other}/channels", {"name": "Side", "ticket_type_ids": []})["id"]
    other_seq = hub.client.get("/api/v1/checkin-groups", headers=hub.admin).json()[-1]["seq"]
    published: list[tuple[str, bytes]] = []
    hub.ctx.publish = lambda topic, payload: published.append((topic, payload))
    key = card_key(parse_uid(UID))

    with Store.open(tmp_path / "gate") as store:
        assert sync_gate(hub, store, group) == [Outcome.INSTALLED]
        assert store.card(key) is None
        issued = hub.post("/cards", card_body(channel))
        # one signed "card" delta, published after commit, to the card's group only
        assert [t for t, _ in published] == [hub.ctx.topics.group_whitelist(group)]
        assert hub.client.get("/api/v1/checkin-groups", headers=hub.admin).json()[-1]["seq"] == other_seq
        assert sync_gate(hub, store, group) == [Outcome.APPLIED]
        entry = store.card(key)
        assert entry is not None and entry.card_id == issued["id"] and entry.channel_ids == {channel}
        assert other_channel not in entry.channel_ids

        checker = Checker(Station("gate-1", group, channel), store, hub.keyring,
                          LoggingActuator("gate-1", out=io.StringIO()))
        first, second = [await_tap(checker, key) for _ in range(2)]
        assert (first.reason, second.reason) == (Reason.ADMITTED, Reason.DAILY_LIMIT)

        hub.post(f"/cards/{issued['id']}/revoke", {"reason": "stolen"}, status=200)
        assert sync_gate(hub, store, group) == [Outcome.APPLIED]
        third = await_tap(checker, key)
        assert third.reason is Reason.REVOKED

        # the gate reports its card check-ins; the hub stores them once, with the card id
        events = store.pending(10)
        ingest.store_batches(hub.ctx, [EventBatch(device_id="gate-1", events=events)])
        ingest.store_batches(hub.ctx, [EventBatch(device_id="gate-1", events=events)])  # a resend
        rows = hub.client.get("/api/v1/checkins", params={"device_id": "gate-1"}, headers=hub.admin).json()
        assert sorted((r["reason"], r["card_id"], r["source"]) for r in rows) == sorted(
            [("admitted", issued["id"], "nfc"), ("daily_limit", issued["id"], "nfc"),
             ("revoked", issued["id"], "nfc")])

    with Store.open(tmp_path / "fresh") as fresh:  # a new gate gets the card, revoked, in its snapshot
        assert sync_gate(hub, fresh, group) == [Outcome.INSTALLED]
        snap_card = fresh.card(key)
        assert snap_card is not None and snap_card.revoked
    with Store.open(tmp_path / "side") as side:  # the other group's snapshot has no cards
        assert sync_gate(hub, side, other) == [Outcome.INSTALLED]
        assert side.card(key) is None


def await_tap(checker: Checker, key: str) -> CheckinEvent:
    event = asyncio.run(checker.tap(key))
    assert event is not None
    return event


def test_entries_per_day_hold_across_gates_once_the_hub_has_heard(hub: Hub, tmp_path: Path) -> None:
    """An annual pass good for one entry a day, used at gate A, is refused at gate B of the same group."""
    show = setup_show(hub)
    group, channel = show["group"], show["channel"]
    issued = hub.post("/cards", card_body(channel))
    key = card_key(parse_uid(UID))
    with Store.open(tmp_path / "a") as gate_a, Store.open(tmp_path / "b") as gate_b:
        for store in (gate_a, gate_b):
            assert sync_gate(hub, store, group) == [Outcome.INSTALLED]
        at_a, at_b = (Checker(Station(name, group, channel), store, hub.keyring,
                              LoggingActuator(name, out=io.StringIO()))
                      for name, store in (("gate-a", gate_a), ("gate-b", gate_b)))
        assert await_tap(at_a, key).reason is Reason.ADMITTED

        published: list[tuple[str, bytes]] = []
        hub.ctx.publish = lambda topic, payload: published.append((topic, payload))
        out = ingest.store_batches(hub.ctx, [EventBatch(device_id="gate-a", events=gate_a.pending(10))])
        card_used = [Delta.from_wire(open_envelope(p, hub.keyring)[1]) for t, p in out
                     if t == hub.ctx.topics.group_whitelist(group)]
        assert [(d.op, d.card_used.card_id, d.card_used.entries) for d in card_used if d.card_used] == [
            ("card_used", issued["id"], 1)]

        for topic, payload in out:  # the hub's ack reaches gate A, as its link would deliver it
            if topic == hub.ctx.topics.ack("gate-a"):
                ack = AckPayload.model_validate(open_envelope(payload, hub.keyring)[1])
                gate_a.acknowledge(ack.event_ids, ack.echo_seq)
        assert sync_gate(hub, gate_b, group) == [Outcome.APPLIED]
        assert await_tap(at_b, key).reason is Reason.DAILY_LIMIT
        assert sync_gate(hub, gate_a, group) == [Outcome.APPLIED]  # A's own count is in the hub's: 1, not 2
        tz = gate_a.rules.timezone if gate_a.rules is not None else "UTC"
        assert gate_a.card_entries(issued["id"], time.time(), tz) == 1
