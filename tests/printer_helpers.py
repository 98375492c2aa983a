"""Test helpers for the printer agent: sealed print jobs, a hub client on MQTT, emupos in its own process."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from PIL import Image, ImageOps
from pyzbar import pyzbar

from protocol.envelope import seal
from protocol.keys import Signer
from protocol.messages import GateStatus, parse_message
from protocol.printing import KIND_PRINT_JOB, PrintJob, PrintResult
from protocol.topics import Topics
from tests.support.net import free_port

PRINTER = "printer-1"
FIELDS = {"performance": "茶馆", "venue": "北京人艺 首都剧场", "date": "2031-09-12", "time": "19:30",
          "ticket_type_zh": "成人票", "ticket_type_en": "Adult", "persons": "1", "holder": "王**"}  # as the hub sends
ROOT = Path(__file__).resolve().parents[1]
EMUPOS = ROOT / ".venv313" / "bin" / "emupos"


def job(*, printer_id: str = PRINTER, template: str = "ticket", ttl: float = 300, job_id: str | None = None,
        token: str | None = None, fields: dict[str, str] | None = None) -> PrintJob:
    now = time.time()
    return PrintJob(job_id=job_id or uuid.uuid4().hex, printer_id=printer_id, template=template,
                    fields=FIELDS if fields is None else fields, token=token or f"GT1.{uuid.uuid4().hex}",
                    ticket_id=4711, issued_at=now, expires_at=now + ttl)


def sealed(j: PrintJob, signer: Signer) -> bytes:
    return seal(KIND_PRINT_JOB, j.model_dump(mode="json"), signer)


def decode_qr(img: Image.Image) -> list[str]:
    padded = ImageOps.expand(img.convert("L"), border=40, fill=255)  # native QRs have no quiet zone
    return [s.data.decode() for s in pyzbar.decode(padded, symbols=[pyzbar.ZBarSymbol.QRCODE])]


@dataclass
class HubClient:
    client: aiomqtt.Client
    topics: Topics = field(default_factory=Topics)
    results: list[PrintResult] = field(default_factory=list)
    statuses: list[GateStatus] = field(default_factory=list)

    async def _loop(self) -> None:
        async for m in self.client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            if not payload:
                continue
            _device, leaf = self.topics.parse_device_topic(str(m.topic))
            if leaf == "print_result":
                self.results.append(PrintResult.model_validate_json(payload))
            elif leaf == "status":
                self.statuses.append(parse_message(GateStatus, payload))

    async def send(self, payload: bytes, printer_id: str = PRINTER) -> None:
        await self.client.publish(self.topics.print_job(printer_id), payload, qos=1)

    def result(self, job_id: str) -> list[PrintResult]:
        return [r for r in self.results if r.job_id == job_id]


@asynccontextmanager
async def hub_client(port: int) -> AsyncIterator[HubClient]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"hub-{uuid.uuid4().hex[:8]}",
                              protocol=aiomqtt.ProtocolVersion.V5, timeout=5) as client:
        hub = HubClient(client)
        await client.subscribe(hub.topics.all_devices("print_result"), qos=1)
        await client.subscribe(hub.topics.all_devices("status"), qos=1)
        task = asyncio.create_task(hub._loop())
        try:
            yield hub
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Emupos:
    """``emupos run`` (Python 3.13, .venv313) emulating one ESC/POS printer ``front`` on a TCP port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tcp, self.api_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        private = self.workdir / "tmp"
        private.mkdir(parents=True, mode=0o700)
        cfg = self.workdir / "emupos.yaml"
        cfg.write_text(f"""schema: 1
api: {{ host: 127.0.0.1, port: {self.api_port} }}
devices:
  - id: front
    type: printer
    profile: epson-tm-t20iii
    receipts_dir: {self.workdir}/receipts
    connections:
      - tcp: {{ host: 127.0.0.1, port: {self.tcp} }}
""")
        self.proc = subprocess.Popen([str(EMUPOS), "run", "--config", str(cfg)], cwd=self.workdir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "TMPDIR": str(private)})
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.api("GET", "/devices")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("emupos did not start")

    def api(self, method: str, path: str) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/api/v1{path}", method=method)
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()

    def receipts(self) -> list[dict[str, Any]]:
        import json

        return list(json.loads(self.api("GET", "/devices/front/receipts")[1]))

    def latest_png(self) -> Image.Image:
        import io

        return Image.open(io.BytesIO(self.api("GET", "/devices/front/receipts/latest/png")[1]))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def emupos_printer(workdir: Path) -> Iterator[Emupos]:
    if not EMUPOS.exists() or shutil.which("python3") is None:
        pytest.skip("emupos is not installed: /root/.pyenv/versions/3.13.0/bin/python3.13 -m venv .venv313 "
                    "&& .venv313/bin/pip install emupos  (or run scripts/setup.sh)")
    emu = Emupos(workdir)
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()

