"""A kiosk enrols like any device (issue 11): ``python -m kiosk_agent --bootstrap`` against a real hub.

As for the printer (tests/test_printer_enrolment.py): the broker is the conftest's anonymous one; the hub's
approval, the device id, the config ack and the commands go through the real hub and
:class:`confkit.device_agent.DeviceAgent` (:mod:`kiosk_agent.enrolled`), the state in ``kiosk.db``.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from confkit.storeschema import StoreTooNew
from kiosk_agent.store import SCHEMA, KioskStore
from protocol.provisioning import key_fingerprint
from tests.support.broker import Mosquitto
from tests.support.net import free_port, wait_for
from tests.support.processes import HubProcess, _Process


class KioskProcess(_Process):
    name = "kiosk"


def _bootstrap(tmp_path: Path, hub: HubProcess, broker: Mosquitto) -> Path:
    keys = json.loads(hub.keys_file.read_text())
    hub_keys = ", ".join(f'"{k}" = {{ key = "{v["key"]}", purposes = {json.dumps(v["purposes"])} }}'
                         for k, v in keys.items())
    path = tmp_path / "bootstrap.toml"
    path.write_text(
        f'serial = "KS-0400"\nkind = "kiosk"\nhardware_model = "kiosk-21in"\n'
        f'identity_dir = "{tmp_path / "identity"}"\nresend_s = 0.5\nhub_keys = {{ {hub_keys} }}\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "claim"\npassword = "claim"\n')
    return path


def test_a_kiosk_enrols_from_a_bootstrap_comes_online_acks_its_config_and_runs_commands(
        tmp_path: Path, broker: Mosquitto, hub_process: HubProcess) -> None:
    hub_process.call("POST", "/users", json={"username": "kiosk-40", "password": "kiosk-40-password",
                                             "role": "kiosk", "device_id": "kiosk-40"})
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nstatus_interval = 0.5\nprinter_id = "printer-40"\n'
        f'[hub]\nurl = "{hub_process.base_url}"\nusername = "kiosk-40"\npassword = "kiosk-40-password"\n'
        f'[ui]\nport = {free_port()}\n[id_reader]\nenabled = false\n[metrics]\nport = 0\n')
    kiosk = KioskProcess(tmp_path / "proc")
    kiosk._spawn(["-m", "kiosk_agent", "--config", str(config), "--bootstrap", str(_bootstrap(tmp_path, hub_process,
                                                                                               broker))])
    try:
        def requested() -> dict[str, Any] | None:
            assert kiosk.alive(), kiosk.logs()[-2000:]
            requests = hub_process.call("GET", "/provisioning/requests")
            return dict(requests[0]) if requests else None

        request = wait_for(requested, timeout=10, what="the kiosk's enrolment request at the hub")
        assert (request["serial"], request["kind"]) == ("KS-0400", "kiosk")
        hub_process.call("POST", "/provisioning/requests/KS-0400/approve", json={
            "fingerprint": key_fingerprint(request["public_key"]), "device_id": "kiosk-40", "site": "main",
            "kind": "kiosk"})

        def device() -> dict[str, Any] | None:
            assert kiosk.alive(), kiosk.logs()[-2000:]
            for d in hub_process.call("GET", "/provisioning/devices"):
                if d["device_id"] == "kiosk-40" and d["online"] and d["birth"] == 1 and not d["config_drift"]:
                    return dict(d)
            return None

        seen = wait_for(device, timeout=15, what="kiosk-40 online, config acked")
        assert (seen["kind"], seen["serial"]) == ("kiosk", "KS-0400")

        def run(name: str) -> dict[str, Any]:
            issued = hub_process.call("POST", "/provisioning/devices/kiosk-40/command", json={"name": name})
            return dict(wait_for(
                lambda: (c := hub_process.call("GET", f"/provisioning/commands/{issued['command_id']}"))["state"]
                != "pending" and c, timeout=5, what=f"the {name} result"))

        diagnostics = run("diagnostics")
        assert diagnostics["state"] == "ok", diagnostics
        assert diagnostics["result"]["printer_id"] == "printer-40" and diagnostics["result"]["birth"] == 1
        assert diagnostics["result"]["health"]["hub"] in ("ok", "error")
        resync = run("resync_whitelist")
        assert resync["state"] == "ok" and "nothing to resync" in resync["result"]["note"]
        assert run("restart")["state"] == "ok"
        assert kiosk.proc is not None
        assert kiosk.proc.wait(timeout=10) == 75, kiosk.logs()[-2000:]
        store = tmp_path / "data" / "kiosk.db"
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
        with KioskStore.open(tmp_path / "data") as reopened:
            assert reopened.get_meta("prov_birth") == "1"  # the agent's state outlives the process
    finally:
        kiosk.stop()


def test_a_kiosk_store_from_a_newer_release_is_refused_unchanged(tmp_path: Path) -> None:
    with KioskStore.open(tmp_path) as store:
        store.set_meta(prov_birth="3")
    conn = sqlite3.connect(tmp_path / "kiosk.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA.version + 1}")
    conn.close()
    with pytest.raises(StoreTooNew):
        KioskStore.open(tmp_path)
    conn = sqlite3.connect(tmp_path / "kiosk.db")
    assert conn.execute("SELECT value FROM meta WHERE key = 'prov_birth'").fetchone() == ("3",)
    conn.close()
