"""Shared by the benchmarks: a Mosquitto and a hub subprocess in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.net import free_port, wait_for  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"


class HubProcess:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker = Mosquitto(workdir / "mosquitto")
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.http_port}/api/v1"

    def start(self) -> None:
        self.broker.start()
        config = self.workdir / "hub.toml"
        config.write_text(f'database_url = "sqlite:///{self.workdir}/hub.db"\nkey_file = "{self.workdir}/k.key"\n'
                          f'[http]\nport = {self.http_port}\n[mqtt]\nport = {self.broker.port}\n')
        env = {**os.environ, "HUB__ADMIN__PASSWORD": ADMIN_PASSWORD}
        self.proc = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "--log-level", "WARNING"],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "hub.log", "wb"))
        wait_for(self._up, timeout=20, what="hub HTTP")
        time.sleep(0.3)

    def _up(self) -> bool:
        try:
            return httpx.get(self.base + "/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def admin_headers(self) -> dict[str, str]:
        r = httpx.post(self.base + "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def setup_show(self, headers: dict[str, str]) -> dict[str, int]:
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)

        def post(path: str, body: dict[str, object]) -> int:
            r = httpx.post(self.base + path, json=body, headers=headers)
            r.raise_for_status()
            return int(r.json()["id"])

        venue = post("/venues", {"name": "Bench Hall"})
        perf = post("/performances", {"venue_id": venue, "name": "Bench", "doors_open": (now - timedelta(hours=1))
                                      .isoformat(), "starts_at": now.isoformat(),
                                      "ends_at": (now + timedelta(hours=3)).isoformat()})
        adult = post("/ticket-types", {"name": "Adult", "name_zh": "成人票", "price_cents": 1})
        group = post("/checkin-groups", {"name": "G", "venue_id": venue, "performance_ids": [perf]})
        channel = post(f"/checkin-groups/{group}/channels", {"name": "A", "ticket_type_ids": [adult]})
        return {"venue": venue, "performance": perf, "adult": adult, "group": group, "channel": channel}

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
        self.broker.stop()
