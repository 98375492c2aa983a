"""The printer's MQTT link: Last Will ``offline``, retained heartbeat with the printer's condition,
print jobs in, results out (QoS 1).

One explicit reconnect loop with capped backoff; every connect re-subscribes, re-announces the status
and sends every result still unsent in the store. Jobs keep printing while the broker is away.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiomqtt

from confkit.aio import wait_set
from confkit.mqtt import BrokerLink, MqttSession
from gate_agent.logs import truncate
from printer_agent import __version__
from printer_agent.service import PrintService
from protocol.messages import GateStatus, dump_message
from protocol.printing import PrintResult

log = logging.getLogger(__name__)


LinkOptions = BrokerLink  # the printer needs no more than any device's broker link


class PrinterLink(MqttSession):
    """The printer's session: print jobs in, results and its condition out."""

    def __init__(self, opt: LinkOptions, service: PrintService) -> None:
        super().__init__(opt)
        self.service = service
        self._status_due = asyncio.Event()
        service.on_condition = self._status_due.set

    def _status(self, state: str) -> bytes:
        cond = self.service.condition
        healthy = cond.online and cond.paper != "out" and cond.cover != "open"
        return dump_message(GateStatus(
            device_id=self.opt.device_id, state=state, at=time.time(), kind="printer", version=__version__,
            printer=cond.model_dump() if state == "online" else None,
            health={"printer": "ok" if healthy else "error"} if state == "online" else None,
            outbox=len(self.service.store.unsent_results()), interval=self.opt.status_interval))

    def _client_for(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.status(self.opt.device_id), self._status("offline"), qos=1, retain=True)
        return self.opt.client(f"printer-{self.opt.device_id}", will)

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.topics.print_job(self.opt.device_id), qos=1)
        await client.publish(self.topics.status(self.opt.device_id), self._status("online"), qos=1, retain=True)
        self._client = client
        self.connected.set()
        log.info("MQTT connected to %s:%s", self.opt.host, self.opt.port)
        tasks = [asyncio.create_task(self._send_results(client)), asyncio.create_task(self._heartbeat(client))]
        try:
            async for message in client.messages:
                data = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
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
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _publish_result(self, client: aiomqtt.Client, result: PrintResult) -> None:
        await client.publish(self.topics.print_result(self.opt.device_id), result.model_dump_json().encode(), qos=1)

    async def _send_results(self, client: aiomqtt.Client) -> None:
        """Publish stored results (QoS 1), marking each sent once the broker has it."""
        try:
            while True:
                self.service.results_ready.clear()
                for result in self.service.store.unsent_results():
                    await self._publish_result(client, result)
                    self.service.store.mark_sent(result.job_id)
                    self._status_due.set()
                await self.service.results_ready.wait()
        except aiomqtt.MqttError as exc:
            log.debug("result sender stopped: %s", exc)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        """Retained status every ``status_interval``, and at once when the condition changed."""
        topic = self.topics.status(self.opt.device_id)
        last = b""
        try:
            while True:
                self._status_due.clear()
                payload = self._status("online")
                if payload != last:
                    await client.publish(topic, payload, qos=1, retain=True)
                    last = payload
                if not await wait_set(self._status_due, self.opt.status_interval):
                    last = b""
        except aiomqtt.MqttError as exc:
            log.debug("heartbeat stopped: %s", exc)

    async def stop(self) -> None:
        client = self._client
        if client is not None:
            try:
                await client.publish(self.topics.status(self.opt.device_id), self._status("offline"),
                                     qos=1, retain=True, timeout=2)
            except aiomqtt.MqttError as exc:
                log.warning("could not publish the offline status: %s", exc)
