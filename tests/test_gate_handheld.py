"""Handheld online mode: ask the hub first (≤ 500 ms), fall back to the offline decision, mark which."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gate_agent import sync as wl
from gate_agent.checkin import Checker, Station
from gate_agent.online import OnlineChecker, OnlineOptions
from gate_agent.store import Store
from protocol.decision import Decision
from protocol.keys import Keyring
from tests.support.net import free_port
from tests.support.processes import HubProcess
from tests.support.scenario import Show, sell

SECURITY_PASSWORD = "handheld-pass-1"


class Screen:
    """Our own actuator interface, recording what the handheld would show."""

    def __init__(self) -> None:
        self.shown: list[Decision] = []

    async def admit(self, decision: Decision) -> None:
        self.shown.append(decision)

    async def reject(self, decision: Decision) -> None:
        self.shown.append(decision)


@pytest.fixture
def hub(hub_process: HubProcess) -> HubProcess:
    # the handheld's own login: the hub records its online checks as device hh-1 (and refuses any other)
    hub_process.call("POST", "/users", json={"username": "hh-staff", "password": SECURITY_PASSWORD,
                                             "role": "security", "device_id": "hh-1"})
    return hub_process


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "handheld") as s:
        yield s


def keyring_of(hub: HubProcess) -> Keyring:
    keys = hub.call("GET", "/keys")["keys"]
    return Keyring.from_b64({int(k): v for k, v in keys.items()})


def install_whitelist(hub: HubProcess, show: Show, store: Store, keyring: Keyring) -> None:
    snapshot = hub.api.get(f"/whitelists/{show.group_id}/snapshot")
    snapshot.raise_for_status()
    kind, body = wl.verify(snapshot.content, keyring)
    wl.apply(kind, body, store, show.group_id)


def handheld(url: str, show: Show, store: Store, keyring: Keyring) -> tuple[Checker, OnlineChecker, Screen]:
    online = OnlineChecker(OnlineOptions(url=url, username="hh-staff", password=SECURITY_PASSWORD,
                                         device_id="hh-1", channel_id=show.channel_id, timeout=0.5))
    screen = Screen()
    checker = Checker(Station("hh-1", show.group_id, show.channel_id), store, keyring, screen, online=online)
    return checker, online, screen


@pytest.fixture
async def silent_hub() -> AsyncIterator[str]:
    """A TCP port that accepts connections and never answers: a hub hung behind a bad network."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


async def test_online_answer_comes_from_the_hub_and_is_marked_online(
        hub: HubProcess, show: Show, store: Store) -> None:
    keyring = keyring_of(hub)
    install_whitelist(hub, show, store, keyring)
    ticket = sell(hub, show)
    checker, online, screen = handheld(hub.base_url, show, store, keyring)
    try:
        first = await checker.scan(ticket["token"], "qr")
        again = await checker.scan(ticket["token"], "qr")
    finally:
        await online.aclose()
    assert (first.reason, first.offline, again.reason, again.offline) == ("admitted", False, "already_used", False)
    at_hub = {e["event_id"]: e for e in hub.call("GET", "/checkins", params={"ticket_id": ticket["id"]})}
    assert at_hub[first.event_id]["source"] == "online" and at_hub[first.event_id]["offline"] is False
    assert [d.reason for d in screen.shown] == ["admitted", "already_used"]
    assert online.health() == "ok"


async def test_a_hung_hub_costs_at_most_the_timeout_then_the_handheld_decides_offline(
        hub: HubProcess, show: Show, store: Store, silent_hub: str) -> None:
    keyring = keyring_of(hub)
    ticket = sell(hub, show)
    install_whitelist(hub, show, store, keyring)
    checker, online, _ = handheld(silent_hub, show, store, keyring)
    try:
        event = await checker.scan(ticket["token"], "qr")
        again = await checker.scan(ticket["token"], "qr")
    finally:
        await online.aclose()
    assert (event.reason, event.offline) == ("admitted", True)
    assert (again.reason, again.offline) == ("already_used", True)
    assert online.opt.timeout == 0.5  # the whole budget; the config refuses more than 0.5 s
    assert online.health() == "error"


async def test_hub_unreachable_decides_offline_at_once(hub: HubProcess, show: Show, store: Store) -> None:
    keyring = keyring_of(hub)
    ticket = sell(hub, show)
    install_whitelist(hub, show, store, keyring)
    checker, online, _ = handheld(f"http://127.0.0.1:{free_port()}", show, store, keyring)
    try:
        event = await checker.scan(ticket["token"], "qr")
        garbage = await checker.scan("not a ticket", "qr")
    finally:
        await online.aclose()
    assert (event.reason, event.offline) == ("admitted", True)
    assert (garbage.reason, garbage.offline) == ("malformed", True)
    assert store.outbox_count() == 2  # both go to the hub over MQTT when the link is back


async def test_wrong_handheld_password_falls_back_offline(hub: HubProcess, show: Show, store: Store) -> None:
    keyring = keyring_of(hub)
    ticket = sell(hub, show)
    install_whitelist(hub, show, store, keyring)
    online = OnlineChecker(OnlineOptions(url=hub.base_url, username="hh-staff", password="wrong-password",
                                         device_id="hh-1", channel_id=show.channel_id))
    checker = Checker(Station("hh-1", show.group_id, show.channel_id), store, keyring, Screen(), online=online)
    try:
        event = await checker.scan(ticket["token"], "qr")
    finally:
        await online.aclose()
    assert (event.reason, event.offline) == ("admitted", True)
