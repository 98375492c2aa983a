"""Event batches with numbers out of range (issue 9): refused as malformed and logged, never stored,
never acked; valid batches around them still land, and the bridge stays connected.

To show that a bad batch did not happen to be stored, a valid one is sent after it and waited for.
The gate is registered and signs every batch with its own key: what is wrong is the content, not the
sender, so the signed bad batches reach the parser (tests/test_hub_device_trust.py has the unsigned)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from hub.services import ingest
from hub.services.context import HubContext, Outgoing
from protocol.device_signed import KIND_EVENTS, seal_device
from protocol.envelope import open_envelope
from protocol.messages import CheckinEvent, EventBatch, GateStatus, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics
from tests.hubkit import Hub, device, hub_fixture, mqtt_hub_fixture, sell, setup_show  # noqa: F401  (fixtures)
from tests.support.broker import Mosquitto
from tests.support.devices import TestDevice
from tests.support.net import wait_for
from tests.test_hub_mqtt import gate, receive, stored

TOPICS = Topics("venue")
DEVICE = "gate-5"


def raw_event(show: dict[str, int], ticket_id: int | None, **override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": uuid.uuid4().hex, "device_id": DEVICE, "group_id": show["group"],
                            "channel_id": show["channel"], "seq": 1, "reason": "admitted", "ticket_id": ticket_id,
                            "performance_id": show["performance"], "ticket_type_id": show["adult"], "persons": 1,
                            "scanned_at": time.time(), "offline": True}
    body.update(override)
    return body


def raw_batch(gate5: TestDevice, *events: Any) -> bytes:
    """A batch of raw (unchecked) events, signed by the gate."""
    return seal_device(KIND_EVENTS, {"v": 1, "device_id": DEVICE, "events": list(events)}, DEVICE, gate5.key)


BAD: list[dict[str, Any]] = [
    {"ticket_id": 2**70},
    {"channel_id": -5},
    {"group_id": 2**63},
    {"seq": 2**64},
    {"scanned_at": 1e30},
    {"persons": 999},
    {"performance_id": 2**64},
    {"card_id": -1},
]


async def test_out_of_range_batches_are_refused_and_valid_ones_still_land(
        mqtt_hub: Hub, broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    show = setup_show(mqtt_hub)
    gate5 = device(mqtt_hub, DEVICE, show)
    ticket = sell(mqtt_hub, show)
    caplog.set_level(logging.WARNING)
    bad_ids = []
    async with gate(broker, DEVICE, TOPICS.ack(DEVICE)) as client:
        for override in BAD:
            # one good event beside the bad one: the whole batch is refused, the good event too
            good_neighbour = raw_event(show, None, reason="unknown", persons=0, seq=2)
            bad = {**raw_event(show, ticket["id"]), **override}
            bad_ids += [bad["event_id"], good_neighbour["event_id"]]
            await client.publish(TOPICS.events(DEVICE), raw_batch(gate5, good_neighbour, bad), qos=1)
        await client.publish(TOPICS.events(DEVICE), raw_batch(gate5, float("nan")), qos=1)  # "events": [NaN]
        valid = raw_event(show, ticket["id"], seq=3)
        await client.publish(TOPICS.events(DEVICE), raw_batch(gate5, valid), qos=1)
        msg = await receive(client)  # the only ack: for the valid batch
        _kind, payload = open_envelope(bytes(msg.payload), mqtt_hub.keyring)
        assert payload["event_ids"] == [valid["event_id"]]
        with pytest.raises(TimeoutError):
            await receive(client, within=0.5)
    rows = stored(mqtt_hub, device_id=DEVICE)
    assert [r["event_id"] for r in rows] == [valid["event_id"]]
    assert not set(bad_ids) & {r["event_id"] for r in rows}
    assert mqtt_hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=mqtt_hub.admin).json()["used"] == 1
    assert caplog.text.count("dropped bad message") == len(BAD) + 1
    for field in ("ticket_id", "channel_id", "group_id", "seq", "scanned_at", "persons", "performance_id", "card_id"):
        assert f"events.1.{field}" in caplog.text, field
    assert mqtt_hub.bridge_connected()
    assert "handler failed" not in caplog.text and "storing" not in caplog.text


async def test_out_of_range_status_reports_are_refused(mqtt_hub: Hub, broker: Mosquitto,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    show = setup_show(mqtt_hub)
    caplog.set_level(logging.WARNING)
    good = GateStatus(device_id=DEVICE, state="online", at=time.time(), group_id=show["group"],
                      channel_id=show["channel"], whitelist_seq=1, outbox=0, version="1.0")
    async with gate(broker, DEVICE) as client:
        for override in ({"group_id": 2**64}, {"whitelist_seq": 2**63}, {"outbox": -1}, {"at": 1e30},
                         {"birth": 2**40}, {"interval": 1e300}, {"version": "v" * 500}):
            bad = {**good.model_dump(exclude_none=True), **override}
            await client.publish(TOPICS.status(DEVICE), json.dumps(bad).encode(), qos=1)
        await client.publish(TOPICS.status(DEVICE), dump_message(good), qos=1)

        def devices() -> list[dict[str, object]]:
            rows: list[dict[str, object]] = mqtt_hub.client.get("/api/v1/devices", headers=mqtt_hub.admin).json()
            return rows

        row = wait_for(devices, timeout=5, what="the valid status stored")[0]
    assert (row["device_id"], row["group_id"], row["whitelist_seq"], row["outbox"]) == (DEVICE, show["group"], 1, 0)
    assert caplog.text.count("dropped bad message") == 7
    assert "handler failed" not in caplog.text
    assert mqtt_hub.bridge_connected()


def _event(show: dict[str, int], device: str, ticket_id: int | None, reason: Reason) -> CheckinEvent:
    return CheckinEvent(event_id=uuid.uuid4().hex, device_id=device, group_id=show["group"],
                        channel_id=show["channel"], seq=1, reason=reason, ticket_id=ticket_id,
                        performance_id=show["performance"], ticket_type_id=show["adult"],
                        persons=1 if reason is Reason.ADMITTED else 0, scanned_at=time.time())


def test_a_batch_the_database_refuses_does_not_take_the_others_with_it(
        hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Defence in depth: should a well-formed batch still fail in the database, the writer stores the
    batches of that pass one by one; only the failing one stays unstored (and unacked)."""
    show = setup_show(hub)
    ticket = sell(hub, show)
    real = ingest.store_batches
    calls: list[list[str]] = []

    def store(ctx: HubContext, batches: Sequence[EventBatch]) -> list[Outgoing]:
        calls.append([b.device_id for b in batches])
        if any(b.device_id == "gate-bad" for b in batches):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")  # as sqlite3 says it
        return real(ctx, batches)

    monkeypatch.setattr(ingest, "store_batches", store)
    caplog.set_level(logging.WARNING)
    good1 = EventBatch(device_id="gate-1", events=[_event(show, "gate-1", ticket["id"], Reason.ADMITTED)])
    bad = EventBatch(device_id="gate-bad", events=[_event(show, "gate-bad", None, Reason.UNKNOWN)])
    good2 = EventBatch(device_id="gate-2", events=[_event(show, "gate-2", None, Reason.UNKNOWN)])
    bridge: Any = hub.client.app.state.bridge  # type: ignore[attr-defined]

    def enqueue() -> None:  # in one loop callback: the writer's next pass takes all three
        for b in (good1, bad, good2):
            bridge._batches.put_nowait(b)

    bridge._loop.call_soon_threadsafe(enqueue)

    def rows() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = hub.client.get("/api/v1/checkins", headers=hub.admin).json()
        return out

    wait_for(lambda: len(rows()) == 2, timeout=5, what="both valid batches stored")
    assert sorted(r["device_id"] for r in rows()) == ["gate-1", "gate-2"]
    assert calls[0] == ["gate-1", "gate-bad", "gate-2"] and calls[1:] == [["gate-1"], ["gate-bad"], ["gate-2"]]
    assert "storing them one by one" in caplog.text and "event batch of gate-bad" in caplog.text
    assert hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=hub.admin).json()["used"] == 1
