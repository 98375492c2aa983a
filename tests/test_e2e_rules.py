"""Check-in rules as an operator would use them, end to end: the real hub process, real Mosquitto and real
``python -m gate_agent`` processes reading a socat pty as their scanner; only public interfaces (the hub's
HTTP API, MQTT through the gate agents, the serial scanner). The machine runs on UTC (tests/conftest.py),
the venues on Asia/Shanghai. To cross the venue's midnight a gate runs under libfaketime.

One broker and one hub serve the whole module (each test sets up its own venue, performance and group);
tests that take the broker away bring it back before they end. Every gate is registered at the hub with
its own key, group and channel before it starts, as ops would.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pytest
from gpiozero.pins.mock import MockFactory

from confkit.enrolment import device_key
from gate_agent.app import run_gate
from gate_agent.config import GateConfig
from protocol.localtime import next_midnight
from protocol.messages import GateStatus, dump_message
from protocol.printing import PrinterCondition
from protocol.topics import Topics
from tests.gate_helpers import eventually
from tests.support.broker import Mosquitto
from tests.support.devices import register
from tests.support.faketime import libfaketime
from tests.support.net import wait_for
from tests.support.processes import GateProcess, HubProcess
from tests.support.serial_pty import PtyPair

SHANGHAI = "Asia/Shanghai"


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosq = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosq.start()
    try:
        yield mosq
    finally:
        mosq.stop()


@pytest.fixture(scope="module")
def hub(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    proc = HubProcess(tmp_path_factory.mktemp("hub"), mosquitto.port)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        proc.api.close()


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Iterator[Mosquitto]:
    """The module's broker; running again when the test ends, whatever the test did to it."""
    yield mosquitto
    if mosquitto.proc is None:
        mosquitto.start()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class Venue:
    """One venue set up through the API: a performance, adult + child types, a group with one channel."""

    def __init__(self, hub: HubProcess, doors: float, starts: float, ends: float, tz: str = SHANGHAI,
                 max_entries: int = 1) -> None:
        self.hub = hub
        self.venue = hub.call("POST", "/venues", json={"name": "Grand Theatre 大剧院", "timezone": tz})["id"]
        self.performance = hub.call("POST", "/performances", json={
            "venue_id": self.venue, "name": "Swan Lake", "doors_open": iso(doors), "starts_at": iso(starts),
            "ends_at": iso(ends)})["id"]
        self.adult = hub.call("POST", "/ticket-types", json={"name": "Adult", "name_zh": "成人票",
                                                             "price_cents": 28000})["id"]
        self.group = self.new_group("Main hall 主厅")
        self.channel = self.new_channel(self.group, "Gate A", max_entries)

    def new_group(self, name: str, **more: Any) -> int:
        gid: int = self.hub.call("POST", "/checkin-groups", json={
            "name": name, "venue_id": self.venue, "performance_ids": [self.performance], **more})["id"]
        return gid

    def new_channel(self, group: int, name: str, max_entries: int = 1) -> int:
        cid: int = self.hub.call("POST", f"/checkin-groups/{group}/channels", json={
            "name": name, "ticket_type_ids": [self.adult], "max_entries": max_entries})["id"]
        return cid

    def rules(self, rules: dict[str, Any], channel: int | None = None, **more: Any) -> Any:
        return self.hub.call("PUT", f"/channels/{channel or self.channel}/rules", json={"rules": rules, **more})

    def sell(self, persons: int = 1) -> dict[str, Any]:
        ticket: dict[str, Any] = self.hub.call("POST", "/tickets", json={
            "performance_id": self.performance, "ticket_type_id": self.adult, "persons": persons,
            "holder_name": "张三", "holder_phone": "13800000000"})
        return ticket

    def gate(self, tmp_path: Path, broker: Mosquitto, gates: list[GateProcess], device_id: str,
             group: int | None = None, channel: int | None = None, start: bool = True, **kwargs: Any) -> GateProcess:
        g = GateProcess(tmp_path / device_id, device_id, broker.port, self.hub.keys_file, group or self.group,
                        channel or self.channel, **kwargs)
        gates.append(g)
        g.register(self.hub)
        if start:
            g.start()
        return g

    def seq(self, group: int | None = None) -> int:
        return int(next(g["seq"] for g in self.hub.call("GET", "/checkin-groups") if g["id"] == (group or self.group)))

    def current(self, g: GateProcess, group: int | None = None, timeout: float = 10) -> None:
        """Wait until the gate reports (in its heartbeat) the group's current whitelist seq."""
        def ok() -> bool:
            seq = self.seq(group)
            return any(d["device_id"] == g.device_id and d["whitelist_seq"] == seq
                       for d in self.hub.call("GET", "/devices"))
        wait_for(ok, timeout=timeout, interval=0.05, what=f"{g.device_id} to hold seq {self.seq(group)}")

    def events(self, **params: Any) -> list[dict[str, Any]]:
        body = self.hub.call("GET", "/checkins", params={"limit": 1000, **params})
        return list(body["items"] if isinstance(body, dict) else body)

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        out: dict[str, Any] = self.hub.call("GET", f"/tickets/{ticket_id}")
        return out


def journal(g: GateProcess) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{g.data_dir / 'gate.db'}?mode=ro", uri=True) as db:
        return [json.loads(r[0]) for r in db.execute("SELECT event FROM journal ORDER BY seq")]


# --- 1. entries per venue day, across the venue's midnight --------------------------------------------------


def test_once_a_day_pass_is_refused_until_the_venue_midnight_then_admitted(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    lib = libfaketime()
    midnight = next_midnight(time.time(), SHANGHAI)  # the venue's next midnight, real time
    v = Venue(hub, midnight - 3600, midnight - 1800, midnight + 5 * 3600)
    v.rules({"max_entries": 10, "entries_per_day": 1})
    ticket = v.sell()
    offset = (midnight - 7) - time.time()  # the gate's clock: 23:59:53 in Shanghai at start
    g = v.gate(tmp_path, broker, gates, "gate-d", env={"TZ": "UTC", "LD_PRELOAD": lib, "FAKETIME": f"{offset:+.3f}"})
    v.current(g)
    first, second = g.scan(ticket["token"]), g.scan(ticket["token"])
    assert (first.reason, second.reason) == ("admitted", "daily_limit")
    day = datetime.fromtimestamp(midnight, ZoneInfo(SHANGHAI)).strftime("%m-%d")
    assert f"今日已入场，下次入场时间 {day} 00:00 / Already entered today. Next entry from {day} 00:00." in g.output()
    assert all(e["scanned_at"] < midnight for e in journal(g)), "the gate started too slowly"
    wait_for(lambda: time.time() + offset > midnight + 0.3, timeout=15, what="the venue's midnight")
    assert g.scan(ticket["token"]).reason == "admitted"  # a new venue day (16:00 UTC on the gate's clock)
    assert g.scan(ticket["token"]).reason == "daily_limit"
    wait_for(lambda: v.ticket(ticket["id"])["used"] == 2, timeout=10, what="two entries at the hub")
    assert v.events(conflict=True, group_id=v.group) == []


# --- 2. the window follows a moved performance ------------------------------------------------------------


def venue_hhmm(ts: float, tz: str = SHANGHAI) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%H:%M")


def test_moving_a_performance_reaches_an_online_gate_within_a_second(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600)
    early, late = v.sell(), v.sell()
    g = v.gate(tmp_path, broker, gates, "gate-m")
    v.current(g)
    assert g.scan(early["token"]).reason == "admitted"
    later = time.time() + 7200
    t0 = time.monotonic()
    hub.call("PATCH", f"/performances/{v.performance}", json={
        "doors_open": iso(later), "starts_at": iso(later + 1800), "ends_at": iso(later + 9000)})
    v.current(g, timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert g.scan(late["token"]).reason == "too_early"
    # "Admission from 19:30", or "from 12-03 01:45" when the new time is on the venue's next day
    assert re.search(rf"Admission from (\d\d-\d\d )?{venue_hhmm(later)}", g.output()), g.output()
    # back to now: the same token (sold for the old times) is admitted again for the new ones
    hub.call("PATCH", f"/performances/{v.performance}", json={
        "doors_open": iso(now - 600), "starts_at": iso(now + 600), "ends_at": iso(now + 3600)})
    v.current(g, timeout=1.0)
    assert g.scan(late["token"]).reason == "admitted"


def test_a_ticket_sold_for_tomorrow_is_admitted_when_the_show_is_brought_forward(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now + 86400, now + 86400 + 1800, now + 86400 + 9000)
    at_gate, online = v.sell(), v.sell()
    g = v.gate(tmp_path, broker, gates, "gate-f")
    v.current(g)
    assert g.scan(at_gate["token"]).reason == "too_early"
    hub.call("PATCH", f"/performances/{v.performance}", json={
        "doors_open": iso(now - 600), "starts_at": iso(now + 600), "ends_at": iso(now + 3600)})
    v.current(g, timeout=1.0)
    assert g.scan(at_gate["token"]).reason == "admitted"  # its token says tomorrow; the rules say now
    checked = hub.call("POST", "/checkins/online", json={"token": online["token"], "channel_id": v.channel})
    assert checked["reason"] == "admitted", checked


# --- 3. a two-entry ticket: online at one gate, offline at another; exact totals afterwards -------------------


def test_two_entry_ticket_counted_once_online_and_once_offline(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600, max_entries=2)
    ticket, other = v.sell(), v.sell()
    a, b = v.gate(tmp_path, broker, gates, "gate-a"), v.gate(tmp_path, broker, gates, "gate-b")
    v.current(a)
    v.current(b)
    assert a.scan(ticket["token"]).reason == "admitted"
    assert a.scan(other["token"]).reason == "admitted"
    wait_for(lambda: v.ticket(ticket["id"])["used"] == 1, what="the entry at the hub")
    v.current(a)
    v.current(b)  # the hub's echo (a "used" delta) reached both gates
    broker.stop()
    assert [b.scan(ticket["token"]).reason for _ in range(2)] == ["admitted", "already_used"]
    assert [a.scan(other["token"]).reason for _ in range(2)] == ["admitted", "already_used"]
    broker.start()
    wait_for(lambda: len(v.events(ticket_id=ticket["id"])) == 3 and len(v.events(ticket_id=other["id"])) == 3,
             timeout=20, interval=0.1, what="every event at the hub")
    v.current(a, timeout=20)
    v.current(b, timeout=20)
    assert v.ticket(ticket["id"])["used"] == 2 and v.ticket(other["id"])["used"] == 2
    assert v.events(conflict=True, group_id=v.group) == []
    for g in (a, b):  # nobody counts an entry twice or forgets one after the reconnect
        assert g.scan(ticket["token"]).reason == "already_used"
        assert g.scan(other["token"]).reason == "already_used"
    rows = v.events(ticket_id=ticket["id"])
    assert sorted((r["device_id"], r["reason"]) for r in rows) == [
        ("gate-a", "admitted"), ("gate-a", "already_used"), ("gate-b", "admitted"), ("gate-b", "already_used"),
        ("gate-b", "already_used")]


# --- 4. two offline admissions of a single-entry ticket: the later scan is the conflict ---------------------


def test_offline_double_admission_flags_the_later_scan_whichever_arrives_first(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600)
    ticket = v.sell()
    a, b = v.gate(tmp_path, broker, gates, "gate-c1"), v.gate(tmp_path, broker, gates, "gate-c2")
    v.current(a)
    v.current(b)
    broker.stop()
    assert a.scan(ticket["token"]).reason == "admitted"  # the earlier scan
    time.sleep(0.05)
    assert b.scan(ticket["token"]).reason == "admitted"  # the later one
    a.stop()  # gate A stays away while B reports first
    broker.start()
    wait_for(lambda: len(v.events(ticket_id=ticket["id"])) == 1, timeout=20, interval=0.1, what="B's admission")
    assert [r["conflict"] for r in v.events(ticket_id=ticket["id"])] == [False]  # alone, it is no conflict yet
    a.start()
    wait_for(lambda: len(v.events(ticket_id=ticket["id"])) == 2, timeout=20, interval=0.1, what="A's admission")
    rows = v.events(ticket_id=ticket["id"])
    assert [(r["device_id"], r["conflict"]) for r in rows] == [("gate-c2", True), ("gate-c1", False)]  # newest first
    assert rows[0]["received_at"] < rows[1]["received_at"]  # B arrived first, yet is the conflict
    flagged = v.events(conflict=True, group_id=v.group)
    assert [(r["device_id"], r["ticket_id"]) for r in flagged] == [("gate-c2", ticket["id"])]
    assert v.ticket(ticket["id"])["used"] == 2  # both got in: counted as they happened
    v.current(a)
    v.current(b)
    assert [g.scan(ticket["token"]).reason for g in (a, b)] == ["already_used", "already_used"]


# --- 5. exits give the entry back, unless re-entry is refused ---------------------------------------------


def test_exit_at_a_handheld_then_reentry_at_the_gate(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600)
    ticket, stray, strict = v.sell(), v.sell(), v.sell()
    gate = v.gate(tmp_path, broker, gates, "gate-e")
    out = v.gate(tmp_path, broker, gates, "hh-out", env={"GATE__KIND": "handheld", "GATE__DIRECTION": "exit"})
    v.current(gate)
    assert gate.scan(ticket["token"]).reason == "admitted"
    assert gate.scan(ticket["token"]).reason == "already_used"
    wait_for(lambda: v.ticket(ticket["id"])["used"] == 1, what="the entry at the hub")
    assert (out.scan(ticket["token"]).reason, out.scan(stray["token"]).reason) == ("exit", "exit")
    wait_for(lambda: any(r["direction"] == "exit" for r in v.events(ticket_id=ticket["id"])), what="the exit")
    v.current(gate)
    assert gate.scan(ticket["token"]).reason == "admitted"  # one entry back per exit
    assert gate.scan(ticket["token"]).reason == "already_used"
    assert gate.scan(stray["token"]).reason == "admitted"  # a stray exit gave nothing back
    assert gate.scan(stray["token"]).reason == "already_used"
    wait_for(lambda: v.ticket(ticket["id"])["used"] == 2, what="both entries at the hub")

    v.rules({"reentry": False})
    v.current(gate)
    assert gate.scan(strict["token"]).reason == "admitted"
    v.current(gate)
    assert out.scan(strict["token"]).reason == "exit"
    wait_for(lambda: any(r["direction"] == "exit" for r in v.events(ticket_id=strict["id"])), what="the exit")
    v.current(gate)
    assert gate.scan(strict["token"]).reason == "no_reentry"
    assert "Re-entry is not allowed after leaving." in gate.output() and "离场后不可再次入场" in gate.output()
    checked = hub.call("POST", "/checkins/online", json={"token": strict["token"], "channel_id": v.channel})
    assert checked["reason"] == "no_reentry"
    assert v.events(conflict=True, group_id=v.group) == []


# --- 6. a group ticket, partly annulled on a turnstile ----------------------------------------------------


ENTRY_RELAY, ENTRY_SENSOR = 17, 27


async def test_group_ticket_where_only_two_of_four_pass_admits_the_other_two_later(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path) -> None:
    now = time.time()
    v = await asyncio.to_thread(Venue, hub, now - 1800, now + 600, now + 3 * 3600)
    at_gate, at_hub = await asyncio.to_thread(v.sell, 4), await asyncio.to_thread(v.sell, 4)
    scanner = PtyPair(tmp_path / "gate-t", "scanner")
    scanner.start()
    (tmp_path / "gate-t" / "data").mkdir(parents=True)
    await asyncio.to_thread(register, lambda path, body: hub.call("POST", path, json=body), "gate-t", v.group,
                            v.channel, key=device_key(tmp_path / "gate-t" / "data"))
    cfg = GateConfig(device_id="gate-t", group_id=v.group, channel_id=v.channel, data_dir=tmp_path / "gate-t" / "data",
                     hub_keys_file=hub.keys_file, status_interval=0.5, mqtt={"port": broker.port},
                     scanner={"url": str(scanner.device)}, actuator={"kind": "turnstile"},
                     turnstile={"passage_timeout": 0.5, "pulse_ms": 50, "short_beep_ms": 20, "long_beep_ms": 20})
    factory = MockFactory()
    stop = asyncio.Event()
    task = asyncio.create_task(run_gate(cfg, stop, pin_factory=factory))

    def rows() -> list[tuple[str, Any]]:
        with sqlite3.connect(f"file:{cfg.data_dir / 'gate.db'}?mode=ro", uri=True) as db:
            return [(r[0], json.loads(r[1])) for r in db.execute("SELECT json_extract(event, '$.reason'), event "
                                                                  "FROM journal ORDER BY seq")]

    def pulses() -> int:
        return [s.state for s in factory.pin(ENTRY_RELAY).states][1:].count(False)  # active-low relay

    async def scan(token: str) -> dict[str, Any]:
        before = len(await asyncio.to_thread(rows))
        scanner.write_line(token)
        await eventually(lambda: len(rows()) > before, timeout=10, what="the gate's decision")
        return rows()[before][1]

    async def two_pass(ticket: dict[str, Any]) -> None:
        base = pulses()
        first = await scan(ticket["token"])
        assert (first["reason"], first["persons"]) == ("admitted", 4)
        sensor = factory.pin(ENTRY_SENSOR)
        for n in (1, 2):
            await eventually(lambda n=n: pulses() >= base + n, timeout=10, what=f"release pulse {n}")
            await asyncio.to_thread(lambda: (sensor.drive_low(), sensor.drive_high()))
        await eventually(lambda: any(r == "annulled" and e["ticket_id"] == ticket["id"] for r, e in rows()),
                         timeout=10, what="the annulment of the other two")

    def hub_rows(ticket_id: int) -> list[dict[str, Any]]:
        return sorted(v.events(ticket_id=ticket_id), key=lambda r: (r["device_id"], r["device_seq"]))

    try:
        await asyncio.to_thread(wait_for, lambda: any(d["device_id"] == "gate-t" and d["whitelist_seq"] == v.seq()
                                                      for d in hub.call("GET", "/devices")), 10, 0.05, "the whitelist")
        await two_pass(at_gate)
        annul = [e for r, e in rows() if r == "annulled"][-1]
        assert annul["persons"] == 2
        base = pulses()
        again = await scan(at_gate["token"])
        assert (again["reason"], again["persons"], again.get("credit")) == ("admitted", 2, True)
        for n in (1, 2):
            await eventually(lambda n=n: pulses() >= base + n, timeout=10, what=f"given-back release pulse {n}")
            await asyncio.to_thread(lambda: (factory.pin(ENTRY_SENSOR).drive_low(),
                                             factory.pin(ENTRY_SENSOR).drive_high()))
        await asyncio.sleep(0.8)  # longer than passage_timeout: nothing more is annulled
        assert [r for r, _ in rows()].count("annulled") == 1
        third = await scan(at_gate["token"])
        assert third["reason"] == "already_used", third
        await asyncio.to_thread(wait_for, lambda: len(hub_rows(at_gate["id"])) == 4, 10, 0.05, "the events at the hub")
        assert [(r["reason"], r["persons"], r["credit"]) for r in hub_rows(at_gate["id"])] == [
            ("admitted", 4, False), ("annulled", 2, False), ("admitted", 2, True), ("already_used", 0, False)]
        detail = await asyncio.to_thread(v.ticket, at_gate["id"])
        assert detail["used"] == 1

        await two_pass(at_hub)
        await asyncio.to_thread(wait_for, lambda: len(hub_rows(at_hub["id"])) == 2, 10, 0.05, "the annulment")
        checked = await asyncio.to_thread(hub.call, "POST", "/checkins/online",
                                          json={"token": at_hub["token"], "channel_id": v.channel})
        assert (checked["reason"], checked["persons"], checked["credit"]) == ("admitted", 2, True), checked
        checked = await asyncio.to_thread(hub.call, "POST", "/checkins/online",
                                          json={"token": at_hub["token"], "channel_id": v.channel})
        assert checked["reason"] == "already_used", checked
        assert v.events(conflict=True, group_id=v.group) == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        factory.close()
        scanner.stop()


# --- 7. tickets sold while a gate was offline ------------------------------------------------------------


def test_tickets_sold_while_the_gate_was_offline(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600)
    v.sell()
    gate = v.gate(tmp_path, broker, gates, "gate-u")
    v.current(gate)
    broker.stop()
    fresh, refunded, later = v.sell(), v.sell(), v.sell()  # the hub sells on; the gate cannot hear it
    hub.call("POST", f"/tickets/{refunded['id']}/refund", json={"reason": "patron request"})
    assert [gate.scan(t["token"]).reason for t in (fresh, refunded, later)] == ["admitted"] * 3
    assert gate.scan(fresh["token"]).reason == "already_used"
    assert [e.get("unlisted", False) for e in journal(gate)] == [True, True, True, False]
    broker.start()
    wait_for(lambda: len(v.events(device_id="gate-u")) == 4, timeout=20, interval=0.1, what="the gate's events")
    flags = {r["ticket_id"]: (r["unlisted"], r["conflict"]) for r in v.events(device_id="gate-u")
             if r["reason"] == "admitted"}
    assert flags == {fresh["id"]: (True, False), refunded["id"]: (True, True), later["id"]: (True, False)}
    assert [r["ticket_id"] for r in v.events(conflict=True, group_id=v.group)] == [refunded["id"]]
    v.current(gate)
    assert gate.scan(refunded["token"]).reason == "revoked"
    assert gate.scan(later["token"]).reason == "already_used"

    hub.call("PATCH", f"/checkin-groups/{v.group}", json={"admit_unlisted": False})
    v.current(gate)
    broker.stop()
    unwanted = v.sell()
    refusal = gate.scan(unwanted["token"])
    assert refusal.reason != "admitted", refusal
    broker.start()


# --- 8. counting scopes: separate groups count apart, linked groups together ---------------------------------


def test_separate_groups_count_apart_and_linked_groups_together(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600)
    lounge = v.new_group("Lounge 贵宾厅")
    lounge_channel = v.new_channel(lounge, "Lounge door")
    both, linked = v.sell(), v.sell()
    hall = v.gate(tmp_path, broker, gates, "gate-h")
    door = v.gate(tmp_path, broker, gates, "gate-l", group=lounge, channel=lounge_channel)
    v.current(hall)
    v.current(door, lounge)
    assert hall.scan(both["token"]).reason == "admitted"
    wait_for(lambda: v.ticket(both["id"])["used"] == 1, what="the hall entry at the hub")
    v.current(door, lounge)
    assert door.scan(both["token"]).reason == "admitted"  # the lounge counts on its own
    wait_for(lambda: v.ticket(both["id"])["used"] == 2, what="the lounge entry at the hub")
    assert v.events(conflict=True, group_id=v.group) == [] and v.events(conflict=True, group_id=lounge) == []

    hub.call("PATCH", f"/checkin-groups/{lounge}", json={"counter_group_id": v.group})
    # linking replays: the lounge admission the joint count would have refused becomes the conflict
    flagged = v.events(conflict=True, group_id=lounge)
    assert [(r["device_id"], r["ticket_id"]) for r in flagged] == [("gate-l", both["id"])]
    v.current(door, lounge)
    v.current(hall)
    assert hall.scan(linked["token"]).reason == "admitted"
    wait_for(lambda: v.ticket(linked["id"])["used"] == 1, what="the hall entry at the hub")
    v.current(door, lounge)
    assert door.scan(linked["token"]).reason == "already_used"  # counted with the hall now
    checked = hub.call("POST", "/checkins/online", json={"token": linked["token"], "channel_id": lounge_channel})
    assert checked["reason"] == "already_used"
    assert door.scan(both["token"]).reason == "already_used" and hall.scan(both["token"]).reason == "already_used"


# --- 9. collecting a used e-ticket at the kiosk: the printed replacement carries the entries ------------------


def test_printed_replacement_of_a_used_eticket_is_refused(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600)
    hub.call("PUT", f"/channels/{v.channel}/rules", json={"rules": {}, "by_type": {str(v.adult): {"max_entries": 2}}})
    once = hub.call("POST", "/tickets", json={
        "performance_id": v.performance, "ticket_type_id": v.adult, "persons": 1, "holder_name": "王小明",
        "holder_phone": "13900000000", "collection_code": "USED2345"})
    gate = v.gate(tmp_path, broker, gates, "gate-k")
    v.current(gate)
    assert [gate.scan(once["token"]).reason for _ in range(3)] == ["admitted", "admitted", "already_used"]
    wait_for(lambda: v.ticket(once["id"])["used"] == 2, what="both entries at the hub")

    printer = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="printer-k", protocol=paho.MQTTv5)
    printer.connect("127.0.0.1", broker.port)
    printer.loop_start()
    try:
        status = GateStatus(device_id="printer-k", state="online", at=time.time(), kind="printer",
                            printer=PrinterCondition(online=True).model_dump())
        printer.publish(Topics().status("printer-k"), dump_message(status), qos=1, retain=True).wait_for_publish()
        hub.call("POST", "/users", json={"username": "kiosk-k", "password": "kiosk-password-1", "role": "kiosk"})
        login = hub.api.post("/auth/login", json={"username": "kiosk-k", "password": "kiosk-password-1"}).json()
        box = {"Authorization": f"Bearer {login['token']}"}
        wait_for(lambda: hub.api.get("/kiosk/printers/printer-k", headers=box).json()["in_service"],
                 what="the printer in service")
        found = hub.api.post("/kiosk/lookup/code", json={"code": "USED2345"}, headers=box).json()
        collected = hub.api.post("/kiosk/collect", headers=box, json={
            "lookup_token": found["lookup_token"], "ticket_ids": [once["id"]], "printer_id": "printer-k"})
        assert collected.status_code == 200, collected.text
        (job,) = collected.json()["jobs"]
    finally:
        printer.loop_stop()
        printer.disconnect()
    printed = hub.call("GET", f"/tickets/{job['ticket_id']}/token")["token"]
    assert printed != once["token"]
    assert v.ticket(job["ticket_id"])["used"] == 2
    v.current(gate)
    assert gate.scan(printed).reason == "already_used"  # one purchase, two entries, both used
    assert gate.scan(once["token"]).reason == "revoked"
    checked = hub.call("POST", "/checkins/online", json={"token": printed, "channel_id": v.channel})
    assert checked["reason"] == "already_used", checked


# --- 10. supervisor override on a handheld ---------------------------------------------------------------


def test_supervisor_pin_force_admits_on_a_handheld_and_the_hub_stores_who_and_why(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    v = Venue(hub, now - 1800, now + 600, now + 3 * 3600)
    ticket = v.sell()
    pin = "60428137"
    sup = hub.call("POST", "/supervisors", json={"name": "Wang Fang", "pin": pin})
    assert "pin" not in json.dumps(hub.call("GET", "/supervisors")).replace('"has_pin"', "")
    hh = v.gate(tmp_path, broker, gates, "hh-s", env={"GATE__KIND": "handheld"})
    v.current(hh)
    assert hh.scan(ticket["token"]).reason == "admitted"
    assert hh.scan(ticket["token"]).reason == "already_used"
    assert hh.scan("#11112222").reason == "wrong_pin"
    forced = hh.scan(f"#{pin}")
    assert (forced.reason, forced.ticket_id, forced.forced_by) == ("admitted", ticket["id"], "Wang Fang")
    wait_for(lambda: any(e["forced_by"] for e in v.events(ticket_id=ticket["id"])),
             what="the forced admission at the hub")
    forced_row = next(r for r in v.events(ticket_id=ticket["id"]) if r["forced_by"])
    assert (forced_row["reason"], forced_row["denied"], forced_row["conflict"]) == ("admitted", "already_used", False)
    wait_for(lambda: v.ticket(ticket["id"])["used"] == 2, what="the forced entry counted")
    for path in (hh.stdout_path, hh.stderr_path, hub.stderr_path, hub.stdout_path):
        assert pin not in path.read_text(errors="replace"), path
    # retired, the supervisor's PIN no longer works
    hub.call("PATCH", f"/supervisors/{sup['id']}", json={"retired": True})
    v.current(hh)
    assert hh.scan(ticket["token"]).reason == "already_used"
    assert hh.scan(f"#{pin}").reason in ("wrong_pin", "no_supervisor")


# --- rules that name another gate, and the venue's own calendar -------------------------------------------


def test_latecomers_are_sent_to_gate_c_and_a_new_venue_zone_moves_the_weekday(
        hub: HubProcess, broker: Mosquitto, tmp_path: Path, gates: list[GateProcess]) -> None:
    now = time.time()
    east, west = "Pacific/Kiritimati", "Pacific/Pago_Pago"  # 25 hours apart: never the same weekday
    v = Venue(hub, now - 3600, now - 600, now + 3 * 3600, tz=east)  # curtain up ten minutes ago
    gate_c = v.new_channel(v.group, "Gate C")
    v.rules({"latecomers": False})
    v.rules({"latecomers": True}, channel=gate_c)
    late, walk_in, weekend = v.sell(), v.sell(), v.sell()
    a = v.gate(tmp_path, broker, gates, "gate-late")
    c = v.gate(tmp_path, broker, gates, "gate-cc", channel=gate_c)
    v.current(a)
    v.current(c)
    assert a.scan(late["token"]).reason == "latecomer"
    assert "Latecomers please use Gate C." in a.output() and "迟到观众请走 Gate C" in a.output(), a.output()
    checked = hub.call("POST", "/checkins/online", json={"token": walk_in["token"], "channel_id": v.channel})
    assert checked["reason"] == "latecomer" and "Gate C" in checked["text_en"] and "Gate C" in checked["text_zh"]
    assert c.scan(late["token"]).reason == "admitted"

    today_east = datetime.fromtimestamp(time.time(), ZoneInfo(east)).isoweekday()
    v.rules({"weekdays": [today_east]}, channel=gate_c)
    v.current(c, timeout=1.0)
    t0 = time.monotonic()
    hub.call("PATCH", f"/venues/{v.venue}", json={"timezone": west})  # same instant, the day before there
    v.current(c, timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert c.scan(weekend["token"]).reason == "not_today"
    hub.call("PATCH", f"/venues/{v.venue}", json={"timezone": east})
    v.current(c, timeout=1.0)
    assert c.scan(weekend["token"]).reason == "admitted"
