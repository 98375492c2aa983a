"""The main job on one machine: a private Mosquitto, the hub, a simulated gate, and tickets to scan.

Run through ``scripts/demo.sh`` (which installs what is missing first). Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.processes import AgentProcess, GateProcess, HubProcess  # noqa: E402
from tests.support.scenario import seed_show, sell  # noqa: E402

DEMO_CARD_UID = "012E4CD5A7B3C901"  # a FeliCa IDm: the simulated reader emulates a Type 3 card


def main() -> None:
    work = ROOT / "var" / "demo"
    shutil.rmtree(work, ignore_errors=True)
    http_port = int(os.environ.get("DEMO_HTTP_PORT", "0")) or free_port()
    password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    broker = Mosquitto(work / "mosquitto")
    hub = HubProcess(work / "hub", broker.port, http_port=http_port, admin_password=password)
    gate: GateProcess | None = None
    extras: list[AgentProcess] = []
    try:
        print(f"starting Mosquitto on 127.0.0.1:{broker.port} ...", flush=True)
        broker.start()
        print(f"starting the hub on {hub.base_url} ...", flush=True)
        hub.config.write_text(hub.config.read_text() + f'[sms]\ngateway = "file"\npath = "{work}/hub/sms.txt"\n')
        hub.start()
        show = seed_show(hub)
        guard_password = secrets.token_urlsafe(9)
        hub.call("POST", "/users", json={"username": "guard", "password": guard_password, "role": "security"})
        tickets = [("adult, 1 person", sell(hub, show)),
                   ("group, 4 persons", sell(hub, show, persons=4)),
                   ("staff ticket (not accepted at this channel)", sell(hub, show, show.staff_type))]
        now = datetime.now(UTC)
        hub.call("POST", "/cards", json={
            "uid": DEMO_CARD_UID, "kind": "annual", "holder_name": "李雷 Li Lei", "entries_per_day": 1,
            "valid_from": (now - timedelta(days=1)).isoformat(), "valid_until": (now + timedelta(days=365)).isoformat(),
            "channel_ids": [show.channel_id]})
        rfid_port = free_port()
        gate = GateProcess(work / "gate-1", "gate-1", broker.port, hub.keys_file, show.group_id, show.channel_id,
                           extra_args=("--sim",), extra_config=f'[rfid]\npath = "udp:localhost:{rfid_port}"\n')
        print("starting gate agent gate-1 --sim (turnstile on gpiozero's MockFactory with a simulated patron, "
              "serial scanner on a pty, camera on an image folder, RFID over nfcpy's udp driver) ...", flush=True)
        gate.register(hub, fire_input=True)  # as ops would: its key, group and channel into the hub's registry
        gate.start()
        scan_port = gate.scanner.host
        links = {"scanner": scan_port, "camera": gate.data_dir / "sim-camera"}
        for name, target in links.items():
            (work / name).unlink(missing_ok=True)
            (work / name).symlink_to(target)
        (work / "rfid-port").write_text(str(rfid_port))
        printer = AgentProcess(work / "printer-1", "printer_agent", (
            f'device_id = "printer-1"\ndata_dir = "{work}/printer-1/data"\nhub_keys_file = "{hub.keys_file}"\n'
            f'[mqtt]\nport = {broker.port}\n[printer]\nkind = "file"\ndevfile = "{work}/printer-1/printed.bin"\n'),
            "printer agent printer-1 started")
        printer.start()
        extras.append(printer)
        kiosk_password = secrets.token_urlsafe(12)
        hub.call("POST", "/users", json={"username": "kiosk-1", "password": kiosk_password, "role": "kiosk"})
        kiosk_port = free_port()
        kiosk = AgentProcess(work / "kiosk-1", "kiosk_agent", (
            f'device_id = "kiosk-1"\nprinter_id = "printer-1"\nheartbeat = true\n[hub]\nurl = "{hub.base_url}"\n'
            f'username = "kiosk-1"\n[id_reader]\nenabled = false\n[ui]\nport = {kiosk_port}\n'
            f'[mqtt]\nport = {broker.port}\n'),
            "kiosk kiosk-1 ready", env={"KIOSK__HUB__PASSWORD": kiosk_password})
        kiosk.start()
        extras.append(kiosk)
        print(f"""
Ready.
  Hub API docs:   {hub.base_url}/docs     (user: admin  password: {password})
  Staff console:  {hub.base_url}/console  (security user: guard  password: {guard_password})
  Fire alarm:     touch {gate.data_dir}/sim-fire-alarm   (rm it to reset the contact; clear in the console)
  Scan a ticket with the serial scanner:  scripts/scan.sh <token>
  Hold a phone up to the camera:         scripts/scan.sh --camera <token>
  Tap an NFC ticket or annual pass:      scripts/scan.sh --nfc <token>   /   scripts/scan.sh --card {DEMO_CARD_UID}
Tickets sold for performance {show.performance_id}:""")
        for label, t in tickets:
            print(f"  #{t['id']:<4} {label}\n        scripts/scan.sh {t['token']}")
        code = tickets[0][1]["collection_code"]
        print(f"  Kiosk (自助取票机): http://127.0.0.1:{kiosk_port}/  collection code {code} (ticket #1),\n"
              f"        or phone 13800000000 with the SMS code from {work}/hub/sms.txt; printed tickets go to\n"
              f"        {work}/printer-1/printed.bin (ESC/POS; docs/printer.md shows a PNG preview)")
        print(f"  Annual pass (年卡) with card UID {DEMO_CARD_UID}, one entry a day:\n"
              f"        scripts/scan.sh --card {DEMO_CARD_UID}")
        api = f"{hub.base_url}/api/v1"
        login = (f"curl -s {api}/auth/login -H 'Content-Type: application/json' "
                 f"-d '{{\"username\":\"admin\",\"password\":\"{password}\"}}' | "
                 "python3 -c 'import sys,json; print(json.load(sys.stdin)[\"token\"])'")
        print(f"  Refund #1, then scan it again (the gate says refunded within a second):\n"
              f"        curl -X POST {api}/tickets/1/refund -H \"Authorization: Bearer $({login})\" "
              "-H 'Content-Type: application/json' -d '{}'\n\nGate output follows (Ctrl-C to stop):\n", flush=True)
        shown = 0
        while True:
            text = gate.output()
            if len(text) > shown:
                print(text[shown:], end="", flush=True)
                shown = len(text)
            if not gate.alive() or not hub.alive():
                print("a process stopped; see var/demo/*/*.err", file=sys.stderr)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        for proc in extras:
            proc.stop()
        if gate:
            gate.stop_all()
        hub.stop()
        broker.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    main()
