"""Check-in rules decided by a real ``python -m gate_agent`` offline, against a real Mosquitto.

The gate process runs with ``TZ=UTC``; the venue is on Asia/Shanghai. To cross the venue's midnight in
a real process the gate runs under libfaketime (Debian package ``faketime``) with a constant offset:
its clock reads a few seconds before 2026-12-02 00:00 Shanghai (2026-12-01T16:00Z) at start, and the
test scans before and after that instant. The fake hub (tests/gate_helpers.py) seals the snapshot and
deltas with a real Signer; the broker is stopped once the gate has its whitelist, and restarted at the
end to show the outbox still drains under the fake clock.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

from protocol.keys import Signer
from protocol.rules import EntryRules
from protocol.supervisor import Supervisor, hash_pin
from protocol.topics import Topics
from protocol.usage import Usage
from protocol.whitelist import ChannelRules, Delta, GroupRules, Schedule, Snapshot, WhitelistEntry
from tests.gate_helpers import (
    ADULT,
    CHANNEL,
    CHILD,
    GROUP,
    PERF,
    FakeHub,
    device_public_key,
    eventually,
    fake_hub,
    seal_delta,
    seal_snapshot,
    token,
    write_keys,
)
from tests.support.broker import Mosquitto
from tests.support.faketime import libfaketime
from tests.support.net import wait_for
from tests.support.processes import GateProcess

VENUE = "Asia/Shanghai"
MIDNIGHT = 1_796_140_800  # 2026-12-02 00:00 Asia/Shanghai = 2026-12-01T16:00:00Z
LONG = Schedule(MIDNIGHT - 5 * 86400, MIDNIGHT - 5 * 86400 + 1800, MIDNIGHT + 5 * 86400)
PIN = "80417253"
T = Topics()


def journal(gate: GateProcess) -> list[dict[str, object]]:
    with sqlite3.connect(gate.data_dir / "gate.db") as db:
        return [json.loads(r[0]) for r in db.execute("SELECT event FROM journal ORDER BY seq")]


async def online(hub: FakeHub, gate: GateProcess) -> None:
    """Subscribed: the gate announces itself online only after subscribing to its whitelist topics."""
    await eventually(lambda: (s := hub.last_status(gate.device_id)) is not None and s.state == "online",
                     timeout=10, what=f"{gate.device_id} online")


async def start_offline(gate: GateProcess, broker: Mosquitto, signer: Signer, snap: Snapshot,
                        deltas: tuple[Delta, ...] = ()) -> None:
    """Start the gate, hand it its whitelist over MQTT, then take the broker away."""
    async with fake_hub(broker.port, signer, devices={gate.device_id: device_public_key(gate.data_dir)}) as hub:
        await asyncio.to_thread(gate.start)
        await online(hub, gate)
        await hub.send(T.device_whitelist(gate.device_id), seal_snapshot(snap, signer))
        await asyncio.to_thread(wait_for, lambda: f"snapshot {snap.seq} installed" in gate.logs(), 10, 0.02,
                                "snapshot installed")
        for d in deltas:
            await hub.send(T.group_whitelist(GROUP), seal_delta(d, signer))
            await asyncio.to_thread(wait_for, lambda d=d: f"whitelist delta {d.seq} applied" in gate.logs(), 10,
                                    0.02, f"delta {d.seq}")
    broker.stop()


async def test_an_offline_gate_counts_days_on_the_venue_clock_across_midnight(
        tmp_path: Path, broker: Mosquitto, signer: Signer, gates: list[GateProcess]) -> None:
    lib = libfaketime()
    rules = GroupRules(GROUP, frozenset({PERF}), {CHANNEL: ChannelRules(CHANNEL, frozenset({ADULT, CHILD}), by_type={
        ADULT: EntryRules(max_entries=10, entries_per_day=1),
        CHILD: EntryRules(max_entries=5, cooldown_minutes=30, reentry=False)})}, VENUE, {PERF: LONG})
    left = Usage(entries=1, exits=1, last_entry=MIDNIGHT - 7200, last_exit=MIDNIGHT - 3600)
    entries = [WhitelistEntry(6, PERF, CHILD), WhitelistEntry(7, PERF, ADULT),
               WhitelistEntry(8, PERF, CHILD, used=1, usage=left)]
    offset = (MIDNIGHT - 14) - time.time()  # the gate's clock: 23:59:46 in Shanghai now, 15:59:46 UTC
    gate = GateProcess(tmp_path / "gate", "gate-m", broker.port, write_keys(tmp_path / "keys.json", signer),
                       GROUP, CHANNEL, env={"TZ": "UTC", "LD_PRELOAD": lib, "FAKETIME": f"{offset:+.3f}"})
    gates.append(gate)
    await start_offline(gate, broker, signer, Snapshot(GROUP, 10, MIDNIGHT, rules, entries))

    def scan(ticket: int, ttype: int = ADULT) -> str:
        return gate.scan(token(signer, ticket, ttype=ttype, now=MIDNIGHT)).reason

    before = [scan(7), scan(7), scan(8, CHILD), scan(6, CHILD), scan(6, CHILD), scan(50)]
    assert before == ["admitted", "daily_limit", "no_reentry", "admitted", "cooldown", "admitted"]
    wait_for(lambda: time.time() + offset > MIDNIGHT + 0.5, timeout=20, what="the venue's midnight")
    after = [scan(7), scan(6, CHILD)]
    assert after == ["admitted", "cooldown"]  # a new venue day; the cool-down runs on across it
    events = journal(gate)
    assert all(float(e["scanned_at"]) < MIDNIGHT for e in events[:6]), "the gate started too slowly"  # type: ignore[arg-type]
    assert all(float(e["scanned_at"]) > MIDNIGHT for e in events[6:])  # type: ignore[arg-type]
    assert [e.get("unlisted", False) for e in events] == [False] * 5 + [True, False, False]
    out = gate.output()
    assert "今日已入场，下次入场时间 12-02 00:00 / Already entered today. Next entry from 12-02 00:00." in out
    # admitted between 23:59:46 and midnight: the cool-down ends at 00:29, shown on the venue's clock
    assert "刚刚已入场，00:29 后可再次入场 / Entered a moment ago. Next entry from 00:29." in out
    # its process clock is on UTC (logs show 15:59 then 16:00), while the venue day turned at 16:00 UTC
    assert '"time": "2026-12-01T15:59:' in gate.logs()
    # back online under the fake clock: MQTT reconnects and the outbox drains, in order
    broker.start()
    async with fake_hub(broker.port, signer, devices={gate.device_id: device_public_key(gate.data_dir)}) as hub:
        await asyncio.to_thread(wait_for, lambda: len(hub.events) == len(events), 20, 0.05, "all events delivered")
        assert [e.event_id for e in hub.events] == [e["event_id"] for e in events]
        assert hub.refused == []  # every batch verified under the gate's device key


async def test_an_offline_gate_follows_a_moved_performance_and_a_handheld_overrides(
        tmp_path: Path, broker: Mosquitto, signer: Signer, gates: list[GateProcess]) -> None:
    now = time.time()
    doors = int(now + 3600)
    sup = (Supervisor(1, "Wang", hash_pin(PIN, iterations=5000)),)

    def rules(doors_open: int) -> GroupRules:
        channel = ChannelRules(CHANNEL, frozenset({ADULT}), entry=EntryRules(max_entries=1, before_doors_minutes=10))
        return GroupRules(GROUP, frozenset({PERF}), {CHANNEL: channel}, VENUE,
                          {PERF: Schedule(doors_open, doors_open + 1800, doors_open + 9000)}, supervisors=sup)

    moved = Delta(GROUP, 11, now, "rules", rules=rules(int(now - 60)))  # doors now a minute ago
    gate = GateProcess(tmp_path / "hh", "hh-1", broker.port, write_keys(tmp_path / "keys.json", signer),
                       GROUP, CHANNEL, env={"TZ": "UTC", "GATE__KIND": "handheld"})
    gates.append(gate)
    snap = Snapshot(GROUP, 10, now, rules(doors), [WhitelistEntry(7, PERF, ADULT, persons=2),
                                                   WhitelistEntry(9, PERF, ADULT, used=1)])
    async with fake_hub(broker.port, signer, devices={gate.device_id: device_public_key(gate.data_dir)}) as hub:
        await asyncio.to_thread(gate.start)
        await online(hub, gate)
        await hub.send(T.device_whitelist(gate.device_id), seal_snapshot(snap, signer))
        await asyncio.to_thread(wait_for, lambda: "snapshot 10 installed" in gate.logs(), 10, 0.02, "snapshot")
        early = await asyncio.to_thread(gate.scan, token(signer, 7, persons=2, now=now))
        assert early.reason == "too_early"
        await hub.send(T.group_whitelist(GROUP), seal_delta(moved, signer))
        await asyncio.to_thread(wait_for, lambda: "whitelist delta 11 applied" in gate.logs(), 10, 0.02, "moved")
    broker.stop()
    assert gate.scan(token(signer, 7, persons=2, now=now)).reason == "admitted"  # same token, new doors time
    assert "尚未开始检票" in gate.output() and "Admission from" in gate.output()
    # supervisor override of a refusal: a wrong PIN says so; the right one force-admits
    assert gate.scan(token(signer, 9, now=now)).reason == "already_used"
    assert gate.scan("#12345678").reason == "wrong_pin"
    assert "主管密码错误" in gate.output() and "Wrong supervisor PIN" in gate.output()
    forced = gate.scan(f"#{PIN}")
    assert (forced.reason, forced.ticket_id, forced.forced_by) == ("admitted", 9, "Wang")
    events = journal(gate)
    assert [(e["reason"], e.get("forced_by"), e.get("denied")) for e in events] == [
        ("too_early", None, None), ("admitted", None, None), ("already_used", None, None),
        ("admitted", "Wang", "already_used")]
    assert all(PIN not in path.read_text(errors="replace") for path in (gate.stderr_path, gate.stdout_path))
    for path in gate.data_dir.iterdir():
        assert PIN.encode() not in path.read_bytes() and b"12345678" not in path.read_bytes(), path


async def test_a_handheld_in_exit_mode_reports_exits_tied_to_the_ticket(
        tmp_path: Path, broker: Mosquitto, signer: Signer, gates: list[GateProcess]) -> None:
    now = time.time()
    rules = GroupRules(GROUP, frozenset({PERF}), {CHANNEL: ChannelRules(CHANNEL, frozenset({ADULT}))}, VENUE,
                       {PERF: Schedule(int(now - 3600), int(now - 1800), int(now + 7200))})
    gate = GateProcess(tmp_path / "exit", "hh-x", broker.port, write_keys(tmp_path / "keys.json", signer),
                       GROUP, CHANNEL, env={"TZ": "UTC", "GATE__KIND": "handheld", "GATE__DIRECTION": "exit"})
    gates.append(gate)
    await start_offline(gate, broker, signer, Snapshot(GROUP, 10, now, rules, [WhitelistEntry(7, PERF, ADULT, 3)]))
    decisions = [gate.scan(t) for t in (token(signer, 7, persons=3, now=now), "not a ticket",
                                        token(signer, 7, perf=41, now=now))]
    assert [(d.reason, d.ticket_id) for d in decisions] == [("exit", 7), ("exit", None), ("exit", None)]
    events = journal(gate)
    assert [(e["reason"], e["direction"], e.get("ticket_id"), e["persons"]) for e in events] == [
        ("exit", "exit", 7, 3), ("exit", "exit", None, 1), ("exit", "exit", None, 1)]
    assert "↩ EXIT ticket 7 ×3 — 再见" in gate.output()
