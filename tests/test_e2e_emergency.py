"""Emergency release end to end at the gate: real Mosquitto, the test plays the hub with a real ``Signer``
sealing :class:`EmergencyCommand` (the gate's contract is the protocol), gate agents as processes and
one in this test's loop on a ``MockFactory`` so the test can read its relays and drive its fire input.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from gate_agent.app import run_gate
from gate_agent.config import GateConfig
from gate_agent.sim import FIRE_FILE
from protocol.emergency import EmergencyCommand
from protocol.envelope import seal
from protocol.keys import Signer
from protocol.messages import KIND_ACK
from tests.gate_helpers import FakeHub, device_public_key, eventually, fake_hub, token, write_keys
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import GateProcess
from tests.support.serial_pty import PtyPair

ENTRY_RELAY, EXIT_RELAY, FIRE = 17, 18, 5
RELEASED, LOCKED = False, True  # active-low relay board


def command(seq: int, *, open_all: bool = False, groups: frozenset[int] = frozenset()) -> EmergencyCommand:
    return EmergencyCommand(seq, time.time(), "security-1", "evacuation drill", open_all, groups)


def confirmed(hub: FakeHub, device: str, state: str, seq: int) -> bool:
    last = hub.last_emergency(device)
    return last is not None and (last.state, last.seq) == (state, seq)


# ---- several gate agents as processes ------------------------------------------------------------


@pytest.fixture
def gates(broker: Mosquitto, signer: Signer, tmp_path: Path) -> Iterator[list[GateProcess]]:
    keys = write_keys(tmp_path / "keys.json", signer)
    layout = [("gate-1", 1, 1), ("gate-2", 1, 2), ("gate-3", 2, 3)]  # (device, group, channel)
    procs = [GateProcess(tmp_path / d, d, broker.port, keys, g, c) for d, g, c in layout]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop_all()


async def test_open_all_scope_forgery_replay_and_clear(broker: Mosquitto, signer: Signer,
                                                       gates: list[GateProcess]) -> None:
    ids = [g.device_id for g in gates]
    registry = {g.device_id: device_public_key(g.data_dir) for g in gates}
    async with fake_hub(broker.port, signer, devices=registry) as hub:
        await eventually(lambda: all(confirmed(hub, d, "normal", 0) for d in ids), what="initial states")
        open_all = command(1, open_all=True)
        started = time.perf_counter()
        await hub.command(open_all)
        await eventually(lambda: all(confirmed(hub, d, "open", 1) for d in ids), what="every gate open")
        print(f"open-all confirmed by {len(ids)} gates in {(time.perf_counter() - started) * 1000:.0f} ms")
        assert {s.cause for s in hub.emergency if s.seq == 1} == {"command"}

        # checking stops: the scan is journalled as "emergency", shown, and reaches the hub
        decision = await asyncio.to_thread(gates[0].scan, token(signer, 77))
        assert (decision.reason, decision.ticket_id) == ("emergency", 77)
        event = await eventually(lambda: next((e for e in hub.events if e.ticket_id == 77), None), what="the event")
        assert (event.reason, event.persons, event.admitted) == ("emergency", 0, False)

        await hub.command(command(2, groups=frozenset({2})))  # only group 2's gates stay open
        await eventually(lambda: confirmed(hub, "gate-3", "open", 2) and confirmed(hub, "gate-1", "normal", 2)
                         and confirmed(hub, "gate-2", "normal", 2), what="the scoped state")

        count = len(hub.emergency)
        await hub.command(command(3, open_all=True), signer=Signer.generate(kid=signer.kid))  # forged
        await hub.command(command(3, open_all=True), kind=KIND_ACK)  # well signed, wrong kind
        await asyncio.sleep(0.5)
        assert len(hub.emergency) == count  # refused: nothing changed, nothing confirmed
        await hub.client.publish(hub.topics.emergency_command(), seal("emergency.command", open_all.to_wire(),
                                                                      signer), qos=1, retain=True)  # replay of 1
        await eventually(lambda: len(hub.emergency) >= count + 3, what="re-confirmations")
        assert all(confirmed(hub, d, s, 2) for d, s in zip(ids, ("normal", "normal", "open"), strict=True))
        assert "emergency command refused" in gates[0].logs()

        await hub.command(command(4))
        await eventually(lambda: all(confirmed(hub, d, "normal", 4) for d in ids), what="all back to normal")
    assert gates[0].scan(token(signer, 78)).reason != "emergency"


# ---- one gate in this loop: relays, the fire input with the broker down ---------------------------


def gate_db(cfg: GateConfig, sql: str) -> list[Any]:
    with sqlite3.connect(f"file:{cfg.data_dir / 'gate.db'}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
async def turnstile_gate(broker: Mosquitto, signer: Signer, tmp_path: Path
                         ) -> AsyncIterator[tuple[GateConfig, MockFactory, PtyPair]]:
    scanner = PtyPair(tmp_path / "gate", "scanner")
    scanner.start()
    cfg = GateConfig(device_id="gate-f", data_dir=tmp_path / "gate" / "data",
                     hub_keys_file=write_keys(tmp_path / "keys.json", signer), status_interval=0.5,
                     mqtt={"port": broker.port}, scanner={"url": str(scanner.device)}, actuator={"kind": "turnstile"},
                     turnstile={"short_beep_ms": 10, "long_beep_ms": 10},
                     emergency={"fire_input_pin": FIRE, "fire_contact": "no"})
    factory = MockFactory()
    stop = asyncio.Event()
    task = asyncio.create_task(run_gate(cfg, stop, pin_factory=factory))
    try:
        yield cfg, factory, scanner
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        factory.close()
        scanner.stop()


async def test_fire_input_opens_with_the_broker_down_and_is_reported_after(
        broker: Mosquitto, signer: Signer, turnstile_gate: tuple[GateConfig, MockFactory, PtyPair]) -> None:
    cfg, factory, scanner = turnstile_gate
    relay = factory.pin(ENTRY_RELAY)
    registry = {cfg.device_id: device_public_key(cfg.data_dir)}
    async with fake_hub(broker.port, signer, devices=registry) as hub:
        await eventually(lambda: confirmed(hub, "gate-f", "normal", 0), what="the initial state")
    broker.stop()
    await asyncio.to_thread(factory.pin(FIRE).drive_low)  # the fire panel closes its contact: alarm
    await eventually(lambda: relay.state is RELEASED and factory.pin(EXIT_RELAY).state is RELEASED,
                     what="the turnstile to open with no network")
    assert '"state":"open"' in gate_db(cfg, "SELECT value FROM meta WHERE key = 'emergency'")[0][0]
    scanner.write_line(token(signer, 5))
    await eventually(lambda: gate_db(cfg, "SELECT json_extract(event, '$.reason') FROM journal"), what="the scan")
    broker.start()
    async with fake_hub(broker.port, signer, devices=registry) as hub:
        await eventually(lambda: (s := hub.last_emergency("gate-f")) is not None and s.state == "open"
                         and s.cause == "fire", timeout=10, what="the fire state at the hub")
        await eventually(lambda: any(e.reason == "emergency" and e.ticket_id == 5 for e in hub.events),
                         what="the emergency scan at the hub")
        await asyncio.to_thread(factory.pin(FIRE).drive_high)  # the alarm is reset: latched, still open
        await asyncio.sleep(0.2)
        assert relay.state is RELEASED
        await hub.command(command(1))  # the hub clears, after the alarm, with the input back to normal
        await eventually(lambda: confirmed(hub, "gate-f", "normal", 1), what="the clear")
        assert relay.state is LOCKED
        for seq in range(2, 12):  # open, clear, open, ...: each confirmed, the relay following (timing: bench/)
            await hub.command(command(seq, open_all=seq % 2 == 0))
            await eventually(lambda seq=seq: confirmed(hub, "gate-f", "open" if seq % 2 == 0 else "normal", seq),
                             what=f"command {seq}")
            assert relay.state is (RELEASED if seq % 2 == 0 else LOCKED)


# ---- SIGKILL during an emergency: the agent restarts open, before its link connects ----------------


async def test_killed_during_a_fire_alarm_restarts_open(broker: Mosquitto, signer: Signer, tmp_path: Path) -> None:
    gate = GateProcess(tmp_path / "sim", "gate-s", broker.port, write_keys(tmp_path / "keys.json", signer), 1, 1,
                       extra_args=("--sim",), extra_config='[rfid]\npath = "udp:localhost:18899"\n')
    try:
        gate.start()
        async with fake_hub(broker.port, signer, devices={"gate-s": device_public_key(gate.data_dir)}) as hub:
            await eventually(lambda: confirmed(hub, "gate-s", "normal", 0), what="the initial state")
            (gate.data_dir / FIRE_FILE).touch()  # --sim: the fire panel's contact opens
            await eventually(lambda: confirmed(hub, "gate-s", "open", 0), what="the fire alarm at the hub")
            assert "EMERGENCY: arms free both ways" in gate.output()
            gate.kill()
            (gate.data_dir / FIRE_FILE).unlink()  # the alarm is reset while the agent is down
            before = len(gate.logs())
            await asyncio.to_thread(gate.start)
            await eventually(lambda: "MQTT connected" in gate.logs()[before:], what="the link after the restart")
            log = gate.logs()[before:]
            restored, connected = log.index("restored OPEN"), log.index("MQTT connected")
            assert restored < log.index("turnstile ready") < connected  # open before anything else starts
            assert restored < log.index("gate ready")
            await hub.command(command(1))
            await eventually(lambda: confirmed(hub, "gate-s", "normal", 1), what="the clear after the restart")
            wait_for(lambda: "emergency cleared" in gate.output(), what="the turnstile back to normal")
    finally:
        gate.stop_all()
