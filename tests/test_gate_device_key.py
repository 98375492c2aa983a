"""The gate's own device key: made once (0600) and kept, it signs the event batches and emergency states
the gate publishes (:mod:`protocol.device_signed`), and ``--show-key`` prints what ops register at the hub."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
from pathlib import Path

import nacl.signing
import pytest
from pydantic import SecretStr

from confkit.enrolment import Identity, device_key, public_key_b64
from gate_agent import ConfigError
from gate_agent.__main__ import main
from gate_agent.app import run_gate
from gate_agent.checkin import Checker, Station
from gate_agent.config import load_config
from gate_agent.store import Store
from protocol.device_signed import KIND_EMERGENCY_STATE, KIND_EVENTS, open_device
from protocol.emergency import EmergencyState
from protocol.errors import SignatureError
from protocol.keys import Keyring, Signer
from protocol.messages import EventBatch
from protocol.provisioning import key_fingerprint
from tests.gate_helpers import NOW, eventually, fake_hub, open_batch, token, write_keys
from tests.support.broker import Mosquitto
from tests.test_gate_checkin import RecordingActuator

ME = "gate-k"
ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp: Path, signer: Signer, port: int, *extra: str) -> Path:
    keys = write_keys(tmp / "keys.json", signer)
    lines = [f'device_id = "{ME}"', f'data_dir = "{tmp / "data"}"', f'hub_keys_file = "{keys}"', "group_id = 2",
             "channel_id = 5", "status_interval = 0.5", *extra, "[mqtt]", f"port = {port}",
             "[scanner]", f'url = "{tmp / "no-scanner"}"']
    path = tmp / "gate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def stored_key(path: Path) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(base64.b64decode(path.read_text().strip(), validate=True))


async def test_a_config_gate_makes_its_key_once_and_signs_its_events_and_emergency_state(
        tmp_path: Path, broker: Mosquitto, signer: Signer, keyring: Keyring, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(write_config(tmp_path, signer, broker.port))
    key_file = tmp_path / "data" / "device.key"
    assert cfg.device_key_path == key_file and not key_file.exists()
    with Store.open(cfg.data_dir) as store:  # an event waiting in the outbox: the gate sends it on connect
        await Checker(Station(ME, 2, 5), store, keyring, RecordingActuator(), clock=lambda: NOW).scan(token(signer, 3))
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    async with fake_hub(broker.port, signer) as hub:
        task = asyncio.create_task(run_gate(cfg, stop))
        try:
            await eventually(lambda: hub.raw.get((ME, "events")) and hub.raw.get((ME, "emergency")),
                             what="an event batch and the emergency state")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = stored_key(key_file)
    fingerprint = key_fingerprint(public_key_b64(key))
    assert f"device {ME} key fingerprint {fingerprint}" in caplog.text
    assert key_file.read_text().strip() not in caplog.text  # the private seed is never logged
    # the batch verifies under that key only, and only as this device's event batch
    wire = hub.raw[(ME, "events")][0]
    batch = EventBatch.model_validate(open_device(wire, KIND_EVENTS, ME, key.verify_key))
    assert [e.ticket_id for e in batch.events] == [3] and batch.device_id == ME
    assert open_batch(wire, ME, key.verify_key) == batch == hub.batches[0]
    with pytest.raises(SignatureError):
        open_device(wire, KIND_EVENTS, ME, nacl.signing.SigningKey.generate().verify_key)
    with pytest.raises(SignatureError):
        open_device(wire, KIND_EVENTS, "gate-other", key.verify_key)
    # the retained emergency state is device-signed too
    state = EmergencyState.model_validate(open_device(hub.raw[(ME, "emergency")][0], KIND_EMERGENCY_STATE, ME,
                                                      key.verify_key))
    assert (state.device_id, state.state) == (ME, "normal")
    with pytest.raises(SignatureError):
        open_device(hub.raw[(ME, "emergency")][0], KIND_EMERGENCY_STATE, ME,
                    nacl.signing.SigningKey.generate().verify_key)
    # a second start reuses the same key: a hub that registered it verifies everything this gate says
    seed = key_file.read_bytes()
    stop = asyncio.Event()
    async with fake_hub(broker.port, signer, devices={ME: key.verify_key}) as hub:
        task = asyncio.create_task(run_gate(cfg, stop))
        try:
            await eventually(lambda: hub.emergency, what="the emergency state after the restart")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert key_file.read_bytes() == seed and hub.refused == []
    assert hub.emergency[0].device_id == ME


async def test_a_bad_key_file_is_a_config_error_naming_it(tmp_path: Path, signer: Signer) -> None:
    custom = tmp_path / "keys" / "gate.key"
    cfg = load_config(write_config(tmp_path, signer, 1, f'device_key_file = "{custom}"'))
    custom.parent.mkdir()
    custom.write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"device_key_file: device key file .*gate\.key is not a base64"):
        await run_gate(cfg, asyncio.Event())
    assert not (tmp_path / "data").exists()  # refused before the store was opened


def test_show_key_prints_the_registration_and_makes_the_key_once(tmp_path: Path, signer: Signer) -> None:
    config = write_config(tmp_path, signer, 1883)
    out = subprocess.run([sys.executable, "-m", "gate_agent", "--show-key", "--config", str(config)],
                         capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    key = stored_key(tmp_path / "data" / "device.key")
    assert shown == {"device_id": ME, "kind": "gate", "group_id": 2, "channel_id": 5,
                     "public_key": public_key_b64(key), "fingerprint": key_fingerprint(public_key_b64(key))}
    assert (tmp_path / "data" / "device.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "device.key").read_text().strip() not in out.stdout + out.stderr
    # the daemon refuses to start on a bad key file, and says which file
    (tmp_path / "data" / "device.key").write_text("AAAA\n")
    out = subprocess.run([sys.executable, "-m", "gate_agent", "--config", str(config)],
                         capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert out.returncode == 2 and f"device key file {tmp_path / 'data' / 'device.key'}" in out.stderr, out.stderr


def test_show_key_with_a_custom_key_file_a_bad_one_and_an_enrolled_identity(
        tmp_path: Path, signer: Signer, capsys: pytest.CaptureFixture[str]) -> None:
    custom = tmp_path / "keys" / "gate.key"
    config = write_config(tmp_path, signer, 1883, f'device_key_file = "{custom}"')
    assert main(["--show-key", "--config", str(config)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert custom.stat().st_mode & 0o777 == 0o600 and not (tmp_path / "data" / "device.key").exists()
    assert first["public_key"] == public_key_b64(stored_key(custom))
    assert main(["--show-key", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == first  # the same key the second time
    custom.write_text("garbage\n")
    assert main(["--show-key", "--config", str(config)]) == 2
    assert f"device key file {custom} is not a base64 Ed25519 seed" in capsys.readouterr().err
    # an enrolled device: the identity's id, group and channel, and the key the hub registered at enrolment
    identity_dir = tmp_path / "identity"
    boot = tmp_path / "bootstrap.toml"
    boot.write_text(f'serial = "TS-9"\nidentity_dir = "{identity_dir}"\n'
                    f'hub_keys = {{ "1" = "{signer.public_key_b64}" }}\n'
                    '[broker]\nusername = "claim"\npassword = "claim-pw"\n')
    assert main(["--show-key", "--config", str(config), "--bootstrap", str(boot)]) == 2  # not enrolled yet
    assert "not enrolled yet" in capsys.readouterr().err
    Identity(device_id="gate-e7", serial="TS-9", kind="handheld", group_id=3, channel_id=4, broker_host="127.0.0.1",
             broker_port=1883, username="gate-e7", password=SecretStr("pw"),
             hub_keys={"1": signer.public_key_b64}).save(identity_dir)
    assert main(["--show-key", "--config", str(config), "--bootstrap", str(boot)]) == 2  # enrolled, its key lost
    assert f"device key file {identity_dir / 'device.key'} is missing" in capsys.readouterr().err
    assert not (identity_dir / "device.key").exists()  # not replaced by a key the hub never registered
    enrolled = device_key(identity_dir)
    assert main(["--show-key", "--config", str(config), "--bootstrap", str(boot)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "device_id": "gate-e7", "kind": "handheld", "group_id": 3, "channel_id": 4,
        "public_key": public_key_b64(enrolled), "fingerprint": key_fingerprint(public_key_b64(enrolled))}
