"""``--sim``: the whole gate on hardware-free backends, as the README's main command runs it.

A real hub and Mosquitto; the gate agent process with a MockFactory turnstile and a simulated patron,
a camera reading an image folder, and an nfcpy ``udp`` reader answered by an emulated card.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.camera_frames import printed_ticket
from tests.support.broker import Mosquitto
from tests.support.net import free_port, stop_process, wait_for
from tests.support.processes import GateProcess, HubProcess
from tests.support.scenario import Show, sell

CARD_IDM = "0102030405060708"


@dataclass
class SimGate:
    gate: GateProcess
    rfid_port: int  # where the gate's nfcpy udp reader looks for a card

    def tap(self, *emulator_args: str) -> None:
        """Hold an emulated card on the reader until the gate has decided it."""
        card = subprocess.Popen([sys.executable, "-m", "tests.nfc_emulator", str(self.rfid_port), *emulator_args],
                                stdout=subprocess.PIPE)
        try:
            before = len(self.gate.decisions())
            wait_for(lambda: len(self.gate.decisions()) > before, timeout=15, what="a card read")
        finally:
            stop_process(card)


@pytest.fixture
def sim(hub_process: HubProcess, show: Show, broker: Mosquitto, tmp_path: Path) -> Iterator[SimGate]:
    port = free_port()
    gate = GateProcess(tmp_path / "gate", "gate-sim", broker.port, hub_process.keys_file, show.group_id,
                       show.channel_id, extra_args=("--sim",),
                       extra_config=f'[rfid]\npath = "udp:localhost:{port}"\n[turnstile]\nsim_patron_delay = 0.2\n')
    gate.register(hub_process).start()
    try:
        yield SimGate(gate, port)
    finally:
        gate.stop_all()


def hub_events(hub: HubProcess, **params: object) -> list[dict[str, object]]:
    return list(hub.call("GET", "/checkins", params=params))


def show_to_camera(gate: GateProcess, token: str) -> Path:
    image = gate.data_dir / "sim-camera" / "phone.png"
    frame = printed_ticket(token, np.random.default_rng(7))
    assert cv2.imwrite(str(image.with_suffix(".tmp.png")), frame)
    image.with_suffix(".tmp.png").rename(image)  # appear whole, as a phone held up does
    return image


def test_sim_gate_turns_the_turnstile_reads_the_camera_and_a_card(
        hub_process: HubProcess, show: Show, sim: SimGate) -> None:
    hub, gate = hub_process, sim.gate
    group_ticket, camera_ticket, nfc_ticket = sell(hub, show, persons=2), sell(hub, show), sell(hub, show)
    now = datetime.now(UTC)
    hub.call("POST", "/cards", json={
        "uid": CARD_IDM, "kind": "annual", "holder_name": "李雷", "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat(), "channel_ids": [show.channel_id],
        "entries_per_day": 1})
    seq = next(g["seq"] for g in hub.call("GET", "/checkin-groups") if g["id"] == show.group_id)
    wait_for(lambda: any(d["device_id"] == gate.device_id and d["whitelist_seq"] == seq
                         for d in hub.call("GET", "/devices")), what="the sim gate to be current")
    health = next(d["health"] for d in hub.call("GET", "/devices") if d["device_id"] == gate.device_id)
    assert health["turnstile"] == "ok" and health["scanner"] == "ok"

    # serial scanner -> relay -> the simulated patrons walk through: both passages confirm the entry
    assert gate.scan(group_ticket["token"]).reason == "admitted"
    wait_for(lambda: "passage 2/2" in gate.output(), what="two passages")

    # a phone held up to the camera
    image = show_to_camera(gate, camera_ticket["token"])
    wait_for(lambda: any(d.ticket_id == camera_ticket["id"] for d in gate.decisions()), timeout=10,
             what="the camera scan")
    image.unlink()

    # an NFC ticket, then an annual pass with only its UID
    sim.tap(CARD_IDM[::-1], nfc_ticket["token"])
    sim.tap(CARD_IDM)

    events = wait_for(lambda: len(hub_events(hub, device_id=gate.device_id)) >= 4 and
                      hub_events(hub, device_id=gate.device_id), timeout=15, what="the events at the hub")
    by_source = {(e["source"], e["reason"]) for e in events}
    assert {("serial", "admitted"), ("qr", "admitted"), ("nfc", "admitted")} <= by_source
    assert any(e.get("card_id") for e in events if e["source"] == "nfc")
    assert not [e for e in events if e["reason"] == "annulled"]
