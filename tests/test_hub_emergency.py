"""Emergency release at the hub, against real SQLite and a real Mosquitto; the test plays the gates.

The gates are registered at the hub and sign their emergency states with their own keys (the hub
believes nothing else: tests/test_hub_device_trust.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hub.config import Settings, load_settings
from hub.services import ingest
from protocol.device_signed import KIND_EMERGENCY_STATE, seal_device
from protocol.emergency import KIND_EMERGENCY, EmergencyCommand, EmergencyState
from protocol.envelope import open_envelope
from protocol.messages import CheckinEvent, EventBatch, GateStatus, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics
from tests.hubkit import (  # noqa: F401
    ADMIN_PASSWORD,
    Hub,
    device,
    hub_fixture,
    mqtt_hub_fixture,
    run_hub,
    security_events,
    sell,
    setup_show,
)
from tests.support.broker import Mosquitto
from tests.support.devices import TestDevice
from tests.support.net import wait_for
from tests.test_hub_mqtt import gate, receive

TOPICS = Topics("venue")
ALL = {"scope": {"all": True}, "reason": "fire in hall B"}
hub_at = contextmanager(run_hub)


def settings(tmp_path: Path, port: int, **emergency: Any) -> Settings:
    return load_settings(None, database_url=f"sqlite:///{tmp_path}/hub.db", key_file=tmp_path / "signing.key",
                         mqtt={"port": port, "prefix": "venue"},
                         admin={"username": "admin", "password": ADMIN_PASSWORD},
                         emergency={"resend_interval": 0.3, **emergency})


@contextmanager
def emergency_hub(tmp_path: Path, broker: Mosquitto, **emergency: Any) -> Iterator[Hub]:
    with hub_at(settings(tmp_path, broker.port, **emergency), True) as hub:
        yield hub


def board(hub: Hub, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = hub.client.get("/api/v1/emergency", headers=headers or hub.admin)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def gate_row(hub: Hub, device_id: str) -> dict[str, Any]:
    return next(g for g in board(hub)["gates"] if g["device_id"] == device_id)


def status(device_id: str, group: int, channel: int) -> bytes:
    return dump_message(GateStatus(device_id=device_id, state="online", at=time.time(), group_id=group,
                                   channel_id=channel))


def report(gate: TestDevice, state: str, seq: int, cause: str | None = "command", *,
           device_id: str | None = None) -> bytes:
    """The gate's emergency state, signed with its key (naming ``device_id``, if given, in place of its own)."""
    return gate.emergency(EmergencyState(device_id=device_id or gate.device_id, state=state,  # type: ignore[arg-type]
                                         seq=seq, cause=cause, at=time.time()))


def command_of(hub: Hub, msg: aiomqtt.Message) -> EmergencyCommand:
    kind, payload = open_envelope(bytes(msg.payload), hub.keyring, kinds={KIND_EMERGENCY})  # type: ignore[arg-type]
    assert kind == KIND_EMERGENCY
    return EmergencyCommand.from_wire(payload)


def test_only_security_may_open_or_clear_and_every_call_is_audited(hub: Hub) -> None:
    guard, viewer = hub.user("guard", "security"), hub.user("watcher", "viewer")
    r = hub.client.post("/api/v1/emergency/open", json=ALL, headers=hub.admin)
    assert r.status_code == 403 and "only the security role" in r.json()["detail"]
    assert hub.client.post("/api/v1/emergency/open", json=ALL, headers=viewer).status_code == 403
    assert hub.client.post("/api/v1/emergency/clear", json=ALL, headers=hub.admin).status_code == 403
    assert hub.client.post("/api/v1/emergency/open", json=ALL).status_code == 401
    assert hub.client.get("/api/v1/emergency").status_code == 401
    assert hub.client.get("/api/v1/emergency", headers=hub.user("till", "box_office")).status_code == 403

    opened = hub.post("/emergency/open", ALL, guard)
    assert opened["seq"] == 1 and opened["open_all"] and opened["issued_by"] == "guard"
    cleared = hub.post("/emergency/clear", {"scope": {"all": True}, "reason": "all clear"}, guard)
    assert cleared["seq"] == 2 and not cleared["open_all"] and cleared["reason"] == "all clear"
    shown = board(hub, viewer)
    assert shown["command"] == cleared and shown["active"] is False
    audit = [a for a in hub.client.get("/api/v1/audit", headers=hub.admin).json() if a["action"].startswith("emerg")]
    assert [(a["action"], a["username"], a["target"]) for a in reversed(audit)] == [
        ("emergency.open", "guard", "emergency:1"), ("emergency.clear", "guard", "emergency:2")]
    assert '"all": true' in audit[-1]["detail"] and "fire in hall B" in audit[-1]["detail"]


def test_whole_state_semantics_and_unknown_ids(hub: Hub) -> None:
    show = setup_show(hub)
    other = hub.post("/checkin-groups", {"name": "Balcony", "venue_id": show["venue"]})["id"]
    guard = hub.user("guard", "security")

    def call(action: str, scope: dict[str, Any], code: int = 201) -> dict[str, Any]:
        return hub.post(f"/emergency/{action}", {"scope": scope, "reason": "drill"}, guard, code)  # type: ignore[no-any-return]

    state = call("open", {"group_ids": [show["group"]]})
    state = call("open", {"channel_ids": [show["channel"]], "group_ids": [other]})
    assert (state["open_all"], state["open_group_ids"], state["open_channel_ids"]) == (
        False, sorted([show["group"], other]), [show["channel"]])
    state = call("clear", {"group_ids": [show["group"]]})
    assert (state["open_group_ids"], state["open_channel_ids"]) == ([other], [show["channel"]])
    assert "GET /api/v1/checkin-groups" in call("open", {"group_ids": [4242]}, 404)["detail"]
    assert "GET /api/v1/channels" in call("clear", {"channel_ids": [4242]}, 404)["detail"]
    call("open", {"all": True, "group_ids": [other]}, 422)
    call("open", {}, 422)
    state = call("open", {"all": True})
    assert "clear all" in call("clear", {"group_ids": [other]}, 409)["detail"].lower()
    state = call("clear", {"all": True})
    assert (state["seq"], state["open_all"], state["open_group_ids"], state["open_channel_ids"]) == (5, False, [], [])


async def test_retained_signed_command_and_seq_survive_a_restart(tmp_path: Path, broker: Mosquitto) -> None:
    with emergency_hub(tmp_path, broker) as hub:
        guard = hub.user("guard", "security")
        seqs = [hub.post("/emergency/open", ALL, guard)["seq"],
                hub.post("/emergency/clear", {"scope": {"all": True}, "reason": "drill over"}, guard)["seq"],
                hub.post("/emergency/open", ALL, guard)["seq"]]
        assert seqs == [1, 2, 3]
        await asyncio.sleep(0.3)
        async with gate(broker, "late-gate", TOPICS.emergency_command()) as client:
            msg = await receive(client)
            assert msg.retain and command_of(hub, msg).seq == 3 and command_of(hub, msg).open_all
        keyring = hub.keyring
    async with gate(broker, "cleaner") as client:  # the broker loses its retained command
        await client.publish(TOPICS.emergency_command(), b"", qos=1, retain=True)
    with emergency_hub(tmp_path, broker) as hub:
        async with gate(broker, "late-gate-2", TOPICS.emergency_command()) as client:
            _kind, payload = open_envelope(bytes((await receive(client)).payload), keyring)  # type: ignore[arg-type]
            assert EmergencyCommand.from_wire(payload).seq == 3  # re-published by the hub on connect
        guard = hub.user("guard2", "security")
        assert hub.post("/emergency/clear", {"scope": {"all": True}, "reason": "x"}, guard)["seq"] == 4


async def test_board_shows_who_confirmed_and_the_hub_resends_until_all_did(
        tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with emergency_hub(tmp_path, broker) as hub:
        show = setup_show(hub)
        other = hub.post("/checkin-groups", {"name": "Balcony", "venue_id": show["venue"]})["id"]
        balcony = hub.post(f"/checkin-groups/{other}/channels", {"name": "B1", "ticket_type_ids": [show["adult"]]})
        guard = hub.user("guard", "security")
        places = {"gate-1": (show["group"], show["channel"]), "gate-2": (show["group"], show["channel"]),
                  "gate-3": (other, balcony["id"])}
        gates = {name: device(hub, name, show, group=group, channel=channel)
                 for name, (group, channel) in places.items()}
        async with gate(broker, "gates", TOPICS.emergency_command()) as client:
            for name, (group, channel) in places.items():
                await client.publish(TOPICS.status(name), status(name, group, channel), qos=1, retain=True)
            await asyncio.to_thread(wait_for, lambda: len(board(hub)["gates"]) == 3, 5, 0.05, "gates known")
            cmd = hub.post("/emergency/open", {"scope": {"group_ids": [show["group"]]}, "reason": "smoke"}, guard)
            assert command_of(hub, await receive(client)).seq == cmd["seq"]
            await client.publish(TOPICS.emergency_state("gate-1"), report(gates["gate-1"], "open", cmd["seq"]),
                                 qos=1, retain=True)
            await client.publish(TOPICS.emergency_state("gate-3"), report(gates["gate-3"], "normal", cmd["seq"], None),
                                 qos=1, retain=True)
            await asyncio.to_thread(wait_for, lambda: gate_row(hub, "gate-3")["confirmed"], 5, 0.05, "gate-3")
            rows = {g["device_id"]: g for g in board(hub)["gates"]}
            assert (rows["gate-1"]["in_scope"], rows["gate-1"]["confirmed"], rows["gate-1"]["state"]) == (
                True, True, "open")
            assert rows["gate-1"]["confirmed_at"] is not None
            assert (rows["gate-2"]["in_scope"], rows["gate-2"]["confirmed"], rows["gate-2"]["state"]) == (
                True, False, None)
            assert (rows["gate-3"]["in_scope"], rows["gate-3"]["wanted"]) == (False, "normal")
            assert board(hub)["gates_unconfirmed"] == ["gate-2"]

            again = await receive(client, within=3)  # gate-2 is silent: the hub re-publishes
            assert command_of(hub, again).seq == cmd["seq"]
            assert "not confirmed by 1 online gate(s)" in caplog.text and "gate-2" in caplog.text
            await client.publish(TOPICS.emergency_state("gate-2"), report(gates["gate-2"], "open", cmd["seq"]), qos=1)
            await asyncio.to_thread(wait_for, lambda: not board(hub)["gates_unconfirmed"], 5, 0.05, "all confirmed")
            with pytest.raises(TimeoutError):
                while True:  # a resend already in flight may still arrive; then nothing more
                    await receive(client, within=1.0)


async def test_malformed_emergency_states_are_dropped(mqtt_hub: Hub, broker: Mosquitto,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    gate7 = device(mqtt_hub, "gate-7", setup_show(mqtt_hub))

    def signed(body: dict[str, Any]) -> bytes:  # a state the model refuses, signed by the gate itself
        return seal_device(KIND_EMERGENCY_STATE, body, "gate-7", gate7.key)

    async with gate(broker, "gate-7") as client:
        topic = TOPICS.emergency_state("gate-7")
        await client.publish(topic, b"\xff not json", qos=1)  # not even signed
        await client.publish(topic, report(gate7, "open", 1, device_id="gate-8"), qos=1)  # another device's id
        await client.publish(topic, signed({"v": 1, "device_id": "gate-7", "state": "ajar", "seq": 1,
                                            "cause": "command", "at": time.time()}), qos=1)
        await client.publish(topic, signed({"v": 1, "device_id": "gate-7", "state": "open", "at": 1}), qos=1)
        await client.publish(topic, report(gate7, "open", 0, "button"), qos=1)
    row = await asyncio.to_thread(wait_for, lambda: [g for g in board(mqtt_hub)["gates"] if g["device_id"] == "gate-7"],
                                  5, 0.05, "good report stored")
    assert (row[0]["state"], row[0]["cause"]) == ("open", "button")
    assert caplog.text.count("dropped bad message on venue/device/gate-7/emergency") == 2  # "ajar", no seq
    assert security_events(mqtt_hub, "gate-7") == ["foreign_device", "unsigned"]


async def test_a_local_fire_opens_every_gate_once(tmp_path: Path, broker: Mosquitto) -> None:
    with emergency_hub(tmp_path, broker, spread_local_fire=True) as hub:
        show = setup_show(hub)
        detectors = [device(hub, name, show, fire_input=True) for name in ("gate-1", "gate-2")]
        async with gate(broker, "gates", TOPICS.emergency_command()) as client:
            await client.publish(TOPICS.emergency_state("gate-1"), report(detectors[0], "open", 0, "fire"), qos=1)
            cmd = command_of(hub, await receive(client))
            assert (cmd.seq, cmd.open_all, cmd.issued_by) == (1, True, "fire-alarm:gate-1")
            for one in detectors:  # the same fire again, and a second detector
                await client.publish(TOPICS.emergency_state(one.device_id), report(one, "open", 1, "fire"), qos=1)
            await asyncio.to_thread(wait_for, lambda: len(board(hub)["gates"]) == 2, 5, 0.05, "both stored")
            await asyncio.sleep(0.3)
            assert board(hub)["command"]["seq"] == 1
        audit = hub.client.get("/api/v1/audit", headers=hub.admin).json()
        assert [a["username"] for a in audit if a["action"] == "emergency.open"] == ["fire-alarm:gate-1"]


def test_fire_is_not_spread_by_default(hub: Hub) -> None:
    from hub.services import emergency

    fires = emergency.store_states(hub.ctx, [EmergencyState(device_id="g", state="open", seq=0, cause="fire",
                                                            at=1.0)])
    assert fires == ["g"] and board(hub)["command"]["seq"] == 0
    assert hub.settings.emergency.spread_local_fire is False


def test_evacuation_count_per_zone(hub: Hub) -> None:
    show = setup_show(hub)
    balcony = hub.post("/checkin-groups", {"name": "Balcony", "venue_id": show["venue"]})["id"]
    family, solo = sell(hub, show, persons=4), sell(hub, show)

    def ev(reason: Reason, ticket: dict[str, Any] | None, persons: int, direction: str = "entry",
           annuls: str | None = None) -> CheckinEvent:
        return CheckinEvent(event_id=uuid.uuid4().hex, device_id="gate-1", group_id=show["group"],
                            channel_id=show["channel"], seq=1, reason=reason,
                            ticket_id=ticket["id"] if ticket else None, persons=persons,
                            direction=direction, scanned_at=time.time(), annuls=annuls)  # type: ignore[arg-type]

    first = ev(Reason.ADMITTED, family, 4)
    events = [first, ev(Reason.ADMITTED, solo, 1), ev(Reason.ANNULLED, family, 1, annuls=first.event_id),
              ev(Reason.EXIT, None, 1, "exit"), ev(Reason.ALREADY_USED, solo, 0)]
    ingest.store_batches(hub.ctx, [EventBatch(device_id="gate-1", events=events)])
    count = board(hub)["evacuation"]
    zones = {z["group_id"]: z for z in count["groups"]}
    assert (zones[show["group"]]["admitted"], zones[show["group"]]["annulled"], zones[show["group"]]["exits"],
            zones[show["group"]]["inside"]) == (5, 1, 1, 3)
    assert zones[balcony]["inside"] == 0 and count["total_inside"] == 3 and "exit" in count["formula"]
    later = hub.client.get(f"/api/v1/emergency?since={time.time() + 60}", headers=hub.admin).json()
    assert later["evacuation"]["total_inside"] == 0
