"""Scenario helpers for hub tests: a hub inside its lifespan, users, and a little show to sell."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # starlette 1.x prefers "httpx2"; httpx 0.28 is what we pin
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from hub.app import create_app
from hub.config import Settings, load_settings
from hub.services.context import HubContext
from protocol.keys import Keyring
from tests.support.devices import TestDevice, register
from tests.support.net import free_port, wait_for

ADMIN_PASSWORD = "admin-secret-pw"


@dataclass
class Hub:
    client: TestClient
    settings: Settings
    admin: dict[str, str]

    @property
    def ctx(self) -> HubContext:
        ctx: HubContext = self.client.app.state.ctx  # type: ignore[attr-defined]
        return ctx

    @property
    def keyring(self) -> Keyring:
        keys = self.client.get("/api/v1/keys").json()["keys"]
        return Keyring.from_b64({int(k): v for k, v in keys.items()})

    def user(self, name: str, role: str) -> dict[str, str]:
        """Create a user with ``role`` and return its auth headers."""
        r = self.client.post("/api/v1/users", json={"username": name, "password": "password-" + name,
                                                    "role": role}, headers=self.admin)
        assert r.status_code == 201, r.text
        return login(self.client, name, "password-" + name)

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None,
             status: int = 201) -> Any:
        r = self.client.post("/api/v1" + path, json=body, headers=headers or self.admin)
        assert r.status_code == status, r.text
        return r.json()

    def bridge_connected(self) -> bool:
        return bool(self.client.app.state.bridge.connected.is_set())  # type: ignore[attr-defined]


def login(client: TestClient, username: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def make_settings(tmp_path: Path, mqtt_port: int) -> Settings:
    return load_settings(None, database_url=f"sqlite:///{tmp_path}/hub.db", key_file=tmp_path / "signing.key",
                         mqtt={"port": mqtt_port, "prefix": "venue"},
                         admin={"username": "admin", "password": ADMIN_PASSWORD},
                         # in-process hubs store event batches in a thread (tests patch ingest, read its logs); the
                         # ingest child process (the default): tests/test_hub_ingest_worker.py, every HubProcess
                         ingest={"process": False})


def run_hub(settings: Settings, wait_mqtt: bool) -> Iterator[Hub]:
    with TestClient(create_app(settings)) as client:
        hub = Hub(client, settings, login(client, "admin", ADMIN_PASSWORD))
        if wait_mqtt:
            wait_for(hub.bridge_connected, timeout=10, what="hub MQTT bridge connected")
        yield hub


@pytest.fixture(name="hub")
def hub_fixture(tmp_path: Path) -> Iterator[Hub]:
    """A hub with no broker reachable (HTTP scenarios)."""
    yield from run_hub(make_settings(tmp_path, free_port()), wait_mqtt=False)


@pytest.fixture(name="mqtt_hub")
def mqtt_hub_fixture(tmp_path: Path, broker: Any) -> Iterator[Hub]:
    """A hub connected to the test's Mosquitto."""
    yield from run_hub(make_settings(tmp_path, broker.port), wait_mqtt=True)


def iso(dt: datetime) -> str:
    return dt.isoformat()


def setup_show(hub: Hub, *, max_entries: int = 1) -> dict[str, int]:
    """A venue, a performance open now, adult and child types, a group, an adult-only channel."""
    now = datetime.now(UTC)
    venue = hub.post("/venues", {"name": "Grand Theatre"})["id"]
    perf = hub.post("/performances", {"venue_id": venue, "name": "Swan Lake",
                                      "doors_open": iso(now - timedelta(hours=1)),
                                      "starts_at": iso(now), "ends_at": iso(now + timedelta(hours=3))})["id"]
    adult = hub.post("/ticket-types", {"name": "Adult", "name_zh": "成人票", "price_cents": 28000})["id"]
    child = hub.post("/ticket-types", {"name": "Child", "name_zh": "儿童票", "price_cents": 14000})["id"]
    group = hub.post("/checkin-groups", {"name": "Main hall", "venue_id": venue, "performance_ids": [perf]})["id"]
    channel = hub.post(f"/checkin-groups/{group}/channels", {"name": "Gate A", "ticket_type_ids": [adult],
                                                             "max_entries": max_entries})["id"]
    return {"venue": venue, "performance": perf, "adult": adult, "child": child, "group": group,
            "channel": channel}


def sell(hub: Hub, show: dict[str, int], type_key: str = "adult", persons: int = 1) -> dict[str, Any]:
    body = {"performance_id": show["performance"], "ticket_type_id": show[type_key], "persons": persons,
            "holder_name": "Li Lei", "holder_phone": "13800000000"}
    result: dict[str, Any] = hub.post("/tickets", body)
    return result


def device(hub: Hub, device_id: str, show: dict[str, int], *, kind: str = "gate", fire_input: bool = False,
           group: int | None = None, channel: int | None = None) -> TestDevice:
    """Register ``device_id`` at the hub (as an operator would) in the show's group and channel, or the
    ``group``/``channel`` given; return it, to sign its batches and emergency states with."""
    return register(hub.post, device_id, group if group is not None else show["group"],
                    channel if channel is not None else (show["channel"] if group is None else None),
                    kind=kind, fire_input=fire_input)


def security_events(hub: Hub, device_id: str) -> list[str]:
    """What the hub recorded as security events of ``device_id`` (sorted)."""
    r = hub.client.get(f"/api/v1/provisioning/security-events?device_id={device_id}", headers=hub.admin)
    assert r.status_code == 200, r.text
    return sorted(e["what"] for e in r.json())
