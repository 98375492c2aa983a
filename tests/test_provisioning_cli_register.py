"""Registering a config-file gate with the ``provision`` CLI, from what ``python -m gate_agent --show-key`` prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.provisioning import key_fingerprint
from tests.support.processes import ADMIN_PASSWORD, HubProcess
from tests.support.scenario import seed_show
from tests.test_provisioning_cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_show_key_then_provision_register_move_and_security_events(
        tmp_path: Path, hub_process: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION_PASSWORD", ADMIN_PASSWORD)
    show = seed_show(hub_process)
    config = tmp_path / "gate.toml"
    config.write_text(f'device_id = "gate-5"\ngroup_id = {show.group_id}\nchannel_id = {show.channel_id}\n'
                      f'data_dir = "{tmp_path / "data"}"\nhub_keys_file = "{hub_process.keys_file}"\n')
    shown = subprocess.run([sys.executable, "-m", "gate_agent", "--config", str(config), "--show-key"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    line = json.loads(shown.stdout.strip().splitlines()[-1])
    (tmp_path / "gate-5.json").write_text(shown.stdout)

    code, out, err = cli(hub_process, "register", "not json", "--site", "Hall A")
    assert code == 2 and "show-key" in err
    code, out, err = cli(hub_process, "register", f"@{tmp_path / 'gate-5.json'}", "--site", "Hall A")
    assert code == 0, err
    assert line["fingerprint"] == key_fingerprint(line["public_key"]) and line["fingerprint"] in out
    [device] = [d for d in hub_process.call("GET", "/provisioning/devices") if d["device_id"] == "gate-5"]
    assert (device["group_id"], device["channel_id"], device["fingerprint"]) == (
        show.group_id, show.channel_id, line["fingerprint"])

    code, out, err = cli(hub_process, "move", "gate-5", "--fire-input", "yes")
    assert code == 0 and "fire input yes" in out, err
    code, out, err = cli(hub_process, "move", "gate-5", "--group", "999")
    assert code == 1 and "no check-in group 999" in err
    code, out, err = cli(hub_process, "security", "--device-id", "gate-5")
    assert code == 0 and "no security events" in out
