"""Collect at a kiosk, print, and walk in: the printed QR decodes to a token the gate admits.

Real hub process and Mosquitto; the real printer agent prints the hub's signed job (ESC/POS to a file)
and reports it printed; the same job, taken off the printer's topic, is rendered by the printer agent's
template code to a PNG; zbar reads it back; a real gate agent admits it, and refuses the e-ticket it
replaced.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from printer_agent.preview import TicketData, render_face
from printer_agent.template import load_template
from protocol.envelope import open_envelope
from protocol.keys import Keyring
from protocol.printing import KIND_PRINT_JOB, PrintJob
from protocol.topics import Topics
from tests.printer_helpers import decode_qr
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.processes import AgentProcess, GateProcess, HubProcess
from tests.support.scenario import Show, sell

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "collect"
PRINTER = "printer-1"


@pytest.fixture
def printer_topic(broker: Mosquitto) -> Iterator[queue.Queue[bytes]]:
    """What arrives on the printer's job topic (the test stands where the printer agent would)."""
    jobs: queue.Queue[bytes] = queue.Queue()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="printer-1-tap", protocol=paho.MQTTv5)
    client.on_message = lambda _c, _u, m: jobs.put(bytes(m.payload))
    client.connect("127.0.0.1", broker.port)
    client.subscribe(Topics().print_job(PRINTER), qos=1)
    client.loop_start()
    try:
        yield jobs
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
def printer(broker: Mosquitto, hub_process: HubProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    """The real printer agent, its ESC/POS output going to a file."""
    proc = AgentProcess(tmp_path / "printer", "printer_agent", (
        f'device_id = "{PRINTER}"\ndata_dir = "{tmp_path}/printer/data"\nhub_keys_file = "{hub_process.keys_file}"\n'
        f'status_interval = 0.5\n[mqtt]\nport = {broker.port}\n'
        f'[printer]\nkind = "file"\ndevfile = "{tmp_path}/printer/printed.bin"\n'), f"printer agent {PRINTER} started")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def gate(broker: Mosquitto, hub_process: HubProcess, show: Show, tmp_path: Path) -> Iterator[GateProcess]:
    proc = GateProcess(tmp_path / "gate", "gate-1", broker.port, hub_process.keys_file, show.group_id,
                       show.channel_id)
    proc.register(hub_process).start()
    try:
        yield proc
    finally:
        proc.stop_all()


def test_collected_ticket_prints_a_qr_the_gate_admits_and_the_e_ticket_is_revoked(
        hub_process: HubProcess, show: Show, gate: GateProcess, printer: AgentProcess,
        printer_topic: queue.Queue[bytes]) -> None:
    hub = hub_process
    e_ticket = hub.call("POST", "/tickets", json={
        "performance_id": show.performance_id, "ticket_type_id": show.adult_type, "persons": 1,
        "holder_name": "王小明", "holder_phone": "13900000000", "collection_code": "TEA-HOUSE"})
    sell(hub, show)  # someone else's ticket, not in this order
    hub.call("POST", "/users", json={"username": "kiosk-1", "password": "kiosk-password-1", "role": "kiosk"})
    login = hub.api.post("/auth/login", json={"username": "kiosk-1", "password": "kiosk-password-1"}).json()
    kiosk = {"Authorization": f"Bearer {login['token']}"}
    wait_for(lambda: hub.api.get(f"/kiosk/printers/{PRINTER}", headers=kiosk).json()["in_service"],
             what="the printer agent in service")

    found = hub.api.post("/kiosk/lookup/code", json={"code": "teahouse"}, headers=kiosk).json()
    assert [t["ticket_id"] for t in found["tickets"]] == [e_ticket["id"]]
    assert found["tickets"][0]["holder"] == "王**"
    collected = hub.api.post("/kiosk/collect", headers=kiosk, json={
        "lookup_token": found["lookup_token"], "ticket_ids": [e_ticket["id"]], "printer_id": PRINTER}).json()
    (job_ref,) = collected["jobs"]

    keys = hub.call("GET", "/keys")["keys"]
    keyring = Keyring.from_b64({int(k): v for k, v in keys.items()})
    _, body = open_envelope(printer_topic.get(timeout=5), keyring, kinds={KIND_PRINT_JOB})
    job = PrintJob.model_validate(body)
    assert (job.job_id, job.ticket_id, job.printer_id) == (job_ref["job_id"], job_ref["ticket_id"], PRINTER)

    job_state = wait_for(lambda: (j := hub.api.get(f"/kiosk/jobs/{job.job_id}", headers=kiosk).json())["status"]
                         != "queued" and j, what="the printer agent's result at the hub")
    assert job_state["status"] == "printed"
    assert job.token.encode() in (printer.workdir / "printed.bin").read_bytes()  # the native QR's data

    face = render_face(load_template(job.template), TicketData(job.token, job.ticket_id, job.job_id, job.fields))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    face.save(ARTIFACTS / "printed-ticket.png")
    assert decode_qr(face) == [job.token]

    groups = hub.call("GET", "/checkin-groups")
    seq = next(g["seq"] for g in groups if g["id"] == show.group_id)
    wait_for(lambda: any(d["device_id"] == gate.device_id and d["whitelist_seq"] == seq
                         for d in hub.call("GET", "/devices")), what="the gate to hold the reissue")
    assert gate.scan(decode_qr(face)[0]).reason == "admitted"
    assert gate.scan(e_ticket["token"]).reason == "revoked"  # the printed ticket replaced the e-ticket
