"""The console's Devices page (issue 12, page 2) in a real headless Chromium against a real hub and Mosquitto.

A real printer enrols (``python -m printer_agent --bootstrap``, as :mod:`tests.test_printer_enrolment`
starts it): an ops user sees its request with the key fingerprint, approves it by typing that
fingerprint, watches it come online with its config applied, runs diagnostics and credential rotation
and sees their results, restarts it (the printer really exits and goes offline), sends it a command while
it is down (pending until it is back; the hub sends it again then and it runs), and revokes a device after
a confirmation naming it. A registered stand-in gate reports its heartbeat over MQTT: the page
shows its broken part, its outbox and how far its whitelist lags behind the hub's (the API's figure).
Screenshots at 1280x800 and on a tablet go to ``test-artifacts/console/devices/``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from protocol.messages import GateStatus, dump_message
from protocol.provisioning import key_fingerprint
from protocol.topics import Topics
from tests.support.broker import Mosquitto
from tests.support.browser import require_chromium
from tests.support.console import DESKTOP, TABLET, console_browser, console_page, shot
from tests.support.devices import register
from tests.support.net import wait_for
from tests.support.processes import HubProcess, _Process
from tests.support.scenario import Show, sell


class PrinterProcess(_Process):
    name = "printer"
    args: list[str]

    def start(self) -> None:
        """Start it (again, as its supervisor does after a restart: the identity it enrolled with stays)."""
        self._spawn(self.args)


def start_printer(tmp_path: Path, broker: Mosquitto, hub: HubProcess, serial: str) -> PrinterProcess:
    """A printer agent that enrols from a bootstrap file (claim login, the hub's keys) and answers commands."""
    keys = json.loads(hub.keys_file.read_text())
    hub_keys = ", ".join(f'"{k}" = {{ key = "{v["key"]}", purposes = {json.dumps(v["purposes"])} }}'
                         for k, v in keys.items())
    bootstrap = tmp_path / "bootstrap.toml"
    bootstrap.write_text(
        f'serial = "{serial}"\nkind = "printer"\nhardware_model = "tm-t20"\n'
        f'identity_dir = "{tmp_path / "identity"}"\nresend_s = 0.5\nhub_keys = {{ {hub_keys} }}\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "claim"\npassword = "claim"\n')
    config = tmp_path / "printer.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nstatus_interval = 0.5\n[printer]\nkind = "dummy"\n')
    printer = PrinterProcess(tmp_path / "proc")
    printer.args = ["-m", "printer_agent", "--config", str(config), "--bootstrap", str(bootstrap)]
    printer.start()
    return printer


@pytest.fixture
def gate_heartbeat(broker: Mosquitto, hub_process: HubProcess, show: Show) -> Iterator[dict[str, Any]]:
    """gate-A1, registered in the show's group, says it is online with whitelist seq 0, 3 events queued and
    its turnstile broken; gate-B1 is registered and never heard of."""
    sell(hub_process, show)  # the hub's whitelist moves on: the gate is behind
    post = lambda path, body: hub_process.call("POST", path, json=body)  # noqa: E731
    register(post, "gate-A1", show.group_id, show.channel_id)
    register(post, "gate-B1", show.group_id, show.channel_id)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stand-in-gate-A1", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    status = GateStatus(device_id="gate-A1", state="online", at=time.time(), group_id=show.group_id,
                        channel_id=show.channel_id, whitelist_seq=0, outbox=3, version="gate 1.4.2",
                        health={"scanner": "ok", "turnstile": "error"}, interval=600)
    client.publish(Topics("venue").status("gate-A1"), dump_message(status), qos=1, retain=True).wait_for_publish(5)
    try:
        yield wait_for(lambda: next((d for d in hub_process.call("GET", "/provisioning/devices")
                                     if d["device_id"] == "gate-A1" and d["online"]), None),
                       timeout=10, what="gate-A1 online at the hub")
    finally:
        client.loop_stop()
        client.disconnect()


def test_ops_approve_a_printer_run_its_commands_and_revoke_a_device(
        tmp_path: Path, broker: Mosquitto, hub_process: HubProcess, gate_heartbeat: dict[str, Any]) -> None:
    require_chromium()
    from playwright.sync_api import expect

    hub = hub_process
    errors: list[str] = []
    lag = gate_heartbeat["whitelist_lag"]
    assert lag == gate_heartbeat["hub_whitelist_seq"] >= 1 and gate_heartbeat["whitelist_seq"] == 0
    printer = start_printer(tmp_path, broker, hub, "PR-0300")
    try:
        with console_browser() as browser:
            page = console_page(browser, hub, "ops", next_path="/console/devices", errors=errors)
            page.wait_for_url(hub.base_url + "/console/devices")
            expect(page.locator("h1")).to_have_text("设备 Devices")

            # The gate's heartbeat, as the API has it: online since, a broken part, the lag, the outbox.
            gate = page.locator("#device-rows tr[data-device=gate-A1]")
            expect(gate).to_contain_text("在线 Online 自 since")
            expect(gate).to_contain_text("turnstile: error")
            expect(gate).to_contain_text(f"0 / {gate_heartbeat['hub_whitelist_seq']} 落后 behind {lag}")
            expect(gate).to_contain_text("gate 1.4.2")
            expect(gate.locator("td").nth(6)).to_have_text("3")
            expect(page.locator("#device-rows tr[data-device=gate-B1]")).to_contain_text("从未上线 Never heard")

            # The printer's enrolment request, with the fingerprint its key has.
            request = wait_for(lambda: next(iter(hub.call("GET", "/provisioning/requests")), None), timeout=10,
                               what="the printer's enrolment request at the hub")
            fingerprint = key_fingerprint(request["public_key"])
            row = page.locator("#request-rows tr", has_text="PR-0300")
            expect(row).to_contain_text(fingerprint, timeout=10_000)  # at the next 5 s refresh
            expect(row).to_contain_text("打印机 Printer")
            shot(page, "devices", "01-pending-enrolment")

            # Approving needs the fingerprint the device shows: a wrong one is refused and nothing changes.
            row.get_by_role("button", name="批准 Approve PR-0300").click()
            dialog = page.locator("#approve-dialog")
            expect(dialog).to_be_visible()
            expect(page.locator("#a-fingerprint")).to_be_focused()
            expect(page.locator("#a-kind")).to_have_value("printer")
            page.click("#approve-ok")
            expect(page.locator("#approve-error")).to_contain_text("指纹 fingerprint, 设备编号 device id, 位置 site")
            page.fill("#a-fingerprint", "0000-0000-0000-0000")
            page.fill("#a-device", "printer-30")
            page.fill("#a-site", "main")
            page.click("#approve-ok")
            expect(page.locator("#approve-error")).to_contain_text("Check the fingerprint the device shows")
            shot(page, "devices", "02-wrong-fingerprint")
            assert hub.call("GET", "/provisioning/devices")[-1]["device_id"] != "printer-30"
            page.fill("#a-fingerprint", fingerprint.lower().replace("-", " "))  # as read aloud: the hub normalises
            page.click("#approve-ok")
            expect(dialog).to_be_hidden()
            expect(page.locator("#requests-msg")).to_contain_text("Approved PR-0300 as printer-30")
            expect(page.locator("#request-rows")).to_contain_text("No enrolment is waiting")

            # It comes online with its config applied.
            printer_row = page.locator("#device-rows tr[data-device=printer-30]")
            expect(printer_row).to_contain_text("在线 Online", timeout=15_000)
            expect(printer_row).to_contain_text("已应用 Applied", timeout=15_000)
            expect(printer_row).to_contain_text("已登记 Active")

            # Filters: by kind, and offline only (gate-B1 was never heard of).
            page.select_option("#f-kind", "printer")
            expect(page.locator("#device-rows tr")).to_have_count(1)
            page.select_option("#f-kind", "")
            page.check("#f-offline")
            expect(page.locator("#device-rows tr")).to_have_count(1)
            expect(page.locator("#device-rows tr[data-device=gate-B1]")).to_be_visible()
            page.uncheck("#f-offline")
            expect(page.locator("#device-rows tr")).to_have_count(3)

            # Its details, then diagnostics: the result shows when the printer answers.
            printer_row.get_by_role("button", name="详情 Details printer-30").click()
            detail = page.locator("#detail")
            expect(detail).to_be_visible()
            expect(page.locator("#detail-facts")).to_contain_text("PR-0300")
            expect(page.locator("#detail-facts")).to_contain_text(fingerprint)
            page.get_by_role("button", name="诊断 Diagnostics").click()
            expect(page.locator("#command-msg")).to_contain_text("printer-30 did 诊断 Diagnostics: OK", timeout=15_000)
            facts = page.locator("#command-result")
            expect(facts).to_contain_text("queue")
            expect(facts.locator("dt", has_text=re.compile("^birth$"))).to_have_count(1)
            shot(page, "devices", "03-diagnostics")

            # Rotating the broker password asks first, naming the device; then the printer confirms.
            page.click("#rotate")
            expect(page.locator("#confirm-title")).to_contain_text("printer-30")
            page.click("#confirm-cancel")
            expect(page.locator("#confirm-dialog")).to_be_hidden()
            page.click("#rotate")
            page.click("#confirm-ok")
            expect(page.locator("#command-msg")).to_contain_text("did 更换登录密码 Rotate credentials: OK",
                                                                 timeout=15_000)
            expect(facts).to_contain_text("stored")

            # Restart: the printer answers and really exits (its supervisor would start it again).
            page.get_by_role("button", name="重启 Restart").click()
            expect(page.locator("#command-msg")).to_contain_text("did 重启 Restart: OK", timeout=15_000)
            assert printer.proc is not None
            assert printer.proc.wait(timeout=10) == 75, printer.logs()[-2000:]
            expect(printer_row).to_contain_text("离线 Offline 自 since", timeout=15_000)
            expect(page.locator("#command-rows")).to_contain_text("成功 OK")
            shot(page, "devices", "04-restarted-offline")

            # A command to the printer while it is down does not vanish: it waits for the printer, and the hub
            # sends it again when the printer is back (its supervisor starts it), which runs it once.
            page.get_by_role("button", name="诊断 Diagnostics").click()
            expect(page.locator("#command-msg")).to_contain_text("the command is pending until it is back")
            expect(page.locator("#command-rows")).to_contain_text("待设备上线 until the device is back online",
                                                                  timeout=10_000)  # at the next 5 s refresh
            shot(page, "devices", "04b-pending-until-back-online")
            printer.start()
            expect(page.locator("#command-msg")).to_contain_text("printer-30 did 诊断 Diagnostics: OK", timeout=25_000)
            expect(facts.locator("dt", has_text=re.compile("^birth$"))).to_have_count(1)
            expect(printer_row).to_contain_text("在线 Online", timeout=15_000)
            assert "sent again" in hub.logs(), hub.logs()[-2000:]

            # Revoking asks for a reason, naming the device; cancelling changes nothing.
            page.click("#revoke")
            expect(page.locator("#confirm-title")).to_have_text("吊销设备 Revoke device: printer-30")
            page.click("#confirm-ok")
            expect(page.locator("#confirm-error")).to_contain_text("Enter a reason")
            page.click("#confirm-cancel")
            assert _device(hub, "printer-30")["status"] == "active"
            page.click("#revoke")
            page.fill("#confirm-reason", "退役 retired from the box office")
            page.click("#confirm-ok")
            expect(page.locator("#confirm-dialog")).to_be_hidden()
            expect(page.locator("#command-msg")).to_contain_text("printer-30 is revoked")
            expect(printer_row).to_contain_text("已吊销 Revoked")
            expect(page.get_by_role("button", name="诊断 Diagnostics")).to_be_disabled()
            assert _device(hub, "printer-30")["status"] == "revoked"

            # Commands to a device that does not answer end with a message saying what to do.
            page.locator("#device-rows tr[data-device=gate-B1]").get_by_role("button").click()
            page.get_by_role("button", name="重新同步白名单 Resync whitelist").click()
            expect(page.locator("#command-msg")).to_contain_text("waiting for gate-B1 to answer")
            expect(page.locator("#command-progress")).to_be_visible()
            shot(page, "devices", "05-waiting-for-an-answer")

            page.set_viewport_size(TABLET)
            shot(page, "devices", "06-tablet")
            page.set_viewport_size(DESKTOP)

            # Not for the box office or a viewer: they are told whose page it is.
            for other in ("box_office", "viewer"):
                them = console_page(browser, hub, other, errors=errors)
                them.goto(hub.base_url + "/console/devices")
                expect(them.locator("main [role=alert]")).to_contain_text("it is for: ops, admin")
            shot(them, "devices", "07-not-for-viewer")
    finally:
        printer.stop()
    assert [e for e in errors if not re.search(r"status of (401|403|409|422)", e)] == [], errors


def _device(hub: HubProcess, device_id: str) -> dict[str, Any]:
    return dict(next(d for d in hub.call("GET", "/provisioning/devices") if d["device_id"] == device_id))
