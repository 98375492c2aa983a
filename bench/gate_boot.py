#!/usr/bin/env python3
"""Gate boot: from process start to "ready to decide", with a 100,000-ticket whitelist on disk, and
from SIGKILL to ready again under a systemd-style restart (issue 11; goal <= 3 s here).

"Ready" is what systemd waits for: ``READY=1`` on ``NOTIFY_SOCKET`` (``confkit/service.py``), which the
gate sends only once it can decide (whitelist loaded from its store, broker session up or offline mode
entered). The bench binds that socket itself, starts ``python -m gate_agent`` as the unit does (a real
Mosquitto, the store pre-filled by the real :class:`gate_agent.store.Store`), and for the restart kills
the process with SIGKILL and starts it again after ``--restart-sec`` (the unit's ``RestartSec``).

    .venv/bin/python bench/gate_boot.py [--entries 100000] [--rounds 5] [--restart-sec 0]

Next to it, in the same run: the raw Python start-up (``python -c pass``) and the import time of the
gate's modules, the floor under any boot figure. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate_agent.store import Store  # noqa: E402
from protocol.keys import Signer  # noqa: E402
from protocol.whitelist import ChannelRules, GroupRules, WhitelistEntry  # noqa: E402
from tests.support.broker import Mosquitto  # noqa: E402


def fill_store(data_dir: Path, entries: int) -> float:
    rules = GroupRules(1, frozenset({42}), {1: ChannelRules(1, frozenset({3}))})
    t0 = time.perf_counter()
    with Store.open(data_dir) as store:
        store.install_snapshot(1, 1, rules, (WhitelistEntry(i, 42, 3) for i in range(1, entries + 1)))
    return time.perf_counter() - t0


def write_config(work: Path, port: int, keys_file: Path) -> Path:
    config = work / "gate.toml"
    config.write_text(f'device_id = "gate-boot"\ngroup_id = 1\nchannel_id = 1\ndata_dir = "{work / "data"}"\n'
                      f'hub_keys_file = "{keys_file}"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
                      '[scanner]\nurl = "stdin"\n[metrics]\nport = 0\n')
    return config


class Notify:
    """The service manager's end of NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Block until a datagram carries READY=1; return the monotonic time it arrived."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError as exc:
                raise RuntimeError("the gate never sent READY=1") from exc
            if b"READY=1" in data.split(b"\n"):
                return time.monotonic()

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass
        self.sock.setblocking(True)


def start(config: Path, notify: Notify, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "20000000", "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "gate_agent", "--config", str(config)], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)


def floor() -> dict[str, float]:
    def took(*args: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - t0
    bare = statistics.median(took("-c", "pass") for _ in range(3))
    imports = statistics.median(took("-c", "import gate_agent.app") for _ in range(3))
    return {"python_start_s": round(bare, 3), "import_gate_agent_s": round(imports, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--restart-sec", type=float, default=0.0, help="the unit's RestartSec")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-boot-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        broker.start()
        keys_file = work / "keys.json"
        keys_file.write_text(json.dumps({"1": Signer.generate(1).public_key_b64}))
        install_s = fill_store(work / "data", args.entries)
        config = write_config(work, broker.port, keys_file)
        notify = Notify(work / "notify.sock")
        cold: list[float] = []
        restart: list[float] = []
        proc = None
        try:
            for _ in range(args.rounds):
                notify.drain()
                t0 = time.monotonic()
                proc = start(config, notify, work / "gate.err")
                cold.append(notify.wait_ready() - t0)
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
            proc = start(config, notify, work / "gate.err")
            notify.wait_ready()
            for _ in range(args.rounds):
                t0 = time.monotonic()
                proc.send_signal(signal.SIGKILL)  # power cut of the process: what Restart=always mends
                proc.wait(15)
                time.sleep(args.restart_sec)
                notify.drain()
                proc = start(config, notify, work / "gate.err")
                restart.append(notify.wait_ready() - t0)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(15)
            broker.stop()
        figures: dict[str, Any] = {
            "bench": "gate_boot", "entries": args.entries, "rounds": args.rounds, "store_fill_s": round(install_s, 2),
            "start_to_ready_p50_s": round(statistics.median(cold), 3), "start_to_ready_max_s": round(max(cold), 3),
            "sigkill_to_ready_p50_s": round(statistics.median(restart), 3),
            "sigkill_to_ready_max_s": round(max(restart), 3), "restart_sec": args.restart_sec,
            "goal_s": 3.0, **floor()}
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
