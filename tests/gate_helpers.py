"""Test helpers for the gate agent: tokens, whitelists, a socat pty pair, and a fake hub on MQTT.

The fake hub seals snapshots, deltas and acks with a real :class:`Signer`, exactly as the hub does. A
gate's event batches and emergency states are device-signed (:mod:`protocol.device_signed`): the fake
hub verifies them under the keys it is told to trust (``fake_hub(..., devices={id: key})`` or
:meth:`FakeHub.trust`), as the hub does with its registry, and reads the others unverified.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import nacl.signing
from pydantic import ValidationError

from confkit.enrolment import device_key
from protocol.device_signed import KIND_EMERGENCY_STATE, KIND_EVENTS, open_device, peek_body, peek_device
from protocol.emergency import KIND_EMERGENCY, EmergencyCommand, EmergencyState
from protocol.envelope import seal
from protocol.errors import MalformedError, ProtocolError
from protocol.keys import Signer
from protocol.messages import KIND_ACK, EventBatch, GateStatus, SyncRequest, parse_message
from protocol.token import TicketToken, encode_token
from protocol.topics import Topics
from protocol.whitelist import KIND_DELTA, KIND_SNAPSHOT, ChannelRules, Delta, GroupRules, Snapshot, WhitelistEntry

NOW = 1_790_005_000.0
PERF = 42
ADULT, CHILD, STAFF = 3, 4, 9
GROUP, CHANNEL = 1, 1


def token(signer: Signer, ticket_id: int, *, perf: int = PERF, ttype: int = ADULT, persons: int = 1,
          now: float = NOW) -> str:
    return encode_token(TicketToken(ticket_id, perf, ttype, int(now - 3600), int(now + 3600), persons), signer)


def rules(group_id: int = GROUP, types: frozenset[int] = frozenset({ADULT, CHILD})) -> GroupRules:
    return GroupRules(group_id, frozenset({PERF}), {CHANNEL: ChannelRules(CHANNEL, types),
                                                    2: ChannelRules(2, frozenset({STAFF}))})


def snapshot(entries: list[WhitelistEntry], seq: int = 10, group_id: int = GROUP) -> Snapshot:
    return Snapshot(group_id, seq, NOW, rules(group_id), entries)


def entries(n: int, start: int = 1) -> list[WhitelistEntry]:
    return [WhitelistEntry(i, PERF, ADULT) for i in range(start, start + n)]


def seal_snapshot(snap: Snapshot, signer: Signer) -> bytes:
    return seal(KIND_SNAPSHOT, snap.to_wire(), signer, compress=True)


def seal_delta(delta: Delta, signer: Signer) -> bytes:
    return seal(KIND_DELTA, delta.to_wire(), signer)


def write_keys(path: Path, signer: Signer) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({str(signer.kid): signer.public_key_b64}))
    return path


def device_public_key(data_dir: Path) -> nacl.signing.VerifyKey:
    """The public key of the gate whose ``data_dir`` is given (``<data_dir>/device.key``). Made now if the
    gate has none yet: the gate then starts with it."""
    return device_key(data_dir).verify_key


def open_signed(data: bytes, kind: str, device_id: str, key: nacl.signing.VerifyKey | None = None) -> Any:
    """The body of ``device_id``'s device-signed ``kind`` message: verified under ``key`` if given (raises
    SignatureError / MalformedError), else read unverified (but still of that kind and device)."""
    if key is not None:
        return open_device(data, kind, device_id, key)
    if (found := peek_device(data)) != (kind, device_id):
        raise MalformedError(f"expected a {kind} of {device_id}, got a {found[0][:40]} of {found[1][:70]}")
    return peek_body(data)


def open_batch(data: bytes, device_id: str, key: nacl.signing.VerifyKey | None = None) -> EventBatch:
    """A gate's signed event batch (see :func:`open_signed`)."""
    return EventBatch.model_validate(open_signed(data, KIND_EVENTS, device_id, key))


def open_emergency_state(data: bytes, device_id: str, key: nacl.signing.VerifyKey | None = None) -> EmergencyState:
    """A gate's signed emergency state (see :func:`open_signed`)."""
    return EmergencyState.model_validate(open_signed(data, KIND_EMERGENCY_STATE, device_id, key))


async def eventually(check: Any, timeout: float = 5.0, what: str = "") -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


@dataclass
class FakeHub:
    """Plays the hub over MQTT: collects events, sync requests and statuses; sends signed messages.

    Event batches and emergency states of a device in ``devices`` are verified under its key; one that
    does not verify is kept in ``refused`` (device, leaf, error), not acknowledged. ``raw`` keeps every
    payload received per (device, leaf)."""

    client: aiomqtt.Client
    signer: Signer
    topics: Topics = field(default_factory=Topics)
    auto_ack: bool = True
    echo_seq: int | None = None  # sent in every ack (None: "already in the counts the gate has")
    events: list[Any] = field(default_factory=list)  # unique CheckinEvents in arrival order
    batches: list[EventBatch] = field(default_factory=list)
    syncs: list[SyncRequest] = field(default_factory=list)
    statuses: list[GateStatus] = field(default_factory=list)
    emergency: list[EmergencyState] = field(default_factory=list)  # every device emergency state received
    devices: dict[str, nacl.signing.VerifyKey] = field(default_factory=dict)  # device id -> its registered key
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    raw: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)

    def trust(self, device: str, key: nacl.signing.VerifyKey) -> None:
        """Verify ``device``'s event batches and emergency states under ``key`` from now on."""
        self.devices[device] = key

    async def _loop(self) -> None:
        async for m in self.client.messages:
            topic = str(m.topic)
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            if not payload:
                continue
            device, leaf = self.topics.parse_device_topic(topic)
            self.raw.setdefault((device, leaf), []).append(payload)
            try:
                await self._on(device, leaf, payload)
            except (ProtocolError, ValidationError) as exc:
                self.refused.append((device, leaf, str(exc)))

    async def _on(self, device: str, leaf: str, payload: bytes) -> None:
        if leaf == "events":
            batch = open_batch(payload, device, self.devices.get(device))
            self.batches.append(batch)
            seen = {e.event_id for e in self.events}
            self.events.extend(e for e in batch.events if e.event_id not in seen)
            if self.auto_ack:
                await self.ack(device, [e.event_id for e in batch.events])
        elif leaf == "sync":
            self.syncs.append(parse_message(SyncRequest, payload))
        elif leaf == "status":
            self.statuses.append(parse_message(GateStatus, payload))
        elif leaf == "emergency":
            self.emergency.append(open_emergency_state(payload, device, self.devices.get(device)))

    async def ack(self, device: str, event_ids: list[str], signer: Signer | None = None,
                  echo_seq: int | None = None) -> None:
        body: dict[str, Any] = {"device_id": device, "event_ids": event_ids, "at": time.time()}
        if (echo := echo_seq if echo_seq is not None else self.echo_seq) is not None:
            body["echo_seq"] = echo
        await self.client.publish(self.topics.ack(device), seal(KIND_ACK, body, signer or self.signer), qos=1)

    async def send(self, topic: str, payload: bytes) -> None:
        await self.client.publish(topic, payload, qos=1)

    async def command(self, cmd: EmergencyCommand, signer: Signer | None = None, kind: str = KIND_EMERGENCY) -> None:
        """Publish a sealed emergency command, retained, as the hub does."""
        await self.client.publish(self.topics.emergency_command(), seal(kind, cmd.to_wire(), signer or self.signer),
                                  qos=1, retain=True)

    def last_emergency(self, device: str) -> EmergencyState | None:
        mine = [s for s in self.emergency if s.device_id == device]
        return mine[-1] if mine else None

    def last_status(self, device: str) -> GateStatus | None:
        mine = [s for s in self.statuses if s.device_id == device]
        return mine[-1] if mine else None


@asynccontextmanager
async def fake_hub(port: int, signer: Signer, *, auto_ack: bool = True,
                   devices: dict[str, nacl.signing.VerifyKey] | None = None) -> AsyncIterator[FakeHub]:
    """A :class:`FakeHub` on the broker at ``port``; ``devices``: the keys it verifies gates under."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"hub-{os.getpid()}-{time.monotonic_ns()}",
                              protocol=aiomqtt.ProtocolVersion.V5, timeout=5,
                              socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]) as client:
        hub = FakeHub(client, signer, auto_ack=auto_ack, devices=dict(devices or {}))
        for leaf in ("events", "sync", "status", "emergency"):
            await client.subscribe(hub.topics.all_devices(leaf), qos=1)
        task = asyncio.create_task(hub._loop())
        try:
            yield hub
        finally:
            # cancel until it ends: on Python 3.11 aiomqtt's publish (asyncio.wait_for) can swallow a cancellation
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1)
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


def journal_ids(path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT event_id FROM journal ORDER BY seq")]


PTY_NAME = re.compile(r"PTY is (\S+)")
