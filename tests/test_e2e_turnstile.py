"""The turnstile end to end: real Mosquitto and hub process; the gate agent runs in this test's event loop
(``run_gate`` with a ``MockFactory``) so the test can play the patron on the turnstile's pins.

The scanner is a socat pty, as in the spine tests. Blocking HTTP calls to the hub go through
``asyncio.to_thread``: the gate shares this loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from confkit.enrolment import device_key, public_key_b64
from gate_agent.app import run_gate
from gate_agent.config import GateConfig
from tests.gate_helpers import eventually
from tests.support.broker import Mosquitto
from tests.support.processes import HubProcess
from tests.support.scenario import Show, seed_show, sell
from tests.support.serial_pty import PtyPair

ENTRY_RELAY, ENTRY_SENSOR = 17, 27
RELEASED = False  # the relay board is active-low


@pytest.fixture
def hub(hub_process: HubProcess) -> HubProcess:
    return hub_process


@dataclass
class Gate:
    """The gate agent on mock pins, and what a test can see of it."""

    cfg: GateConfig
    factory: MockFactory
    scanner: PtyPair

    def _db(self, sql: str, *args: Any) -> list[Any]:
        with sqlite3.connect(f"file:{self.cfg.data_dir / 'gate.db'}?mode=ro", uri=True) as db:
            return db.execute(sql, args).fetchall()

    def journal(self) -> list[str]:
        return [r[0] for r in self._db("SELECT json_extract(event, '$.reason') FROM journal ORDER BY seq")]

    def used(self, ticket_id: int) -> int | None:
        rows = self._db("SELECT used FROM entries WHERE ticket_id = ?", ticket_id)
        return int(rows[0][0]) if rows else None

    def relay_pulses(self) -> int:
        return [s.state for s in self.factory.pin(ENTRY_RELAY).states][1:].count(RELEASED)

    async def scan(self, token: str) -> str:
        """Scan one line; return the reason the gate journalled for it."""
        before = len(self.journal())
        self.scanner.write_line(token)
        await eventually(lambda: len(self.journal()) > before, what="the gate's decision")
        return self.journal()[before]

    async def patron_passes(self) -> None:
        """One person turns the arms: the sensor's edge comes from another thread, as on a Pi."""
        pin = self.factory.pin(ENTRY_SENSOR)
        await asyncio.to_thread(lambda: (pin.drive_low(), pin.drive_high()))


@pytest.fixture
async def gate(broker: Mosquitto, hub: HubProcess, tmp_path: Path) -> AsyncIterator[tuple[Gate, Show]]:
    show = await asyncio.to_thread(seed_show, hub)
    scanner = PtyPair(tmp_path / "gate", "scanner")
    scanner.start()
    cfg = GateConfig(device_id="gate-t1", group_id=show.group_id, channel_id=show.channel_id,
                     data_dir=tmp_path / "gate" / "data", hub_keys_file=hub.keys_file, status_interval=0.5,
                     mqtt={"port": broker.port}, scanner={"url": str(scanner.device)},
                     actuator={"kind": "turnstile"},
                     turnstile={"passage_timeout": 0.5, "pulse_ms": 50, "short_beep_ms": 20, "long_beep_ms": 20})
    # registered as ops would: its own key (made now where the gate finds it) with its group and channel
    await asyncio.to_thread(hub.call, "POST", "/provisioning/devices", json={
        "device_id": cfg.device_id, "kind": "gate", "site": "test hall",
        "public_key": public_key_b64(device_key(cfg.data_dir)), "group_id": show.group_id,
        "channel_id": show.channel_id})
    factory = MockFactory()
    stop = asyncio.Event()
    task = asyncio.create_task(run_gate(cfg, stop, pin_factory=factory))
    try:
        yield Gate(cfg, factory, scanner), show
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        factory.close()
        scanner.stop()


async def at_hub(hub: HubProcess, ticket_id: int) -> list[dict[str, Any]]:
    rows: Any = await asyncio.to_thread(hub.call, "GET", "/checkins", params={"ticket_id": ticket_id})
    items: list[dict[str, Any]] = rows["items"] if isinstance(rows, dict) else rows
    return sorted(items, key=lambda r: r["device_seq"])


async def hub_shows(hub: HubProcess, ticket_id: int, count: int) -> list[dict[str, Any]]:
    """Poll the hub (without blocking the loop) until it holds ``count`` events of the ticket."""
    rows: list[dict[str, Any]] = []
    for _ in range(200):  # 10 s
        rows = await at_hub(hub, ticket_id)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"the hub holds {rows} for ticket {ticket_id}, not {count} event(s)")


async def sold(hub: HubProcess, show: Show, g: Gate, persons: int = 1) -> dict[str, Any]:
    ticket: dict[str, Any] = await asyncio.to_thread(sell, hub, show, None, persons)
    await eventually(lambda: g.used(ticket["id"]) == 0, timeout=10, what="the sale at the gate")
    return ticket


async def test_scan_release_passage_is_one_checkin_at_the_hub(hub: HubProcess,
                                                              gate: tuple[Gate, Show]) -> None:
    g, show = gate
    ticket = await sold(hub, show, g, persons=2)
    assert await g.scan(ticket["token"]) == "admitted"
    for n in (1, 2):
        await eventually(lambda n=n: g.relay_pulses() == n, what=f"release pulse {n}")
        await g.patron_passes()
    await hub_shows(hub, ticket["id"], 1)
    await asyncio.sleep(1.0)  # longer than passage_timeout: an annulment would have reached the hub by now
    rows = await at_hub(hub, ticket["id"])
    assert [(r["reason"], r["persons"]) for r in rows] == [("admitted", 2)]
    assert g.journal() == ["admitted"]
    detail = await asyncio.to_thread(hub.call, "GET", f"/tickets/{ticket['id']}")
    assert detail["used"] == 1


async def test_scan_release_nobody_passes_is_annulled_at_the_hub(hub: HubProcess,
                                                                 gate: tuple[Gate, Show]) -> None:
    g, show = gate
    ticket = await sold(hub, show, g)
    assert await g.scan(ticket["token"]) == "admitted"
    await eventually(lambda: g.relay_pulses() == 1, what="the release pulse")
    # nobody comes: after passage_timeout the gate locks and annuls; the hub takes the admission back
    rows = await hub_shows(hub, ticket["id"], 2)
    assert [r["reason"] for r in rows] == ["admitted", "annulled"]
    assert rows[1]["annuls"] == rows[0]["event_id"] and rows[1]["persons"] == 1
    detail = await asyncio.to_thread(hub.call, "GET", f"/tickets/{ticket['id']}")
    assert detail["used"] == 0
    # the hub's "used" delta reaches the gate, and the patron may scan again
    await eventually(lambda: g.used(ticket["id"]) == 0, timeout=10, what="the give-back at the gate")
    assert await g.scan(ticket["token"]) == "admitted"
