"""The ``provision`` CLI against a real hub process; a real gate agent enrolling end to end."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from confkit.enrolment import Bootstrap, BootstrapBroker, Identity, device_key, enroll, public_key_b64
from protocol.provisioning import key_fingerprint
from provisioning.cli import main
from tests.support.broker import Mosquitto
from tests.support.net import free_port, wait_for
from tests.support.processes import ADMIN_PASSWORD, GateProcess, HubProcess


def cli(hub: HubProcess, *args: str, user: str = "admin") -> tuple[int, str, str]:
    """Run ``provision`` in-process; return (exit code, stdout, stderr)."""
    out: list[str] = []
    err_path = hub.workdir / "cli.err"
    with open(err_path, "w") as err:
        saved, sys.stderr = sys.stderr, err
        try:
            code = main(["--hub", hub.base_url, "--user", user, *args], out=out.append)
        finally:
            sys.stderr = saved
    return code, "\n".join(out), err_path.read_text()


def test_errors_wrong_password_unreachable_hub_non_ops_user_and_unknown_serial(
        hub_process: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION_PASSWORD", "wrong")
    code, _, err = cli(hub_process, "list")
    assert code == 2 and "log in failed: check --user and PROVISION_PASSWORD" in err and "wrong" not in err
    monkeypatch.setenv("PROVISION_PASSWORD", ADMIN_PASSWORD)
    code, _, err = main_err(["--hub", f"http://127.0.0.1:{free_port()}", "--user", "admin", "list"], hub_process)
    assert code == 2 and "hub not reachable at http://127.0.0.1:" in err
    hub_process.call("POST", "/users", json={"username": "usher", "password": "usher-password-1", "role": "viewer"})
    monkeypatch.setenv("PROVISION_PASSWORD", "usher-password-1")
    code, _, err = cli(hub_process, "list", user="usher")
    assert code == 1 and "needs the ops role" in err
    monkeypatch.setenv("PROVISION_PASSWORD", ADMIN_PASSWORD)
    code, _, err = cli(hub_process, "approve", "NOPE-1", "--fingerprint", "0000-0000-0000-0000", "--device-id",
                       "gate-9", "--site", "main")
    assert code == 1 and "hub refused (404)" in err and "NOPE-1" in err
    code, _, err = cli(hub_process, "config", "set", "gate-9")
    assert code == 2 and "key=value" in err


def main_err(argv: list[str], hub: HubProcess) -> tuple[int, str, str]:
    path = hub.workdir / "cli2.err"
    with open(path, "w") as err:
        saved, sys.stderr = sys.stderr, err
        try:
            code = main(argv, out=lambda _s: None)
        finally:
            sys.stderr = saved
    return code, "", path.read_text()


async def test_list_approve_config_and_command_flow(
        tmp_path: Path, broker: Mosquitto, hub_process: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION_PASSWORD", ADMIN_PASSWORD)
    hub_process.call("POST", "/users", json={"username": "ops1", "password": "ops-password-1", "role": "ops"})
    keys = json.loads(hub_process.keys_file.read_text())
    boot = Bootstrap(serial="TS-0100", kind="gate", hardware_model="rpi4", identity_dir=tmp_path / "id",
                     hub_keys=keys, resend_s=0.5,
                     broker=BootstrapBroker(port=broker.port, username="claim", password=SecretStr("claim")))
    task = asyncio.create_task(enroll(boot))
    monkeypatch.setenv("PROVISION_PASSWORD", "ops-password-1")

    def listed() -> bool:
        return "TS-0100" in cli(hub_process, "list", user="ops1")[1]

    await asyncio.to_thread(wait_for, listed, 10, "the request listed")
    fp = key_fingerprint(public_key_b64(device_key(boot.identity_dir)))
    code, out, _ = await asyncio.to_thread(cli, hub_process, "list", user="ops1")
    assert fp in out and "is CONTESTED" not in out
    code, out, err = await asyncio.to_thread(cli, hub_process, "approve", "TS-0100", "--fingerprint", fp.lower(),
                                             "--device-id", "gate-100", "--site", "main", "--group", "1",
                                             "--channel", "1", user="ops1")
    assert code == 0 and f"approved TS-0100 (key {fp}) as gate-100" in out, err
    identity = await asyncio.wait_for(task, 30)
    assert isinstance(identity, Identity) and identity.device_id == "gate-100"
    code, out, _ = await asyncio.to_thread(cli, hub_process, "list", user="ops1")
    assert code == 0 and "gate-100" in out and "pending requests (0)" in out
    code, out, err = await asyncio.to_thread(cli, hub_process, "config", "set", "gate-100", "status_interval=5",
                                             user="ops1")
    assert code == 0 and "config version 2" in out, err
    code, out, err = await asyncio.to_thread(cli, hub_process, "reject", "TS-0100", "--fingerprint", fp,
                                             "--reason", "x", user="ops1")
    assert code == 1 and "hub refused" in err


def test_a_gate_agent_enrolls_from_a_bootstrap_is_approved_by_the_cli_and_reports_status(
        tmp_path: Path, broker: Mosquitto, hub_process: HubProcess) -> None:
    keys = json.loads(hub_process.keys_file.read_text())
    bootstrap = tmp_path / "bootstrap.toml"
    hub_keys = ", ".join(f'"{k}" = {{ key = "{v["key"]}", purposes = {json.dumps(v["purposes"])} }}'
                         for k, v in keys.items())  # as export-keys writes them: each key with its purposes
    bootstrap.write_text(
        f'serial = "TS-0200"\nkind = "gate"\nhardware_model = "rpi4"\nidentity_dir = "{tmp_path / "identity"}"\n'
        f"resend_s = 0.5\nhub_keys = {{ {hub_keys} }}\n"
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "claim"\npassword = "claim"\n')
    gate = GateProcess(tmp_path / "gate", "unprovisioned", broker.port, hub_process.keys_file, 9, 9,
                       extra_args=("--bootstrap", str(bootstrap)))
    gate.scanner.start()
    gate._spawn(["-m", "gate_agent", "--config", str(gate.config), "--bootstrap", str(bootstrap)])
    try:
        wait_for(lambda: gate._check_alive() and hub_process.call("GET", "/provisioning/requests"),
                 timeout=15, what="enrollment request at the hub")
        printed = wait_for(lambda: re.search(r"serial TS-0200 key fingerprint (\S+)", gate.output()), timeout=5,
                           what="the fingerprint on the gate's stdout")
        fp = printed.group(1)
        assert fp == key_fingerprint(hub_process.call("GET", "/provisioning/requests")[0]["public_key"])
        assert f"key fingerprint {fp}" in gate.logs()
        env = {**os.environ, "PROVISION_PASSWORD": ADMIN_PASSWORD}
        approve = subprocess.run(
            [sys.executable, "-m", "provisioning.cli", "--hub", hub_process.base_url, "--user", "admin", "approve",
             "TS-0200", "--fingerprint", fp, "--device-id", "gate-200", "--site", "main", "--group", "1",
             "--channel", "1"],
            env=env, capture_output=True, text=True, timeout=30)
        assert approve.returncode == 0, approve.stderr
        assert ADMIN_PASSWORD not in approve.stdout + approve.stderr
        wait_for(lambda: gate._check_alive() and "gate ready" in gate.logs(), timeout=15, what="gate ready")

        def online() -> dict[str, object] | None:
            for d in hub_process.call("GET", "/provisioning/devices"):
                if d["device_id"] == "gate-200" and d["online"] and d["birth"] == 1:
                    return dict(d)
            return None

        device = wait_for(online, timeout=15, what="gate-200 online with birth 1")
        assert device["serial"] == "TS-0200"
        assert wait_for(lambda: not hub_process.call("GET", "/provisioning/devices")[0]["config_drift"], timeout=10,
                        what="initial config acked")
    finally:
        gate.stop_all()
