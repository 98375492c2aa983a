"""Issue 10 item 8 (second half): a device's whitelist sync requests are rate limited at the hub.

A real ``python -m hub`` on a real Mosquitto; the test plays a flooding device and a well-behaved one,
both registered at the hub in the show's group (the hub serves only a registered device's own group).
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import pytest

from hub.config import SyncSettings
from hub.sync_limit import SyncLimiter
from protocol.envelope import open_envelope, peek_kind
from protocol.messages import SyncRequest, dump_message
from protocol.topics import Topics
from protocol.whitelist import KIND_DELTA, KIND_SNAPSHOT, Delta
from tests.gate_helpers import eventually
from tests.support.broker import Mosquitto
from tests.support.devices import register
from tests.support.processes import HubProcess
from tests.support.scenario import Show, sell
from tests.test_gate_handheld import keyring_of

TOPICS = Topics("venue")
FLOOD = 300


def test_the_limiter_lets_a_burst_through_then_one_snapshot_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    limiter = SyncLimiter(SyncSettings(snapshot_interval=5.0, snapshot_burst=2, requests_per_second=1.0,
                                       request_burst=5, log_interval=10.0), clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="hub.sync_limit")
    assert [limiter.allow("flood", snapshot=True) for _ in range(4)] == [True, True, False, False]
    assert limiter.allow("other", snapshot=True)  # another device has its own buckets
    assert caplog.text.count("rate limited whitelist sync requests of device flood") == 1  # once per interval
    now[0] += 5.0
    assert limiter.allow("flood", snapshot=True) and not limiter.allow("flood", snapshot=True)
    assert limiter.allow("flood")  # a delta catch-up still has request tokens
    now[0] += 10.0
    assert limiter.allow("flood", snapshot=True)
    for _ in range(20):
        limiter.allow("flood")
    assert caplog.text.count("rate limited whitelist sync requests of device flood") == 2
    assert limiter.dropped_total >= 3


async def _collect(client: aiomqtt.Client, into: dict[str, list[bytes]]) -> None:
    async for message in client.messages:
        into.setdefault(message.topic.value, []).append(bytes(message.payload))


async def test_a_device_flooding_snapshot_requests_gets_a_few_and_others_are_served_promptly(
        hub_process: HubProcess, show: Show, broker: Mosquitto) -> None:
    hub = hub_process
    keyring = keyring_of(hub)
    for device_id in ("gate-flood", "gate-good"):
        register(lambda path, body: hub.call("POST", path, json=body), device_id, show.group_id, show.channel_id)
    for _ in range(20):
        sell(hub, show)
    got: dict[str, list[bytes]] = {}
    flood_topic, good_topic = TOPICS.device_whitelist("gate-flood"), TOPICS.device_whitelist("gate-good")
    group_topic = TOPICS.group_whitelist(show.group_id)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-devices",
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic in (flood_topic, good_topic, group_topic):
            await client.subscribe(topic, qos=1)
        collector = asyncio.create_task(_collect(client, got))
        try:
            request = dump_message(SyncRequest(device_id="gate-flood", group_id=show.group_id, have_seq=-1))
            for _ in range(FLOOD):
                await client.publish(TOPICS.sync("gate-flood"), request, qos=1)
            # another device, right behind the flood: its snapshot and a fresh sale's delta arrive promptly
            await client.publish(TOPICS.sync("gate-good"), dump_message(
                SyncRequest(device_id="gate-good", group_id=show.group_id, have_seq=-1)), qos=1)
            await eventually(lambda: got.get(good_topic), 15, "gate-good's snapshot")
            ticket = sell(hub, show)

            def sold() -> bool:
                deltas = [Delta.from_wire(open_envelope(p, keyring)[1]) for p in got.get(group_topic, [])
                          if peek_kind(p) == KIND_DELTA]
                return any(d.entry is not None and d.entry.ticket_id == ticket["id"] for d in deltas)

            await eventually(sold, 15, "the sale's delta")
            await asyncio.sleep(1.0)  # anything the hub still sends the flooder arrives meanwhile
        finally:
            collector.cancel()
    snapshots = [p for p in got.get(flood_topic, []) if peek_kind(p) == KIND_SNAPSHOT]
    assert 1 <= len(snapshots) <= 5, f"the flooder got {len(snapshots)} snapshots for {FLOOD} requests"
    assert [peek_kind(p) for p in got[good_topic]] == [KIND_SNAPSHOT]
    logs = hub.logs()
    assert "rate limited whitelist sync requests of device gate-flood" in logs
    assert logs.count("rate limited whitelist sync requests of device gate-flood") <= 3  # not once per request
    assert "rate limited whitelist sync requests of device gate-good" not in logs
