"""The kiosk touchscreen in a real headless Chromium, against a real kiosk agent, hub and Mosquitto.

A stand-in printer (a paho client) reports its condition, retained, as a printer agent does, and answers
the hub's signed print jobs with ``printed`` once the test lets it. The ID-card reader is a socat pty.
Screenshots of every screen go to ``test-artifacts/kiosk/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from kiosk_agent.idcard import encode_frame
from protocol.envelope import open_envelope
from protocol.keys import Keyring
from protocol.messages import GateStatus, dump_message
from protocol.printing import KIND_PRINT_JOB, PrintJob, PrintResult
from protocol.topics import Topics
from tests.support.broker import Mosquitto
from tests.support.browser import ARTIFACTS, chromium, require_chromium
from tests.support.net import free_port, stop_process, wait_for
from tests.support.processes import HubProcess
from tests.support.scenario import seed_show
from tests.support.serial_pty import PtyPair

SHOTS = ARTIFACTS / "kiosk"
KIOSK_PASSWORD = "kiosk-password-1"
PRINTER = "printer-k1"
ID_NUMBER = "11010519491231002X"
PHONE = "13912345678"
IDLE_S = 4


class StandInPrinter:
    """A printer's MQTT side: a retained condition, and print results for the jobs it is allowed to print."""

    def __init__(self, broker: Mosquitto, keyring: Keyring) -> None:
        self.topics, self.keyring = Topics("venue"), keyring
        self.jobs: list[PrintJob] = []
        self.printing = False
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stand-in-printer", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(self.topics.print_job(PRINTER), qos=1)
        self.client.loop_start()

    def report(self, paper: str = "ok") -> None:
        status = GateStatus(device_id=PRINTER, state="online", at=time.time(), kind="printer",
                            printer={"online": True, "paper": paper, "cover": "closed", "queue": 0, "error": None})
        self.client.publish(self.topics.status(PRINTER), dump_message(status), qos=1, retain=True).wait_for_publish(5)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        _kind, payload = open_envelope(message.payload, self.keyring, kinds={KIND_PRINT_JOB})
        job = PrintJob.model_validate(payload)
        with self._lock:
            self.jobs.append(job)
        if self.printing:
            self._printed(job)

    def _printed(self, job: PrintJob) -> None:
        result = PrintResult(printer_id=PRINTER, job_id=job.job_id, status="printed", at=time.time())
        self.client.publish(self.topics.print_result(PRINTER), result.model_dump_json().encode(), qos=1)

    def start_printing(self) -> None:
        """Print from now on, the jobs held so far included."""
        self.printing = True
        with self._lock:
            for job in self.jobs:
                self._printed(job)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def sms_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the hub's development SMS gateway writes, set before the hub starts."""
    monkeypatch.setenv("HUB__SMS__PATH", str(tmp_path / "sms.txt"))
    return tmp_path / "sms.txt"


@pytest.fixture
def hub(sms_file: Path, hub_process: HubProcess) -> HubProcess:
    """The hub, with its development SMS gateway writing to this test's own file."""
    return hub_process


@pytest.fixture
def kiosk(hub: HubProcess, tmp_path: Path) -> Iterator[tuple[str, PtyPair]]:
    """``python -m kiosk_agent`` with its ID-card reader on a pty; yields its URL and the pty."""
    hub.call("POST", "/users", json={"username": "kiosk-1", "password": KIOSK_PASSWORD, "role": "kiosk"})
    pty = PtyPair(tmp_path / "pty", "idreader")
    pty.start()
    port = free_port()
    config = tmp_path / "kiosk.toml"
    config.write_text(f'device_id = "kiosk-1"\nprinter_id = "{PRINTER}"\nprinter_poll_s = 0.5\n'
                      f'[hub]\nurl = "{hub.base_url}"\nusername = "kiosk-1"\n'
                      f'[id_reader]\nurl = "{pty.device}"\nreopen_s = 0.2\n'
                      f'[ui]\nport = {port}\nidle_timeout_s = {IDLE_S}\n')
    log = tmp_path / "kiosk.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kiosk_agent", "--config", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "KIOSK__HUB__PASSWORD": KIOSK_PASSWORD})
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"kiosk exited:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(url + "/api/status", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=20, what="kiosk agent")
    try:
        yield url, pty
    finally:
        stop_process(proc)
        pty.stop()
        assert KIOSK_PASSWORD not in log.read_text(), "the kiosk logged its hub password"


def _sell(hub: HubProcess, performance_id: int, type_id: int, **holder: str) -> dict[str, Any]:
    ticket: dict[str, Any] = hub.call("POST", "/tickets", json={"performance_id": performance_id,
                                                               "ticket_type_id": type_id, "persons": 1, **holder})
    return ticket


def test_kiosk_ui(hub: HubProcess, broker: Mosquitto, kiosk: tuple[str, PtyPair], tmp_path: Path) -> None:
    require_chromium()
    url, pty = kiosk
    SHOTS.mkdir(parents=True, exist_ok=True)
    show = seed_show(hub)
    by_code = _sell(hub, show.performance_id, show.adult_type, holder_name="李雷")
    raced = _sell(hub, show.performance_id, show.adult_type, holder_name="韩梅梅")
    _sell(hub, show.performance_id, show.adult_type, holder_name="王芳", holder_phone=PHONE)
    _sell(hub, show.performance_id, show.staff_type, holder_name="张三", holder_id_number=ID_NUMBER)
    keyring = Keyring.from_b64({int(k): v for k, v in json.loads(hub.keys_file.read_text()).items()})
    printer = StandInPrinter(broker, keyring)
    printer.report("ok")
    wait_for(lambda: httpx.get(url + "/api/status").json()["in_service"], timeout=10, what="printer in service")
    errors: list[str] = []
    try:
        with chromium() as browser:
            ctx = browser.new_context(viewport={"width": 800, "height": 480}, has_touch=True, locale="zh-CN")
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(8000)
            page.goto(url + "/")

            def screen(name: str, shot: str | None = None) -> None:
                page.locator(f"body[data-screen='{name}']").wait_for()
                if shot:
                    page.screenshot(path=str(SHOTS / f"{shot}.png"))

            def tap(selector: str) -> None:
                page.locator(selector).first.tap()

            def type_keys(target: str, text: str) -> None:
                for ch in text:
                    tap(f".keypad[data-target='{target}'] button[data-key='{ch}']")

            def lookup_code(code: str) -> None:
                tap("#go-code")
                screen("code")
                type_keys("code", code)

            screen("start", "01-start")
            # 1. collection code on the on-screen keypad -> list -> print; the printer holds the job
            lookup_code(by_code["collection_code"])
            screen("code", "02-code-entry")
            tap(".keypad[data-target='code'] .ok")
            screen("tickets", "03-tickets")
            assert page.locator(".ticket").count() == 1
            assert "茶馆" in page.locator(".ticket").inner_text()
            tap("#print")
            screen("printing", "04-printing")
            wait_for(lambda: printer.jobs, timeout=10, what="the print job at the printer")
            page.locator("body[data-printing='waiting']").wait_for()
            page.screenshot(path=str(SHOTS / "05-printing-waiting.png"))
            printer.start_printing()
            screen("done", "06-done")
            # 2. idle timeout back to the start screen
            t0 = time.monotonic()
            screen("start")
            assert time.monotonic() - t0 < IDLE_S + 2
            # 3. unknown code
            lookup_code("ZZZZ9999")
            tap(".keypad[data-target='code'] .ok")
            screen("error", "07-not-found")
            assert page.locator("body[data-error='not_found']").count() == 1
            tap("#screen-error button.home")
            # 4. already collected: collected elsewhere between the lookup and the Print button
            lookup_code(raced["collection_code"])
            tap(".keypad[data-target='code'] .ok")
            screen("tickets")
            found = hub.call("POST", "/kiosk/lookup/code", json={"code": raced["collection_code"]})
            hub.call("POST", "/kiosk/collect", json={"lookup_token": found["lookup_token"],
                                                     "ticket_ids": [raced["id"]], "printer_id": PRINTER})
            tap("#print")
            screen("error", "08-already-collected")
            assert page.locator("body[data-error='already_collected']").count() == 1
            assert "工作人员" in page.locator("#error-text").inner_text()
            tap("#screen-error button.home")
            # 5. phone + SMS code: a wrong code first (attempts left), then the right one
            sms = tmp_path / "sms.txt"
            tap("#go-phone")
            type_keys("phone", PHONE)
            screen("phone", "09-phone-entry")
            tap(".keypad[data-target='phone'] .ok")
            screen("otp")
            code = wait_for(lambda: sms.exists() and sms.read_text().strip().split("\t")[-1], what="SMS code")
            wrong = "000000" if code != "000000" else "111111"
            type_keys("otp", wrong)
            screen("otp", "10-otp-entry")
            tap(".keypad[data-target='otp'] .ok")
            screen("error", "11-wrong-code")
            assert page.locator("body[data-error='wrong_code']").count() == 1
            assert "attempts left" in page.locator("#error-text").inner_text()
            tap("#error-retry")
            screen("otp")
            type_keys("otp", code)
            tap(".keypad[data-target='otp'] .ok")
            screen("tickets")
            assert "王*" in page.locator(".ticket").inner_text()
            tap("#print")
            screen("done")
            tap("#screen-done button.home")
            # 6. ID card: a bad read asks for the card again; a good one looks the tickets up
            tap("#go-idcard")
            screen("idcard", "12-idcard-wait")
            with open(pty.host, "wb", buffering=0) as fh:
                fh.write(encode_frame(ID_NUMBER, "张三", checksum=0))
            page.locator("body[data-idcard='bad_read']").wait_for()
            page.screenshot(path=str(SHOTS / "13-idcard-bad-read.png"))
            frame = encode_frame(ID_NUMBER, "张三")
            with open(pty.host, "wb", buffering=0) as fh:
                fh.write(frame[:9])
                time.sleep(0.05)
                fh.write(frame[9:])
            screen("tickets", "14-idcard-tickets")
            assert "工作票" in page.locator(".ticket").inner_text()
            tap("#print")
            screen("done")
            assert len(printer.jobs) == 4
            # 7. printer out of paper -> out of service, and back
            printer.report("out")
            screen("out-of-service", "15-out-of-service")
            printer.report("ok")
            screen("start")
            # 8. hub unreachable -> network problem
            hub.stop()
            screen("network", "16-network")
            ctx.close()
    finally:
        printer.close()
    assert not errors, errors
