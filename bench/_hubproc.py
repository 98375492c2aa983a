"""Shared by the hub benchmarks: a private Mosquitto and a hub process with a show set up."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.processes import HubProcess  # noqa: E402
from tests.support.scenario import seed_show  # noqa: E402

ACCEPT_UNREGISTERED = "[devices]\naccept_unregistered = true\n"  # the old unsigned behaviour, bench only


class BenchHub:
    """Mosquitto plus ``python -m hub`` (logging warnings only) in ``workdir``; ``hub_config``: TOML
    appended to the hub's config file (say :data:`ACCEPT_UNREGISTERED`)."""

    def __init__(self, workdir: Path, hub_config: str = "") -> None:
        self.workdir = workdir
        self.hub_config = hub_config
        self.broker = Mosquitto(workdir / "mosquitto")
        self.hub: HubProcess | None = None
        self.base = ""

    def start(self) -> None:
        self.broker.start()
        self.hub = HubProcess(self.workdir / "hub", self.broker.port, log_level="WARNING")
        if self.hub_config:
            with self.hub.config.open("a") as f:
                f.write(self.hub_config)
        self.hub.start()
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

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub.api.close()
        self.broker.stop()
