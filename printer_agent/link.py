"""The printer's MQTT link: Last Will ``offline``, retained heartbeat with the printer's condition,
print jobs in, results out (QoS 1).

One explicit reconnect loop with capped backoff; every connect re-subscribes, re-announces the status
and sends every result still unsent in the store. Jobs keep printing while the broker is away.

An enrolled printer also serves the provisioning topics (:mod:`printer_agent.enrolled`): :meth:`PrinterLink.serve`
/ :meth:`~PrinterLink.serve_keys` add a topic and its handler, as the gate's link does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiomqtt

from confkit.aio import wait_set
from confkit.logs import truncate
from confkit.mqtt import BrokerLink
from confkit.served import ServedSession
from confkit.supervise import Supervisor
from printer_agent import __version__
from printer_agent.service import PrintService
from protocol.messages import GateStatus, dump_message
from protocol.printing import PrintResult

log = logging.getLogger(__name__)


LinkOptions = BrokerLink  # the printer needs no more than any device's broker link


class PrinterLink(ServedSession):
    """The printer's session: print jobs in, results and its condition out."""

    def __init__(self, opt: LinkOptions, service: PrintService) -> None:
        super().__init__(opt)
        self.service = service
        self._status_due = asyncio.Event()
        service.on_condition = self._status_due.set
        self.tasks_health: Callable[[], dict[str, str]] | None = None  # the agent's failed tasks ({"print": "failed"})
        self._session: Supervisor | None = None  # the connected session's tasks (results, heartbeat)
        self.birth: int | None = None  # set by the provisioning agent; sent in every status
        self.config_version: int | None = None

    def status_changed(self) -> None:
        """Send the status now, not at the next heartbeat: a part's health changed."""
        self._status_due.set()

    def _status(self, state: str) -> bytes:
        cond = self.service.condition
        healthy = cond.online and cond.paper != "out" and cond.cover != "open"
        set_aside = self.service.store.set_aside_count()  # unreadable jobs / results (JobStore): ops must look
        health = {"printer": "ok" if healthy else "error"} | ({"outbox": "error"} if set_aside else {})
        health |= self.stale_parts()
        for failed in (self.tasks_health, self._session.failed if self._session is not None else None):
            health |= failed() if failed is not None else {}  # a task that died and is restarting: "failed"
        return dump_message(GateStatus(
            device_id=self.opt.device_id, state=state, at=time.time(), kind="printer", version=__version__,
            printer=cond.model_dump() if state == "online" else None,
            health=health if state == "online" else None,
            outbox=len(self.service.store.unsent_results()), interval=self.opt.status_interval,
            set_aside=set_aside or None,  # absent when 0: an older hub parses the status
            birth=self.birth, config_version=self.config_version))  # None unless enrolled

    def _client_for(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.status(self.opt.device_id), self._status("offline"), qos=1, retain=True)
        return self.opt.client(f"printer-{self.opt.device_id}", will)

    async def _serve(self, client: aiomqtt.Client) -> None:
        await self._subscribe_first(client)
        job_topic = self.topics.print_job(self.opt.device_id)
        await client.subscribe(job_topic, qos=1)
        await self._subscribe_rest(client)
        await client.publish(self.topics.status(self.opt.device_id), self._status("online"), qos=1, retain=True)
        self._client = client
        self.connected.set()
        log.info("MQTT connected to %s:%s", self.opt.host, self.opt.port)
        try:  # a session task that dies is logged, "failed" in the status and restarted; a lost connection ends them
            async with Supervisor(self.opt.device_id, on_change=self.status_changed) as session:
                self._session = session
                session.spawn("results", lambda: self._send_results(client), backoff_max=self.opt.backoff_max)
                session.spawn("heartbeat", lambda: self._heartbeat(client), backoff_max=self.opt.backoff_max)
                async for message in client.messages:
                    data = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                    if str(message.topic) != job_topic:
                        await self._dispatch(str(message.topic), data)  # MqttError after a relogin: reconnect
                        continue
                    try:
                        result = self.service.accept(data)
                        if result is not None:
                            await self._publish_result(client, result)
                    except aiomqtt.MqttError:
                        raise
                    except Exception:
                        log.exception("print job handler failed", extra={"topic": str(message.topic),
                                                                         "payload": truncate(data)})
        finally:
            self._session = None

    async def _publish_result(self, client: aiomqtt.Client, result: PrintResult) -> None:
        await client.publish(self.topics.print_result(self.opt.device_id), result.model_dump_json().encode(), qos=1)

    async def _send_results(self, client: aiomqtt.Client) -> None:
        """Publish stored results (QoS 1), marking each sent once the broker has it, until the session ends; a
        failed publish (a broker slow to ack) is retried after ``backoff_min``."""
        while True:
            try:
                self.service.results_ready.clear()
                for result in self.service.store.unsent_results():
                    await self._publish_result(client, result)
                    self.service.store.mark_sent(result.job_id)
                    self._status_due.set()
                await self.service.results_ready.wait()
            except aiomqtt.MqttError as exc:
                log.info("result sender: %s; retrying in %.1f s", exc, self.opt.backoff_min)
                await asyncio.sleep(self.opt.backoff_min)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        """Retained status every ``status_interval``, and at once when the condition changed."""
        topic = self.topics.status(self.opt.device_id)
        last = b""
        while True:  # until the session ends (cancelled); a failed publish is tried again at the next beat
            self._status_due.clear()
            payload = self._status("online")
            if payload != last:
                try:
                    await client.publish(topic, payload, qos=1, retain=True)
                    last = payload
                except aiomqtt.MqttError as exc:
                    log.debug("heartbeat not sent: %s", exc)
            if not await wait_set(self._status_due, self.opt.status_interval):
                last = b""

    async def stop(self) -> None:
        client = self._client
        if client is not None:
            try:
                await client.publish(self.topics.status(self.opt.device_id), self._status("offline"),
                                     qos=1, retain=True, timeout=2)
            except aiomqtt.MqttError as exc:
                log.warning("could not publish the offline status: %s", exc)
