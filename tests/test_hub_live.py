"""Issue 12, page 1: the live check-in API, against a real hub process and a real Mosquitto.

A registered stand-in gate (a paho client with its own Ed25519 key) publishes signed event batches and its
heartbeat the way a gate agent does; an httpx client reads ``GET /api/v1/live/stream`` as the console does.
To show that something did not arrive, the test sends a valid thing after it and waits for that.
"""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from protocol.messages import CheckinEvent, EventBatch, GateStatus, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics
from tests.support.broker import Mosquitto
from tests.support.devices import TestDevice, register
from tests.support.net import wait_for
from tests.support.processes import HubProcess
from tests.support.scenario import Show, sell

TOPICS = Topics("venue")


class LiveStream:
    """``GET /api/v1/live/stream`` read in a thread; ``next(name)`` returns the next event of that name."""

    def __init__(self, base_url: str, token: str, params: dict[str, Any] | None = None) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.status: int | None = None
        self._client = httpx.Client(base_url=base_url + "/api/v1", timeout=httpx.Timeout(10, read=30))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(token, params or {}), daemon=True)
        self._thread.start()

    def _read(self, token: str, params: dict[str, Any]) -> None:
        try:
            with self._client.stream("GET", "/live/stream", params=params,
                                     headers={"Authorization": f"Bearer {token}"}) as response:
                self.status = response.status_code
                name, data = "message", []
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line.startswith(":"):
                        self.events.put(("comment", line))
                    elif not line and data:
                        self.events.put((name, json.loads("\n".join(data))))
                        name, data = "message", []
        except httpx.HTTPError as exc:
            if not self._stop.is_set():
                self.events.put(("error", repr(exc)))
        finally:
            self.events.put(("closed", None))

    def next(self, name: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name!r} event within {timeout} s")
            try:
                got, data = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if got == name:
                return data
            if got in ("closed", "error") and name not in ("closed", "error"):
                raise AssertionError(f"the stream ended ({got}: {data}) before a {name!r} event")

    def close(self) -> None:
        self._stop.set()
        self._client.close()


class StandInGate:
    """A registered gate's MQTT side: a retained heartbeat and device-signed event batches."""

    def __init__(self, broker_port: int, device: TestDevice, group_id: int, channel_id: int) -> None:
        self.device, self.device_id = device, device.device_id
        self.group_id, self.channel_id = group_id, channel_id
        self.seq = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"live-{self.device_id}",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", broker_port)
        self.client.loop_start()

    def heartbeat(self, state: str = "online", outbox: int = 0) -> None:
        status = GateStatus(device_id=self.device_id, state=state, at=time.time(), group_id=self.group_id,
                            channel_id=self.channel_id, outbox=outbox, interval=30)
        self.client.publish(TOPICS.status(self.device_id), dump_message(status), qos=1, retain=True).wait_for_publish(5)

    def event(self, reason: Reason, ticket_id: int | None, show: Show, persons: int = 1,
              direction: str = "entry") -> CheckinEvent:
        self.seq += 1
        return CheckinEvent(event_id=uuid.uuid4().hex, device_id=self.device_id, group_id=self.group_id,
                            channel_id=self.channel_id, seq=self.seq, reason=reason, ticket_id=ticket_id,
                            performance_id=show.performance_id if ticket_id is not None else None,
                            ticket_type_id=show.adult_type if ticket_id is not None else None,
                            persons=persons if reason is Reason.ADMITTED or direction == "exit" else 0,
                            direction=direction, scanned_at=time.time(), offline=True)  # type: ignore[arg-type]

    def send(self, events: list[CheckinEvent]) -> EventBatch:
        batch = EventBatch(device_id=self.device_id, events=events)
        self.client.publish(TOPICS.events(self.device_id), self.device.batch(batch), qos=1).wait_for_publish(5)
        return batch

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def token_for(hub: HubProcess, role: str) -> str:
    name, password = f"live-{role.replace('_', '')}", f"live-{role}-password-1"
    hub.call("POST", "/users", json={"username": name, "password": password, "role": role})
    return str(hub.call("POST", "/auth/login", json={"username": name, "password": password})["token"])


def stand_in_gate(hub: HubProcess, broker: Mosquitto, device_id: str, group_id: int, channel_id: int) -> StandInGate:
    device = register(lambda path, body: hub.call("POST", path, json=body), device_id, group_id, channel_id)
    return StandInGate(broker.port, device, group_id, channel_id)


@pytest.fixture
def gate_a(hub_process: HubProcess, broker: Mosquitto, show: Show) -> Iterator[StandInGate]:
    gate = stand_in_gate(hub_process, broker, "gate-A1", show.group_id, show.channel_id)
    gate.heartbeat()
    wait_for(lambda: any(d["device_id"] == "gate-A1" for d in hub_process.call("GET", "/devices")), 10,
             what="gate-A1 known at the hub")
    try:
        yield gate
    finally:
        gate.close()


def minutes_total(counts: list[dict[str, Any]]) -> int:
    return sum(int(c["persons"]) for c in counts)


def test_the_stream_sends_a_snapshot_then_each_new_scan_once(hub_process: HubProcess, show: Show,
                                                             gate_a: StandInGate) -> None:
    hub = hub_process
    hub.call("PATCH", f"/checkin-groups/{show.group_id}", json={"capacity": 500})
    assert [g["capacity"] for g in hub.call("GET", "/checkin-groups") if g["id"] == show.group_id] == [500]
    family, single, used = (sell(hub, show, persons=n) for n in (3, 1, 1))
    stream = LiveStream(hub.base_url, token_for(hub, "manager"))
    try:
        snap = stream.next("snapshot")
        zone = [z for z in snap["zones"] if z["group_id"] == show.group_id]
        assert [(z["inside"], z["capacity"], z["name"]) for z in zone] == [(0, 500, "Main hall 主厅")], zone
        assert snap["scans"] == [] and snap["denials"] == []
        assert [c["name"] for c in snap["channels"]] == ["Gate A A口"]
        assert snap["reasons"]["already_used"] == {"zh": "此票已检", "en": "Ticket already used."}

        # A batch of four scans: a family of three and one patron admitted, one ticket refused twice.
        first = gate_a.send([gate_a.event(Reason.ADMITTED, family["id"], show, persons=3),
                             gate_a.event(Reason.ADMITTED, single["id"], show),
                             gate_a.event(Reason.ALREADY_USED, used["id"], show),
                             gate_a.event(Reason.WRONG_CHANNEL, used["id"], show)])
        scans = stream.next("scans")
        assert sorted(s["event_id"] for s in scans["scans"]) == sorted(e.event_id for e in first.events)
        assert scans["scans"][0]["scanned_at"] >= scans["scans"][-1]["scanned_at"]  # newest first
        assert minutes_total(scans["admissions"]["by_channel"]) == 4
        assert {c["key"] for c in scans["admissions"]["by_channel"]} == {str(show.channel_id)}
        assert minutes_total(scans["admissions"]["by_gate"]) == 4
        assert {c["key"] for c in scans["admissions"]["by_gate"]} == {"gate-A1"}
        assert scans["denials"] == {"already_used": 1, "wrong_channel": 1}
        assert scans["zones"] == {str(show.group_id): {"admitted": 4, "annulled": 0, "exits": 0}}

        # The gate re-sends the same batch (its ack was lost), then one exit: only the exit is new.
        gate_a.send(first.events)
        gate_a.send([gate_a.event(Reason.EXIT, single["id"], show, direction="exit")])
        scans = stream.next("scans")
        assert [(s["reason"], s["ticket_id"]) for s in scans["scans"]] == [("exit", single["id"])]
        assert scans["zones"] == {str(show.group_id): {"admitted": 0, "annulled": 0, "exits": 1}}
        assert scans["denials"] == {} and scans["admissions"]["by_channel"] == []
    finally:
        stream.close()

    # The snapshot (same JSON as the stream's first event) agrees with what the deltas added up to.
    snap = hub.call("GET", "/live/snapshot")
    assert [(z["admitted"], z["exits"], z["inside"]) for z in snap["zones"]] == [(4, 1, 3)]
    assert {d["reason"]: d["count"] for d in snap["denials"]} == {"already_used": 1, "wrong_channel": 1}
    assert minutes_total(snap["admissions"]["by_channel"]) == 4
    assert len(snap["scans"]) == 5 and snap["scans"][0]["reason"] == "exit"
    assert hub.call("GET", "/emergency")["evacuation"]["total_inside"] == 3  # the evacuation count agrees
    text = json.dumps(snap, ensure_ascii=False)
    assert "13800000000" not in text and "张三" not in text  # holders' phone and name never shown


def test_an_offline_gate_and_its_outbox_backlog_show_on_the_stream(hub_process: HubProcess, broker: Mosquitto,
                                                                   show: Show, gate_a: StandInGate) -> None:
    hub = hub_process
    stream = LiveStream(hub.base_url, token_for(hub, "security"))
    try:
        snap = stream.next("snapshot")
        assert [(d["device_id"], d["online"]) for d in snap["devices"]] == [("gate-A1", True)]
        gate_a.heartbeat(outbox=12)  # the gate cannot send: 12 events wait in its outbox
        change = stream.next("devices")
        assert [(d["device_id"], d["online"], d["outbox"]) for d in change["devices"]] == [("gate-A1", True, 12)]
        gate_a.heartbeat(state="offline")  # what its Last Will says: state only; the backlog it told stays
        change = stream.next("devices")
        assert [(d["device_id"], d["online"], d["outbox"]) for d in change["devices"]] == [("gate-A1", False, 12)]
    finally:
        stream.close()
    devices = hub.call("GET", "/live/snapshot")["devices"]
    assert [(d["device_id"], d["state"], d["outbox"]) for d in devices] == [("gate-A1", "offline", 12)]


def test_filters_narrow_the_stream_to_one_zone(hub_process: HubProcess, broker: Mosquitto, show: Show,
                                               gate_a: StandInGate) -> None:
    hub = hub_process
    venue = hub.call("GET", "/venues")[0]["id"]
    balcony = hub.call("POST", "/checkin-groups", json={"name": "Balcony 楼座", "venue_id": venue,
                                                        "performance_ids": [show.performance_id]})
    channel_b = hub.call("POST", f"/checkin-groups/{balcony['id']}/channels",
                         json={"name": "Gate B B口", "ticket_type_ids": [show.adult_type]})
    gate_b = stand_in_gate(hub, broker, "gate-B1", balcony["id"], channel_b["id"])
    stream = LiveStream(hub.base_url, token_for(hub, "viewer"), {"group_id": balcony["id"]})
    try:
        snap = stream.next("snapshot")
        assert [z["name"] for z in snap["zones"]] == ["Balcony 楼座"] and snap["devices"] == []
        gate_a.send([gate_a.event(Reason.ADMITTED, sell(hub, show)["id"], show)])  # the main hall: not shown
        gate_b.send([gate_b.event(Reason.ADMITTED, ticket := sell(hub, show)["id"], show)])
        scans = stream.next("scans")
        assert [(s["device_id"], s["ticket_id"]) for s in scans["scans"]] == [("gate-B1", ticket)]
        assert list(scans["zones"]) == [str(balcony["id"])]
    finally:
        stream.close()
        gate_b.close()
    wait_for(lambda: len(hub.call("GET", "/live/snapshot")["scans"]) == 2, 5, what="both scans stored")
    assert len(hub.call("GET", "/live/snapshot", params={"group_id": show.group_id})["scans"]) == 1
    assert len(hub.call("GET", "/live/snapshot", params={"performance_id": show.performance_id})["scans"]) == 2


def test_an_online_check_from_a_handheld_shows_on_the_stream(hub_process: HubProcess, show: Show) -> None:
    hub = hub_process
    ticket = sell(hub, show)
    stream = LiveStream(hub.base_url, token_for(hub, "security"))
    try:
        stream.next("snapshot")
        answer = hub.call("POST", "/checkins/online", json={"token": ticket["token"], "channel_id": show.channel_id})
        assert answer["reason"] == "admitted"
        scans = stream.next("scans")
        assert [(s["event_id"], s["reason"], s["source"]) for s in scans["scans"]] == [
            (answer["event_id"], "admitted", "online")]
        assert minutes_total(scans["admissions"]["by_channel"]) == 1
    finally:
        stream.close()


def test_the_stream_ends_after_max_s_and_refuses_bad_input(hub_process: HubProcess) -> None:
    hub = hub_process
    stream = LiveStream(hub.base_url, token_for(hub, "ops"), {"max_s": 0.5})
    try:
        stream.next("snapshot")
        assert stream.next("end") == {"reason": "max_s"}
        stream.next("closed")
    finally:
        stream.close()
    for params, status in (({"max_s": 0}, 422), ({"max_s": "nan"}, 422), ({"max_s": 86401}, 422),
                           ({"group_id": 0}, 422), ({"group_id": 999}, 404), ({"performance_id": 999}, 404)):
        r = hub.api.get("/live/stream", params=params)
        assert r.status_code == status, (params, r.status_code, r.text)
        assert "text/event-stream" not in r.headers.get("content-type", "")


def test_only_the_live_roles_may_read_it(hub_process: HubProcess) -> None:
    hub = hub_process
    for role in ("box_office", "finance", "kiosk"):
        headers = {"Authorization": f"Bearer {token_for(hub, role)}"}
        assert hub.api.get("/live/snapshot", headers=headers).status_code == 403
        assert hub.api.get("/live/stream", headers=headers, params={"max_s": 1}).status_code == 403
    assert httpx.get(hub.base_url + "/api/v1/live/stream").status_code == 401
    for role in ("manager", "security", "viewer", "ops"):
        headers = {"Authorization": f"Bearer {token_for(hub, role)}"}
        assert hub.api.get("/live/snapshot", headers=headers).status_code == 200


def test_a_zone_capacity_is_bounded_and_can_be_cleared(hub_process: HubProcess, show: Show) -> None:
    hub = hub_process
    path = f"/checkin-groups/{show.group_id}"
    for bad in (-1, 1_000_001, "many", 1.5):
        assert hub.api.patch(path, json={"capacity": bad}).status_code == 422, bad
    assert hub.call("PATCH", path, json={"capacity": 0})["capacity"] == 0
    assert hub.call("PATCH", path, json={"name": "Main hall 主厅"})["capacity"] == 0  # omitted: unchanged
    assert hub.call("PATCH", path, json={"capacity": None})["capacity"] is None  # null: not set
    assert [z["capacity"] for z in hub.call("GET", "/live/snapshot")["zones"]] == [None]


def test_a_hub_stopping_with_open_streams_ends_them_and_exits_cleanly(hub_process: HubProcess) -> None:
    """SIGTERM with two streams open: each gets ``end: stopping`` and closes at once, and the hub exits 0 well
    within uvicorn's graceful-shutdown timeout (2 s) with no ERROR logged (not "Cancel 2 running task(s)")."""
    hub = hub_process
    streams = [LiveStream(hub.base_url, token_for(hub, role)) for role in ("manager", "viewer")]
    try:
        for stream in streams:
            stream.next("snapshot")
        assert hub.proc is not None
        started = time.monotonic()
        hub.proc.send_signal(signal.SIGTERM)
        for stream in streams:
            assert stream.next("end", timeout=5) == {"reason": "stopping"}
            stream.next("closed", timeout=5)
        code = hub.proc.wait(timeout=5)
        took = time.monotonic() - started
    finally:
        for stream in streams:
            stream.close()
    logs = hub.logs() + hub.output()
    assert code == 0, logs[-3000:]
    assert took < 1.9, f"took {took:.1f} s to stop:\n{logs[-3000:]}"
    assert [line for line in logs.splitlines() if "ERROR" in line or "Traceback" in line] == [], logs[-3000:]
