"""Shared by the hub benchmarks: a private Mosquitto and one or more hub processes with a show set up; on SQLite
(the default) or on a throwaway PostgreSQL server (:func:`postgres_server`, as tests/support/postgres.py starts)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.postgres import PostgresServer, server_bin  # noqa: E402
from tests.support.processes import HubProcess  # noqa: E402
from tests.support.scenario import seed_show  # noqa: E402

ACCEPT_UNREGISTERED = "[devices]\naccept_unregistered = true\n"  # the old unsigned behaviour, bench only


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL server (fsync off, Unix socket only), always stopped and removed."""
    bindir = server_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: apt-get install "
                         "postgresql")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class BenchHub:
    """Mosquitto plus ``python -m hub`` (logging warnings only) in ``workdir``; ``hub_config``: TOML
    appended to the hub's config file (say :data:`ACCEPT_UNREGISTERED`). ``database_url``: every hub on it (else
    each its own SQLite file); ``hubs`` > 1: that many hub processes on the one database and broker, MQTT client
    ids ``hub-1``..., shared subscriptions (the default ``[mqtt] shared_group``), the same keys; ``env``: more
    ``HUB__...`` settings for every hub. ``hub`` is the first."""

    def __init__(self, workdir: Path, hub_config: str = "", database_url: str | None = None, hubs: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.hub_config = hub_config
        self.database_url = database_url
        self.size = hubs
        self.env = env or {}
        self.broker = Mosquitto(workdir / "mosquitto")
        self.hub: HubProcess | None = None
        self.hubs: list[HubProcess] = []
        self.base = ""

    def start(self) -> None:
        self.broker.start()
        for i in range(self.size):
            env = dict(self.env)
            if self.database_url is not None:
                env["HUB__DATABASE_URL"] = self.database_url
            if self.size > 1:
                env.update({"HUB__MQTT__CLIENT_ID": f"hub-{i + 1}", "HUB__MQTT__SESSION_EXPIRY": "5"})
            hub = HubProcess(self.workdir / ("hub" if i == 0 else f"hub-{i + 1}"), self.broker.port,
                             log_level="WARNING", env=env)
            if self.hub_config:
                with hub.config.open("a") as f:
                    f.write(self.hub_config)
            if self.hubs:  # one venue: the first hub's ticket and control keys
                for key in ("signing.key", "control.key"):
                    shutil.copy2(self.hubs[0].workdir / key, hub.workdir / key)
            hub.start()
            self.hubs.append(hub)
        self.hub = self.hubs[0]
        self.base = self.hub.base_url + "/api/v1"

    def admin_headers(self) -> dict[str, str]:
        assert self.hub is not None
        return {"Authorization": str(self.hub.api.headers["Authorization"])}

    def setup_show(self, _headers: dict[str, str] | None = None) -> dict[str, int]:
        assert self.hub is not None
        show = seed_show(self.hub)
        return {"performance": show.performance_id, "adult": show.adult_type, "group": show.group_id,
                "channel": show.channel_id}

    def register_gate(self, device_id: str, key: nacl.signing.SigningKey, group_id: int, channel_id: int,
                      fire_input: bool = False) -> None:
        """Register ``device_id`` with ``key``'s public key as ops would (POST /provisioning/devices), so the hub
        believes its device-signed batches and emergency states."""
        assert self.hub is not None
        self.hub.call("POST", "/provisioning/devices", json={
            "device_id": device_id, "kind": "gate", "site": "bench hall",
            "public_key": base64.b64encode(bytes(key.verify_key)).decode(), "group_id": group_id,
            "channel_id": channel_id, "fire_input": fire_input})

    def security_events(self) -> int:
        """How many security events (refused or quarantined device messages) the hub has stored (up to 1,000)."""
        assert self.hub is not None
        return len(self.hub.call("GET", "/provisioning/security-events", params={"limit": 1000}))

    def children(self, i: int = 0) -> list[int]:
        """The pids of hub ``i``'s child processes (its ingest worker, multiprocessing's resource tracker)."""
        proc = self.hubs[i].proc
        if proc is None:
            return []
        found: list[int] = []
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{proc.pid}/task"):
                text = Path(f"/proc/{proc.pid}/task/{tid}/children").read_text()
                found += [int(p) for p in text.split()]
        return found

    def stop(self) -> None:
        for hub in self.hubs:
            hub.stop()
            hub.api.close()
        self.broker.stop()
