"""Issue 10, items 3 and 4: a device is believed only about itself, and only when it signs.

Each attack is performed with a real hub and a real Mosquitto: the test plays a gate with an aiomqtt
client. To show that a refused message changed nothing, a valid one is sent after it and waited for.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import nacl.signing
import pytest

from protocol.device_signed import KIND_EVENTS, seal_device
from protocol.emergency import EmergencyState
from protocol.envelope import open_envelope
from protocol.messages import AckPayload, CheckinEvent, EventBatch, GateStatus, SyncRequest, dump_message
from protocol.reasons import Reason
from tests.hubkit import Hub, login, mqtt_hub_fixture, sell, setup_show  # noqa: F401  (fixture)
from tests.support.broker import Mosquitto
from tests.support.devices import TestDevice, register, registration
from tests.support.net import wait_for
from tests.test_hub_emergency import TOPICS, board, emergency_hub, gate, receive


def event(device: str, show: dict[str, int], ticket_id: int, *, group: int | None = None,
          channel: int | None = None, seq: int = 1) -> CheckinEvent:
    return CheckinEvent(event_id=uuid.uuid4().hex, device_id=device, group_id=group or show["group"],
                        channel_id=channel or show["channel"], seq=seq, reason=Reason.ADMITTED, ticket_id=ticket_id,
                        performance_id=show["performance"], ticket_type_id=show["adult"], persons=1,
                        scanned_at=time.time(), offline=True, excerpt=None)


def used(hub: Hub, ticket_id: int) -> int:
    return int(hub.client.get(f"/api/v1/tickets/{ticket_id}", headers=hub.admin).json()["used"])


def security(hub: Hub, device_id: str) -> list[dict[str, Any]]:
    r = hub.client.get(f"/api/v1/provisioning/security-events?device_id={device_id}", headers=hub.admin)
    assert r.status_code == 200, r.text
    return list(r.json())


def whats(hub: Hub, device_id: str) -> list[str]:
    return sorted(e["what"] for e in security(hub, device_id))


async def acked(client: Any, hub: Hub, within: float = 5.0) -> AckPayload:
    msg = await receive(client, within)
    _kind, body = open_envelope(bytes(msg.payload), hub.keyring)
    return AckPayload.model_validate(body)


def other_group(hub: Hub, show: dict[str, int]) -> tuple[int, int]:
    group = hub.post("/checkin-groups", {"name": "Balcony", "venue_id": show["venue"],
                                         "performance_ids": [show["performance"]]})["id"]
    channel = hub.post(f"/checkin-groups/{group}/channels", {"name": "B1", "ticket_type_ids": [show["adult"]]})
    return group, channel["id"]


async def test_a_registered_gates_signed_batch_is_stored_and_an_unsigned_or_forged_one_is_not(
        mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    gate1 = register(mqtt_hub.post, "gate-1", show["group"], show["channel"])
    forged, unsigned, good = (sell(mqtt_hub, show)["id"] for _ in range(3))
    stranger = nacl.signing.SigningKey.generate()
    async with gate(broker, "gate-1", TOPICS.ack("gate-1")) as client:
        topic = TOPICS.events("gate-1")
        await client.publish(topic, dump_message(EventBatch(device_id="gate-1",
                                                            events=[event("gate-1", show, unsigned)])), qos=1)
        batch = EventBatch(device_id="gate-1", events=[event("gate-1", show, forged)])
        await client.publish(topic, seal_device(KIND_EVENTS, batch.model_dump(mode="json"), "gate-1", stranger),
                             qos=1)
        tampered = gate1.batch(batch).replace(str(forged).encode(), str(good).encode())
        await client.publish(topic, tampered, qos=1)
        valid = EventBatch(device_id="gate-1", events=[event("gate-1", show, good)])
        await client.publish(topic, gate1.batch(valid), qos=1)
        assert (await acked(client, mqtt_hub)).event_ids == [valid.events[0].event_id]  # the first ack: the valid one
    assert (used(mqtt_hub, forged), used(mqtt_hub, unsigned), used(mqtt_hub, good)) == (0, 0, 1)
    assert whats(mqtt_hub, "gate-1") == ["bad_signature", "unsigned"]  # the second bad signature: rate limited


async def test_an_unregistered_device_changes_nothing_and_is_listed_as_unregistered(
        mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    ticket = sell(mqtt_hub, show)["id"]
    rogue = TestDevice("rogue-1")
    async with gate(broker, "rogue-1", TOPICS.ack("rogue-1"), TOPICS.device_whitelist("rogue-1")) as client:
        await client.publish(TOPICS.status("rogue-1"), dump_message(GateStatus(
            device_id="rogue-1", state="online", at=time.time(), group_id=show["group"], channel_id=show["channel"])),
            qos=1)
        await client.publish(TOPICS.events("rogue-1"),
                             rogue.batch(EventBatch(device_id="rogue-1", events=[event("rogue-1", show, ticket)])),
                             qos=1)
        await client.publish(TOPICS.sync("rogue-1"), dump_message(SyncRequest(device_id="rogue-1",
                                                                              group_id=show["group"], have_seq=-1)))
        await asyncio.to_thread(wait_for, lambda: len(whats(mqtt_hub, "rogue-1")) == 2, 5, 0.05,
                                "the batch and the sync request refused")
        listed = mqtt_hub.client.get("/api/v1/devices", headers=mqtt_hub.admin).json()
        assert [d["registered"] for d in listed if d["device_id"] == "rogue-1"] == [False]
        register(mqtt_hub.post, "rogue-1", show["group"], show["channel"], key=rogue.key)  # ops register it
        await client.publish(TOPICS.sync("rogue-1"), dump_message(SyncRequest(device_id="rogue-1",
                                                                              group_id=show["group"], have_seq=-1)))
        first = await receive(client)  # nothing arrived for the refused sync: the first message answers this one
        assert first.topic.value == TOPICS.device_whitelist("rogue-1")
    assert used(mqtt_hub, ticket) == 0
    assert whats(mqtt_hub, "rogue-1") == ["unregistered", "unregistered"]  # the batch, the first sync request


async def test_events_naming_another_group_or_device_are_quarantined_not_counted(
        mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    group2, channel2 = other_group(mqtt_hub, show)
    gate1 = register(mqtt_hub.post, "gate-1", show["group"], show["channel"])
    elsewhere, foreign, mine = (sell(mqtt_hub, show)["id"] for _ in range(3))
    async with gate(broker, "gate-1", TOPICS.ack("gate-1")) as client:
        topic = TOPICS.events("gate-1")
        stray = event("gate-1", show, elsewhere, group=group2, channel=channel2)
        own = event("gate-1", show, mine, seq=2)
        await client.publish(topic, gate1.batch(EventBatch(device_id="gate-1", events=[stray, own])), qos=1)
        acks = [await acked(client, mqtt_hub), await acked(client, mqtt_hub)]
        assert sorted(i for a in acks for i in a.event_ids) == sorted([stray.event_id, own.event_id])
        await client.publish(topic, gate1.batch(EventBatch(device_id="gate-1", events=[
            event("gate-2", show, foreign, seq=3)])), qos=1)
        await client.publish(topic, gate1.batch(EventBatch(device_id="gate-1", events=[
            event("gate-1", show, mine, seq=4)])), qos=1)
        await acked(client, mqtt_hub)  # the batch after the foreign one: that one was never acked
    assert (used(mqtt_hub, elsewhere), used(mqtt_hub, foreign), used(mqtt_hub, mine)) == (0, 0, 2)
    events = security(mqtt_hub, "gate-1")
    assert sorted(e["what"] for e in events) == ["foreign_device", "wrong_group"]
    quarantined = next(e for e in events if e["what"] == "wrong_group")["payload"]
    assert [e["event_id"] for e in quarantined] == [stray.event_id]  # kept, not lost
    stored = mqtt_hub.client.get(f"/api/v1/checkins?group_id={group2}", headers=mqtt_hub.admin).json()
    assert stored == []


async def test_status_and_sync_get_the_registrys_group_not_the_claimed_one(mqtt_hub: Hub, broker: Mosquitto) -> None:
    show = setup_show(mqtt_hub)
    group2, channel2 = other_group(mqtt_hub, show)
    register(mqtt_hub.post, "gate-1", show["group"], show["channel"])
    async with gate(broker, "gate-1", TOPICS.device_whitelist("gate-1")) as client:
        await client.publish(TOPICS.status("gate-1"), dump_message(GateStatus(
            device_id="gate-1", state="online", at=time.time(), kind="handheld", group_id=group2,
            channel_id=channel2)), qos=1)
        await client.publish(TOPICS.sync("gate-1"), dump_message(SyncRequest(device_id="gate-1", group_id=group2,
                                                                             have_seq=-1)), qos=1)
        await client.publish(TOPICS.sync("gate-1"), dump_message(SyncRequest(
            device_id="gate-1", group_id=show["group"], have_seq=-1)), qos=1)
        from protocol.whitelist import Snapshot
        while True:  # the key lists come first, then the snapshot: of the registered group, never group 2
            msg = await receive(client)
            kind, body = open_envelope(bytes(msg.payload), mqtt_hub.keyring)
            if kind == "whitelist.snapshot":
                assert Snapshot.from_wire(body).group_id == show["group"]
                break
    listed = {d["device_id"]: d for d in mqtt_hub.client.get("/api/v1/devices", headers=mqtt_hub.admin).json()}
    row = listed["gate-1"]
    assert (row["kind"], row["group_id"], row["channel_id"], row["registered"]) == (
        "gate", show["group"], show["channel"], True)
    assert whats(mqtt_hub, "gate-1") == ["wrong_group", "wrong_identity"]


def state(device_id: str, st: str, cause: str | None, at: float) -> EmergencyState:
    return EmergencyState(device_id=device_id, state=st, seq=0, cause=cause, at=at)  # type: ignore[arg-type]


@pytest.mark.parametrize("fire_input", [False, True])
async def test_a_fire_report_spreads_only_from_a_registered_fire_input_and_only_signed(
        tmp_path: Any, broker: Mosquitto, fire_input: bool) -> None:
    with emergency_hub(tmp_path, broker, spread_local_fire=True) as hub:
        show = setup_show(hub)
        detector = register(hub.post, "gate-1", show["group"], show["channel"], fire_input=fire_input)
        async with gate(broker, "gate-1", TOPICS.emergency_command()) as client:
            now = time.time()
            topic = TOPICS.emergency_state("gate-1")
            await client.publish(topic, state("gate-1", "open", "fire", now).model_dump_json().encode(), qos=1)
            await client.publish(topic, TestDevice("gate-1").emergency(state("gate-1", "open", "fire", now)), qos=1)
            await client.publish(topic, detector.emergency(state("gate-1", "open", "button", now + 1)), qos=1)
            await asyncio.to_thread(wait_for, lambda: board(hub)["gates"] and board(hub)["gates"][0]["cause"]
                                    == "button", 5, 0.05, "the signed button report")
            assert board(hub)["command"] is None or board(hub)["command"]["seq"] == 0  # unsigned fires: nothing
            await client.publish(topic, detector.emergency(state("gate-1", "open", "fire", now + 2)), qos=1)
            if fire_input:
                msg = await receive(client)
                _kind, body = open_envelope(bytes(msg.payload), hub.keyring)
                assert body["open_all"] is True and body["issued_by"] == "fire-alarm:gate-1"
            else:
                await asyncio.to_thread(wait_for, lambda: "fire_not_spread" in whats(hub, "gate-1"), 5, 0.05,
                                        "not spread")
                assert not (board(hub)["command"] or {}).get("open_all")
            # a replay of the earlier (older) button report changes nothing
            await client.publish(topic, detector.emergency(state("gate-1", "open", "button", now + 1)), qos=1)
            await client.publish(topic, detector.emergency(state("gate-1", "normal", None, now + 3)), qos=1)
            await asyncio.to_thread(wait_for, lambda: board(hub)["gates"][0]["state"] == "normal", 5, 0.05, "normal")
        assert {"unsigned", "bad_signature"} <= set(whats(hub, "gate-1"))


def test_registration_is_checked_audited_and_changes_what_the_hub_believes(mqtt_hub: Hub) -> None:
    show = setup_show(mqtt_hub)
    group2, channel2 = other_group(mqtt_hub, show)
    key = TestDevice("gate-9").public_key
    ops = mqtt_hub.user("olga", "ops")
    box = mqtt_hub.user("bob", "box_office")
    bad = [registration("gate-9", "not-a-key" * 6, show["group"]),
           registration("gate-9", key, None),  # a gate without a group
           registration("gate-9", key, show["group"], channel2),  # a channel of another group
           {**registration("gate-9", key, show["group"]), "fire_input": "yes"}]
    for body in bad:
        r = mqtt_hub.client.post("/api/v1/provisioning/devices", json=body, headers=ops)
        assert r.status_code == 422, (body, r.text)
    r = mqtt_hub.client.post("/api/v1/provisioning/devices", json=registration("gate-9", key, show["group"]),
                             headers=box)
    assert r.status_code == 403
    row = mqtt_hub.post("/provisioning/devices", registration("gate-9", key, show["group"], show["channel"]), ops)
    assert (row["group_id"], row["channel_id"], row["fire_input"]) == (show["group"], show["channel"], False)
    mqtt_hub.post("/provisioning/devices", registration("gate-9", key, show["group"]), ops, status=409)
    r = mqtt_hub.client.patch("/api/v1/provisioning/devices/gate-9", json={"group_id": group2, "fire_input": True},
                              headers=ops)
    assert r.status_code == 200, r.text
    assert (r.json()["group_id"], r.json()["channel_id"], r.json()["fire_input"]) == (group2, None, True)
    assert mqtt_hub.client.patch("/api/v1/provisioning/devices/gate-9", json={"site": None},
                                 headers=ops).status_code == 422
    audit = mqtt_hub.client.get("/api/v1/audit", headers=mqtt_hub.admin).json()
    actions = [a["action"] for a in audit if a["target"] == "gate-9"]
    assert {"device.change", "device.register", "provisioning.config"} <= set(actions)  # config: the new group
    assert mqtt_hub.client.get("/api/v1/provisioning/security-events", headers=box).status_code == 403


def test_a_handhelds_online_check_is_decided_for_its_registered_channel_only(mqtt_hub: Hub) -> None:
    show = setup_show(mqtt_hub)
    _group2, channel2 = other_group(mqtt_hub, show)
    mqtt_hub.post("/users", {"username": "hh-7", "password": "password-hh-7", "role": "security",
                             "device_id": "hh-7"})
    headers = login(mqtt_hub.client, "hh-7", "password-hh-7")
    register(mqtt_hub.post, "hh-7", show["group"], show["channel"], kind="handheld")
    ticket = sell(mqtt_hub, show)
    r = mqtt_hub.client.post("/api/v1/checkins/online", json={"token": ticket["token"], "channel_id": channel2},
                             headers=headers)
    assert r.status_code == 403 and "registered at channel" in r.json()["detail"]
    assert used(mqtt_hub, ticket["id"]) == 0
    r = mqtt_hub.client.post("/api/v1/checkins/online", json={"token": ticket["token"], "channel_id": show["channel"]},
                             headers=headers)
    assert r.status_code == 200 and r.json()["admitted"] is True, r.text
    assert whats(mqtt_hub, "hh-7") == ["wrong_group"]
