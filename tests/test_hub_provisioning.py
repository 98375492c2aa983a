"""Provisioning at the hub against real SQLite and a real Mosquitto; the test plays the new device.

The anonymous ``broker`` covers the MQTT flow; ``secure_broker`` (dynamic security) checks that the
credentials the hub hands out are real broker logins, rotated without lock-out and removed on revoke.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import nacl.signing
import pytest
from sqlalchemy import func, select

from hub.config import Settings, load_settings
from hub.tables import enrollment_requests
from protocol.envelope import open_envelope
from protocol.errors import SignatureError
from protocol.messages import EventBatch, GateStatus, dump_message
from protocol.provisioning import (
    KIND_COMMAND,
    KIND_CONFIG,
    KIND_KEYS,
    KIND_REPLY,
    CommandPayload,
    CommandResult,
    ConfigAck,
    ConfigPayload,
    EnrollmentRequest,
    KeysPayload,
    ProvisioningTopics,
    ReplyPayload,
    key_fingerprint,
    open_secret,
)
from protocol.reasons import Reason
from protocol.token import decode_token
from protocol.topics import Topics
from tests.hubkit import ADMIN_PASSWORD, Hub, run_hub, sell, setup_show
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.support.secure_broker import SecureMosquitto
from tests.test_hub_mqtt import event, receive

P = ProvisioningTopics("venue")
TOPICS = Topics("venue")
API = "/api/v1/provisioning"
hub_at = contextmanager(run_hub)


def settings(tmp_path: Path, port: int, **extra: Any) -> Settings:
    return load_settings(None, database_url=f"sqlite:///{tmp_path}/hub.db", key_file=tmp_path / "signing.key",
                         mqtt={"port": port, "prefix": "venue", **extra.pop("mqtt", {})},
                         admin={"username": "admin", "password": ADMIN_PASSWORD},
                         provisioning={"liveness_check": 0.1, "rotate_timeout": 5.0}, **extra)


@pytest.fixture(name="phub")
def phub_fixture(tmp_path: Path, broker: Mosquitto) -> Iterator[Hub]:
    with hub_at(settings(tmp_path, broker.port), True) as hub:
        yield hub


class Device:
    """A new device: its own Ed25519 key, a serial, and requests signed with that key."""

    def __init__(self, serial: str = "GATE-0042", kind: str = "gate") -> None:
        self.serial, self.kind = serial, kind
        self.key = nacl.signing.SigningKey.generate()
        self.reply_to = uuid.uuid4().hex

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.key.verify_key)).decode()

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def request(self, *, at: float | None = None, nonce: str | None = None) -> EnrollmentRequest:
        return EnrollmentRequest(serial=self.serial, kind=self.kind, hardware_model="RK3568",
                                 software_version="1.4.0", public_key=self.public_key, reply_to=self.reply_to,
                                 nonce=nonce or uuid.uuid4().hex, at=time.time() if at is None else at
                                 ).sign(self.key)


@asynccontextmanager
async def mqtt(port: int, *subscriptions: str, **login: Any) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=5, **login) as client:
        for topic in subscriptions:
            await client.subscribe(topic, qos=1)
        yield client


def get(hub: Hub, path: str) -> Any:
    r = hub.client.get(API + path, headers=hub.admin)
    assert r.status_code == 200, r.text
    return r.json()


def pending(hub: Hub) -> list[str]:
    return [r["serial"] for r in get(hub, "/requests")]


def device_row(hub: Hub, device_id: str) -> dict[str, Any]:
    return next(d for d in get(hub, "/devices") if d["device_id"] == device_id)


def approve(hub: Hub, dev: Device, device_id: str = "gate-7", **body: Any) -> dict[str, Any]:
    return hub.post(f"/provisioning/requests/{dev.serial}/approve",
                    {"fingerprint": dev.fingerprint, "device_id": device_id, "site": "Grand Theatre", **body})


def open_signed(hub: Hub, msg: aiomqtt.Message, kind: str) -> dict[str, Any]:
    got, payload = open_envelope(bytes(msg.payload), hub.keyring, kinds={kind})
    assert got == kind
    return dict(payload)


async def enroll(hub: Hub, port: int, dev: Device, device_id: str = "gate-7", **login: Any) -> tuple[str, Any]:
    """Request, wait for pending, approve; return the opened password and the reply."""
    async with mqtt(port, P.reply(dev.reply_to), **login) as client:
        await client.publish(P.request(dev.serial), dev.request().model_dump_json(), qos=1)
        wait_for(lambda: dev.serial in pending(hub), timeout=5, what="request pending")
        approve(hub, dev, device_id, group_id=3, config={"volume": 5})
        reply = ReplyPayload.model_validate(open_signed(hub, await receive(client), KIND_REPLY))
    assert reply.status == "approved" and reply.device_id == device_id and reply.broker is not None
    assert reply.broker.username == device_id and reply.group_id == 3
    assert reply.sealed is not None
    return str(open_secret(reply.sealed, dev.key)["password"]), reply


async def test_enrollment_approve_sends_signed_reply_sealed_password_and_retained_config(
        phub: Hub, broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    dev = Device()
    ops = phub.user("ops1", "ops")
    viewer = phub.user("v1", "viewer")
    assert phub.client.get(API + "/requests", headers=viewer).status_code == 403
    caplog.set_level(logging.DEBUG)
    password, _reply = await enroll(phub, broker.port, dev)
    assert len(password) >= 24 and password not in caplog.text
    assert pending(phub) == []
    async with mqtt(broker.port, P.config("gate-7")) as client:  # retained: a late subscriber gets it
        cfg = ConfigPayload.model_validate(open_signed(phub, await receive(client), KIND_CONFIG))
        assert cfg.version == 1 and cfg.config == {"group_id": 3, "volume": 5}
        row = device_row(phub, "gate-7")
        assert row["status"] == "active" and row["config_drift"] and row["acked_version"] is None
        await client.publish(P.config_ack("gate-7"), ConfigAck(device_id="gate-7", version=1, applied=True,
                                                               at=time.time()).model_dump_json(), qos=1)
        wait_for(lambda: not device_row(phub, "gate-7")["config_drift"], timeout=5, what="config acked")
        r = phub.client.put(API + "/devices/gate-7/config", json={"config": {"volume": 2}}, headers=ops)
        assert r.status_code == 200 and r.json()["config_version"] == 2
        cfg = ConfigPayload.model_validate(open_signed(phub, await receive(client), KIND_CONFIG))
        assert cfg.version == 2 and cfg.config == {"volume": 2}
        assert device_row(phub, "gate-7")["config_drift"]
    assert password not in str(get(phub, "/devices")) and password not in caplog.text
    audit = phub.client.get("/api/v1/audit", headers=phub.admin).json()
    actions = {a["action"] for a in audit}
    assert {"provisioning.approve", "provisioning.config"} <= actions


async def test_reject_sends_a_signed_rejection(phub: Hub, broker: Mosquitto) -> None:
    dev = Device("KIOSK-1", "kiosk")
    async with mqtt(broker.port, P.reply(dev.reply_to)) as client:
        await client.publish(P.request(dev.serial), dev.request().model_dump_json(), qos=1)
        wait_for(lambda: dev.serial in pending(phub), timeout=5, what="request pending")
        phub.post(f"/provisioning/requests/{dev.serial}/reject", {"fingerprint": dev.fingerprint,
                                                                  "reason": "not ours"}, status=200)
        reply = ReplyPayload.model_validate(open_signed(phub, await receive(client), KIND_REPLY))
    assert reply.status == "rejected" and reply.reason == "not ours" and reply.sealed is None
    assert pending(phub) == []
    r = phub.client.post(API + f"/requests/{dev.serial}/approve",
                         json={"fingerprint": dev.fingerprint, "device_id": "k1", "site": "x"},
                         headers=phub.admin)
    assert r.status_code == 404


def _stored_requests(hub: Hub) -> int:
    with hub.ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(enrollment_requests)).scalar_one())


async def test_bad_requests_change_nothing_and_are_logged(phub: Hub, broker: Mosquitto,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    dev, other = Device("GATE-1"), Device("GATE-2")
    forged = dev.request().model_copy(update={"public_key": other.public_key})  # signed by another key
    good = dev.request()
    cases = [(P.request("GATE-1"), forged.model_dump_json(), "not signed by its own key"),
             (P.request("GATE-9"), dev.request().model_dump_json(), "differs from the request"),
             (P.request("GATE-1"), dev.request(at=time.time() - 3600).model_dump_json(), "stale"),
             (P.request("GATE-1"), dev.request(at=time.time() + 3600).model_dump_json(), "stale")]
    caplog.set_level(logging.WARNING)
    async with mqtt(broker.port) as client:
        for topic, payload, _ in cases:
            await client.publish(topic, payload, qos=1)
        wait_for(lambda: sum("refused" in r.getMessage() for r in caplog.records) >= 4, timeout=5, what="refusals")
        assert _stored_requests(phub) == 0
        for _, _, why in cases:
            assert why in caplog.text
        await client.publish(P.request("GATE-1"), good.model_dump_json(), qos=1)
        wait_for(lambda: pending(phub) == ["GATE-1"], timeout=5, what="good request pending")
        phub.post("/provisioning/requests/GATE-1/reject", {"fingerprint": dev.fingerprint, "reason": "test"},
                  status=200)
        await client.publish(P.request("GATE-1"), good.model_dump_json(), qos=1)  # replayed as it was
        wait_for(lambda: "replayed request" in caplog.text, timeout=5, what="replay refused")
    assert pending(phub) == []


async def test_a_different_key_for_an_approved_serial_is_refused(phub: Hub, broker: Mosquitto,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    dev = Device()
    await enroll(phub, broker.port, dev)
    impostor = Device(dev.serial)
    caplog.set_level(logging.WARNING)
    async with mqtt(broker.port) as client:
        await client.publish(P.request(dev.serial), impostor.request().model_dump_json(), qos=1)
        wait_for(lambda: "with another key" in caplog.text, timeout=5, what="impostor refused")
    assert pending(phub) == []


async def test_revoked_device_events_are_dropped_not_acked(phub: Hub, broker: Mosquitto,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    show = setup_show(phub)
    ticket = sell(phub, show)
    await enroll(phub, broker.port, Device())
    row = phub.post("/provisioning/devices/gate-7/revoke", {"reason": "stolen"}, status=200)
    assert row["status"] == "revoked" and row["status_reason"] == "stolen"
    caplog.set_level(logging.WARNING)
    batch = EventBatch(device_id="gate-7", events=[event("gate-7", show, ticket["id"], Reason.ADMITTED)])
    async with mqtt(broker.port, TOPICS.ack("gate-7"), P.config("gate-7")) as client:
        await client.publish(TOPICS.events("gate-7"), dump_message(batch), qos=1)
        wait_for(lambda: "revoked device gate-7" in caplog.text, timeout=5, what="events refused")
        with pytest.raises(TimeoutError):
            await receive(client, within=0.5)  # no ack, and no retained config any more
    assert phub.client.get("/api/v1/checkins?device_id=gate-7", headers=phub.admin).json() == []
    assert phub.client.post(API + "/devices/gate-7/command", json={"name": "restart"},
                            headers=phub.admin).status_code == 409


async def test_commands_report_ok_failed_and_timed_out(phub: Hub, broker: Mosquitto) -> None:
    await enroll(phub, broker.port, Device())
    async with mqtt(broker.port, P.command("gate-7")) as client:
        issued = phub.post("/provisioning/devices/gate-7/command", {"name": "diagnostics", "timeout_s": 30},
                           status=202)
        assert issued["state"] == "pending"
        cmd = CommandPayload.model_validate(open_signed(phub, await receive(client), KIND_COMMAND))
        assert cmd.command_id == issued["command_id"] and cmd.name == "diagnostics" and cmd.expires_at > time.time()
        result = CommandResult(device_id="gate-7", command_id=cmd.command_id, ok=True, result={"disk": "ok"},
                               at=time.time())
        await client.publish(P.command_result("gate-7"), result.model_dump_json(), qos=1)
        wait_for(lambda: get(phub, f"/commands/{cmd.command_id}")["state"] == "ok", timeout=5, what="ok")
        assert get(phub, f"/commands/{cmd.command_id}")["result"] == {"disk": "ok"}
        quick = phub.post("/provisioning/devices/gate-7/command", {"name": "restart", "timeout_s": 0.3},
                          status=202)
        await asyncio.sleep(0.5)
    assert get(phub, f"/commands/{quick['command_id']}")["state"] == "timed_out"
    assert [c["state"] for c in device_row(phub, "gate-7")["commands"]] == ["timed_out", "ok"]


async def test_hub_key_rotation_overlaps_then_retires(tmp_path: Path, broker: Mosquitto) -> None:
    with hub_at(settings(tmp_path, broker.port), True) as hub:
        show = setup_show(hub)
        old_token = sell(hub, show)["token"]
        old_ring = hub.keyring
        assert old_ring.to_purposes() == {"1": ["ticket"], "2": ["control"]}  # two keys, two powers
        assert decode_token(old_token, old_ring).kid == 1
        ops = hub.user("ops1", "ops")
        assert hub.client.post(API + "/keys/rotate", headers=ops).status_code == 403
        async with mqtt(broker.port, P.hub_keys()) as client:
            rotated = hub.post("/provisioning/keys/rotate", {})  # default: the control key
            assert rotated["kid"] == 3 and rotated["active_kid"] == 3 and rotated["ticket_kid"] == 1
            got = KeysPayload.model_validate(open_envelope(bytes((await receive(client)).payload),
                                                           old_ring, kinds={KIND_KEYS})[1])  # old key signs it
            published = got.keyring()
            assert published.to_purposes() == {"1": ["ticket"], "2": ["control"], "3": ["control"]}
            assert hub.post("/provisioning/keys/rotate", {"purpose": "ticket"})["ticket_kid"] == 4
            got = KeysPayload.model_validate(open_envelope(bytes((await receive(client)).payload),
                                                           published, kinds={KIND_KEYS})[1])
            published = got.keyring()
            new_token = sell(hub, show)["token"]
            assert decode_token(new_token, published).kid == 4  # verifies with the published list
            with pytest.raises(SignatureError):
                decode_token(new_token, old_ring)  # signed with the new key
            decode_token(old_token, hub.ctx.keyring)  # the hub still trusts the old key
            assert (tmp_path / "control.key.3").stat().st_mode & 0o777 == 0o600
            assert (tmp_path / "signing.key.4").stat().st_mode & 0o777 == 0o600
            hub.post("/provisioning/keys/retire", {"kid": 1}, status=200)
            await receive(client)
            assert hub.post("/provisioning/keys/retire", {"kid": 2}, status=200)["trusted"] == [3, 4]
            await receive(client)  # (the retained list may come before the answer)
        async with mqtt(broker.port, P.hub_keys()) as client:
            got = KeysPayload.model_validate(open_envelope(bytes((await receive(client)).payload),
                                                           published, kinds={KIND_KEYS})[1])
            assert got.keyring().to_purposes() == {"3": ["control"], "4": ["ticket"]} and got.version == 4
        with pytest.raises(SignatureError):
            decode_token(old_token, hub.ctx.keyring)
        for kid in (3, 4):  # the keys the hub signs with cannot be retired
            assert hub.client.post(API + "/keys/retire", json={"kid": kid}, headers=hub.admin).status_code == 409
    with hub_at(settings(tmp_path, broker.port), True) as hub:  # a restart keeps the active keys
        assert hub.ctx.signer.kid == 3 and hub.ctx.token_signer.kid == 4 and hub.ctx.keyring.kids() == [3, 4]
        decode_token(new_token, hub.ctx.keyring)
        assert decode_token(sell(hub, show)["token"], hub.ctx.keyring).kid == 4


async def test_liveness_counts_reboots_and_marks_silent_devices_offline(phub: Hub, broker: Mosquitto) -> None:
    await enroll(phub, broker.port, Device())

    def status(birth: int) -> bytes:
        return dump_message(GateStatus(device_id="gate-7", state="online", at=time.time(), birth=birth,
                                       interval=0.3, config_version=1))

    async with mqtt(broker.port) as client:
        for birth in (1, 1, 2):  # a reconnect, then a restart
            await client.publish(TOPICS.status("gate-7"), status(birth), qos=1)
            await asyncio.sleep(0.1)
        wait_for(lambda: device_row(phub, "gate-7")["birth"] == 2, timeout=5, what="status stored")
        row = device_row(phub, "gate-7")
        assert row["online"] and row["reboots"] == 1
        wait_for(lambda: not device_row(phub, "gate-7")["online"], timeout=5, what="offline after 2.5 intervals")
        await client.publish(TOPICS.status("gate-7"), status(2), qos=1)
        wait_for(lambda: device_row(phub, "gate-7")["online"], timeout=5, what="back online")
    assert device_row(phub, "gate-7")["reboots"] == 1


# -- against Mosquitto with dynamic security ------------------------------------------------------
async def test_credentials_are_real_logins_rotated_without_lockout_and_removed(
        tmp_path: Path, secure_broker: SecureMosquitto) -> None:
    sb = secure_broker
    claim_pw = "claim-" + uuid.uuid4().hex
    async with sb.admin() as admin:
        await admin.ensure_roles()
        await admin.add_service_client("claim", claim_pw, "claim")
    s = settings(tmp_path, sb.port, mqtt={"username": sb.admin_user, "password": sb.admin_password},
                 broker_admin={"enabled": True, "port": sb.port, "username": sb.admin_user,
                               "password": sb.admin_password})
    with hub_at(s, True) as hub:
        dev = Device()
        password, reply = await enroll(hub, sb.port, dev, username="claim", password=claim_pw)
        assert reply.broker.port == sb.port
        async with sb.client("gate-7", password) as client:  # its own login, its own topics
            await client.subscribe(P.command("gate-7"), qos=1)
            rotate = hub.post("/provisioning/devices/gate-7/rotate", {}, status=202)
            cmd = CommandPayload.model_validate(open_signed(hub, await receive(client), KIND_COMMAND))
            assert cmd.name == "rotate_credentials" and cmd.command_id == rotate["command_id"]
            new_password = str(open_secret(cmd.args["sealed"], dev.key)["password"])
            async with sb.client("gate-7", password):
                pass  # until the device confirms, the old password still works
            await client.publish(P.command_result("gate-7"), CommandResult(
                device_id="gate-7", command_id=cmd.command_id, ok=True, at=time.time()).model_dump_json(), qos=1)
            with pytest.raises(aiomqtt.MqttError):  # the broker ends the session when the password changes
                await receive(client, within=5)
        assert get(hub, f"/commands/{cmd.command_id}")["state"] == "ok"
        await _wait_login(sb, "gate-7", new_password)  # the device logs in again with the new one
        with pytest.raises(aiomqtt.MqttError):  # the old password is refused now
            async with sb.client("gate-7", password):
                pass
        hub.post("/provisioning/devices/gate-7/revoke", {"reason": "decommissioned"}, status=200)
        with pytest.raises(aiomqtt.MqttError):
            async with sb.client("gate-7", new_password):
                pass
        async with sb.admin() as admin:
            assert "gate-7" not in await admin.list_devices()


async def _wait_login(sb: SecureMosquitto, user: str, password: str) -> None:
    for _ in range(50):
        try:
            async with sb.client(user, password):
                return
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{user} cannot log in with the rotated password")


async def test_one_serial_holds_at_most_max_claims_pending_keys(phub: Hub) -> None:
    from hub.services import enrollment

    devices = [Device("GATE-77") for _ in range(enrollment.MAX_CLAIMS + 1)]
    refusals = [enrollment.receive(phub.ctx, "GATE-77", d.request(), max_age=600) for d in devices]
    assert refusals[:-1] == [None] * enrollment.MAX_CLAIMS
    assert refusals[-1] is not None and "reject some by fingerprint" in refusals[-1]
    listed = get(phub, "/requests")
    assert len(listed) == enrollment.MAX_CLAIMS and all(r["contested"] for r in listed)
    assert devices[-1].fingerprint not in {r["fingerprint"] for r in listed}
    assert enrollment.receive(phub.ctx, "GATE-77", devices[0].request(), max_age=600) is None  # a retry still counts
    assert len(get(phub, "/requests")) == enrollment.MAX_CLAIMS
