"""The hub and gate agents as real processes, started and always stopped by test fixtures."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import free_port, stop_process, wait_for
from tests.support.serial_pty import PtyPair

ADMIN_PASSWORD = "test-admin-password-1"
# daemons started by tests serve no metrics on their fixed default ports (9101-9103): tests/test_metrics.py
# gives the ones it scrapes a free port
NO_METRICS_PORTS = {"GATE__METRICS__PORT": "0", "KIOSK__METRICS__PORT": "0", "PRINTER__METRICS__PORT": "0"}
# "[gate-1] ✘ DAILY_LIMIT ticket 7 — zh / en", "[hh-1] ✔ ADMITTED (forced by Wang) ticket 7 ×1 — ...",
# "[hh-1] ↩ EXIT ticket 7 ×2 — ...", and operator notices "[hh-1] ⚠ WRONG_PIN — ..."
_DECISION = re.compile(r"\[(?P<device>[^\]]+)\] \S+ (?P<reason>[A-Z_]+)(?: \(forced by (?P<forced>[^)]+)\))?"
                       r"(?: ticket (?P<ticket>\d+))?")


class _Process:
    name = "process"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"{self.name}.out"
        self.stderr_path = workdir / f"{self.name}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **NO_METRICS_PORTS, **(env or {})}
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, env=full_env)

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class HubProcess(_Process):
    """``python -m hub`` with its own SQLite file and signing key, logged in as the bootstrap admin."""

    name = "hub"

    def __init__(self, workdir: Path, mqtt_port: int, prefix: str = "venue", http_port: int | None = None,
                 admin_password: str = ADMIN_PASSWORD, log_level: str = "INFO",
                 env: dict[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.admin_password = admin_password
        self.env = env or {}  # e.g. NOTIFY_SOCKET + WATCHDOG_USEC (tests/test_service_notify.py)
        self.log_level = log_level
        self.http_port = http_port or free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.config = workdir / "hub.toml"
        self.config.write_text(
            f'database_url = "sqlite:///{workdir}/hub.db"\n'
            f'key_file = "{workdir}/signing.key"\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.http_port}\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nprefix = "{prefix}"\n'
            f'[admin]\nusername = "admin"\n')
        self.keys_file = workdir / "keys.json"
        self.api = httpx.Client(base_url=self.base_url + "/api/v1", timeout=10)

    def start(self) -> None:
        self._spawn(["-m", "hub", "--config", str(self.config), "--log-level", self.log_level],
                    {"HUB__ADMIN__PASSWORD": self.admin_password, **self.env})
        wait_for(self._healthy, timeout=20, what="hub health")
        token = self.api.post("/auth/login", json={"username": "admin", "password": self.admin_password})
        token.raise_for_status()
        self.api.headers["Authorization"] = f"Bearer {token.json()['token']}"
        keys = self.api.get("/keys").json()["keys"]
        self.keys_file.write_text(json.dumps(keys))

    def _healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"hub exited:\n{self.logs()[-3000:]}")
        try:
            return httpx.get(self.base_url + "/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        super().stop(sig)


@dataclass(frozen=True)
class GateDecision:
    device: str
    reason: str
    ticket_id: int | None
    forced_by: str | None = None  # a supervisor override: who forced the admission


class GateProcess(_Process):
    """``python -m gate_agent`` reading a socat pty as its serial barcode scanner."""

    name = "gate"

    def __init__(self, workdir: Path, device_id: str, mqtt_port: int, keys_file: Path,
                 group_id: int, channel_id: int, prefix: str = "venue", extra_args: tuple[str, ...] = (),
                 extra_config: str = "", env: dict[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.device_id = device_id
        self.group_id, self.channel_id = group_id, channel_id
        self.extra_args = extra_args
        self.env = env or {}  # e.g. GATE__KIND=handheld, TZ=UTC, or libfaketime's LD_PRELOAD + FAKETIME
        self.scanner = PtyPair(workdir, "scanner")
        self.data_dir = workdir / "data"
        self.config = workdir / "gate.toml"
        self.config.write_text(
            f'device_id = "{device_id}"\ngroup_id = {group_id}\nchannel_id = {channel_id}\n'
            f'data_dir = "{self.data_dir}"\nhub_keys_file = "{keys_file}"\nstatus_interval = 0.5\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nprefix = "{prefix}"\n'
            f'[scanner]\nurl = "{self.scanner.device}"\n{extra_config}')

    def register(self, hub: HubProcess, *, kind: str | None = None, fire_input: bool = False) -> GateProcess:
        """Register this gate at ``hub`` as ops would: its key (made now in its data dir, where the gate finds
        it) with the group and channel of its config."""
        from confkit.enrolment import device_key, public_key_b64

        self.data_dir.mkdir(parents=True, exist_ok=True)
        kind = kind or ("handheld" if "GATE__KIND" in self.env and self.env["GATE__KIND"] == "handheld" else "gate")
        hub.call("POST", "/provisioning/devices", json={
            "device_id": self.device_id, "kind": kind, "site": "test hall",
            "public_key": public_key_b64(device_key(self.data_dir)), "group_id": self.group_id,
            "channel_id": self.channel_id, "fire_input": fire_input})
        return self

    def start(self) -> None:
        if self.scanner.proc is None:
            self.scanner.start()
        readies = self.logs().count("gate ready")  # the log file is appended to across restarts
        self._spawn(["-m", "gate_agent", "--config", str(self.config), *self.extra_args], self.env)
        wait_for(lambda: self._check_alive() and self.logs().count("gate ready") > readies,
                 timeout=20, what="gate ready")

    def _check_alive(self) -> bool:
        if not self.alive():
            raise AssertionError(f"gate {self.device_id} exited:\n{self.logs()[-3000:]}")
        return True

    def decisions(self) -> list[GateDecision]:
        found = []
        for m in _DECISION.finditer(self.output()):
            ticket = m.group("ticket")
            found.append(GateDecision(m.group("device"), m.group("reason").lower(),
                                      int(ticket) if ticket else None, m.group("forced")))
        return found

    def scan(self, text: str | bytes, timeout: float = 5.0) -> GateDecision:
        """Scan one line and wait for the gate's decision on it."""
        before = len(self.decisions())
        self.scanner.write_line(text)
        return wait_for(lambda: self._check_alive() and self.decisions()[before:],
                        timeout=timeout, what=f"a decision at {self.device_id}")[0]

    def stop_all(self) -> None:
        self.stop()
        self.scanner.stop()


class AgentProcess(_Process):
    """Any of the other daemons (``python -m kiosk_agent`` / ``printer_agent``) with a TOML config."""

    def __init__(self, workdir: Path, module: str, config: str, ready_text: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = module
        super().__init__(workdir)
        self.module, self.ready_text, self.env = module, ready_text, env or {}
        self.config = workdir / f"{module}.toml"
        self.config.write_text(config)

    def start(self) -> None:
        readies = self.logs().count(self.ready_text)
        self._spawn(["-m", self.module, "--config", str(self.config)], self.env)

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.module} exited:\n{self.logs()[-3000:]}")
            return self.logs().count(self.ready_text) > readies

        wait_for(ready, timeout=20, what=f"{self.module} ready")
