"""Issue 11, items 5 and 6: a venue upgrades the hub first, then its gates, in place.

The previous release's device code is ``tests/fixtures/release-9a305d8.tar.gz`` (``git archive 9a305d8
protocol gate_agent confkit provisioning``: the release before device-signed batches). Its gate runs as a
real process against this hub: it still admits with this hub's whitelists and tokens, and its unsigned
batches are taken during the upgrade window (``[devices] accept_unsigned_until``). Then the gate is
upgraded on the same data directory: the events it queued under the old code are sent, signed, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import GateProcess, HubProcess
from tests.support.scenario import Show, seed_show, sell

PREVIOUS = Path(__file__).parent / "fixtures" / "release-9a305d8.tar.gz"


class PreviousReleaseGate(GateProcess):
    """The same gate, run by the previous release's code (its packages first on the path)."""

    def __init__(self, code: Path, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.code = code

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, cwd=self.code, env={
                **os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(self.code), **(env or {})})


@pytest.fixture(name="hub")
def hub_fixture(broker: Mosquitto, tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "hub", broker.port)
    hub.config.write_text(hub.config.read_text() + f"[devices]\naccept_unsigned_until = {time.time() + 3600}\n")
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        hub.api.close()


def used(hub: HubProcess, ticket_id: int) -> int:
    return int(hub.call("GET", f"/tickets/{ticket_id}")["used"])


def holds(hub: HubProcess, show: Show, device_id: str) -> bool:
    seq = next(g["seq"] for g in hub.call("GET", "/checkin-groups") if g["id"] == show.group_id)
    return any(d["device_id"] == device_id and d["whitelist_seq"] == seq for d in hub.call("GET", "/devices"))


def test_a_previous_release_gate_admits_with_this_hub_then_upgrades_without_losing_a_queued_event(
        tmp_path: Path, broker: Mosquitto, hub: HubProcess) -> None:
    code = tmp_path / "previous"
    with tarfile.open(PREVIOUS) as archive:
        archive.extractall(code, filter="data")
    assert not (code / "protocol" / "device_signed.py").exists()  # really the release before signing
    show = seed_show(hub)
    online, offline = sell(hub, show), sell(hub, show)
    old = PreviousReleaseGate(code, tmp_path / "gate", "gate-1", broker.port, hub.keys_file, show.group_id,
                              show.channel_id)
    old.register(hub)  # ops register it with the key its next release will use (made now in its data dir)
    try:
        old.start()
        wait_for(lambda: holds(hub, show, "gate-1"), timeout=15, what="the old gate holding this hub's whitelist")
        assert old.scan(online["token"]).reason == "admitted"
        wait_for(lambda: used(hub, online["id"]) == 1, timeout=10, what="its unsigned batch taken in the window")
        events = hub.call("GET", "/provisioning/security-events?device_id=gate-1")
        assert {e["what"] for e in events} == {"unsigned_accepted"}  # its batch (and emergency state), logged

        broker.stop()
        assert old.scan(offline["token"]).reason == "admitted"  # decided offline, queued by the old code
        old.stop()
    finally:
        old.stop_all()
    broker.start()
    new = GateProcess(tmp_path / "gate", "gate-1", broker.port, hub.keys_file, show.group_id, show.channel_id)
    try:
        new.start()  # this release on the old data directory
        wait_for(lambda: used(hub, offline["id"]) == 1, timeout=15, what="the queued event sent by the new code")
        assert used(hub, online["id"]) == 1
        checkins = hub.call("GET", "/checkins", params={"ticket_id": offline["id"]})
        assert len(checkins) == 1 and checkins[0]["device_id"] == "gate-1"
    finally:
        new.stop_all()
