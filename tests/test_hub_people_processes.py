"""People (issue 10) where processes matter: a lock-out holds across a hub restart and for a second hub
process on the same database, a logout in one process holds in another, and the broker refuses an
oversized packet while a snapshot-sized one passes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiomqtt
import httpx
import pytest

from provisioning.broker_config import MAX_PACKET_BYTES, broker_conf_text
from tests.support.broker import Mosquitto
from tests.support.processes import HubProcess
from tests.support.secure_broker import SecureMosquitto

GUARD_PASSWORD = "guard-password-1"


def hub_in(workdir: Path, broker: Mosquitto, extra: str = "") -> HubProcess:
    hub = HubProcess(workdir, broker.port)
    # the tests fail logins from 127.0.0.1 like start() logs in from: lock per user name here
    hub.config.write_text(hub.config.read_text() + "[login]\naddress_max_failures = 1000\n" + extra)
    return hub


def login(hub: HubProcess, password: str) -> httpx.Response:
    return httpx.post(hub.base_url + "/api/v1/auth/login", json={"username": "guard", "password": password},
                      timeout=10)


def test_a_lock_out_survives_a_hub_restart(broker: Mosquitto, tmp_path: Path) -> None:
    hub = hub_in(tmp_path / "hub", broker)
    hub.start()
    try:
        hub.call("POST", "/users", json={"username": "guard", "password": GUARD_PASSWORD, "role": "security"})
        assert [login(hub, f"wrong-{i}").status_code for i in range(5)] == [401, 401, 401, 401, 429]
        hub.stop()
        hub.start()  # a restart forgets nothing: the count is in the database
        r = login(hub, GUARD_PASSWORD)
        assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 300, r.text
        assert r.json()["code"] == "login_locked"
        actions = [a["action"] for a in hub.call("GET", "/audit")]
        assert actions.count("auth.login_failed") == 5 and actions.count("auth.login_locked") == 1
    finally:
        hub.stop()
        hub.api.close()


def test_two_hub_processes_share_the_count_and_the_logout(broker: Mosquitto, tmp_path: Path) -> None:
    first = hub_in(tmp_path / "a", broker)
    first.start()
    second = hub_in(tmp_path / "b", broker)
    text = second.config.read_text().replace(str(tmp_path / "b" / "hub.db"), str(tmp_path / "a" / "hub.db"))
    text = text.replace(str(tmp_path / "b" / "signing.key"), str(tmp_path / "a" / "signing.key"))
    second.config.write_text(text.replace('prefix = "venue"\n', 'prefix = "venue"\nclient_id = "hub-b"\n'))
    second.start()
    try:
        first.call("POST", "/users", json={"username": "guard", "password": GUARD_PASSWORD, "role": "security"})
        # a token revoked through one process is refused by the other
        token = login(second, GUARD_PASSWORD).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.post(first.base_url + "/api/v1/auth/logout", headers=bearer).status_code == 204
        assert httpx.get(second.base_url + "/api/v1/emergency", headers=bearer).status_code == 401
        # wrong passwords spread over both processes add up
        codes = [login(hub, f"wrong-{i}").status_code for i, hub in enumerate([first, second] * 2 + [first])]
        assert codes == [401, 401, 401, 401, 429]
        for hub in (first, second):
            r = login(hub, GUARD_PASSWORD)
            assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    finally:
        for hub in (second, first):
            hub.stop()
            hub.api.close()


async def _publish_and_receive(client_of: object, topic: str, size: int) -> bool:
    """Publish ``size`` bytes at QoS 1 and report whether a subscriber received them."""
    make = client_of  # a callable returning an unconnected aiomqtt.Client
    async with make() as sub:  # type: ignore[operator]
        await sub.subscribe(topic, qos=1)
        try:
            async with make() as pub:  # type: ignore[operator]
                await pub.publish(topic, os.urandom(size), qos=1, timeout=5)
        except aiomqtt.MqttError:
            pass  # the broker cut the publisher off: the packet is refused
        try:
            async with asyncio.timeout(2):
                async for message in sub.messages:
                    return len(message.payload) == size
        except TimeoutError:
            return False
    return False


@pytest.mark.parametrize("size,delivered", [(300_000, True), (MAX_PACKET_BYTES + 1, False)])
async def test_the_broker_refuses_an_oversized_packet(broker: Mosquitto, size: int, delivered: bool) -> None:
    def client() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", broker.port, timeout=10, protocol=aiomqtt.ProtocolVersion.V5)

    assert await _publish_and_receive(client, "venue/test/size", size) is delivered


async def test_the_production_broker_config_bounds_packets(secure_broker: SecureMosquitto) -> None:
    assert f"max_packet_size {MAX_PACKET_BYTES}" in broker_conf_text(secure_broker.config)

    def client() -> aiomqtt.Client:
        return secure_broker.client(secure_broker.admin_user, secure_broker.admin_password)

    assert await _publish_and_receive(client, "venue/test/size", 300_000) is True
    assert await _publish_and_receive(client, "venue/test/size", 5 * 1024 * 1024) is False


def test_the_console_logout_revokes_and_a_lock_out_is_shown(hub_process: HubProcess) -> None:
    """The staff console (a real browser): Log out revokes the token at the hub; a lock-out says how long."""
    from tests.support.browser import chromium, require_chromium

    require_chromium()
    from playwright.sync_api import expect

    hub = hub_process
    hub.call("POST", "/users", json={"username": "guard", "password": GUARD_PASSWORD, "role": "security"})
    with chromium() as browser:
        page = browser.new_page(locale="zh-CN")
        page.goto(hub.base_url + "/console")
        page.fill("#username", "guard")
        page.fill("#password", GUARD_PASSWORD)
        page.click("#login-button")
        expect(page.locator("#logout")).to_be_visible()
        token = page.evaluate("sessionStorage.getItem('console.token')")
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(hub.base_url + "/api/v1/emergency", headers=bearer).status_code == 200
        with page.expect_response(lambda r: r.url.endswith("/auth/logout")) as answer:
            page.click("#logout")
        assert answer.value.status == 204
        assert httpx.get(hub.base_url + "/api/v1/emergency", headers=bearer).status_code == 401
        for _ in range(5):
            page.fill("#username", "guard")
            page.fill("#password", "not-the-password")
            page.click("#login-button")
            expect(page.locator("#login-button")).to_be_enabled()
        page.fill("#password", GUARD_PASSWORD)
        page.click("#login-button")
        expect(page.locator("#login-error")).to_contain_text("登录已暂时锁定")
        expect(page.locator("#login-error")).to_contain_text("try again in")
        expect(page.locator("#logout")).to_be_hidden()
