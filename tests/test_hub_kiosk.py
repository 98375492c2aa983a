"""Self-service collection: lookups (code, ID card, phone + SMS code), guards, collection with signed print
jobs over a real Mosquitto, print results, printer state and staff reprints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from protocol.envelope import open_envelope
from protocol.messages import GateStatus, dump_message
from protocol.printing import KIND_PRINT_JOB, PrinterCondition, PrintJob, PrintResult
from protocol.topics import Topics
from protocol.whitelist import KIND_DELTA, Delta
from tests.hubkit import Hub, iso, make_settings, run_hub, setup_show
from tests.support.broker import Mosquitto
from tests.support.net import free_port, wait_for
from tests.test_hub_http import check
from tests.test_hub_mqtt import gate, receive

TOPICS = Topics("venue")
PHONE = "13912345678"
ID_NUMBER = "11010519491231002X"


@pytest.fixture(name="hub")
def kiosk_hub(tmp_path: Path) -> Iterator[Hub]:
    settings = make_settings(tmp_path, free_port())
    settings.sms.path = tmp_path / "sms.txt"
    yield from run_hub(settings, wait_mqtt=False)


@pytest.fixture(name="mqtt_hub")
def kiosk_mqtt_hub(tmp_path: Path, broker: Mosquitto) -> Iterator[Hub]:
    settings = make_settings(tmp_path, broker.port)
    settings.sms.path = tmp_path / "sms.txt"
    yield from run_hub(settings, wait_mqtt=True)


def buy(hub: Hub, show: dict[str, int], code: str | None = None, **holder: Any) -> dict[str, Any]:
    body = {"performance_id": show["performance"], "ticket_type_id": show["adult"], "persons": 1,
            "holder_name": "张三", "holder_phone": PHONE, "holder_id_number": ID_NUMBER, **holder}
    if code is not None:
        body["collection_code"] = code
    result: dict[str, Any] = hub.post("/tickets", body)
    return result


def kiosk(hub: Hub, path: str, body: dict[str, Any], headers: dict[str, str], status: int = 200) -> Any:
    r = hub.client.post("/api/v1/kiosk/" + path, json=body, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def sms_code(hub: Hub, phone: str = PHONE) -> str:
    lines = [line.split("\t") for line in hub.settings.sms.path.read_text().splitlines()]
    return [code for p, code in lines if p == phone][-1]


def test_lookups_by_code_id_card_and_phone(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    show = setup_show(hub)
    first = buy(hub, show, code="ab23-cd45")
    buy(hub, show, code="AB23CD45")
    other = buy(hub, show, holder_name="Li Lei", holder_phone="13700000000", holder_id_number="X1")
    assert first["collection_code"] == "AB23CD45"
    assert len(other["collection_code"]) == 8 and not set(other["collection_code"]) & set("01OI")
    box = hub.user("kim", "kiosk")

    found = kiosk(hub, "lookup/code", {"code": "ab23 cd45"}, box)
    assert [t["holder"] for t in found["tickets"]] == ["张*", "张*"] and found["lookup_token"]
    t = found["tickets"][0]
    adult = {"id": show["adult"], "name": "Adult", "name_zh": "成人票"}
    assert t == {"ticket_id": first["id"], "performance_id": show["performance"], "performance_name": "Swan Lake",
                 "starts_at": t["starts_at"], "ticket_type": adult, "persons": 1, "holder": "张*",
                 "status": "collectable"}
    assert len(kiosk(hub, "lookup/id-card", {"id_number": ID_NUMBER.lower()}, box)["tickets"]) == 2
    assert kiosk(hub, "lookup/code", {"code": other["collection_code"]}, box)["tickets"][0]["holder"] == "L* ***"
    missing = kiosk(hub, "lookup/code", {"code": "ZZZZZZZZ"}, box, status=404)
    assert missing["code"] == "not_found" and missing["detail_zh"] and missing["detail"]
    assert kiosk(hub, "otp/request", {"phone": "13000000000"}, box, status=404)["code"] == "not_found"

    with caplog.at_level("INFO"):
        assert kiosk(hub, "otp/request", {"phone": PHONE}, box) == {"sent": True, "expires_in": 300.0}
    code = sms_code(hub)
    assert code not in caplog.text
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = kiosk(hub, "lookup/phone", {"phone": PHONE, "otp": wrong}, box, status=401)
    assert refused["code"] == "wrong_code" and refused["attempts_left"] == 4
    assert len(kiosk(hub, "lookup/phone", {"phone": PHONE, "otp": code}, box)["tickets"]) == 2
    assert kiosk(hub, "lookup/phone", {"phone": PHONE, "otp": code}, box, status=401)["code"] == "code_expired"

    viewer = hub.user("vic", "viewer")
    assert kiosk(hub, "lookup/code", {"code": "AB23CD45"}, viewer, status=403)
    assert hub.client.get("/api/v1/venues", headers=box).status_code == 403  # a kiosk is not staff
    audit = hub.client.get("/api/v1/audit", headers=hub.admin).json()
    actions = {a["action"] for a in audit}
    assert {"kiosk.lookup.code", "kiosk.lookup.id_card", "kiosk.otp.request", "kiosk.otp.verify",
            "kiosk.lookup.phone"} <= actions
    assert not any(code in a["detail"] + a["target"] or ID_NUMBER in a["target"] for a in audit)


def test_wrong_codes_lock_the_phone_and_lookups_are_rate_limited(hub: Hub) -> None:
    show = setup_show(hub)
    buy(hub, show, code="LOCK2345")
    box = hub.user("kim", "kiosk")
    kiosk(hub, "otp/request", {"phone": PHONE}, box)
    code = sms_code(hub)
    wrong = f"{(int(code) + 7) % 1_000_000:06d}"
    left = [kiosk(hub, "lookup/phone", {"phone": PHONE, "otp": wrong}, box, status=401)["attempts_left"]
            for _ in range(4)]
    assert left == [4, 3, 2, 1]
    locked = kiosk(hub, "lookup/phone", {"phone": PHONE, "otp": wrong}, box, status=423)
    assert locked["code"] == "locked" and 890 <= locked["retry_after"] <= 900
    assert kiosk(hub, "lookup/phone", {"phone": PHONE, "otp": code}, box, status=423)["code"] == "locked"
    assert kiosk(hub, "otp/request", {"phone": PHONE}, box, status=423)["code"] == "locked"

    for _ in range(5):
        kiosk(hub, "lookup/code", {"code": "LOCK2345"}, box)
    r = hub.client.post("/api/v1/kiosk/lookup/code", json={"code": "LOCK2345"}, headers=box)
    assert r.status_code == 429 and r.json()["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    kiosk(hub, "lookup/id-card", {"id_number": ID_NUMBER}, box)  # another subject is not limited


def status(printer: str, **condition: Any) -> bytes:
    cond = PrinterCondition(online=True, **condition).model_dump()
    return dump_message(GateStatus(device_id=printer, state="online", at=time.time(), kind="printer", printer=cond))


async def test_collect_replaces_the_eticket_prints_signed_and_tracks_the_job(mqtt_hub: Hub, broker: Mosquitto) -> None:
    hub = mqtt_hub
    show = setup_show(hub)
    tickets = [buy(hub, show, code="PAIR2345") for _ in range(2)]
    box = hub.user("kim", "kiosk")
    async with gate(broker, "printer-1", TOPICS.print_job("printer-1"),
                    TOPICS.group_whitelist(show["group"])) as printer:
        found = await asyncio.to_thread(kiosk, hub, "lookup/code", {"code": "PAIR2345"}, box)
        body = {"lookup_token": found["lookup_token"], "ticket_ids": [tickets[0]["id"]], "printer_id": "printer-1"}
        jobs = (await asyncio.to_thread(kiosk, hub, "collect", body, box))["jobs"]
        assert len(jobs) == 1 and jobs[0]["ticket_id"] != tickets[0]["id"]
        new_id = jobs[0]["ticket_id"]
        deltas: list[Delta] = []
        job: PrintJob | None = None
        while job is None or len(deltas) < 2:
            msg = await receive(printer)
            kind, payload = open_envelope(bytes(msg.payload), hub.keyring)  # signed by the hub key
            if kind == KIND_PRINT_JOB:
                job = PrintJob.model_validate(payload)
            else:
                assert kind == KIND_DELTA
                deltas.append(Delta.from_wire(payload))
        assert [(d.op, d.entry.ticket_id if d.entry else None) for d in deltas] == [
            ("void", tickets[0]["id"]), ("sale", new_id)]
        assert job.job_id == jobs[0]["job_id"] and job.ticket_id == new_id and job.template == "ticket"
        assert job.fields["holder"] == "张*" and job.fields["ticket_type_zh"] == "成人票"
        assert job.fields["performance"] == "Swan Lake" and job.fields["venue"] == "Grand Theatre"
        assert check(hub, tickets[0]["token"], show["channel"])["reason"] == "revoked"
        assert check(hub, job.token, show["channel"])["admitted"]

        again = await asyncio.to_thread(kiosk, hub, "collect", body, box, 409)
        assert again["code"] == "already_collected" and again["detail_zh"].startswith("已取票")
        relook = await asyncio.to_thread(kiosk, hub, "lookup/code", {"code": "PAIR2345"}, box)
        assert {t["ticket_id"]: t["status"] for t in relook["tickets"]} == {
            tickets[1]["id"]: "collectable", new_id: "collected"}

        result = PrintResult(printer_id="printer-1", job_id=job.job_id, status="printed", at=time.time())
        await printer.publish(TOPICS.print_result("printer-1"), result.model_dump_json(), qos=1)
        url = f"/api/v1/kiosk/jobs/{job.job_id}"
        await asyncio.to_thread(wait_for, lambda: hub.client.get(url, headers=box).json()["status"] == "printed",
                                5, 0.05, "job printed")

        await printer.publish(TOPICS.status("printer-1"), status("printer-1", paper="out"), qos=1, retain=True)
        url = "/api/v1/kiosk/printers/printer-1"
        state = await asyncio.to_thread(wait_for, lambda: hub.client.get(url, headers=box).json()["paper"] == "out",
                                        5, 0.05, "paper out seen")
        state = hub.client.get(url, headers=box).json()
        assert state["in_service"] is False and state["reason"] == "paper_out" and state["online"] is True
        await printer.publish(TOPICS.status("printer-1"), status("printer-1", paper="ok", cover="closed"), qos=1,
                              retain=True)
        await asyncio.to_thread(wait_for, lambda: hub.client.get(url, headers=box).json()["in_service"], 5, 0.05,
                                "printer back in service")
        assert hub.client.get("/api/v1/kiosk/printers/nope", headers=box).json()["reason"] == "never_seen"

        staff = hub.user("bo", "box_office")
        r = hub.client.post(f"/api/v1/tickets/{new_id}/reprint", json={"printer_id": "printer-1",
                                                                      "reason": "paper jam"}, headers=box)
        assert r.status_code == 403
        r = hub.client.post(f"/api/v1/tickets/{tickets[1]['id']}/reprint", json={"printer_id": "printer-1",
                                                                               "reason": "x"}, headers=staff)
        assert r.status_code == 409 and "not been collected" in r.json()["detail"]
        r = hub.client.post(f"/api/v1/tickets/{new_id}/reprint", json={"printer_id": "printer-1",
                                                                      "reason": "paper jam"}, headers=staff)
        assert r.status_code == 200, r.text
        reprinted = r.json()["jobs"][0]
        while True:
            kind, payload = open_envelope(bytes((await receive(printer)).payload), hub.keyring)
            if kind == KIND_PRINT_JOB:
                break
        assert payload["job_id"] == reprinted["job_id"] and payload["ticket_id"] == reprinted["ticket_id"] != new_id
        assert check(hub, job.token, show["channel"])["reason"] == "revoked"  # the first paper ticket is void now
    audit = hub.client.get("/api/v1/audit", headers=hub.admin).json()
    assert any(a["action"] == "ticket.reprint" and "paper jam" in a["detail"] for a in audit)


def test_same_token_printed_when_the_policy_is_off_and_stale_lookups_refused(hub: Hub) -> None:
    show = setup_show(hub)
    now = datetime.now(UTC)
    perf = hub.post("/performances", {"venue_id": show["venue"], "name": "Nutcracker", "print_replaces_eticket": False,
                                      "doors_open": iso(now), "starts_at": iso(now + timedelta(hours=1)),
                                      "ends_at": iso(now + timedelta(hours=3))})
    assert perf["print_replaces_eticket"] is False
    ticket = buy(hub, {**show, "performance": perf["id"]}, code="KEEP2345")
    other = buy(hub, show, code="ELSE2345")
    box, box2 = hub.user("kim", "kiosk"), hub.user("kay", "kiosk")
    found = kiosk(hub, "lookup/code", {"code": "KEEP2345"}, box)
    body = {"lookup_token": found["lookup_token"], "ticket_ids": [ticket["id"]], "printer_id": "printer-1"}
    assert kiosk(hub, "collect", {**body, "lookup_token": "nope"}, box, 403)["code"] == "lookup_expired"
    assert kiosk(hub, "collect", body, box2, 403)["code"] == "lookup_expired"  # another kiosk's lookup
    assert kiosk(hub, "collect", {**body, "ticket_ids": [other["id"]]}, box, 403)["code"] == "not_in_lookup"
    clock = hub.ctx.clock
    hub.ctx.clock = lambda: clock() + 200
    try:
        assert kiosk(hub, "collect", body, box, 403)["code"] == "lookup_expired"
    finally:
        hub.ctx.clock = clock
    jobs = kiosk(hub, "collect", body, box)["jobs"]
    assert jobs[0]["ticket_id"] == ticket["id"]
    row = hub.client.get(f"/api/v1/tickets/{ticket['id']}", headers=hub.admin).json()
    assert row["status"] == "valid" and row["collected_at"] and row["token"] == ticket["token"]
    job = hub.client.get(f"/api/v1/kiosk/jobs/{jobs[0]['job_id']}", headers=box).json()
    assert job["status"] == "queued" and job["printer_id"] == "printer-1" and job["kind"] == "collect"
    assert kiosk(hub, "collect", body, box, 409)["code"] == "already_collected"
