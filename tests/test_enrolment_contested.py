"""Issue 10, item 5: an enrolment cannot be hijacked by a second claim for the same serial.

Real processes throughout: Mosquitto with dynamic security (no anonymous access, the shared ``claim``
login), ``python -m hub`` creating per-device broker logins, the legitimate device and the attacker each
``python -m provisioning.device enroll`` with its own key, ops using the ``provision`` CLI. The attacker
holds the claim login and the serial (printed on the case) but not the device's key.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from hub.db import MIGRATIONS, make_engine
from protocol.provisioning import key_fingerprint, normalize_fingerprint
from tests.support.net import wait_for
from tests.support.processes import ADMIN_PASSWORD, HubProcess, _Process
from tests.support.secure_broker import SecureMosquitto

SERIAL = "TS-2026-0042"
_PRINTED = re.compile(r"serial (\S+) key fingerprint ([0-9A-F]{4}(?:-[0-9A-F]{4}){3})")


class DeviceProcess(_Process):
    """``python -m provisioning.device enroll`` with its own identity directory (and so its own key)."""

    def __init__(self, workdir: Path, name: str, port: int, hub_keys: dict[str, Any], claim_password: str) -> None:
        self.name = name
        super().__init__(workdir)
        self.identity_dir = workdir / "identity"
        self.bootstrap = workdir / "bootstrap.toml"
        keys = ", ".join(f'"{k}" = {{ key = "{v["key"]}", purposes = {json.dumps(v["purposes"])} }}'
                         for k, v in hub_keys.items())  # as export-keys writes them
        self.bootstrap.write_text(
            f'serial = "{SERIAL}"\nkind = "gate"\nhardware_model = "rpi4-tripod"\n'
            f'identity_dir = "{self.identity_dir}"\nresend_s = 0.5\nhub_keys = {{ {keys} }}\n'
            f'[broker]\nhost = "127.0.0.1"\nport = {port}\nusername = "claim"\npassword = "{claim_password}"\n')

    def start(self) -> None:
        self._spawn(["-m", "provisioning.device", "enroll", "--bootstrap", str(self.bootstrap), "--timeout", "60"])

    def fingerprint(self) -> str:
        """The fingerprint the device printed on its stdout (its "screen")."""
        found = wait_for(lambda: _PRINTED.search(self.output()) or (not self.alive() and self._died()),
                         timeout=10, what=f"{self.name} printing its fingerprint")
        assert found.group(1) == SERIAL
        return found.group(2)

    def _died(self) -> bool:
        raise AssertionError(f"{self.name} exited early:\n{self.output()}\n{self.logs()[-3000:]}")

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


def provision(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``provision`` CLI as ops run it."""
    return subprocess.run([sys.executable, "-m", "provisioning.cli", "--hub", hub.base_url, "--user", "admin", *args],
                          env={**os.environ, "PROVISION_PASSWORD": ADMIN_PASSWORD}, capture_output=True, text=True,
                          timeout=30)


@pytest.fixture(name="venue")
def venue_fixture(tmp_path: Path, secure_broker: SecureMosquitto) -> Iterator[tuple[HubProcess, str]]:
    """A hub process managing broker logins on the dynsec broker, and the claim password."""
    yield from venue_hub(tmp_path, secure_broker)


def venue_hub(tmp_path: Path, sb: SecureMosquitto, extra_config: str = "") -> Iterator[tuple[HubProcess, str]]:
    """Start the hub (with ``extra_config`` TOML appended) and the claim login; stop the hub afterwards."""
    claim_password = "claim-" + uuid.uuid4().hex

    async def claim_login() -> None:
        async with sb.admin() as admin:
            await admin.ensure_roles()
            await admin.add_service_client("claim", claim_password, "claim")

    asyncio.run(claim_login())
    hub = HubProcess(tmp_path / "hub", sb.port)
    text = hub.config.read_text().replace(
        '[mqtt]\n', f'[mqtt]\nusername = "{sb.admin_user}"\npassword = "{sb.admin_password}"\n')
    hub.config.write_text(text + f'[broker_admin]\nenabled = true\nport = {sb.port}\nusername = "{sb.admin_user}"\n'
                                 f'password = "{sb.admin_password}"\n' + extra_config)
    hub.start()
    try:
        yield hub, claim_password
    finally:
        hub.stop()
        hub.api.close()


def _requests(hub: HubProcess) -> list[dict[str, Any]]:
    return [r for r in hub.call("GET", "/provisioning/requests") if r["serial"] == SERIAL]


def _approve(hub: HubProcess, **body: Any) -> httpx.Response:
    return hub.api.post(f"/provisioning/requests/{SERIAL}/approve", json={"device_id": "gate-a1",
                                                                         "site": "Grand Theatre", **body})


def test_a_second_claim_with_another_key_contests_the_serial_and_never_gets_the_login(
        tmp_path: Path, secure_broker: SecureMosquitto, venue: tuple[HubProcess, str]) -> None:
    hub, claim_password = venue
    keys = json.loads(hub.keys_file.read_text())
    legit = DeviceProcess(tmp_path / "legit", "legit", secure_broker.port, keys, claim_password)
    attacker = DeviceProcess(tmp_path / "attacker", "attacker", secure_broker.port, keys, claim_password)
    try:
        legit.start()
        legit_fp = legit.fingerprint()
        assert f"key fingerprint {legit_fp}" in legit.logs()  # logged too (it is public)
        wait_for(lambda: len(_requests(hub)) == 1, timeout=15, what="the legitimate request pending")
        [first] = _requests(hub)
        assert first["fingerprint"] == legit_fp == key_fingerprint(first["public_key"]) and not first["contested"]

        attacker.start()  # same serial, same claim login, its own key
        attacker_fp = attacker.fingerprint()
        assert attacker_fp != legit_fp
        wait_for(lambda: len(_requests(hub)) == 2, timeout=15, what="the attacker's request stored beside it")
        both = {r["fingerprint"]: r for r in _requests(hub)}
        assert set(both) == {legit_fp, attacker_fp} and all(r["contested"] for r in both.values())
        assert both[legit_fp]["public_key"] == first["public_key"]  # the pending request was not replaced
        assert "CONTESTED" in hub.logs() and attacker_fp in hub.logs()

        listed = provision(hub, "list")
        assert listed.returncode == 0, listed.stderr
        assert legit_fp in listed.stdout and attacker_fp in listed.stdout
        assert f"serial {SERIAL} is CONTESTED" in listed.stdout

        # approving without the fingerprint, or with a wrong one, is refused and says what to do
        r = _approve(hub)
        assert r.status_code == 422 and "contested" in r.text and "fingerprint" in r.text, r.text
        assert legit_fp in r.json()["detail"] and attacker_fp in r.json()["detail"]
        missing = provision(hub, "approve", SERIAL, "--device-id", "gate-a1", "--site", "Grand Theatre")
        assert missing.returncode == 2 and "--fingerprint" in missing.stderr
        wrong = provision(hub, "approve", SERIAL, "--fingerprint", "0000-1111-2222-3333", "--device-id", "gate-a1",
                          "--site", "Grand Theatre")
        assert wrong.returncode == 1 and "hub refused (409)" in wrong.stderr, wrong.stderr
        assert "no pending request" in wrong.stderr and "label or screen" in wrong.stderr
        garbled = provision(hub, "approve", SERIAL, "--fingerprint", "not-a-fingerprint", "--device-id", "gate-a1",
                            "--site", "Grand Theatre")
        assert garbled.returncode == 2 and "16 hex digits" in garbled.stderr
        r = _approve(hub, fingerprint="zz")
        assert r.status_code == 422 and "not a key fingerprint" in r.text
        assert len(_requests(hub)) == 2 and hub.call("GET", "/provisioning/devices") == []
        assert legit.alive() and attacker.alive()  # nobody was answered

        # ops read the fingerprint off the device in front of them
        ok = provision(hub, "approve", SERIAL, "--fingerprint", legit_fp.lower().replace("-", " "),
                       "--device-id", "gate-a1", "--site", "Grand Theatre", "--group", "1", "--channel", "1")
        assert ok.returncode == 0 and f"approved {SERIAL} (key {legit_fp}) as gate-a1" in ok.stdout, ok.stderr

        assert legit.wait_exit() == 0, legit.logs()
        assert "enrolled as gate-a1" in legit.output()
        assert attacker.wait_exit() == 3, attacker.logs()  # a signed rejection, no credentials
        assert "another key was approved for this serial" in attacker.logs()
        assert not (attacker.identity_dir / "identity.json").exists()
        identity = json.loads((legit.identity_dir / "identity.json").read_text())
        assert identity["device_id"] == "gate-a1" and identity["username"] == "gate-a1"

        [device] = hub.call("GET", "/provisioning/devices")
        assert device["device_id"] == "gate-a1" and device["serial"] == SERIAL
        assert _requests(hub) == []
        audit = [a for a in hub.call("GET", "/audit") if a["target"] == SERIAL]
        by_action = {a["action"]: a["detail"] for a in audit}
        assert attacker_fp in by_action["provisioning.contested"]
        assert legit_fp in by_action["provisioning.approve"]
        assert attacker_fp in by_action["provisioning.reject"]

        # the legitimate device's own login works; a fresh claim by the attacker's key is refused
        async def login() -> None:
            async with secure_broker.client("gate-a1", identity["password"]):
                pass

        asyncio.run(login())
        again = DeviceProcess(tmp_path / "attacker", "attacker2", secure_broker.port, keys, claim_password)
        again.start()
        wait_for(lambda: "approved as gate-a1 with another key" in hub.logs(), timeout=15,
                 what="the attacker's new claim refused")
        again.stop()
        assert _requests(hub) == []
    finally:
        for p in (legit, attacker):
            p.stop()


def test_the_same_key_asking_again_refreshes_its_request_and_reject_is_by_fingerprint(
        tmp_path: Path, secure_broker: SecureMosquitto, venue: tuple[HubProcess, str]) -> None:
    hub, claim_password = venue
    keys = json.loads(hub.keys_file.read_text())
    legit = DeviceProcess(tmp_path / "legit", "legit", secure_broker.port, keys, claim_password)
    attacker = DeviceProcess(tmp_path / "attacker", "attacker", secure_broker.port, keys, claim_password)
    try:
        legit.start()
        legit_fp = legit.fingerprint()
        wait_for(lambda: len(_requests(hub)) == 1, timeout=15, what="request pending")
        received = _requests(hub)[0]["received_at"]
        legit.stop()  # the device restarts: same key, new nonce and reply topic
        legit.start()
        wait_for(lambda: _requests(hub) and _requests(hub)[0]["received_at"] > received, timeout=15,
                 what="the request refreshed")
        [row] = _requests(hub)
        assert row["fingerprint"] == legit_fp and not row["contested"]
        assert legit.output().count(f"key fingerprint {legit_fp}") == 2  # the same key, printed again

        attacker.start()
        attacker_fp = attacker.fingerprint()
        wait_for(lambda: len(_requests(hub)) == 2, timeout=15, what="contested")
        r = hub.api.post(f"/provisioning/requests/{SERIAL}/reject", json={"reason": "unknown key"})
        assert r.status_code == 422 and "fingerprint" in r.text
        rejected = provision(hub, "reject", SERIAL, "--fingerprint", attacker_fp, "--reason", "not our device")
        assert rejected.returncode == 0, rejected.stderr
        assert attacker.wait_exit() == 3 and "not our device" in attacker.logs()
        [left] = _requests(hub)
        assert left["fingerprint"] == legit_fp and not left["contested"] and legit.alive()
        assert normalize_fingerprint(legit_fp) == legit_fp
    finally:
        for p in (legit, attacker):
            p.stop()


def test_the_migration_keeps_requests_and_allows_two_keys_per_serial(tmp_path: Path) -> None:
    """0007 -> 0008 on SQLite keeps the stored request; back down keeps the newest request of each serial.
    (tests/test_hub_postgres.py runs the whole chain up/down/up on PostgreSQL.)"""
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")

    def migrate(target: str, up: bool = True) -> None:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            (command.upgrade if up else command.downgrade)(cfg, target)

    def add(conn: Any, key: str, at: float) -> None:
        conn.execute(text("INSERT INTO enrollment_requests VALUES (:s, 'gate', 'rpi4', '1', :k, :r, :n, :at, :at, "
                          "'pending', NULL, NULL)"), {"s": SERIAL, "k": key, "r": "a" * 32, "n": key[:32], "at": at})

    def keys() -> list[str]:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT public_key FROM enrollment_requests ORDER BY at"))]

    try:
        migrate("0007")
        with engine.begin() as conn:
            add(conn, "A" * 43 + "=", 1.0)
        migrate("head")
        assert keys() == ["A" * 43 + "="]
        with engine.begin() as conn:
            add(conn, "B" * 43 + "=", 2.0)  # a second key for the same serial: no primary-key clash now
        assert keys() == ["A" * 43 + "=", "B" * 43 + "="]
        migrate("0007", up=False)
        assert keys() == ["B" * 43 + "="]
        migrate("head")
        assert keys() == ["B" * 43 + "="]
    finally:
        engine.dispose()
