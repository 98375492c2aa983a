"""A socat pty pair: one end is the "scanner device" the gate opens, the test writes to the other."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.support.net import stop_process


class PtyPair:
    """``socat pty,link=device pty,link=host``: bytes written to ``host`` come out of ``device``."""

    def __init__(self, workdir: Path, name: str = "scanner") -> None:
        if not shutil.which("socat"):
            raise RuntimeError("socat is not installed: run scripts/setup.sh (apt-get install socat)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.device = workdir / f"{name}-dev"
        self.host = workdir / f"{name}-host"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["socat", "-d", "-d", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.host}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if b"starting data transfer loop" in line:
                self.proc.stderr.close()
                return
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError("socat did not start a pty pair")

    def write_line(self, text: str | bytes, ending: bytes = b"\r\n") -> None:
        data = text.encode() if isinstance(text, str) else text
        with open(self.host, "wb", buffering=0) as fh:
            fh.write(data + ending)

    def stop(self) -> None:
        stop_process(self.proc, timeout=5)
        self.proc = None
