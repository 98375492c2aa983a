"""``python -m gate_agent`` as a real process: config CLI, SIGKILL mid-stream, Last Will, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from protocol.keys import Signer
from protocol.topics import Topics
from tests.gate_helpers import (
    FakeHub,
    device_public_key,
    entries,
    eventually,
    fake_hub,
    seal_snapshot,
    snapshot,
    token,
    write_keys,
)
from tests.support.broker import Mosquitto

ME = "gate-7"
ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp: Path, signer: Signer, port: int, **extra: str) -> Path:
    keys = write_keys(tmp / "keys.json", signer)
    lines = [f'device_id = "{ME}"', f'data_dir = "{tmp / "data"}"', f'hub_keys_file = "{keys}"',
             "status_interval = 0.5", *[f"{k} = {v}" for k, v in extra.items()],
             "[mqtt]", f"port = {port}", "keepalive = 5", 'password = "s3cret-pw"', "[scanner]", 'url = "stdin"']
    path = tmp / "gate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate_agent", *args], capture_output=True, text=True,
                          timeout=20, cwd=ROOT, env={**os.environ, **(env or {})})


def test_validate_config_accepts_a_good_file_and_names_a_bad_key(tmp_path: Path, signer: Signer) -> None:
    good = write_config(tmp_path, signer, 1883)
    assert cli("--config", str(good), "--validate-config").returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("keepalive = 5", "keepalive = 5\nkeepalvie = 3"))
    out = cli("--config", str(bad), "--validate-config")
    assert out.returncode == 2 and "mqtt.keepalvie" in out.stderr
    out = cli("--config", str(good), "--validate-config", env={"GATE__MQTT__PORT": "zero"})
    assert out.returncode == 2 and "mqtt.port" in out.stderr
    out = cli("--config", str(good), "--validate-config", env={"GATE__SCANER__URL": "x"})
    assert out.returncode == 2 and "GATE__SCANER__URL" in out.stderr


class GateProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: asyncio.subprocess.Process | None = None
        self.stdout: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gate_agent", "--config", str(self.config), cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err)
        self._reader = asyncio.create_task(self._read())
        await eventually(lambda: "gate ready" in self.log.read_text(), timeout=10, what="gate ready")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.stdout.append(line.decode())

    async def scan(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = await asyncio.wait_for(self.proc.wait(), 10)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return rc


@asynccontextmanager
async def gate_process(config: Path, log: Path) -> AsyncIterator[GateProcess]:
    gate = GateProcess(config, log)
    await gate.start()
    try:
        yield gate
    finally:
        if gate.proc is not None and gate.proc.returncode is None:
            await gate.signal(signal.SIGKILL)


def db_rows(tmp: Path, table: str) -> list[str]:
    with sqlite3.connect(tmp / "data" / "gate.db") as db:
        return [r[0] for r in db.execute(f"SELECT event_id FROM {table} ORDER BY seq")]


async def online(hub: FakeHub) -> None:
    await eventually(lambda: (s := hub.last_status(ME)) is not None and s.state == "online", what="online")


async def test_sigkill_mid_stream_loses_no_decided_event_and_the_will_marks_offline(
        tmp_path: Path, broker: Mosquitto, signer: Signer) -> None:
    config = write_config(tmp_path, signer, broker.port)
    log = tmp_path / "gate.log"
    registry = {ME: device_public_key(tmp_path / "data")}  # the key the gate then finds in its data_dir
    async with fake_hub(broker.port, signer, auto_ack=False, devices=registry) as hub, \
            gate_process(config, log) as gate:
        await online(hub)
        await hub.send(Topics().device_whitelist(ME), seal_snapshot(snapshot(entries(100)), signer))
        await eventually(lambda: "snapshot 10 installed" in log.read_text(), what="snapshot installed")
        for i in range(1, 61):
            await gate.scan(token(signer, i, now=__import__("time").time()))
            if i == 40:
                await eventually(lambda: len(gate.stdout) >= 30, what="30 decisions")
                break
        await gate.signal(signal.SIGKILL)
        await eventually(lambda: hub.last_status(ME).state == "offline",  # type: ignore[union-attr]
                         what="Last Will offline")
    decided = [line for line in gate.stdout if "ADMITTED" in line]
    journal = db_rows(tmp_path, "journal")
    assert len(decided) >= 30 and len(journal) >= len(decided)
    assert "s3cret-pw" not in log.read_text()
    first = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert all(rec["device_id"] == ME for rec in first)
    assert any(rec.get("ticket_id") == 1 for rec in first)
    # restart with a hub that acknowledges: every journalled event is delivered, in order
    async with fake_hub(broker.port, signer, devices=registry) as hub, gate_process(config, log) as gate:
        await eventually(lambda: [e.event_id for e in hub.events] == journal, timeout=10, what="all delivered")
        assert hub.refused == []
        await eventually(lambda: (s := hub.last_status(ME)) is not None and s.outbox == 0, what="outbox 0")
        assert await gate.signal(signal.SIGTERM) == 0
        await eventually(lambda: hub.last_status(ME).state == "offline",  # type: ignore[union-attr]
                         what="offline on SIGTERM")
    assert db_rows(tmp_path, "outbox") == [] and db_rows(tmp_path, "journal") == journal
