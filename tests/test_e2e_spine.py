"""The spine, end to end: sell a ticket, check it in at a gate (offline if need be), see it at the hub.

Real Mosquitto, the real hub process, real gate agent processes reading a socat pty as their scanner.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.keys import Signer
from protocol.token import TicketToken, encode_token, parse_token
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import GateProcess, HubProcess
from tests.support.scenario import Show, sell


def events_at_hub(hub: HubProcess, **params: Any) -> list[dict[str, Any]]:
    body = hub.call("GET", "/checkins", params={"limit": 10000, **params})
    return list(body["items"] if isinstance(body, dict) else body)


@pytest.fixture
def hub(hub_process: HubProcess) -> HubProcess:
    return hub_process


@pytest.fixture
def gates(broker: Mosquitto, hub: HubProcess, show: Show, tmp_path: Path) -> Iterator[list[GateProcess]]:
    procs = [GateProcess(tmp_path / f"gate-{i}", f"gate-{i}", broker.port, hub.keys_file,
                         show.group_id, show.channel_id) for i in (1, 2)]
    try:
        for p in procs:
            p.register(hub).start()
        yield procs
    finally:
        for p in procs:
            p.stop_all()


def gate_is_current(gate: GateProcess, hub: HubProcess, group_id: int) -> bool:
    """The gate reports (in its heartbeat) the group's current whitelist sequence number."""
    groups = hub.call("GET", "/checkin-groups")
    seq = next(g["seq"] for g in groups if g["id"] == group_id)
    return any(d["device_id"] == gate.device_id and d["whitelist_seq"] == seq for d in hub.call("GET", "/devices"))


def test_sell_scan_admit_and_see_it_at_the_hub(hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    gate = gates[0]
    ticket = sell(hub, show, persons=2)
    assert len(ticket["token"]) <= 120
    wait_for(lambda: gate_is_current(gate, hub, show.group_id), what="the sale to reach the gate")
    decision = gate.scan(ticket["token"])
    assert decision.reason == "admitted" and decision.ticket_id == ticket["id"]
    assert gate.scan(ticket["token"]).reason == "already_used"

    recorded = wait_for(lambda: len(events_at_hub(hub, ticket_id=ticket["id"])) >= 2 and
                        events_at_hub(hub, ticket_id=ticket["id"]), what="both events at the hub")
    assert sorted(e["reason"] for e in recorded) == ["admitted", "already_used"]
    assert all(e["device_id"] == gate.device_id for e in recorded)


def test_forged_altered_and_wrong_channel_tickets_are_rejected(
        hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    gate = gates[0]
    ticket = sell(hub, show)
    staff_ticket = sell(hub, show, ticket_type=show.staff_type)
    token, _, _ = parse_token(ticket["token"])
    forged = encode_token(token, Signer.generate(kid=token.kid))
    altered = ticket["token"][:30] + ("B" if ticket["token"][30] != "B" else "C") + ticket["token"][31:]
    invented = encode_token(TicketToken(999999, show.performance_id, show.adult_type, 0, 2**32 - 1),
                            Signer.generate(kid=token.kid))
    wait_for(lambda: gate_is_current(gate, hub, show.group_id), what="the gate to hold both sales")
    assert gate.scan(forged).reason == "forged"
    assert gate.scan(altered).reason in ("forged", "malformed")
    assert gate.scan(invented).reason == "forged"
    assert gate.scan(staff_ticket["token"]).reason == "wrong_channel"
    assert gate.scan(ticket["token"]).reason == "admitted"


def test_refund_reaches_the_gate_within_a_second(hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    gate = gates[0]
    keep, refund = sell(hub, show), sell(hub, show)
    wait_for(lambda: gate_is_current(gate, hub, show.group_id), what="the gate to hold both sales")
    hub.call("POST", f"/tickets/{refund['id']}/refund", json={"reason": "patron request"})
    time.sleep(1.0)
    assert gate.scan(refund["token"]).reason == "revoked"
    assert gate.scan(keep["token"]).reason == "admitted"


def test_broker_down_gate_keeps_deciding_and_hub_gets_every_event_once(
        broker: Mosquitto, hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    gate = gates[0]
    tickets = [sell(hub, show) for _ in range(5)]
    wait_for(lambda: gate_is_current(gate, hub, show.group_id), what="the gate to hold five sales")

    broker.kill()
    offline = [gate.scan(t["token"]).reason for t in tickets]
    offline.append(gate.scan(tickets[0]["token"]).reason)
    offline.append(gate.scan("garbage from a dirty lens").reason)
    assert offline == ["admitted"] * 5 + ["already_used", "malformed"]
    broker.start()

    events = wait_for(lambda: len(events_at_hub(hub, device_id=gate.device_id)) >= 7 and
                      events_at_hub(hub, device_id=gate.device_id), timeout=20, what="the outbox to drain")
    time.sleep(1.0)  # let any duplicate re-send arrive before counting
    events = events_at_hub(hub, device_id=gate.device_id)
    assert len(events) == 7
    assert len({e["event_id"] for e in events}) == 7
    assert Counter(e["reason"] for e in events) == {"admitted": 5, "already_used": 1, "malformed": 1}


def test_sigkill_mid_stream_loses_no_decided_event(
        broker: Mosquitto, hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    gate = gates[0]
    tickets = [sell(hub, show) for _ in range(20)]
    wait_for(lambda: gate_is_current(gate, hub, show.group_id), what="the gate to hold the sales")
    broker.kill()  # nothing can be delivered: everything decided must survive in the gate's store
    decided = [gate.scan(t["token"]) for t in tickets[:10]]
    gate.kill()
    broker.start()
    gate.start()
    decided += [gate.scan(t["token"]) for t in tickets[10:]]
    assert [d.reason for d in decided] == ["admitted"] * 20

    events = wait_for(lambda: len(events_at_hub(hub, device_id=gate.device_id)) >= 20 and
                      events_at_hub(hub, device_id=gate.device_id), timeout=20, what="all 20 events")
    assert sorted(e["ticket_id"] for e in events) == sorted(t["id"] for t in tickets)


def test_same_ticket_admitted_offline_at_two_gates_is_flagged_as_a_conflict(
        broker: Mosquitto, hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    ticket = sell(hub, show)
    for gate in gates:
        wait_for(lambda g=gate: gate_is_current(g, hub, show.group_id), what=f"{gate.device_id} whitelist")
    broker.kill()
    assert [g.scan(ticket["token"]).reason for g in gates] == ["admitted", "admitted"]
    broker.start()
    events = wait_for(lambda: len(events_at_hub(hub, ticket_id=ticket["id"])) >= 2 and
                      events_at_hub(hub, ticket_id=ticket["id"]), timeout=20, what="both admissions")
    assert sorted(bool(e["conflict"]) for e in events) == [False, True]
    assert len(events_at_hub(hub, conflict=True)) == 1


def test_garbage_scanner_lines_are_journalled_and_the_gate_keeps_working(
        hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    gate = gates[0]
    ticket = sell(hub, show)
    wait_for(lambda: gate_is_current(gate, hub, show.group_id), what="the sale at the gate")
    for junk in (b"\xff\xfe\x00\x01binary", b"x" * 2000, b"SELECT * FROM tickets;--", "票".encode()):
        assert gate.scan(junk).reason == "malformed"
    assert gate.scan(ticket["token"]).reason == "admitted"
    assert gate.alive()


def test_heartbeat_reports_each_part_and_an_unplugged_scanner(
        hub: HubProcess, show: Show, gates: list[GateProcess]) -> None:
    gate = gates[0]

    def health() -> dict[str, str]:
        row = next((d for d in hub.call("GET", "/devices") if d["device_id"] == gate.device_id), None)
        return (row or {}).get("health") or {}

    wait_for(lambda: health().get("scanner") == "ok", what="the scanner reported ok")
    gate.scanner.stop()  # the USB scanner is pulled out
    wait_for(lambda: health().get("scanner") == "missing", what="the scanner reported missing")
    gate.scanner.start()  # and plugged back in
    wait_for(lambda: health().get("scanner") == "ok", what="the scanner back to ok")
    ticket = sell(hub, show)
    wait_for(lambda: gate_is_current(gate, hub, show.group_id), what="the sale at the gate")
    assert gate.scan(ticket["token"]).reason == "admitted"
