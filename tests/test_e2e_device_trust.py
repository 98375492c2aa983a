"""Issue 10, items 3 and 4, as production runs: an attacker holding one enrolled gate's broker login.

Real processes: Mosquitto with dynamic security (per-device logins and ACLs), ``python -m hub`` managing
those logins, a gate agent enrolled from its bootstrap file and approved by fingerprint into group 1.
The attacker reads the gate's broker password from its identity file (a stolen SD card without the
device key would do) and, with the gate's own login, publishes unsigned and foreign-signed batches,
asks for another hall's whitelist, listens to it, and reports a fire. None of it counts; the gate's own
signed check-ins do.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from protocol.device_signed import KIND_EMERGENCY_STATE, KIND_EVENTS, seal_device
from protocol.emergency import EmergencyState
from protocol.messages import CheckinEvent, EventBatch, SyncRequest, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics
from tests.support.net import wait_for
from tests.support.processes import GateProcess, HubProcess
from tests.support.scenario import seed_show, sell
from tests.support.secure_broker import SecureMosquitto
from tests.test_broker_security import granted
from tests.test_enrolment_contested import venue_hub

TOPICS = Topics("venue")
SERIAL = "TS-0777"


def bootstrap(tmp_path: Path, hub: HubProcess, port: int, claim_password: str) -> Path:
    keys = json.loads(hub.keys_file.read_text())
    hub_keys = ", ".join(f'"{k}" = {{ key = "{v["key"]}", purposes = {json.dumps(v["purposes"])} }}'
                         for k, v in keys.items())
    path = tmp_path / "bootstrap.toml"
    path.write_text(
        f'serial = "{SERIAL}"\nkind = "gate"\nhardware_model = "rpi4"\nidentity_dir = "{tmp_path / "identity"}"\n'
        f"resend_s = 0.5\nhub_keys = {{ {hub_keys} }}\n"
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\nusername = "claim"\npassword = "{claim_password}"\n')
    return path


def security(hub: HubProcess) -> list[dict[str, Any]]:
    return list(hub.call("GET", "/provisioning/security-events?device_id=gate-77"))


def used(hub: HubProcess, ticket_id: int) -> int:
    return int(hub.call("GET", f"/tickets/{ticket_id}")["used"])


def event(show: Any, ticket_id: int, group: int, channel: int) -> CheckinEvent:
    return CheckinEvent(event_id=uuid.uuid4().hex, device_id="gate-77", group_id=group, channel_id=channel, seq=900,
                        reason=Reason.ADMITTED, ticket_id=ticket_id, performance_id=show.performance_id,
                        ticket_type_id=show.adult_type, persons=1, scanned_at=time.time(), offline=True,
                        excerpt=None)


@pytest.fixture(name="venue")
def venue_fixture(tmp_path: Path, secure_broker: SecureMosquitto) -> Iterator[tuple[HubProcess, str]]:
    """The production hub, with a local fire alarm allowed to open every gate (from a registered fire input)."""
    yield from venue_hub(tmp_path, secure_broker, "[emergency]\nspread_local_fire = true\n")


async def test_one_gates_broker_login_cannot_burn_tickets_listen_elsewhere_or_open_the_venue(
        tmp_path: Path, secure_broker: SecureMosquitto, venue: tuple[HubProcess, str]) -> None:
    hub, claim_password = venue
    show = seed_show(hub)
    other = hub.call("POST", "/checkin-groups", json={"name": "Balcony", "venue_id": 1,
                                                      "performance_ids": [show.performance_id]})
    balcony = hub.call("POST", f"/checkin-groups/{other['id']}/channels", json={
        "name": "B1", "ticket_type_ids": [show.adult_type]})
    gate = GateProcess(tmp_path / "gate", "unprovisioned", secure_broker.port, hub.keys_file, 0, 0)
    boot = bootstrap(tmp_path, hub, secure_broker.port, claim_password)
    gate.scanner.start()
    gate._spawn(["-m", "gate_agent", "--config", str(gate.config), "--bootstrap", str(boot)])
    try:
        printed = wait_for(lambda: re.search(rf"serial {SERIAL} key fingerprint (\S+)", gate.output()), timeout=15,
                           what="the gate's fingerprint")
        wait_for(lambda: hub.call("GET", "/provisioning/requests"), timeout=15, what="its enrolment request")
        hub.call("POST", f"/provisioning/requests/{SERIAL}/approve", json={
            "fingerprint": printed.group(1), "device_id": "gate-77", "site": "Main hall", "group_id": show.group_id,
            "channel_id": show.channel_id})
        wait_for(lambda: gate._check_alive() and "gate ready" in gate.logs(), timeout=20, what="gate ready")
        gate.device_id = "gate-77"
        wait_for(lambda: any(d["device_id"] == "gate-77" and d["whitelist_seq"]
                             for d in hub.call("GET", "/devices")), timeout=15, what="the gate's whitelist")

        mine, burnt, forged = (sell(hub, show) for _ in range(3))
        assert gate.scan(mine["token"]).reason == "admitted"  # the gate's own batch: signed with its key
        wait_for(lambda: used(hub, mine["id"]) == 1, timeout=10, what="the gate's check-in at the hub")

        identity = json.loads((tmp_path / "identity" / "identity.json").read_text())
        stranger = nacl.signing.SigningKey.generate()
        async with secure_broker.client(identity["username"], identity["password"],
                                        identifier="attacker-" + uuid.uuid4().hex[:6]) as attacker:
            unsigned = EventBatch(device_id="gate-77", events=[event(show, burnt["id"], show.group_id,
                                                                     show.channel_id)])
            await attacker.publish(TOPICS.events("gate-77"), dump_message(unsigned), qos=1)
            foreign = EventBatch(device_id="gate-77", events=[event(show, forged["id"], show.group_id,
                                                                    show.channel_id)])
            await attacker.publish(TOPICS.events("gate-77"), seal_device(
                KIND_EVENTS, foreign.model_dump(mode="json"), "gate-77", stranger), qos=1)
            await attacker.publish(TOPICS.sync("gate-77"), dump_message(SyncRequest(
                device_id="gate-77", group_id=other["id"], have_seq=-1)), qos=1)
            fire = EmergencyState(device_id="gate-77", state="open", seq=0, cause="fire", at=time.time())
            await attacker.publish(TOPICS.emergency_state("gate-77"), fire.model_dump_json().encode(), qos=1)
            await attacker.publish(TOPICS.emergency_state("gate-77"), seal_device(
                KIND_EMERGENCY_STATE, fire.model_dump(mode="json"), "gate-77", stranger), qos=1)
            # the broker refuses another hall's whitelist to this login (SUBACK 0x87), grants its own
            assert not granted(await attacker.subscribe(TOPICS.group_whitelist(other["id"]), qos=1))
            assert granted(await attacker.subscribe(TOPICS.group_whitelist(show.group_id), qos=1))

        def refusals() -> list[str] | None:
            found = sorted(e["what"] for e in security(hub))
            return found if len(found) >= 5 else None

        whats = wait_for(refusals, timeout=10, what="five refusals recorded")
        assert whats == ["bad_signature", "bad_signature", "unsigned", "unsigned", "wrong_group"]
        assert (used(hub, burnt["id"]), used(hub, forged["id"])) == (0, 0)
        emergency = hub.call("GET", "/emergency")
        assert not (emergency["command"] or {}).get("open_all")  # no one opened the venue

        after = sell(hub, show)
        assert gate.scan(after["token"]).reason == "admitted"  # and the real gate still counts
        wait_for(lambda: used(hub, after["id"]) == 1, timeout=10, what="the gate's next check-in")
        assert balcony["group_id"] == other["id"]
    finally:
        gate.stop_all()
