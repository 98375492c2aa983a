"""Running under systemd: sd_notify readiness, the event-loop watchdog, STOPPING=1, journald fields, redaction,
and the device install script (docs/operations.md, "Running as services").

The daemons are real processes given ``NOTIFY_SOCKET`` (a datagram socket this test binds, as systemd's
/run/systemd/notify) and ``WATCHDOG_USEC`` exactly as systemd passes them to a ``Type=notify`` unit.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from confkit import MqttConfig
from confkit.logs import JsonFormatter, Redactor, choose_target, log_context, setup_logging
from confkit.service import ServiceNotifier
from protocol.keys import Signer
from protocol.topics import Topics
from tests.gate_helpers import CHANNEL, GROUP, entries, fake_hub, seal_snapshot, snapshot, write_keys
from tests.support.broker import Mosquitto
from tests.support.net import free_port, port_open, wait_for
from tests.support.processes import AgentProcess, GateProcess, HubProcess

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install-device.sh"


class Listener:
    """A unix datagram socket that records every message with its arrival time (a thread reads it)."""

    def __init__(self, kind: str = "notify", on_message: Callable[[bytes], None] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))  # AF_UNIX paths are short (108 bytes)
        self.path = self.dir / kind
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.05)
        self.on_message = on_message
        self.messages: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if self.on_message is not None:
                self.on_message(data)
            self.messages.append((time.monotonic(), data))

    def texts(self) -> list[str]:
        return [m.decode() for _, m in self.messages]

    def times(self, assignment: str) -> list[float]:
        return [t for t, m in self.messages if assignment in m.decode().split("\n")]

    def first(self, assignment: str, timeout: float = 10) -> float:
        return wait_for(lambda: self.times(assignment), timeout=timeout, what=assignment)[0]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify() -> Iterator[Listener]:
    listener = Listener()
    try:
        yield listener
    finally:
        listener.close()


def systemd_env(listener: Listener, watchdog_usec: int = 1_000_000) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(watchdog_usec)}


# --- the notifier in-process ---------------------------------------------------------------------------------


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = ServiceNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.notify("READY=1") is False

    async def run() -> None:
        assert notifier.ready_when({"never": lambda: False}) is None
        await asyncio.wait_for(notifier.watchdog(), 1)  # returns at once: no watchdog
        notifier.ready("x")
        notifier.stopping()

    asyncio.run(run())


def test_watchdog_pid_of_another_process_disables_the_watchdog(notify: Listener) -> None:
    env = {**systemd_env(notify), "WATCHDOG_PID": str(os.getpid() + 1)}
    assert ServiceNotifier(env).watchdog_interval is None
    assert ServiceNotifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 0.5


def test_a_blocked_event_loop_stops_feeding_the_watchdog(notify: Listener) -> None:
    notifier = ServiceNotifier(systemd_env(notify, 100_000))  # WATCHDOG=1 every 0.05 s

    async def daemon() -> None:
        notifier.ready("up")
        await asyncio.sleep(0.3)
        time.sleep(0.6)  # noqa: ASYNC251 - the point: a hung loop, a blocking call on the event loop
        await asyncio.sleep(0.3)

    start = time.monotonic()
    asyncio.run(notifier.serving(daemon()))
    pings = notify.times("WATCHDOG=1")
    blocked = [t - start for t in pings if 0.36 < t - start < 0.87]
    assert blocked == [], f"pings while the loop was blocked: {blocked}"
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) >= 0.55 and sorted(gaps)[len(gaps) // 2] < 0.1, gaps  # every ~0.05 s, except while blocked
    assert len([t for t in pings if t - start < 0.3]) >= 4 and len([t for t in pings if t - start > 0.9]) >= 3
    stopping = notify.first("STOPPING=1", 2)  # serving() says so when the daemon returns
    assert all(t < stopping for t in pings)


def test_before_ready_the_watchdog_extends_the_start_and_status_names_what_is_missing(notify: Listener) -> None:
    notifier = ServiceNotifier(systemd_env(notify, 200_000))
    have = {"whitelist": False}

    async def daemon() -> None:
        notifier.ready_when({"whitelist": lambda: have["whitelist"]}, lambda: "whitelist seq 3")
        await asyncio.sleep(0.35)
        have["whitelist"] = True
        await asyncio.sleep(0.35)

    asyncio.run(notifier.serving(daemon()))
    texts = notify.texts()
    ready = next(i for i, t in enumerate(texts) if t.startswith("READY=1"))
    assert "STATUS=starting: waiting for whitelist" in "".join(texts[:ready])
    assert all("EXTEND_TIMEOUT_USEC=200000" in t for t in texts[:ready] if t.startswith("WATCHDOG=1"))
    assert "STATUS=whitelist seq 3" in texts[ready]
    assert not any("EXTEND_TIMEOUT_USEC" in t for t in texts[ready + 1:])


def test_a_blocking_start_phase_extends_the_start_timeout_from_a_thread(notify: Listener) -> None:
    notifier = ServiceNotifier(systemd_env(notify, 100_000))
    with notifier.extending_start("starting: enrolment"):
        time.sleep(0.3)  # load_or_enroll waiting for the hub's approval, before any event loop runs
    count = len(notify.times("EXTEND_TIMEOUT_USEC=100000"))
    assert notify.texts()[0] == "STATUS=starting: enrolment\n" and count >= 4
    time.sleep(0.15)
    assert len(notify.times("EXTEND_TIMEOUT_USEC=100000")) == count  # the thread ended with the phase


# --- the daemons as processes ------------------------------------------------------------------------------------


async def test_gate_is_ready_only_once_it_can_decide_feeds_the_watchdog_and_says_stopping(
        tmp_path: Path, broker: Mosquitto, signer: Signer, notify: Listener) -> None:
    keys = write_keys(tmp_path / "keys.json", signer)
    gate = GateProcess(tmp_path / "gate", "gate-sd", broker.port, keys, GROUP, CHANNEL, env=systemd_env(notify))
    try:
        async with fake_hub(broker.port, signer) as hub:
            await asyncio.to_thread(gate.start)  # "gate ready": the scanner is open; no whitelist yet
            await asyncio.to_thread(wait_for, lambda: "MQTT connected" in gate.logs(), 10, 0.02, "MQTT connected")
            await asyncio.sleep(0.6)  # the broker session is up, the watchdog ticks: still no whitelist
            assert notify.times("READY=1") == []
            assert any("STATUS=starting: waiting for whitelist" in t for t in notify.texts())
            sent = time.monotonic()
            await hub.send(Topics().device_whitelist("gate-sd"), seal_snapshot(snapshot(entries(5)), signer))
            ready = await asyncio.to_thread(notify.first, "READY=1")
        assert ready > sent
        log = gate.logs()
        assert log.index("whitelist snapshot 10 installed") < log.index("service ready (READY=1)")
        ready_text = next(t for t in notify.texts() if t.startswith("READY=1"))
        assert "STATUS=whitelist seq 10, online" in ready_text
        await asyncio.sleep(1.3)
        assert len([t for t in notify.times("WATCHDOG=1") if t > ready]) >= 2  # every 0.5 s
        gate.stop()  # SIGTERM
        assert notify.times("STOPPING=1") and notify.times("STOPPING=1")[0] > ready
        assert "stopped" in gate.logs()

        # restart with the whitelist in its store and no broker: ready once the first connection attempt failed
        broker.stop()
        before = len(notify.messages)
        await asyncio.to_thread(gate.start)
        await asyncio.to_thread(wait_for, lambda: any(m.startswith(b"READY=1") for _, m in notify.messages[before:]),
                                10, 0.02, "READY=1 offline")
        assert any("STATUS=whitelist seq 10, offline" in t for t in notify.texts()[before:])
    finally:
        gate.stop_all()


def test_hub_is_ready_once_http_listens(tmp_path: Path, broker: Mosquitto, notify: Listener) -> None:
    http_port = free_port()
    listening_at_ready: list[bool] = []

    def check(data: bytes) -> None:
        if data.startswith(b"READY=1"):
            listening_at_ready.append(port_open(http_port))

    notify.on_message = check
    hub = HubProcess(tmp_path / "hub", broker.port, http_port=http_port, env=systemd_env(notify, 200_000))
    try:
        hub.start()
        notify.first("READY=1")
        assert listening_at_ready == [True]
        assert any(t.startswith("READY=1") and f"STATUS=HTTP on 127.0.0.1:{http_port}" in t for t in notify.texts())
        wait_for(lambda: len(notify.times("WATCHDOG=1")) >= 3, 5, what="hub watchdog pings")
        hub.stop()
        assert notify.times("STOPPING=1")
    finally:
        hub.stop()
        hub.api.close()


def test_printer_is_ready_once_its_broker_session_is_up(tmp_path: Path, broker: Mosquitto, signer: Signer,
                                                         notify: Listener) -> None:
    keys = write_keys(tmp_path / "keys.json", signer)
    proc = AgentProcess(tmp_path / "printer", "printer_agent", (
        f'device_id = "printer-sd"\ndata_dir = "{tmp_path}/printer/data"\nhub_keys_file = "{keys}"\n'
        f'[mqtt]\nport = {broker.port}\n[printer]\nkind = "dummy"\n'), "printer agent printer-sd started",
        env=systemd_env(notify))
    try:
        proc.start()
        notify.first("READY=1")
        log = proc.logs()
        assert log.index("MQTT connected") < log.index("service ready (READY=1)")
        assert any("STATUS=dummy printer, online" in t for t in notify.texts())
        proc.stop()
        assert notify.times("STOPPING=1")
    finally:
        proc.stop()


def test_kiosk_is_ready_once_its_ui_listens(tmp_path: Path, notify: Listener) -> None:
    port = free_port()
    listening_at_ready: list[bool] = []
    notify.on_message = lambda data: listening_at_ready.append(port_open(port)) if data.startswith(b"READY") else None
    proc = AgentProcess(tmp_path / "kiosk", "kiosk_agent", (
        f'device_id = "kiosk-sd"\n[hub]\nurl = "http://127.0.0.1:{free_port()}"\n'
        f'[id_reader]\nenabled = false\n[ui]\nport = {port}\n'), "kiosk kiosk-sd ready", env=systemd_env(notify))
    try:
        proc.start()
        notify.first("READY=1")
        assert listening_at_ready == [True]
        proc.stop()
        assert notify.times("STOPPING=1")
    finally:
        proc.stop()


# --- journald and redaction --------------------------------------------------------------------------------------


def parse_journal(data: bytes) -> dict[str, str]:
    """journald's native datagram: ``KEY=value\\n``, or ``KEY\\n<u64 length><bytes>\\n`` for binary/multi-line."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:
            (length,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            fields[line.decode()] = data[nl + 9:nl + 9 + length].decode()
            i = nl + 9 + length + 1
    return fields


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_journal_records_carry_device_ticket_event_and_reason_fields(monkeypatch: pytest.MonkeyPatch,
                                                                     restore_logging: None) -> None:
    journal = Listener("journal")
    try:
        monkeypatch.setenv("VENUE_JOURNAL_SOCKET", str(journal.path))
        monkeypatch.delenv("VENUE_LOG_TARGET", raising=False)
        cfg_mqtt = MqttConfig(username="gate-j", password=SecretStr("mqtt-pass-42"))
        assert setup_logging("gate-j", identifier="venue-gate", secrets=[cfg_mqtt]) == "journal"
        log = logging.getLogger("gate_agent.checkin")
        log.info("admitted ticket %s", 7, extra={"ticket_id": 7, "reason": "admitted", "event_id": "ev-1"})
        with log_context(ticket_id=8, event_id="ev-2"):
            log.warning("refused: connecting with mqtt-pass-42", extra={"reason": "daily_limit"})
        try:
            raise RuntimeError("broker said: password=mqtt-pass-42 wrong")
        except RuntimeError:
            log.exception("link failed")
        wait_for(lambda: len(journal.messages) >= 3, 5, what="3 journal records")
        first, second, third = (parse_journal(m) for _, m in journal.messages[:3])
    finally:
        journal.close()
    assert first["MESSAGE"] == "admitted ticket 7" and first["PRIORITY"] == "6"
    assert (first["DEVICE_ID"], first["TICKET_ID"], first["REASON"], first["EVENT_ID"]) == ("gate-j", "7", "admitted",
                                                                                            "ev-1")
    assert first["SYSLOG_IDENTIFIER"] == "venue-gate" and first["LOGGER"] == "gate_agent.checkin"
    assert first["CODE_FILE"].endswith("test_service_notify.py") and int(first["CODE_LINE"]) > 0
    assert (second["TICKET_ID"], second["EVENT_ID"], second["REASON"], second["PRIORITY"]) == ("8", "ev-2",
                                                                                             "daily_limit", "4")
    assert second["MESSAGE"] == "refused: connecting with ***"
    assert third["PRIORITY"] == "3" and "Traceback" in third["MESSAGE"] and "RuntimeError" in third["MESSAGE"]
    assert "mqtt-pass-42" not in json.dumps([first, second, third])


def test_journal_target_when_systemd_connected_stderr(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    with err.open("w") as fh:
        st = os.fstat(fh.fileno())
        code = "from confkit.logs import choose_target; print(choose_target())"
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        env.pop("VENUE_JOURNAL_SOCKET", None)
        env.pop("VENUE_LOG_TARGET", None)
        out = subprocess.run([sys.executable, "-c", code], stderr=fh, capture_output=False, stdout=subprocess.PIPE,
                             text=True, env=env, cwd=ROOT, timeout=20)
    assert out.stdout.strip() == "journal"
    assert choose_target(None, {"JOURNAL_STREAM": "1:2"}) == "stderr"  # not our stderr: a terminal or a file
    assert choose_target("stderr", {"VENUE_JOURNAL_SOCKET": "/x"}) == "stderr"
    assert choose_target(None, {"VENUE_LOG_TARGET": "journal"}) == "journal"


@pytest.mark.parametrize(("text", "expected"), [
    ("connecting as gate-1 with s3cret-pw", "connecting as gate-1 with ***"),
    ("login password=hunter22 user=x", "login password=*** user=x"),
    ('body {"username": "admin", "password": "pa55word"}', 'body {"username": "admin", "password": "***"}'),
    ("headers {'Authorization': 'Bearer eyJhbGciOi.abc.def'}", "headers {'Authorization': '***'}"),
    ("GET /api with Bearer eyJhbGciOiJI.x.y", "GET /api with Bearer ***"),
    ("db postgresql+psycopg://hub:dbpass@db.venue/hub", "db postgresql+psycopg://hub:***@db.venue/hub"),
    ("token=abcdef123456&next=1", "token=***&next=1"),
    ("retry with password='hunter22'", "retry with password='***'"),
    ("whitelist seq 10 installed: 5 entries", "whitelist seq 10 installed: 5 entries"),
    ("entry_relay_pin=17 tokens 5", "entry_relay_pin=17 tokens 5"),
])
def test_redaction(text: str, expected: str) -> None:
    assert Redactor(["s3cret-pw"]).redact(text) == expected


def test_redaction_on_stderr_json_covers_message_args_fields_and_tracebacks() -> None:
    redactor = Redactor([MqttConfig(password=SecretStr("mqtt-pass-42"))])
    handler = logging.Handler()
    handler.addFilter(redactor)
    formatter = JsonFormatter("gate-r")
    out: list[str] = []
    handler.emit = lambda record: out.append(formatter.format(record))  # type: ignore[method-assign]
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("refused message: %s", "bad login mqtt-pass-42", extra={"payload": "password=mqtt-pass-42"})
        try:
            raise ValueError("Authorization: Bearer abcdef0123456789")
        except ValueError:
            log.exception("handler failed")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert len(out) == 2
    assert "mqtt-pass-42" not in "".join(out) and "abcdef0123456789" not in "".join(out)
    first = json.loads(out[0])
    assert first["msg"] == "refused message: bad login ***" and first["payload"] == "password=***"
    assert first["device_id"] == "gate-r"
    assert "ValueError" in json.loads(out[1])["exc"]


# --- units and the install script --------------------------------------------------------------------------------


def test_install_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(INSTALL)], check=True, timeout=10)


def test_install_dry_run_prints_everything_and_writes_nothing(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(INSTALL), "gate", "--dry-run", "--prefix", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "apt-get install" in text and "libzbar0" in text and "python3-venv" in text and "mosquitto " not in text
    assert f"{tmp_path}/etc/systemd/system/venue-gate.service" in text
    assert f"{tmp_path}/etc/venue/gate.toml" in text and "useradd" in text and "systemctl enable venue-gate" in text
    assert list(tmp_path.iterdir()) == []


def test_install_into_a_prefix_writes_unit_config_and_bootstrap_once(tmp_path: Path, signer: Signer) -> None:
    def install() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(INSTALL), "gate", "--prefix", str(tmp_path)], capture_output=True,
                              text=True, timeout=60)

    out = install()
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "etc/systemd/system/venue-gate.service"
    assert unit.read_text() == (ROOT / "deploy/systemd/venue-gate.service").read_text()
    config = tmp_path / "etc/venue/gate.toml"
    text = config.read_text()
    assert 'data_dir = "/var/lib/venue/gate"' in text and 'hub_keys_file = "/etc/venue/hub-keys.json"' in text
    bootstrap = (tmp_path / "etc/venue/gate-bootstrap.toml").read_text()
    assert 'identity_dir = "/var/lib/venue/gate/identity"' in bootstrap
    assert oct((tmp_path / "etc/venue/gate-bootstrap.toml").stat().st_mode & 0o777) == "0o640"
    assert "next steps" in out.stdout.lower()
    # the skeleton is a valid config (the hub keys file is the one thing it needs from outside)
    keys = write_keys(tmp_path / "keys.json", signer)
    check = subprocess.run([sys.executable, "-m", "gate_agent", "--config", str(config), "--validate-config"],
                           capture_output=True, text=True, timeout=30, cwd=ROOT,
                           env={**os.environ, "GATE__HUB_KEYS_FILE": str(keys)})
    assert check.returncode == 0, check.stdout + check.stderr
    # idempotent: a second run keeps the operator's config
    config.write_text(text.replace('device_id = "gate-a1"', 'device_id = "gate-b7"'))
    assert install().returncode == 0
    assert 'device_id = "gate-b7"' in config.read_text()


@pytest.mark.parametrize("role", ["hub", "gate", "kiosk", "printer"])
def test_units_are_notify_services_with_a_watchdog_and_hardening(role: str) -> None:
    text = (ROOT / "deploy" / "systemd" / f"venue-{role}.service").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=always", "RestartSec=2", f"User=venue-{role}",
                 f"StateDirectory=venue/{role}", "ConfigurationDirectory=venue", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "ProtectKernelTunables=yes",
                 "ProtectKernelModules=yes", f"WatchdogSec={'30s' if role == 'hub' else '20s'}",
                 f"ExecStart=/opt/venue/venv/bin/venue-{role} --config /etc/venue/{role}.toml"):
        assert any(ln.startswith(line) for ln in text.splitlines()), f"venue-{role}.service: no {line}"
    assert "DynamicUser" not in text


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` in a root holding the units, systemd's own units and the console scripts
    (this machine has neither /opt/venue nor a running systemd: the units are checked, not started)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not Path("/usr/lib/systemd/system/sysinit.target").exists():
        pytest.skip("systemd-analyze or systemd's units are not installed")
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "opt/venue/venv/bin").mkdir(parents=True)
    roles = ("hub", "gate", "kiosk", "printer")
    for role in roles:
        shutil.copy(ROOT / "deploy/systemd" / f"venue-{role}.service", tmp_path / "etc/systemd/system")
        script = tmp_path / f"opt/venue/venv/bin/venue-{role}"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
    out = subprocess.run([analyze, "verify", "--man=no", f"--root={tmp_path}", *(f"venue-{r}.service" for r in roles)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == out.stderr.strip() == "", out.stdout + out.stderr
