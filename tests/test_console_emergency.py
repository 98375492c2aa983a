"""The hub console's emergency page in a real headless Chromium, against a real hub and Mosquitto.

Two stand-in gates (paho clients), registered at the hub with their own keys, announce themselves
online, read the hub's signed emergency command and report their emergency state back, signed and
retained, as a gate agent does. Screenshots of every step go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from protocol.emergency import KIND_EMERGENCY, EmergencyCommand, EmergencyState
from protocol.envelope import open_envelope
from protocol.keys import Keyring
from protocol.messages import GateStatus, dump_message
from protocol.topics import Topics
from tests.support.broker import Mosquitto
from tests.support.browser import ARTIFACTS, chromium, require_chromium
from tests.support.devices import TestDevice, register
from tests.support.net import wait_for
from tests.support.processes import GateProcess, HubProcess
from tests.support.scenario import Show, sell

SHOTS = ARTIFACTS / "console"
GUARD_PASSWORD = "guard-password-1"
VIEWER_PASSWORD = "viewer-password-1"


class StandInGate:
    """A gate's MQTT side only: status online, and an emergency state that follows the hub's command."""

    def __init__(self, broker: Mosquitto, keyring: Keyring, device: TestDevice, group_id: int,
                 channel_id: int) -> None:
        self.topics = Topics("venue")
        self.keyring, self.device, self.device_id = keyring, device, device.device_id
        self.group_id, self.channel_id = group_id, channel_id
        self.applied: list[EmergencyCommand] = []
        self.errors: list[str] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"stand-in-{self.device_id}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.connected.wait(5), f"{self.device_id}: no MQTT connection"

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, _rc: Any, _props: Any = None) -> None:
        status = GateStatus(device_id=self.device_id, state="online", at=time.time(), group_id=self.group_id,
                            channel_id=self.channel_id)
        client.publish(self.topics.status(self.device_id), dump_message(status), qos=1, retain=True)
        self._report("normal", 0, None)
        client.subscribe(self.topics.emergency_command(), qos=1)
        self.connected.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            _kind, payload = open_envelope(message.payload, self.keyring, kinds={KIND_EMERGENCY})
            cmd = EmergencyCommand.from_wire(payload)
        except Exception as exc:  # a stand-in records what a real gate would refuse
            self.errors.append(repr(exc))
            return
        if self.applied and cmd.seq <= self.applied[-1].seq:
            return
        self.applied.append(cmd)
        opens = cmd.opens(self.group_id, self.channel_id)
        self._report("open" if opens else "normal", cmd.seq, "command" if opens else None)

    def _report(self, state: str, seq: int, cause: str | None) -> None:
        report = EmergencyState.model_validate({"device_id": self.device_id, "state": state, "seq": seq,
                                                "cause": cause, "at": time.time()})
        self.client.publish(self.topics.emergency_state(self.device_id), self.device.emergency(report),
                            qos=1, retain=True)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def gates(broker: Mosquitto, hub_process: HubProcess, show: Show) -> Iterator[list[StandInGate]]:
    keyring = Keyring.from_b64({int(k): v for k, v in json.loads(hub_process.keys_file.read_text()).items()})
    group_b = hub_process.call("POST", "/checkin-groups", json={"name": "Balcony 楼座", "venue_id": _venue(hub_process),
                                                                "performance_ids": [show.performance_id]})
    channel_b = hub_process.call("POST", f"/checkin-groups/{group_b['id']}/channels",
                                 json={"name": "Gate B B口", "ticket_type_ids": [show.adult_type]})
    made: list[StandInGate] = []
    for device_id, group_id, channel_id in (("gate-A1", show.group_id, show.channel_id),
                                            ("gate-B1", group_b["id"], channel_b["id"])):
        device = register(lambda path, body: hub_process.call("POST", path, json=body), device_id, group_id,
                          channel_id)
        made.append(StandInGate(broker, keyring, device, group_id, channel_id))
    try:
        wait_for(lambda: len([d for d in hub_process.call("GET", "/devices") if d["state"] == "online"]) == 2,
                 timeout=10, what="both stand-in gates online at the hub")
        yield made
    finally:
        for g in made:
            g.close()


def _venue(hub: HubProcess) -> int:
    return int(hub.call("GET", "/venues")[0]["id"])


def _shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _login(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/console")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-button")
    page.locator("#emergency-view").wait_for(state="visible", timeout=5000)


def _until(check: Callable[[], Any], what: str, timeout: float = 6.0) -> Any:
    return wait_for(check, timeout=timeout, what=what)


def test_console_emergency_open_confirm_clear(hub_process: HubProcess, show: Show, gates: list[StandInGate]) -> None:
    require_chromium()
    from playwright.sync_api import expect

    hub = hub_process
    hub.call("POST", "/users", json={"username": "guard", "password": GUARD_PASSWORD, "role": "security"})
    hub.call("POST", "/users", json={"username": "watcher", "password": VIEWER_PASSWORD, "role": "viewer"})
    ticket = sell(hub, show)  # one patron inside: the evacuation count has someone to count
    hub.call("POST", "/checkins/online", json={"token": ticket["token"], "channel_id": show.channel_id})
    errors: list[str] = []
    expected_401 = False

    def on_console(msg: Any) -> None:
        if msg.type == "error" and not (expected_401 and "401" in msg.text):
            errors.append(msg.text)

    with chromium() as browser:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = ctx.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        # A wrong password says so, in both languages.
        page.goto(hub.base_url + "/console")
        expect(page.locator("#login-title")).to_have_text("登录 Log in")
        expected_401 = True
        page.fill("#username", "guard")
        page.fill("#password", "not-the-password")
        page.click("#login-button")
        expect(page.locator("#login-error")).to_contain_text("Wrong user name or password")
        expect(page.locator("#login-error")).to_contain_text("用户名或密码错误")
        expected_401 = False
        _shot(page, "01-login-wrong-password")

        # The security user sees Normal, both gates, and the people inside.
        _login(page, hub.base_url, "guard", GUARD_PASSWORD)
        expect(page.locator("#state-text")).to_have_text("正常 Normal")
        expect(page.locator("#gate-rows tr")).to_have_count(2)
        inside = hub.call("GET", "/emergency")["evacuation"]
        assert inside["total_inside"] == 1, inside
        expect(page.locator("#inside-total")).to_have_text("1")
        expect(page.locator("#inside-rows tr", has_text="Main hall")).to_contain_text("1")
        expect(page.locator("#open-all")).to_be_enabled()
        _shot(page, "02-security-normal")

        # The guard refuses without a reason, and without the right confirmation word.
        page.click("#open-all")
        dialog = page.locator("#guard")
        expect(dialog).to_be_visible()
        page.click("#guard-confirm")
        expect(page.locator("#guard-error")).to_contain_text("Enter a reason")
        page.fill("#guard-reason", "火警演练 fire drill, hall 1")
        page.click("#guard-confirm")
        expect(page.locator("#guard-error")).to_contain_text("type OPEN or 开闸")
        page.fill("#guard-word", "yes")
        page.click("#guard-confirm")
        expect(page.locator("#guard-error")).to_contain_text("Wrong confirmation word")
        _shot(page, "03-guard-refuses")
        assert hub.call("GET", "/emergency")["command"]["seq"] == 0, "the guard let a command through"
        page.click("#guard-cancel")
        expect(dialog).to_be_hidden()
        assert hub.call("GET", "/emergency")["command"]["seq"] == 0

        # Confirmed: every gate opens, the board shows both confirmations.
        page.click("#open-all")
        expect(page.locator("#guard-reason")).to_have_value("")  # a fresh dialog every time
        page.fill("#guard-reason", "火警 fire alarm, hall 1")
        page.fill("#guard-word", "开闸")
        page.click("#guard-confirm")
        expect(dialog).to_be_hidden()
        expect(page.locator("#state-text")).to_have_text("紧急开闸中 EMERGENCY OPEN")
        state = hub.call("GET", "/emergency")["command"]
        assert state["open_all"] is True and state["seq"] == 1 and state["issued_by"] == "guard", state
        assert state["reason"] == "火警 fire alarm, hall 1"
        expect(page.locator("#confirm-count")).to_have_text("已确认开闸 Confirmed open 2 / 2")
        for device in ("gate-A1", "gate-B1"):
            row = page.locator(f'#gate-rows tr[data-device="{device}"]')
            expect(row.locator("td.confirmed")).to_have_text("✔")
            expect(row).to_contain_text("开闸 Open")
            expect(row).to_contain_text("在线 Online")
        assert all(g["confirmed"] and g["state"] == "open" for g in hub.call("GET", "/emergency")["gates"])
        _shot(page, "04-open-confirmed")

        # Clear, guarded the same way.
        page.click("#clear-all")
        page.fill("#guard-reason", "演练结束 drill over")
        page.fill("#guard-word", "OPEN")
        page.click("#guard-confirm")
        expect(page.locator("#guard-error")).to_contain_text("type CLEAR or 解除")
        page.fill("#guard-word", "clear")
        page.click("#guard-confirm")
        expect(page.locator("#state-text")).to_have_text("正常 Normal")
        expect(page.locator("#confirm-count")).to_have_text("已确认 Confirmed 2 / 2")
        expect(page.locator("#gate-rows td.confirmed")).to_have_count(2)
        state = hub.call("GET", "/emergency")["command"]
        assert state["seq"] == 2 and not state["open_all"], state
        assert [g.applied[-1].seq for g in gates] == [2, 2]
        _shot(page, "05-cleared")

        # Open one zone only: the balcony gate opens, the hall gate stays normal.
        page.locator("#zones summary").click()
        page.locator("#zone-list label", has_text="Balcony").locator("input").check()
        page.click("#open-zones")
        page.fill("#guard-reason", "烟雾 smoke on the balcony")
        page.fill("#guard-word", "OPEN")
        page.click("#guard-confirm")
        expect(page.locator("#state-text")).to_contain_text("EMERGENCY OPEN (some zones)")
        expect(page.locator("#confirm-count")).to_have_text("已确认开闸 Confirmed open 1 / 1")
        expect(page.locator('#gate-rows tr[data-device="gate-A1"]')).to_contain_text("正常 Normal")
        assert hub.call("GET", "/emergency")["command"]["open_group_ids"] == [gates[1].group_id]
        _shot(page, "06-zone-open")

        # A viewer sees the board and the count, but cannot act.
        viewer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        viewer.on("console", on_console)
        viewer.on("pageerror", lambda exc: errors.append(str(exc)))
        _login(viewer, hub.base_url, "watcher", VIEWER_PASSWORD)
        expect(viewer.locator("#state-text")).to_contain_text("EMERGENCY OPEN")
        expect(viewer.locator("#gate-rows tr")).to_have_count(2)
        expect(viewer.locator("#open-all")).to_be_disabled()
        expect(viewer.locator("#clear-all")).to_be_disabled()
        expect(viewer.locator("#role-note")).to_contain_text("Only the security role")
        expect(viewer.locator("#inside-total")).to_have_text(re.compile(r"^\d+$"))
        _shot(viewer, "07-viewer-read-only")

        # The token lives in sessionStorage: a reload keeps the guard logged in.
        page.reload()
        expect(page.locator("#emergency-view")).to_be_visible()
        expect(page.locator("#who")).to_contain_text("guard")

    assert not errors, errors
    assert not any(g.errors for g in gates), [g.errors for g in gates]


def test_console_board_with_a_real_gate_agent(broker: Mosquitto, hub_process: HubProcess, show: Show,
                                               tmp_path: Path) -> None:
    """A real ``python -m gate_agent`` confirms the open and the clear on the board."""
    require_chromium()
    from playwright.sync_api import expect

    hub = hub_process
    hub.call("POST", "/users", json={"username": "guard", "password": GUARD_PASSWORD, "role": "security"})
    gate = GateProcess(tmp_path / "gate", "gate-R1", broker.port, hub.keys_file, show.group_id, show.channel_id)
    gate.register(hub).start()
    errors: list[str] = []
    try:
        with chromium() as browser:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            _login(page, hub.base_url, "guard", GUARD_PASSWORD)
            row = page.locator('#gate-rows tr[data-device="gate-R1"]')
            expect(row).to_contain_text("在线 Online")
            for button, word, state, text in (("#open-all", "OPEN", "open", "开闸 Open"),
                                              ("#clear-all", "解除", "normal", "正常 Normal")):
                page.click(button)
                page.fill("#guard-reason", "real gate drill 实机演练")
                page.fill("#guard-word", word)
                page.click("#guard-confirm")
                expect(row).to_contain_text(re.compile(re.escape(text) + r"\s*✔"))  # this state, confirmed
                board = hub.call("GET", "/emergency")
                assert [(g["state"], g["confirmed"]) for g in board["gates"] if g["device_id"] == "gate-R1"] \
                    == [(state, True)], board
                _shot(page, f"08-real-gate-{state}")
    finally:
        gate.stop_all()
    assert not errors, errors


def test_console_is_served_without_login(hub_process: HubProcess) -> None:
    import httpx

    page = httpx.get(hub_process.base_url + "/console")
    assert page.status_code == 200 and "紧急疏散 Emergency evacuation" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("console.js", "javascript"), ("console.css", "css")):
        asset = httpx.get(f"{hub_process.base_url}/console/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
    assert httpx.get(hub_process.base_url + "/console/../app.py").status_code == 404
    assert httpx.get(hub_process.base_url + "/console/secret.key").status_code == 404
    assert httpx.get(hub_process.base_url + "/favicon.ico").status_code == 204
