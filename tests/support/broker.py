"""A real Mosquitto broker on a free loopback port, which a test may kill and restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from provisioning.broker_config import MAX_PACKET_BYTES
from tests.support.net import free_port, port_open, stop_process, wait_for


class Mosquitto:
    """``mosquitto -c <conf>`` in its own directory, with persistence so a restart keeps sessions."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise RuntimeError("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_on_changes true",
            "autosave_interval 1",
            "max_queued_messages 100000",
            f"max_packet_size {MAX_PACKET_BYTES}",  # as in production (provisioning.broker_config)
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), timeout=10, what=f"mosquitto on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, timeout=5)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
