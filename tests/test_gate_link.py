"""The MQTT link against a real Mosquitto, with a fake hub that signs like the real one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import VerifyKey

from confkit.enrolment import device_key
from gate_agent.checkin import Checker, Station
from gate_agent.link import Link, LinkOptions
from gate_agent.store import Store
from protocol.keys import Keyring, Signer
from protocol.reasons import Reason
from protocol.topics import Topics
from protocol.whitelist import Delta, WhitelistEntry
from tests.gate_helpers import (
    NOW,
    PERF,
    FakeHub,
    device_public_key,
    eventually,
    fake_hub,
    seal_delta,
    seal_snapshot,
    snapshot,
    token,
)
from tests.support.broker import Mosquitto
from tests.test_gate_checkin import RecordingActuator

T = Topics()
ME = "gate-1"


@dataclass
class Gate:
    store: Store
    link: Link
    checker: Checker


@asynccontextmanager
async def running_gate(tmp_path: Path, port: int, keyring: Keyring) -> AsyncIterator[Gate]:
    with Store.open(tmp_path / "gate") as store:
        link = Link(LinkOptions(device_id=ME, group_id=1, channel_id=1, port=port,
                                status_interval=0.5, ack_timeout=1.0,
                                backoff_max=0.5), store, keyring, device_key=device_key(tmp_path / "gate"))
        checker = Checker(Station(ME, 1, 1), store, keyring, RecordingActuator(), on_event=link.wake,
                          clock=lambda: NOW)
        task = asyncio.create_task(link.run())
        try:
            yield Gate(store, link, checker)
        finally:
            await link.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def registry(tmp_path: Path) -> dict[str, VerifyKey]:
    """The fake hub's registry: this gate's device key (in its data dir)."""
    return {ME: device_public_key(tmp_path / "gate")}


async def install(hub: FakeHub, gate: Gate, n: int = 5, seq: int = 10) -> None:
    await hub.send(T.device_whitelist(ME), seal_snapshot(snapshot([WhitelistEntry(i, PERF, 3) for i in range(1, n + 1)],
                                                                  seq), hub.signer))
    await eventually(lambda: gate.store.whitelist_seq == seq, what="snapshot installed")


async def test_whitelist_over_mqtt_sale_refund_gap_replay_and_foreign_key(
        tmp_path: Path, broker: Mosquitto, signer: Signer, keyring: Keyring) -> None:
    async with fake_hub(broker.port, signer, devices=registry(tmp_path)) as hub, \
            running_gate(tmp_path, broker.port, keyring) as gate:
        await eventually(lambda: hub.syncs, what="sync request on connect")
        assert hub.syncs[0].have_seq == -1 and hub.syncs[0].group_id == 1
        await eventually(lambda: (s := hub.last_status(ME)) and s.state == "online", what="online status")
        await install(hub, gate)
        group = T.group_whitelist(1)
        # a ticket sold after the sync is admitted on its signature, marked; the sale then lists it with
        # the hub's count (this fake hub acks without echo_seq: "already counted")
        unlisted = await gate.checker.scan(token(signer, 50))
        assert (unlisted.reason, unlisted.unlisted) == (Reason.ADMITTED, True)
        assert (await gate.checker.scan(token(signer, 3))).reason is Reason.ADMITTED  # a listed one: not marked
        assert not gate.store.journal()[-1].get("unlisted")
        await hub.send(group, seal_delta(Delta(1, 11, NOW, "sale", WhitelistEntry(50, PERF, 3, used=1)), signer))
        await eventually(lambda: gate.store.whitelist_seq == 11)
        assert (await gate.checker.scan(token(signer, 50))).reason is Reason.ALREADY_USED
        # a refund revokes within 1 s of the publish
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await hub.send(group, seal_delta(Delta(1, 12, NOW, "refund", WhitelistEntry(2, PERF, 3, revoked=True)),
                                         signer))
        await eventually(lambda: gate.store.whitelist_seq == 12, timeout=1.0, what="refund within 1 s")
        assert loop.time() - t0 < 1.0
        assert (await gate.checker.scan(token(signer, 2))).reason is Reason.REVOKED
        # a replayed old delta changes nothing
        await hub.send(group, seal_delta(Delta(1, 11, NOW, "sale", WhitelistEntry(2, PERF, 3)), signer))
        # a delta signed by another key is refused
        await hub.send(group, seal_delta(Delta(1, 13, NOW, "sale", WhitelistEntry(60, PERF, 3)), Signer.generate(1)))
        # a snapshot signed by another key is refused
        await hub.send(T.device_whitelist(ME), seal_snapshot(snapshot([], seq=99), Signer.generate(1)))
        await hub.send(group, b"\x00garbage")
        # a gap asks for a re-sync
        syncs = len(hub.syncs)
        await hub.send(group, seal_delta(Delta(1, 15, NOW, "sale", WhitelistEntry(61, PERF, 3)), signer))
        await eventually(lambda: len(hub.syncs) > syncs, what="sync request after a gap")
        assert hub.syncs[-1].have_seq == 12
        assert gate.store.whitelist_seq == 12 and gate.store.entry_count() == 6
        assert gate.store.entry(2).revoked and gate.store.entry(60) is None  # type: ignore[union-attr]
        assert gate.link.connected.is_set()


async def test_events_arrive_in_order_and_leave_the_outbox_only_on_a_signed_ack(
        tmp_path: Path, broker: Mosquitto, signer: Signer, keyring: Keyring) -> None:
    async with fake_hub(broker.port, signer, auto_ack=False, devices=registry(tmp_path)) as hub, \
            running_gate(tmp_path, broker.port, keyring) as gate:
        await asyncio.wait_for(gate.link.connected.wait(), 5)
        await install(hub, gate)
        sent = [(await gate.checker.scan(token(signer, i))).event_id for i in (1, 2, 3)]
        await eventually(lambda: len(hub.events) == 3, what="3 events at the hub")
        assert [e.event_id for e in hub.events] == sent and [e.seq for e in hub.events] == [0, 1, 2]
        assert hub.events[0].reason is Reason.ADMITTED and hub.events[0].device_id == ME
        assert hub.refused == []  # every batch verified under the gate's device key
        # a forged ack, an ack for another device, and garbage delete nothing
        await hub.ack(ME, sent, signer=Signer.generate(1))
        await hub.ack("gate-2", sent)
        await hub.send(T.ack(ME), b'{"device_id":"gate-1","event_ids":[]}')
        await asyncio.sleep(0.3)
        assert gate.store.outbox_count() == 3
        # unacknowledged batches are re-sent
        await eventually(lambda: len(hub.batches) >= 2, what="a re-sent batch")
        await hub.ack(ME, sent[:2])
        await eventually(lambda: gate.store.outbox_count() == 1, what="two events acknowledged")
        await hub.ack(ME, sent[2:])
        await eventually(lambda: gate.store.outbox_count() == 0, what="outbox empty")
        assert len(gate.store.journal()) == 3


async def test_broker_down_scans_still_decided_then_outbox_drains_in_order(
        tmp_path: Path, broker: Mosquitto, signer: Signer, keyring: Keyring) -> None:
    async with running_gate(tmp_path, broker.port, keyring) as gate:
        async with fake_hub(broker.port, signer, devices=registry(tmp_path)) as hub:
            await asyncio.wait_for(gate.link.connected.wait(), 5)
            await install(hub, gate, n=20)
            await gate.checker.scan(token(signer, 1))
            await eventually(lambda: gate.store.outbox_count() == 0, what="first event acknowledged")
        broker.kill()
        await eventually(lambda: not gate.link.connected.is_set(), what="link notices")
        offline = [await gate.checker.scan(token(signer, i)) for i in range(2, 12)]
        assert all(e.reason is Reason.ADMITTED for e in offline)
        assert gate.store.outbox_count() == 10
        broker.start()
        async with fake_hub(broker.port, signer, devices=registry(tmp_path)) as hub:
            await eventually(lambda: gate.store.outbox_count() == 0, timeout=10, what="outbox drained")
            assert [e.event_id for e in hub.events] == [e.event_id for e in offline]
            assert [e.seq for e in hub.events] == list(range(1, 11))
            await eventually(lambda: hub.syncs and hub.syncs[-1].have_seq == 10, what="re-sync on reconnect")


async def test_an_acked_event_counts_here_until_the_echoing_delta_arrives(
        tmp_path: Path, broker: Mosquitto, signer: Signer, keyring: Keyring) -> None:
    async with fake_hub(broker.port, signer, devices=registry(tmp_path)) as hub, \
            running_gate(tmp_path, broker.port, keyring) as gate:
        await asyncio.wait_for(gate.link.connected.wait(), 5)
        await install(hub, gate)
        hub.echo_seq = 11  # the hub: "your event is in the counts from whitelist seq 11 on"
        mine = await gate.checker.scan(token(signer, 1))
        await eventually(lambda: gate.store.outbox_count() == 0, what="acknowledged")
        assert [(e["event_id"], e["echo_seq"]) for e in gate.store.usage_events()] == [(mine.event_id, 11)]
        assert (await gate.checker.scan(token(signer, 1))).reason is Reason.ALREADY_USED  # still ours
        await hub.send(T.group_whitelist(1), seal_delta(Delta(1, 11, NOW, "used", WhitelistEntry(1, PERF, 3, used=1)),
                                                        signer))
        await eventually(lambda: gate.store.whitelist_seq == 11)
        assert gate.store.usage_events() == [] and gate.store.history(1).events == ()
        assert (await gate.checker.scan(token(signer, 1))).reason is Reason.ALREADY_USED  # now the hub's
        # an echo the gate never receives (lost delta): it asks for what it misses
        hub.echo_seq = 12
        syncs = len(hub.syncs)
        await gate.checker.scan(token(signer, 2))
        await eventually(lambda: len(hub.syncs) > syncs, timeout=6, what="a sync request for the echoing delta")
        assert hub.syncs[-1].have_seq == 11
