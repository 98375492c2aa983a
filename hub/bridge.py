"""The hub side of MQTT: one reconnect loop, a dispatch table of wrapped handlers, a batching writer.

Incoming event batches are queued and drained by one writer task that stores several messages in one
database transaction (in the ingest child process, hub/ingest_worker.py, or with ``[ingest] process = false`` a
worker thread, so HTTP stays responsive) and publishes the signed acks only after the commit. The device uplinks
are MQTT v5 shared subscriptions (``$share/<[mqtt] shared_group>/...``): of several hubs on one database, one
handles each message. Everything the hub publishes goes through one outbox; while the broker is down the
outbox drops messages: whitelist deltas are in the database (gates catch up via sync) and lost acks
are re-sent when the gate re-sends its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aiomqtt

from confkit import mqtt
from hub.config import DeviceSettings, EmergencySettings, MqttSettings, SyncSettings
from hub.device_trust import DeviceTrust, Refused
from hub.emergency_link import EmergencyLink
from hub.ingest_worker import WorkerLost
from hub.provisioning_link import ProvisioningLink
from hub.provisioning_link import parse_message as parse_model
from hub.services import devices, ingest, printing, signing_keys, whitelist
from hub.services.context import HubContext, Outgoing
from hub.sync_limit import SyncLimiter, needs_snapshot
from protocol.errors import MalformedError
from protocol.messages import EventBatch, GateStatus, HubPresence, SyncRequest, dump_message, parse_message
from protocol.printing import PrintResult

log = logging.getLogger(__name__)
HUB_VERSION = "0.1.0"  # the hub's release, on its presence topic (as the app's OpenAPI version)
MAX_EVENTS_PER_TRANSACTION = 5000  # default of [ingest] max_events_per_transaction
BACKOFF_MIN, BACKOFF_MAX = 0.25, 10.0


def _excerpt(payload: bytes) -> str:
    return repr(payload[:120]) + ("..." if len(payload) > 120 else "")


class MqttBridge:
    def __init__(self, ctx: HubContext, settings: MqttSettings, emergency: EmergencySettings | None = None,
                 provisioning: ProvisioningLink | None = None, sync: SyncSettings | None = None,
                 devices: DeviceSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings
        self.trust = DeviceTrust(ctx, devices or DeviceSettings())  # the registry's word, device signatures
        self.sync_limit = SyncLimiter(sync)  # per-device sync request / snapshot rate limits
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._batches: asyncio.Queue[EventBatch] = asyncio.Queue()
        self._inflight: set[asyncio.Task[None]] = set()
        # the live check-in feed (hub/services/live.py): told after events commit and after a status is recorded
        self.on_stored: Callable[[list[EventBatch]], None] = lambda _batches: None
        self.on_status: Callable[[], None] = lambda: None
        # stores event batches in one transaction, returns the acks and deltas to publish: a worker thread here,
        # or the ingest child process (hub/ingest_worker.py IngestWorker.store, set by the app)
        self.store: Callable[[list[EventBatch]], Awaitable[list[Outgoing]]] = self._store_in_thread
        self.max_events_per_transaction = MAX_EVENTS_PER_TRANSACTION
        self.emergency = EmergencyLink(ctx, emergency or EmergencySettings(), self._outbox.put_nowait, self.trust)
        self.provisioning = provisioning  # enrollment, device config/commands, key lists; None: not run
        if provisioning is not None:
            provisioning.on_registry_change = self.trust.registry.invalidate
        self._retained = ctx.topics.emergency_command()  # retained, with provisioning's config and key topics
        self._handlers: dict[str, Callable[[str, bytes], Awaitable[None]]] = {
            "events": self._on_events, "status": self._on_status, "sync": self._on_sync,
            "emergency": self.emergency.on_state, "print_result": self._on_print_result}

    def ingest_queue(self) -> int:
        """Event batches received and not yet taken by the writer (``venue_hub_ingest_queue``)."""
        return self._batches.qsize()

    # -- publishing -----------------------------------------------------------------------------
    def publish_threadsafe(self, topic: str, payload: bytes) -> None:
        """Queue a QoS 1 publish; callable from any thread (services run in worker threads)."""
        if self._loop is None:
            log.debug("bridge not started; not publishing to %s", topic)
            return
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, (topic, payload))

    async def _publisher(self) -> None:
        while True:
            topic, payload = await self._outbox.get()
            client = self._client
            if client is None or not self.connected.is_set():
                log.info("MQTT broker not connected; dropped publish to %s (devices catch up by sync)", topic)
                continue
            retain = topic == self._retained or (self.provisioning is not None and self.provisioning.is_retained(topic))
            task = asyncio.create_task(self._publish(client, topic, payload, retain))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    @staticmethod
    async def _publish(client: aiomqtt.Client, topic: str, payload: bytes, retain: bool = False) -> None:
        try:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=10)
        except aiomqtt.MqttError as exc:
            log.info("publish to %s failed (%s); devices catch up by sync or re-send", topic, exc)

    # -- the connection -------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled: connection loop, event writer and publisher."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._publisher())
            tg.create_task(self._writer())
            tg.create_task(self._connection_loop())
            tg.create_task(self.emergency.run(self.connected))
            if self.provisioning is not None:
                tg.create_task(self.provisioning.run(self.connected))

    def _presence(self, state: str) -> bytes:
        return dump_message(HubPresence(hub_id=self.settings.client_id, state=state, at=time.time(),
                                        version=HUB_VERSION))

    def _make_client(self) -> aiomqtt.Client:
        """The hub's client, made like every device's (:func:`confkit.mqtt.client`: MQTT v5, TLS against the
        venue CA or, without ca_file, the system's CAs, TCP_NODELAY so acks and emergency commands go out
        at once), with the Last Will convention of every device: a retained "offline" on its presence topic
        (:class:`protocol.messages.HubPresence`); deep queues for a venue's worth of gates."""
        s = self.settings
        will = aiomqtt.Will(self.ctx.topics.hub_presence(s.client_id), self._presence("offline"), qos=1, retain=True)
        return mqtt.client(s.host, s.port, s.client_id, will=will, username=s.username,
                           password=s.password.get_secret_value(), keepalive=60, tls=s.tls, tls_ca=s.ca_file,
                           timeout=10, max_inflight_messages=200, max_queued_incoming_messages=100_000,
                           session_expiry=s.session_expiry)  # persistent: in flight when it died, delivered after

    async def _connection_loop(self) -> None:
        """The shared reconnect loop (:func:`confkit.mqtt.reconnecting`), backoff 0.25 s doubling to 10 s."""
        await mqtt.reconnecting(self._make_client, self._serve, backoff_min=BACKOFF_MIN, backoff_max=BACKOFF_MAX,
                                on_error=self._lost, on_down=self._down)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Subscribe, announce and dispatch until the connection ends (raises MqttError)."""
        for topic in self.subscriptions():
            await client.subscribe(topic, qos=1)
        self._client = client
        self.connected.set()
        log.info("MQTT bridge connected to %s:%s", self.settings.host, self.settings.port)
        presence = self.ctx.topics.hub_presence(self.settings.client_id)
        await client.publish(presence, self._presence("online"), qos=1, retain=True)
        await self.emergency.announce()
        if self.provisioning is not None:
            await self.provisioning.announce()
        try:
            async for message in client.messages:
                await self._dispatch(message.topic.value, message.payload)
                # a backlog (a burst of batches) is drained without ever waiting on the queue: let the HTTP
                # requests and the other tasks in between, each message (a 200-event batch: ~1-3 ms of parsing)
                await asyncio.sleep(0)
        except asyncio.CancelledError:  # the hub stops: a clean disconnect discards the Will, so say it
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await client.publish(presence, self._presence("offline"), qos=1, retain=True, timeout=1)
            raise

    def subscriptions(self) -> list[str]:
        """The hub's subscriptions: the device uplinks (and enrolment requests) shared with the other hubs of the
        group, ``$share/<group>/<filter>`` (the broker delivers each message to one of them, with its real topic);
        config confirmations and command results plain, on every hub (a rotated password lives only in the memory
        of the hub that issued it)."""
        group = self.settings.shared_group
        share = (lambda f: f"$share/{group}/{f}") if group else (lambda f: f)
        found = [share(self.ctx.topics.all_devices(leaf)) for leaf in self._handlers]
        if self.provisioning is not None:
            requests = self.provisioning.topics.all_requests()
            found += [share(f) if f == requests else f for f in self.provisioning.subscriptions()]
        return found

    def _lost(self, exc: aiomqtt.MqttError, delay: float) -> None:
        log.warning("MQTT connection to %s:%s lost or refused (%s); retrying in %.1f s",
                    self.settings.host, self.settings.port, exc, delay)

    def _down(self) -> None:
        self.connected.clear()
        self._client = None

    async def _dispatch(self, topic: str, payload: object) -> None:
        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
        try:
            if self.provisioning is not None and self.provisioning.owns(topic):
                await self.provisioning.dispatch(topic, data)
                return
            device_id, leaf = self.ctx.topics.parse_device_topic(topic)
            handler = self._handlers.get(leaf)
            if handler is None:
                raise MalformedError(f"no handler for {leaf!r}")
            await handler(device_id, data)
        except Refused as exc:
            log.debug("refused message on %s: %s", topic, exc)
        except (MalformedError, ValueError) as exc:
            log.warning("dropped bad message on %s: %s; payload %s", topic, exc, _excerpt(data))
        except Exception:
            log.exception("handler failed on %s; payload %s", topic, _excerpt(data))

    # -- handlers -------------------------------------------------------------------------------
    @staticmethod
    def _check_device(device_id: str, claimed: str) -> None:
        if device_id != claimed:
            raise MalformedError(f"payload device id {claimed!r} differs from the topic's {device_id!r}")

    async def _on_events(self, device_id: str, data: bytes) -> None:
        if self.provisioning is not None and self.provisioning.refuses(device_id):
            log.warning("dropped an event batch from revoked device %s: not stored, not acked", device_id)
            return
        batch, quarantined = await self.trust.events(device_id, data)
        for item in quarantined:
            self._outbox.put_nowait(item)
        if batch is not None:
            self._batches.put_nowait(batch)

    async def _on_status(self, device_id: str, data: bytes) -> None:
        if not data:
            return  # a cleared retained status
        status = parse_message(GateStatus, data)
        self._check_device(device_id, status.device_id)
        status = await self.trust.status(device_id, status)
        await asyncio.to_thread(devices.record_status, self.ctx, status)
        if status.state == "online" and self.provisioning is not None:
            self.provisioning.device_online(device_id)  # its commands not answered yet go again
        self.on_status()

    async def _on_print_result(self, device_id: str, data: bytes) -> None:
        result = parse_model(PrintResult, data)
        self._check_device(device_id, result.printer_id)
        await self.trust.printer(device_id)
        await asyncio.to_thread(printing.record_result, self.ctx, result)

    async def _on_sync(self, device_id: str, data: bytes) -> None:
        request = parse_message(SyncRequest, data)
        self._check_device(device_id, request.device_id)
        # cheap refusals first: a flood of snapshot requests costs a parse and a bucket each, no database
        if not self.sync_limit.allow(device_id, snapshot=request.have_seq < 0):
            return
        await self.trust.sync_group(device_id, request)  # its registered group only (else Refused)
        if request.have_seq >= 0 and await asyncio.to_thread(needs_snapshot, self.ctx, request.group_id,
                                                              request.have_seq):
            if not self.sync_limit.allow_snapshot(device_id):
                return
        try:
            envelopes = await asyncio.to_thread(whitelist.catch_up, self.ctx, request.group_id, request.have_seq)
        except LookupError:
            log.warning("device %s asked to sync unknown check-in group %s", device_id, request.group_id)
            return
        topic = self.ctx.topics.device_whitelist(device_id)
        log.info("sync %s group %s from seq %s: sending %s envelope(s)", device_id, request.group_id,
                 request.have_seq, len(envelopes))
        # first the hub's key lists in order, each signed by the control key of its time: a device that was
        # away across a rotation and a retirement walks the chain to the keys the envelopes below are signed with
        chain = await asyncio.to_thread(signing_keys.chain, self.ctx)
        for envelope in [*chain, *envelopes]:
            self._outbox.put_nowait((topic, envelope))

    # -- the writer -----------------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            batches = [await self._batches.get()]
            events = len(batches[0].events)
            while events < self.max_events_per_transaction and not self._batches.empty():
                batches.append(self._batches.get_nowait())
                events += len(batches[-1].events)
            try:
                outgoing = await self.store(batches)
            except WorkerLost as exc:
                log.warning("%s; %s event batch(es) not acked, the devices will re-send them", exc, len(batches))
                continue
            except Exception:
                if len(batches) == 1:
                    log.exception("storing the event batch of %s failed; not acked, the device will re-send it",
                                  batches[0].device_id)
                    continue
                # One bad batch must not take the others down with it: the transaction was rolled
                # back whole, so store them one by one and leave only the failing one(s) unacked.
                log.warning("storing %s event batches together failed; storing them one by one", len(batches))
                outgoing = await self._store_one_by_one(batches)
            for item in outgoing:
                self._outbox.put_nowait(item)
            self.on_stored(batches)  # never blocks: the feed reads them back on its own time

    async def _store_one_by_one(self, batches: list[EventBatch]) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        for batch in batches:
            try:
                outgoing += await self.store([batch])
            except WorkerLost as exc:
                log.warning("%s; an event batch of %s not acked, the device will re-send it", exc, batch.device_id)
            except Exception:
                log.exception("storing an event batch of %s (%s event(s), first %s) failed; not acked, the "
                              "device will re-send it", batch.device_id, len(batch.events), batch.events[0].event_id)
        return outgoing

    async def _store_in_thread(self, batches: list[EventBatch]) -> list[Outgoing]:
        return await asyncio.to_thread(ingest.store_batches, self.ctx, batches)
