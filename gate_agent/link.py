"""The MQTT link to the hub: status and Last Will, the outbox sender, acks, whitelist updates, emergency.

One explicit reconnect loop with capped backoff; every connect re-subscribes, re-announces the
status and asks for the whitelist since our seq. Nothing here is on the scan path: scans are
journalled first and the sender is only woken.

What the gate says about itself that the hub acts on, its event batches and its emergency state, is
signed with the device's own key (:mod:`protocol.device_signed`); the hub verifies it against the key in
its device registry. Status and sync requests stay plain JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import aiomqtt
import nacl.signing

from confkit.aio import wait_set
from confkit.mqtt import BrokerLink, MqttSession, device_client
from confkit.supervise import Supervisor, watch
from gate_agent import __version__
from gate_agent import sync as wl
from gate_agent.logs import truncate
from gate_agent.store import Store
from protocol.device_signed import KIND_EMERGENCY_STATE, KIND_EVENTS, seal_device
from protocol.emergency import EmergencyState
from protocol.envelope import open_envelope, peek_kid, peek_kind
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring
from protocol.messages import KIND_ACK, AckPayload, EventBatch, GateStatus, SyncRequest, dump_message
from protocol.provisioning import KIND_KEYS

log = logging.getLogger(__name__)

BATCH_SIZE = 200
_BIG_PAYLOAD = 64 * 1024  # verify and parse larger messages off the event loop


@dataclass(frozen=True, kw_only=True)
class LinkOptions(BrokerLink):
    """A gate's broker link, plus where it stands and how patient its sender and sync are."""

    group_id: int
    channel_id: int
    kind: str = "gate"
    ack_timeout: float = 3.0
    sync_interval: float = 2.0


def _is_key_list(data: bytes) -> bool:
    try:
        return peek_kind(data) == KIND_KEYS
    except MalformedError:
        return False


class Link(MqttSession):
    """Keeps one MQTT session to the hub alive; run :meth:`run` as a task, then :meth:`stop`.

    ``device_key``: this device's own Ed25519 key; it signs the event batches and emergency states."""

    opt: LinkOptions

    def __init__(self, options: LinkOptions, store: Store, keyring: Keyring, *, device_key: nacl.signing.SigningKey,
                 health: Callable[[], dict[str, str]] | None = None) -> None:
        super().__init__(options)
        self._device_key = device_key
        self.health = health  # part name -> "ok" | "missing" | "error" | "disabled", sent in every status
        self.store = store
        self.keyring = keyring
        self._wake = asyncio.Event()
        self._acked = asyncio.Event()
        self._inflight: set[str] = set()
        self._last_sync = -1e9
        self._deferred_sync: asyncio.Task[None] | None = None
        self._echo_check: asyncio.Task[None] | None = None
        self._echo_wanted = -1
        self._emergency_state: Callable[[], EmergencyState] | None = None
        self.birth: int | None = None  # set by the provisioning agent; sent in every status
        self.config_version: int | None = None
        self._relogin = False
        self._snapshot_wanted = False
        self._first: list[str] = []  # topics subscribed before the others (the hub key list)
        self.stale: dict[str, str] = {}  # "whitelist" / "keys" -> why: reported in every heartbeat's health
        self._status_tasks: set[asyncio.Task[None]] = set()
        self._session: Supervisor | None = None  # the connected session's tasks (outbox, heartbeat)
        self._keys_handler: Callable[[bytes], Awaitable[None]] | None = None
        me, group = options.device_id, options.group_id
        self._handlers: dict[str, Callable[[bytes], Awaitable[None]]] = {
            self.topics.ack(me): self._on_ack,
            self.topics.device_whitelist(me): self._on_whitelist,
            self.topics.group_whitelist(group): self._on_whitelist,
        }

    def serve_emergency(self, handler: Callable[[bytes], Awaitable[None]],
                        state: Callable[[], EmergencyState]) -> None:
        """Handle the hub's retained emergency command with ``handler``, and publish ``state()``, signed with
        the device key, retained on ``{prefix}/device/{id}/emergency`` on every (re)connect and on
        :meth:`publish_emergency`."""
        self._handlers[self.topics.emergency_command()] = handler
        self._emergency_state = state

    def _emergency_payload(self) -> bytes:
        assert self._emergency_state is not None
        return seal_device(KIND_EMERGENCY_STATE, self._emergency_state().model_dump(mode="json"),
                           self.opt.device_id, self._device_key)

    def serve(self, topic: str, handler: Callable[[bytes], Awaitable[None]], *, first: bool = False) -> None:
        """Subscribe ``topic`` (from the next connect on) and dispatch its messages to ``handler``; ``first``:
        before every other topic (the hub key list, so retained messages signed by a new key verify)."""
        self._handlers[topic] = handler
        if first and topic not in self._first:
            self._first.append(topic)

    def mark_stale(self, part: str, reason: str) -> None:
        """``part`` (``whitelist`` or ``keys``) cannot be verified: log it at ERROR, report ``stale`` in the
        health of every heartbeat (the hub's device list shows it) until it is repaired."""
        log.error("%s STALE: %s", part, reason)
        self.stale[part] = reason
        self.status_changed()

    def status_changed(self) -> None:
        """Publish the status now (not at the next heartbeat) if connected: a part's health changed."""
        client = self._client
        if client is not None:
            task = watch(asyncio.get_running_loop().create_task(self._publish_status(client), name="status"),
                         self.opt.device_id)
            self._status_tasks.add(task)
            task.add_done_callback(self._status_tasks.discard)

    def suspect_stale(self, part: str, reason: str, resolved: Callable[[], bool]) -> None:
        """``part`` is probably stale (say, a key list signed by a key we do not know yet): the hub sends its
        chain of key lists before every whitelist catch-up, so ask for one, and :meth:`mark_stale` only if
        ``resolved()`` is still false a few seconds later."""
        log.warning("%s: %s; asking the hub to catch us up", part, reason)
        client = self._client

        async def later() -> None:
            if client is not None:
                try:
                    await self._request_sync(client)
                except aiomqtt.MqttError as exc:
                    log.debug("sync request failed: %s", exc)
            await asyncio.sleep(max(3.0, 2 * self.opt.sync_interval))
            if not resolved():
                self.mark_stale(part, reason)

        task = watch(asyncio.get_running_loop().create_task(later(), name="suspect-stale"), self.opt.device_id)
        self._status_tasks.add(task)
        task.add_done_callback(self._status_tasks.discard)

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(self.topics.status(self.opt.device_id), self._status("online"), qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            log.debug("status publish failed: %s", exc)

    def keys_unverified(self, reason: str, resolved: Callable[[], bool]) -> None:
        """A hub key list did not verify (the device agent's report): keys suspected stale."""
        self.suspect_stale("keys", reason, resolved=resolved)

    async def keys_changed(self) -> None:
        """The hub key list changed: no longer keys-stale; get the retained messages again (they may have
        been refused before the new keys were known) and, if the whitelist is stale, a snapshot."""
        self.stale.pop("keys", None)
        client = self._client
        if client is None:
            return
        try:
            for topic in self._handlers:
                if topic not in self._first:
                    await client.subscribe(topic, qos=1)  # the broker sends the retained message again
            if "whitelist" in self.stale:
                self._snapshot_wanted = True
                await self._request_sync(client, force=True)
            await self._publish_status(client)
        except aiomqtt.MqttError as exc:
            log.debug("re-subscribe after a key change failed: %s", exc)

    async def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1; False if not connected or it failed."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=1, timeout=2)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish on %s: %s", topic, exc)
            return False
        return True

    def relogin(self, username: str, password: str) -> None:
        """Use these broker credentials from now on: the session is closed and reopened with them."""
        self.opt = replace(self.opt, username=username, password=password)
        self._relogin = True

    async def resync(self) -> None:
        """Forget the installed seq for sync purposes and ask the hub for a full snapshot now."""
        self._snapshot_wanted = True
        if self._client is not None:
            await self._request_sync(self._client, force=True)

    async def publish_emergency(self) -> bool:
        """Publish the emergency state now (retained, QoS 1); False if not connected or it failed."""
        client = self._client
        if client is None or self._emergency_state is None:
            return False
        try:
            await client.publish(self.topics.emergency_state(self.opt.device_id), self._emergency_payload(),
                                 qos=1, retain=True, timeout=2)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish the emergency state: %s", exc)
            return False
        return True

    def wake(self, *_: object) -> None:
        """A new event is in the outbox: send it now if connected."""
        self._wake.set()

    def _status(self, state: str) -> bytes:
        seq = self.store.whitelist_seq if self.store.installed else None
        return dump_message(GateStatus(
            device_id=self.opt.device_id, state=state, at=time.time(), kind=self.opt.kind,
            group_id=self.opt.group_id, channel_id=self.opt.channel_id, whitelist_seq=seq,
            outbox=self.store.outbox_count(), version=__version__,
            health=self._health() if state == "online" else None,
            birth=self.birth, config_version=self.config_version, interval=self.opt.status_interval,
            set_aside=self.store.set_aside_count() or None))  # absent when 0: an older hub parses the status

    def _health(self) -> dict[str, str] | None:
        parts = dict(self.health()) if self.health is not None else {}
        parts.update({part: "stale" for part in self.stale})
        if self.store.set_aside_count():
            parts["outbox"] = "error"  # events set aside, never sent (Store.pending): ops must look
        if self._session is not None:
            parts.update(self._session.failed())  # {"outbox": "failed"}: a session task died, restarting
        return parts or None

    def _client_for(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.status(self.opt.device_id), self._status("offline"), qos=1, retain=True)
        o = self.opt
        return device_client(o.host, o.port, f"gate-{o.device_id}", will, username=o.username, password=o.password,
                             keepalive=o.keepalive, tls=o.tls, tls_ca=o.tls_ca)

    async def _serve(self, client: aiomqtt.Client) -> None:
        me = self.opt.device_id
        for topic in [*self._first, *(t for t in self._handlers if t not in self._first)]:
            await client.subscribe(topic, qos=1)
        if self._emergency_state is not None:  # first: the hub learns at once a gate opened while offline
            await client.publish(self.topics.emergency_state(me), self._emergency_payload(), qos=1, retain=True)
        await client.publish(self.topics.status(me), self._status("online"), qos=1, retain=True)
        await self._request_sync(client, force=True)
        self._client = client
        self.connected.set()
        log.info("MQTT connected to %s:%s", self.opt.host, self.opt.port)
        try:
            # a session task that dies is logged, reported in the status at once ("outbox": "failed") and
            # restarted with backoff; leaving the block (connection lost) cancels them
            async with Supervisor(me, on_change=self.status_changed) as session:
                self._session = session
                session.spawn("outbox", lambda: self._send_outbox(client), backoff_max=self.opt.backoff_max)
                session.spawn("heartbeat", lambda: self._heartbeat(client), backoff_max=self.opt.backoff_max)
                async for message in client.messages:
                    await self._dispatch(str(message.topic), message.payload)
                    if self._relogin:
                        self._relogin = False
                        raise aiomqtt.MqttError("reconnecting with new credentials")
        finally:
            self._session = None
            helpers = [t for t in (self._deferred_sync, self._echo_check) if t is not None and not t.done()]
            for task in helpers:
                task.cancel()
            if helpers:
                await asyncio.wait(helpers)  # watched: a failure of theirs is logged

    async def _dispatch(self, topic: str, payload: object) -> None:
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        handler = self._handlers.get(topic)
        if handler is None:
            log.warning("message on an unexpected topic", extra={"topic": topic, "payload": truncate(data)})
            return
        try:
            await handler(data)
        except Exception as exc:
            log.warning("refused message: %s", exc, extra={"topic": topic, "payload": truncate(data)})

    async def stop(self) -> None:
        """Announce ``offline`` (retained) if connected; the caller then cancels :meth:`run`."""
        client = self._client
        if client is not None:
            try:
                await client.publish(self.topics.status(self.opt.device_id), self._status("offline"),
                                     qos=1, retain=True, timeout=2)
            except aiomqtt.MqttError as exc:
                log.warning("could not publish the offline status: %s", exc)

    # ---- device -> hub -----------------------------------------------------------------------

    async def _request_sync(self, client: aiomqtt.Client, *, force: bool = False) -> None:
        """Ask for the whitelist since our seq; at most one request per ``sync_interval``."""
        now = time.monotonic()
        wait = self._last_sync + self.opt.sync_interval - now
        if not force and wait > 0:
            if self._deferred_sync is None or self._deferred_sync.done():
                self._deferred_sync = watch(asyncio.create_task(self._sync_later(client, wait), name="sync-later"),
                                            self.opt.device_id)
            return
        self._last_sync = now
        have = self.store.whitelist_seq if self.store.installed and not self._snapshot_wanted else -1
        request = SyncRequest(device_id=self.opt.device_id, group_id=self.opt.group_id, have_seq=have)
        await client.publish(self.topics.sync(self.opt.device_id), dump_message(request), qos=1)
        log.info("whitelist sync requested from seq %s", have)

    async def _sync_later(self, client: aiomqtt.Client, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._client is client:
            try:
                await self._request_sync(client, force=True)
            except aiomqtt.MqttError as exc:
                log.debug("deferred sync request failed: %s", exc)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:  # until the session ends (cancelled); a failed publish waits for the next beat
            await asyncio.sleep(self.opt.status_interval)
            try:
                await client.publish(self.topics.status(self.opt.device_id), self._status("online"),
                                     qos=1, retain=True)
            except aiomqtt.MqttError as exc:
                log.debug("heartbeat not sent: %s", exc)

    async def _send_outbox(self, client: aiomqtt.Client) -> None:
        """Send the outbox until the session ends (cancelled). A publish that fails (a broker slow to ack)
        is retried after ``backoff_min``; a lost connection ends the session, which cancels this."""
        while True:
            try:
                await self._send_batches(client)
            except aiomqtt.MqttError as exc:
                log.info("outbox sender: %s; retrying in %.1f s", exc, self.opt.backoff_min)
            await asyncio.sleep(self.opt.backoff_min)

    async def _send_batches(self, client: aiomqtt.Client) -> None:
        """Send unacknowledged events in seq order; resend a batch not acked within ack_timeout."""
        loop = asyncio.get_running_loop()
        topic = self.topics.events(self.opt.device_id)
        try:
            while True:
                self._wake.clear()
                events = self.store.pending(BATCH_SIZE, self.opt.device_id)  # sets unsendable rows aside
                if not events:
                    await self._wake.wait()
                    continue
                self._inflight = {e.event_id for e in events}
                batch = EventBatch(device_id=self.opt.device_id, events=events)
                body = batch.model_dump(mode="json", exclude_none=True)  # the JSON dump_message sent unsigned
                payload = seal_device(KIND_EVENTS, body, self.opt.device_id, self._device_key)
                await client.publish(topic, payload, qos=1)
                log.debug("sent %d events from seq %d", len(events), events[0].seq)
                deadline = loop.time() + self.opt.ack_timeout
                while self._inflight:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        log.info("no ack for %d events within %.1f s: resending",
                                 len(self._inflight), self.opt.ack_timeout)
                        break
                    self._acked.clear()
                    await wait_set(self._acked, remaining)
        finally:
            self._inflight = set()

    # ---- hub -> device -----------------------------------------------------------------------

    async def _on_ack(self, data: bytes) -> None:
        _kind, body = open_envelope(data, self.keyring, kinds={KIND_ACK})
        ack = AckPayload.model_validate(body)
        if ack.device_id != self.opt.device_id:
            log.warning("ignoring an ack addressed to %s", ack.device_id)
            return
        deleted = self.store.acknowledge(ack.event_ids, ack.echo_seq)
        self._inflight.difference_update(ack.event_ids)
        self._acked.set()
        log.debug("hub acknowledged %d events (%d were pending), echoed from whitelist seq %s",
                  len(ack.event_ids), deleted, ack.echo_seq)
        if ack.echo_seq is not None and ack.echo_seq > self.store.whitelist_seq:
            self._expect_echo(ack.echo_seq)

    def _expect_echo(self, seq: int) -> None:
        """The hub's delta ``seq`` counts our acknowledged events: if it has not arrived after a sync
        interval (lost, or sent before we subscribed), ask for what we miss."""
        self._echo_wanted = max(self._echo_wanted, seq)
        client = self._client
        if client is None or (self._echo_check is not None and not self._echo_check.done()):
            return

        async def check() -> None:
            await asyncio.sleep(self.opt.sync_interval)
            if self._client is client and self.store.whitelist_seq < self._echo_wanted:
                log.info("whitelist seq %s echoing our events has not arrived: re-sync", self._echo_wanted)
                try:
                    await self._request_sync(client)
                except aiomqtt.MqttError as exc:
                    log.debug("echo sync request failed: %s", exc)

        self._echo_check = watch(asyncio.create_task(check(), name="echo-check"), self.opt.device_id)

    def serve_keys(self, topic: str, handler: Callable[[bytes], Awaitable[None]]) -> None:
        """The hub key list: retained on ``topic`` (subscribed first), and the chain of lists the hub sends
        before a whitelist catch-up on this device's whitelist topic."""
        self.serve(topic, handler, first=True)
        self._keys_handler = handler

    async def _on_whitelist(self, data: bytes) -> None:
        if self._keys_handler is not None and _is_key_list(data):
            await self._keys_handler(data)
            return
        try:
            if len(data) > _BIG_PAYLOAD:
                kind, body = await asyncio.to_thread(wl.verify, data, self.keyring)
            else:
                kind, body = wl.verify(data, self.keyring)
        except SignatureError as exc:
            kid = peek_kid(data)
            if kid is not None and kid in self.keyring.kids():
                raise  # a key we know, a signature that does not verify (or a key without control): forged
            # A key id we do not know: most likely the hub rotated while we were away and we missed the key
            # list. Never silent: a refused delta may be a refund this gate would otherwise keep admitting.
            self._snapshot_wanted = True
            self.mark_stale("whitelist", f"a whitelist update does not verify ({exc}); the whitelist may be "
                                         f"missing refunds: asking for a snapshot")
            client = self._client
            if client is not None:
                await self._request_sync(client)  # have_seq -1; at most once per sync_interval
            raise
        outcome = wl.apply(kind, body, self.store, self.opt.group_id)
        if kind == wl.KIND_SNAPSHOT and outcome is not wl.Outcome.OTHER_GROUP and "whitelist" in self.stale:
            log.warning("whitelist re-synced from a verified snapshot at seq %s; no longer stale",
                        self.store.whitelist_seq)
            self.stale.pop("whitelist", None)
        client = self._client
        if client is None:
            return
        if outcome is wl.Outcome.GAP:
            await self._request_sync(client)
        elif outcome in (wl.Outcome.INSTALLED, wl.Outcome.APPLIED) and kind == wl.KIND_SNAPSHOT:
            self._snapshot_wanted = False
            await client.publish(self.topics.status(self.opt.device_id), self._status("online"),
                                 qos=1, retain=True)
