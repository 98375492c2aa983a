"""MQTT scenarios against a real Mosquitto: a test plays the gate with its own aiomqtt client.

Each gate is registered at the hub first (its key, group and channel) and signs its event batches with
its own key, as the hub believes nothing else (see tests/test_hub_device_trust.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import pytest

from protocol.envelope import open_envelope
from protocol.messages import AckPayload, CheckinEvent, EventBatch, GateStatus, SyncRequest, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics
from protocol.whitelist import Delta, Snapshot
from tests.hubkit import Hub, device, mqtt_hub_fixture, security_events, sell, setup_show  # noqa: F401  (fixture)
from tests.support.broker import Mosquitto
from tests.support.net import wait_for

TOPICS = Topics("venue")


@asynccontextmanager
async def gate(broker: Mosquitto, device_id: str, *subscriptions: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=device_id,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic in subscriptions:
            await client.subscribe(topic, qos=1)
        yield client


async def receive(client: aiomqtt.Client, within: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(within):
        return await anext(aiter(client.messages))


def event(device: str, show: dict[str, int], ticket_id: int | None, reason: Reason = Reason.ADMITTED,
          seq: int = 1) -> CheckinEvent:
    return CheckinEvent(event_id=uuid.uuid4().hex, device_id=device, group_id=show["group"],
                        channel_id=show["channel"], seq=seq, reason=reason, ticket_id=ticket_id,
                        performance_id=show["performance"], ticket_type_id=show["adult"],
                        persons=1 if reason is Reason.ADMITTED else 0, scanned_at=time.time(),
                        offline=True, excerpt=None)


def stored(hub: Hub, **query: object) -> list[dict[str, object]]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    rows: list[dict[str, object]] = hub.client.get(f"/api/v1/checkins?{params}", headers=hub.admin).json()
    return rows


async def test_batch_is_stored_once_and_acked_with_a_signature(mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    gate1 = device(mqtt_hub, "gate-1", show)
    ticket = sell(mqtt_hub, show)
    batch = EventBatch(device_id="gate-1", events=[event("gate-1", show, ticket["id"], seq=1),
                                                  event("gate-1", show, 999, Reason.UNKNOWN, seq=2)])
    async with gate(broker, "gate-1", TOPICS.ack("gate-1")) as client:
        for _ in range(2):
            await client.publish(TOPICS.events("gate-1"), gate1.batch(batch), qos=1)
            msg = await receive(client)
            _kind, payload = open_envelope(bytes(msg.payload), mqtt_hub.keyring)
            ack = AckPayload.model_validate(payload)
            assert ack.device_id == "gate-1" and ack.event_ids == [e.event_id for e in batch.events]
    assert len(stored(mqtt_hub, device_id="gate-1")) == 2
    assert mqtt_hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=mqtt_hub.admin).json()["used"] == 1


async def test_two_gates_admitting_one_ticket_offline_is_a_conflict(mqtt_hub: Hub, broker: Mosquitto,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    show = setup_show(mqtt_hub)
    gates = [device(mqtt_hub, name, show) for name in ("gate-1", "gate-2")]
    ticket = sell(mqtt_hub, show)
    async with gate(broker, "obs", TOPICS.group_whitelist(show["group"]), TOPICS.all_devices("ack")) as watcher:
        for one in gates:
            batch = EventBatch(device_id=one.device_id, events=[event(one.device_id, show, ticket["id"])])
            await watcher.publish(TOPICS.events(one.device_id), one.batch(batch), qos=1)
            await asyncio.sleep(0.2)
        used: list[Delta] = []
        deadline = time.monotonic() + 5
        while len(used) < 2 and time.monotonic() < deadline:
            msg = await receive(watcher)
            if msg.topic.matches(TOPICS.group_whitelist(show["group"])):
                used.append(Delta.from_wire(open_envelope(bytes(msg.payload), mqtt_hub.keyring)[1]))
    assert [d.entry.used for d in used if d.entry] == [1, 2]
    conflicts = stored(mqtt_hub, conflict="true")
    assert [c["device_id"] for c in conflicts] == ["gate-2"]
    assert "admitted again" in caplog.text


async def test_bad_payloads_are_dropped_and_the_bridge_keeps_working(mqtt_hub: Hub, broker: Mosquitto,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    show = setup_show(mqtt_hub)
    gate9 = device(mqtt_hub, "gate-9", show)
    caplog.set_level(logging.WARNING)
    async with gate(broker, "gate-9", TOPICS.ack("gate-9")) as client:
        await client.publish(TOPICS.events("gate-9"), b"\xff not json", qos=1)  # not even signed
        await client.publish(TOPICS.status("gate-9"), b'{"v":1,"device_id":"gate-9"}', qos=1)
        await client.publish(TOPICS.sync("gate-9"), b"[]", qos=1)
        await client.publish(TOPICS.status("gate-9"), dump_message(GateStatus(  # device id mismatch
            device_id="gate-8", state="online", at=time.time())), qos=1)
        other = EventBatch(device_id="gate-8", events=[event("gate-8", show, None, Reason.MALFORMED)])
        await client.publish(TOPICS.events("gate-9"), gate9.batch(other), qos=1)  # device id mismatch, signed
        await client.publish(TOPICS.sync("gate-9"), dump_message(
            SyncRequest(device_id="gate-9", group_id=4242, have_seq=-1)), qos=1)  # not its group
        good = EventBatch(device_id="gate-9", events=[event("gate-9", show, None, Reason.MALFORMED)])
        await client.publish(TOPICS.events("gate-9"), gate9.batch(good), qos=1)
        msg = await receive(client)
        assert open_envelope(bytes(msg.payload), mqtt_hub.keyring)[1]["event_ids"] == [good.events[0].event_id]
    assert caplog.text.count("dropped bad message") == 3  # the malformed status, sync and mismatched status
    assert "differs from the topic" in caplog.text
    # the unsigned junk, the batch naming another device and the sync for another group: security events
    assert security_events(mqtt_hub, "gate-9") == ["foreign_device", "unsigned", "wrong_group"]
    assert "group 4242, registered group" in caplog.text


async def test_status_and_last_will_update_the_device_list(mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    status = GateStatus(device_id="gate-3", state="online", at=time.time(), group_id=show["group"],
                        channel_id=show["channel"], whitelist_seq=2, outbox=0, version="1.0")
    async with gate(broker, "gate-3") as client:
        await client.publish(TOPICS.status("gate-3"), dump_message(status), qos=1, retain=True)

        def devices() -> list[dict[str, object]]:
            rows: list[dict[str, object]] = mqtt_hub.client.get("/api/v1/devices", headers=mqtt_hub.admin).json()
            return rows

        row = wait_for(devices, timeout=5, what="device registered")[0]
        assert (row["device_id"], row["state"], row["whitelist_seq"]) == ("gate-3", "online", 2)
        offline = GateStatus(device_id="gate-3", state="offline", at=time.time())
        await client.publish(TOPICS.status("gate-3"), dump_message(offline), qos=1, retain=True)
        wait_for(lambda: devices()[0]["state"] == "offline", timeout=5, what="device offline")
        assert devices()[0]["channel_id"] == show["channel"]


async def test_sync_sends_a_snapshot_or_the_missing_deltas(mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    device(mqtt_hub, "gate-4", show)
    tickets = [sell(mqtt_hub, show) for _ in range(3)]
    seq = mqtt_hub.client.get("/api/v1/checkin-groups", headers=mqtt_hub.admin).json()[0]["seq"]
    async with gate(broker, "gate-4", TOPICS.device_whitelist("gate-4")) as client:
        await client.publish(TOPICS.sync("gate-4"), dump_message(
            SyncRequest(device_id="gate-4", group_id=show["group"], have_seq=-1)), qos=1)
        kind, payload = open_envelope(bytes((await receive(client)).payload), mqtt_hub.keyring)
        snap = Snapshot.from_wire(payload)
        assert kind == "whitelist.snapshot" and snap.seq == seq
        assert sorted(e.ticket_id for e in snap.entries) == [t["id"] for t in tickets]

        await client.publish(TOPICS.sync("gate-4"), dump_message(
            SyncRequest(device_id="gate-4", group_id=show["group"], have_seq=seq - 2)), qos=1)
        deltas = [Delta.from_wire(open_envelope(bytes((await receive(client)).payload),
                                                mqtt_hub.keyring)[1]) for _ in range(2)]
        assert [d.seq for d in deltas] == [seq - 1, seq] and {d.op for d in deltas} == {"sale"}


async def test_a_sale_reaches_the_group_topic_within_a_second(mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    async with gate(broker, "gate-5", TOPICS.group_whitelist(show["group"])) as client:
        started = time.monotonic()
        ticket = await asyncio.to_thread(sell, mqtt_hub, show)
        delta = Delta.from_wire(open_envelope(bytes((await receive(client, 1.0)).payload), mqtt_hub.keyring)[1])
        assert time.monotonic() - started < 1.0
    assert delta.op == "sale" and delta.entry is not None and delta.entry.ticket_id == ticket["id"]


async def test_bridge_reconnects_after_the_broker_restarts(mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    gate6 = device(mqtt_hub, "gate-6", show)
    broker.kill()
    await asyncio.to_thread(wait_for, lambda: not mqtt_hub.bridge_connected(), 5, 0.02, "bridge down")
    sell(mqtt_hub, show)  # publishing while the broker is down must not break the sale
    broker.start()
    await asyncio.to_thread(wait_for, mqtt_hub.bridge_connected, 15, 0.05, "bridge reconnected")
    batch = EventBatch(device_id="gate-6", events=[event("gate-6", show, None, Reason.MALFORMED)])
    async with gate(broker, "gate-6", TOPICS.ack("gate-6")) as client:
        await client.publish(TOPICS.events("gate-6"), gate6.batch(batch), qos=1)
        assert (await receive(client)).topic.value == TOPICS.ack("gate-6")
