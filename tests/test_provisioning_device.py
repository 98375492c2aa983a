"""Device side of provisioning against a real Mosquitto, the test playing the hub with a real Signer."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import SecretStr

from confkit.device_agent import EXIT_RESTART, DeviceAgent
from confkit.enrolment import (
    IDENTITY_FILE,
    KEY_FILE,
    Bootstrap,
    BootstrapBroker,
    EnrollmentRejected,
    Identity,
    device_key,
    enroll,
    public_key_b64,
)
from gate_agent.app import run_gate
from gate_agent.config import GateConfig
from gate_agent.enrolled import gate_device_agent
from gate_agent.link import Link, LinkOptions
from gate_agent.store import Store
from protocol.envelope import seal
from protocol.keys import Keyring, Signer
from protocol.messages import GateStatus, SyncRequest, parse_message
from protocol.provisioning import (
    KIND_COMMAND,
    KIND_CONFIG,
    KIND_KEYS,
    KIND_REPLY,
    BrokerAccess,
    CommandPayload,
    CommandResult,
    ConfigAck,
    ConfigPayload,
    EnrollmentRequest,
    KeysPayload,
    ProvisioningTopics,
    ReplyPayload,
    seal_secret,
)
from protocol.topics import Topics
from tests.gate_helpers import eventually
from tests.support.broker import Mosquitto

P = ProvisioningTopics()
T = Topics()
ME = "gate-7"


def bootstrap(tmp_path: Path, port: int, signer: Signer, resend_s: float = 5.0) -> Bootstrap:
    return Bootstrap(serial="TS-0007", kind="gate", hardware_model="rpi4", identity_dir=tmp_path / "identity",
                     hub_keys={str(signer.kid): signer.public_key_b64}, resend_s=resend_s,
                     broker=BootstrapBroker(port=port, username="claim", password=SecretStr("claim-pw")))


def reply_for(req: EnrollmentRequest, signer: Signer, port: int, **update: Any) -> bytes:
    body = ReplyPayload(serial=req.serial, nonce=req.nonce, status="approved", device_id=ME, kind="gate",
                        site="main", group_id=1, channel_id=2,
                        broker=BrokerAccess(host="127.0.0.1", port=port, username=ME),
                        sealed=seal_secret({"password": "dev-pw-1"}, req.public_key), at=time.time())
    return seal(KIND_REPLY, body.model_copy(update=update).model_dump(mode="json"), signer)


@dataclass
class HubSide:
    client: aiomqtt.Client
    signer: Signer
    requests: list[EnrollmentRequest] = field(default_factory=list)
    acks: list[ConfigAck] = field(default_factory=list)
    results: list[CommandResult] = field(default_factory=list)
    statuses: list[GateStatus] = field(default_factory=list)
    syncs: list[SyncRequest] = field(default_factory=list)

    async def _loop(self) -> None:
        async for m in self.client.messages:
            topic, data = str(m.topic), m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            if not data:
                continue
            if "/provision/request/" in topic:
                self.requests.append(EnrollmentRequest.model_validate_json(data))
            elif topic.endswith("/config_ack"):
                self.acks.append(ConfigAck.model_validate_json(data))
            elif topic.endswith("/command_result"):
                self.results.append(CommandResult.model_validate_json(data))
            elif topic.endswith("/status"):
                self.statuses.append(parse_message(GateStatus, data))
            elif topic.endswith("/sync"):
                self.syncs.append(parse_message(SyncRequest, data))

    async def config(self, version: int, config: dict[str, Any], signer: Signer | None = None,
                     device: str = ME) -> None:
        body = ConfigPayload(device_id=device, version=version, issued_at=time.time(), config=config)
        await self.client.publish(P.config(ME), seal(KIND_CONFIG, body.model_dump(mode="json"),
                                                     signer or self.signer), qos=1, retain=True)

    async def command(self, name: str, *, command_id: str | None = None, ttl: float = 60,
                      args: dict[str, Any] | None = None, signer: Signer | None = None) -> str:
        cid = command_id or uuid.uuid4().hex
        body = CommandPayload(device_id=ME, command_id=cid, name=name, issued_at=time.time(),  # type: ignore[arg-type]
                              expires_at=time.time() + ttl, args=args or {})
        await self.client.publish(P.command(ME), seal(KIND_COMMAND, body.model_dump(mode="json"),
                                                      signer or self.signer), qos=1)
        return cid

    async def keys(self, version: int, keys: list[Signer], signer: Signer) -> None:
        body = KeysPayload(version=version, keys={str(s.kid): s.public_key_b64 for s in keys}, issued_at=time.time())
        await self.client.publish(P.hub_keys(), seal(KIND_KEYS, body.model_dump(mode="json"), signer),
                                  qos=1, retain=True)

    def result(self, cid: str) -> CommandResult | None:
        return next((r for r in self.results if r.command_id == cid), None)


@asynccontextmanager
async def hub_side(port: int, signer: Signer) -> AsyncIterator[HubSide]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"hub-{uuid.uuid4().hex[:8]}",
                              protocol=aiomqtt.ProtocolVersion.V5, timeout=5,
                              socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]) as client:
        hub = HubSide(client, signer)
        for topic in (P.all_requests(), "venue/device/+/config_ack", "venue/device/+/command_result",
                      T.all_devices("status"), T.all_devices("sync")):
            await client.subscribe(topic, qos=1)
        task = asyncio.create_task(hub._loop())
        try:
            yield hub
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- enrollment --------------------------------------------------------------------------------


async def test_enrollment_end_to_end_resends_refuses_bad_replies_and_stores_a_private_identity(
        tmp_path: Path, broker: Mosquitto, signer: Signer) -> None:
    boot = bootstrap(tmp_path, broker.port, signer, resend_s=0.3)
    async with hub_side(broker.port, signer) as hub:
        task = asyncio.create_task(enroll(boot))
        await eventually(lambda: len(hub.requests) >= 2, what="the request re-sent until answered")
        first, again = hub.requests[0], hub.requests[1]
        assert (again.nonce, again.reply_to) == (first.nonce, first.reply_to)
        first.verify()
        assert first.public_key == public_key_b64(device_key(boot.identity_dir))
        assert mode(boot.identity_dir / KEY_FILE) == 0o600
        # replies that must be refused: another nonce, a forged signature, another serial
        await hub.client.publish(P.reply(first.reply_to), reply_for(first, signer, broker.port, nonce="0" * 32))
        await hub.client.publish(P.reply(first.reply_to), reply_for(first, Signer.generate(1), broker.port))
        await hub.client.publish(P.reply(first.reply_to), reply_for(first, signer, broker.port, serial="OTHER"))
        await asyncio.sleep(0.3)
        assert not task.done()
        await hub.client.publish(P.reply(first.reply_to), reply_for(first, signer, broker.port))
        identity = await asyncio.wait_for(task, 10)
    assert (identity.device_id, identity.site, identity.group_id, identity.channel_id) == (ME, "main", 1, 2)
    assert identity.password.get_secret_value() == "dev-pw-1"
    path = boot.identity_dir / IDENTITY_FILE
    assert mode(path) == 0o600
    stored = json.loads(path.read_text())
    assert stored["password"] == "dev-pw-1" and stored["username"] == ME
    assert Identity.load(boot.identity_dir) == identity
    key_before = (boot.identity_dir / KEY_FILE).read_bytes()
    device_key(boot.identity_dir)
    assert (boot.identity_dir / KEY_FILE).read_bytes() == key_before  # created once, reused
    assert not [p for p in boot.identity_dir.iterdir() if p.name.endswith(".tmp")]


async def test_a_rejected_enrollment_raises_the_hubs_reason(
        tmp_path: Path, broker: Mosquitto, signer: Signer) -> None:
    boot = bootstrap(tmp_path, broker.port, signer)
    async with hub_side(broker.port, signer) as hub:
        task = asyncio.create_task(enroll(boot))
        await eventually(lambda: hub.requests, what="request")
        req = hub.requests[0]
        await hub.client.publish(P.reply(req.reply_to), reply_for(
            req, signer, broker.port, status="rejected", reason="unknown serial", device_id=None, broker=None,
            sealed=None))
        with pytest.raises(EnrollmentRejected, match="unknown serial") as info:
            await asyncio.wait_for(task, 10)
    assert info.value.reason == "unknown serial"
    assert not (boot.identity_dir / IDENTITY_FILE).exists()


# ---- the agent on a link -------------------------------------------------------------------------


def enrolled(tmp_path: Path, port: int, signer: Signer) -> Path:
    directory = tmp_path / "identity"
    key = device_key(directory)
    Identity(device_id=ME, serial="TS-0007", kind="gate", site="main", group_id=1, channel_id=2,
             broker_host="127.0.0.1", broker_port=port, username=ME, password=SecretStr("dev-pw-1"),
             hub_keys={str(signer.kid): signer.public_key_b64}).save(directory)
    assert key
    return directory


@dataclass
class Device:
    agent: DeviceAgent
    link: Link
    store: Store
    keyring: Keyring
    stop: asyncio.Event


@asynccontextmanager
async def running_device(tmp_path: Path, port: int, directory: Path) -> AsyncIterator[Device]:
    identity = Identity.load(directory)
    keyring = identity.keyring()
    cfg = GateConfig(device_id=ME, data_dir=tmp_path / "gate")
    with Store.open(cfg.data_dir) as store:
        link = Link(LinkOptions(device_id=ME, group_id=1, channel_id=2, port=port, status_interval=0.3,
                                backoff_max=0.3, backoff_min=0.1),
                    store, keyring, device_key=device_key(directory))
        stop = asyncio.Event()
        agent = gate_device_agent(directory, link, store, keyring, cfg, stop)
        agent.start()
        task = asyncio.create_task(link.run())
        try:
            await eventually(lambda: link.connected.is_set(), what="link connected")
            yield Device(agent, link, store, keyring, stop)
        finally:
            await link.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            agent.close()


async def test_config_newer_applied_older_and_forged_and_invalid_refused(
        tmp_path: Path, broker: Mosquitto, signer: Signer) -> None:
    directory = enrolled(tmp_path, broker.port, signer)
    async with hub_side(broker.port, signer) as hub, running_device(tmp_path, broker.port, directory) as dev:
        await hub.config(2, {"status_interval": 5, "turnstile": {"pulse_ms": 300}})
        await eventually(lambda: hub.acks, what="config ack")
        assert hub.acks[0].applied and hub.acks[0].version == 2 and dev.link.config_version == 2
        await eventually(lambda: any(s.config_version == 2 for s in hub.statuses), what="version in status")
        await hub.config(1, {"status_interval": 1})  # older: ignored
        await hub.config(3, {"status_interval": 1}, signer=Signer.generate(1))  # forged: ignored
        await hub.config(3, {"status_interval": 1}, device="gate-other")  # misaddressed: ignored
        await asyncio.sleep(0.4)
        assert len(hub.acks) == 1 and dev.link.config_version == 2
        await hub.config(3, {"mqtt": {"host": "evil"}})
        await hub.config(3, {"no_such_key": 1})
        await eventually(lambda: len(hub.acks) == 3, what="error acks")
        assert [(a.version, a.applied) for a in hub.acks[1:]] == [(3, False), (3, False)]
        assert "mqtt" in (hub.acks[1].error or "") and "no_such_key" in (hub.acks[2].error or "")
        assert dev.link.config_version == 2
        assert json.loads(dev.store.get_meta("prov_config") or "{}")["turnstile"] == {"pulse_ms": 300}


async def test_commands_run_once_expired_refused_diagnostics_resync_rotate_and_restart(
        tmp_path: Path, broker: Mosquitto, signer: Signer) -> None:
    directory = enrolled(tmp_path, broker.port, signer)
    async with hub_side(broker.port, signer) as hub, running_device(tmp_path, broker.port, directory) as dev:
        logging_warning = "something odd for the ring buffer"
        import logging

        logging.getLogger("gate_agent.test").warning(logging_warning)
        cid = await hub.command("diagnostics")
        await eventually(lambda: hub.result(cid), what="diagnostics result")
        diag = hub.result(cid)
        assert diag is not None and diag.ok
        assert {"software_version", "python", "disk_free", "outbox", "whitelist_seq"} <= diag.result.keys()
        assert any(logging_warning in line for line in diag.result["recent_errors"])
        await hub.command("diagnostics", command_id=cid)  # the same id again: not run again
        expired = await hub.command("diagnostics", ttl=-1)
        forged = await hub.command("restart", signer=Signer.generate(1))
        await eventually(lambda: hub.result(expired), what="expired result")
        assert hub.result(expired) == hub.result(expired) and not hub.result(expired).ok  # type: ignore[union-attr]
        assert hub.result(expired).error == "expired"  # type: ignore[union-attr]
        await asyncio.sleep(0.3)
        assert [r.command_id for r in hub.results].count(cid) == 1 and hub.result(forged) is None
        assert not dev.stop.is_set()
        # resync: a sync request for a full snapshot
        syncs = len(hub.syncs)
        resync = await hub.command("resync_whitelist")
        await eventually(lambda: hub.result(resync), what="resync result")
        await eventually(lambda: any(s.have_seq == -1 for s in hub.syncs[syncs:]), what="snapshot request")
        # rotate credentials: stored in the identity, the link logs in again with it
        sealed = seal_secret({"password": "dev-pw-2"}, public_key_b64(dev.agent.key))
        statuses = len(hub.statuses)
        rotate = await hub.command("rotate_credentials", args={"sealed": sealed})
        await eventually(lambda: hub.result(rotate), what="rotate result")
        assert hub.result(rotate).ok  # type: ignore[union-attr]
        assert json.loads((directory / IDENTITY_FILE).read_text())["password"] == "dev-pw-2"
        assert mode(directory / IDENTITY_FILE) == 0o600
        assert dev.link.opt.password == "dev-pw-2"
        await eventually(lambda: len(hub.statuses) > statuses and dev.link.connected.is_set(), what="reconnected")
        bad = await hub.command("rotate_credentials", args={"sealed": seal_secret({"password": "x"},
                                                                                   Signer.generate().public_key_b64)})
        await eventually(lambda: hub.result(bad), what="bad rotate result")
        assert not hub.result(bad).ok  # type: ignore[union-attr]
        # restart: replies, then stops with the restart exit code
        restart = await hub.command("restart")
        await eventually(lambda: hub.result(restart), what="restart result")
        assert hub.result(restart).ok and dev.stop.is_set() and dev.agent.exit_code == EXIT_RESTART  # type: ignore[union-attr]
        seen = json.loads(dev.store.get_meta("prov_commands") or "[]")
        assert cid in seen and restart in seen


async def test_hub_keys_rotation_signed_by_a_trusted_key_forged_refused(
        tmp_path: Path, broker: Mosquitto, signer: Signer) -> None:
    directory = enrolled(tmp_path, broker.port, signer)
    new = Signer.generate(2)
    async with hub_side(broker.port, signer) as hub, running_device(tmp_path, broker.port, directory) as dev:
        mallory = Signer.generate(1)
        await hub.keys(5, [mallory], mallory)  # forged: signed by an untrusted key
        await asyncio.sleep(0.3)
        assert dev.keyring.kids() == [1] and Identity.load(directory).hub_keys_version == 0
        await hub.keys(1, [signer, new], signer)
        await eventually(lambda: dev.keyring.kids() == [1, 2], what="new keys trusted")
        await hub.keys(2, [new], new)  # the next rotation, signed by the new key, drops the old one
        await eventually(lambda: dev.keyring.kids() == [2], what="old key retired")
        await hub.keys(1, [signer], new)  # older version: ignored
        await asyncio.sleep(0.3)
        assert dev.keyring.kids() == [2]
        stored = Identity.load(directory)
        assert stored.hub_keys == {"2": new.public_key_b64} and stored.hub_keys_version == 2
        await hub.config(4, {"status_interval": 3}, signer=new)  # validation goes on with the new key
        await eventually(lambda: hub.acks and hub.acks[-1].version == 4, what="config under the new key")
        await hub.config(5, {"status_interval": 3}, signer=signer)  # the retired key no longer works
        await asyncio.sleep(0.3)
        assert dev.link.config_version == 4


async def test_run_gate_with_an_identity_counts_births_and_exits_for_restart(
        tmp_path: Path, broker: Mosquitto, signer: Signer) -> None:
    directory = enrolled(tmp_path, broker.port, signer)
    cfg = GateConfig(device_id="unprovisioned", data_dir=tmp_path / "gate", status_interval=0.3,
                     scanner={"url": "loop://"}, emergency={"enabled": False})  # type: ignore[arg-type]
    async with hub_side(broker.port, signer) as hub:
        for birth in (1, 2):
            stop = asyncio.Event()
            task = asyncio.create_task(run_gate(cfg, stop, identity_dir=directory))
            await eventually(lambda b=birth: any(s.birth == b and s.state == "online" for s in hub.statuses),  # type: ignore[misc]
                             timeout=10, what=f"status with birth {birth}")
            status = next(s for s in hub.statuses if s.birth == birth)
            assert (status.device_id, status.group_id, status.channel_id, status.interval) == (ME, 1, 2, 0.3)
            if birth == 1:
                stop.set()
                assert await asyncio.wait_for(task, 10) == 0
        cid = await hub.command("restart")
        assert await asyncio.wait_for(task, 10) == EXIT_RESTART
        assert hub.result(cid) is not None and hub.result(cid).ok  # type: ignore[union-attr]
