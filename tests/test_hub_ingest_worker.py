"""Event batches are stored in the hub's ingest child process (hub/ingest_worker.py, the default ``[ingest]
process = true``; issue 13 item 0): stored and acked after the commit; a child that dies (kill -9) is logged,
"failed" in GET /api/v1/health, started again, and batches sent afterwards are stored and acked; the batches it
had in hand are not acked, and the gate's re-sends store every event exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.envelope import open_envelope
from protocol.keys import Keyring
from protocol.messages import KIND_ACK
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import HubProcess
from tests.support.resending_gate import ACCEPT_UNREGISTERED, ResendingGate
from tests.support.scenario import Show, seed_show, sell

_STARTED = re.compile(r"ingest worker started \(pid (\d+)\)")


@pytest.fixture(name="hub")
def hub_fixture(tmp_path: Path, broker: Mosquitto) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "hub", broker.port)
    with hub.config.open("a") as f:
        f.write(ACCEPT_UNREGISTERED)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        hub.api.close()


def worker_pids(hub: HubProcess) -> list[int]:
    return [int(p) for p in _STARTED.findall(hub.logs())]


def health(hub: HubProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(hub.base_url + "/api/v1/health", timeout=5).json()
    return body


def stored(hub: HubProcess, device: str) -> int:
    body = hub.call("GET", "/reports/checkins/detail", params={"device_id": device, "with_total": "true",
                                                                "limit": 1})
    return int(body["total"])


def test_batches_are_stored_and_acked_by_the_child_process(hub: HubProcess, broker: Mosquitto) -> None:
    pids = wait_for(lambda: worker_pids(hub), timeout=20, what="the ingest worker started")
    assert hub.proc is not None and pids[0] != hub.proc.pid
    show: Show = seed_show(hub)
    ticket = sell(hub, show)
    gate = ResendingGate("gate-1", show, events=450, admit=[ticket["id"]])  # 3 batches
    asyncio.run(gate.run(broker.port, seconds=30))
    assert gate.acks == [1, 1, 1] and gate.sends == [1, 1, 1]
    assert stored(hub, "gate-1") == 450
    assert hub.call("GET", f"/tickets/{ticket['id']}")["used"] == 1  # counted in the child, in the same transaction
    assert health(hub)["tasks"]["ingest-worker"] == "ok"
    # the acks are sealed in the child with the hub's control key
    keyring = Keyring.from_b64({int(k): v for k, v in json.loads(hub.keys_file.read_text()).items()})
    kinds = {open_envelope(p, keyring)[0] for p in gate.ack_payloads}
    assert kinds == {KIND_ACK}


def test_killing_the_child_is_logged_shown_in_health_and_it_comes_back(hub: HubProcess, broker: Mosquitto) -> None:
    first = wait_for(lambda: worker_pids(hub), timeout=20, what="the ingest worker started")[0]
    show = seed_show(hub)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: health(hub)["tasks"].get("ingest-worker") == "failed", timeout=10,
             what="the ingest worker's death in the health")
    assert health(hub)["status"] == "degraded"
    assert "task ingest-worker failed" in hub.logs() and "exit code -9" in hub.logs()
    pids = wait_for(lambda: worker_pids(hub)[1:], timeout=30, what="a new ingest worker")
    assert pids[0] != first
    gate = ResendingGate("gate-2", show, events=200)
    asyncio.run(gate.run(broker.port, seconds=30))
    assert gate.acks == [1] and stored(hub, "gate-2") == 200


def test_batches_in_hand_when_the_child_dies_are_not_acked_and_stored_once_when_re_sent(
        hub: HubProcess, broker: Mosquitto) -> None:
    first = wait_for(lambda: worker_pids(hub), timeout=20, what="the ingest worker started")[0]
    show = seed_show(hub)
    gate = ResendingGate("gate-3", show, events=10_000, resend_after=4.0)  # 50 batches

    def kill_after_some(_i: int) -> None:
        if gate.acked() == 5:
            os.kill(first, signal.SIGKILL)

    gate.on_ack = kill_after_some
    asyncio.run(gate.run(broker.port, seconds=90))
    assert len(worker_pids(hub)) >= 2  # it died mid-burst and was replaced
    print(f"50 batches: {sum(gate.sends) - len(gate.sends)} re-sent, acks per batch {sorted(set(gate.acks))}")
    assert stored(hub, "gate-3") == 10_000  # every event once (storing is idempotent by event id)
    assert all(gate.acks) and sum(gate.sends) >= len(gate.sends)
    logs = hub.logs()
    assert "not acked, the devices will re-send" in logs or sum(gate.sends) == len(gate.sends), logs[-3000:]
