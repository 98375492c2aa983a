"""The kiosk's broker session: its heartbeat, so ops see it online/offline with the health of its parts,
and, for an enrolled kiosk, the provisioning topics (:mod:`kiosk_agent.enrolled`).

A retained :class:`protocol.messages.GateStatus` (``kind="kiosk"``) every ``interval`` seconds on
``{prefix}/device/{id}/status``, and at once when a part's health changes, with a retained Last Will that
says offline; the reconnect loop is every device's (:class:`confkit.mqtt.MqttSession`). The kiosk works
without the broker: the touchscreen talks to the hub over HTTP, and a failed broker only delays the next
status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiomqtt

from confkit import MqttConfig
from confkit.aio import wait_set
from confkit.mqtt import BrokerLink, ConnectionStats
from confkit.served import ServedSession
from kiosk_agent import __version__
from protocol.messages import GateStatus, dump_message

log = logging.getLogger(__name__)

Health = Callable[[], dict[str, str]]


def status(device_id: str, state: str, health: dict[str, str] | None, interval: float, *,
           birth: int | None = None, config_version: int | None = None) -> bytes:
    return dump_message(GateStatus(device_id=device_id, state=state, at=time.time(), kind="kiosk",
                                   version=__version__, health=health, interval=interval,
                                   birth=birth, config_version=config_version))


class KioskLink(ServedSession):
    """The kiosk's MQTT session: status out; the provisioning agent's topics in (when enrolled)."""

    def __init__(self, opt: BrokerLink, health: Health) -> None:
        super().__init__(opt)
        self.health = health
        self.birth: int | None = None  # set by the provisioning agent; sent in every status
        self.config_version: int | None = None
        self._status_due = asyncio.Event()

    def status_changed(self) -> None:
        self._status_due.set()

    def _status(self, state: str) -> bytes:
        health = {**self.health(), **self.stale_parts()} if state == "online" else None
        return status(self.opt.device_id, state, health, self.opt.status_interval, birth=self.birth,
                      config_version=self.config_version)

    def _client_for(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.status(self.opt.device_id), self._status("offline"), qos=1, retain=True)
        return self.opt.client(f"kiosk-{self.opt.device_id}", will)

    async def _serve(self, client: aiomqtt.Client) -> None:
        await self._subscribe_first(client)
        await self._subscribe_rest(client)
        self._client = client
        self.connected.set()
        log.info("kiosk heartbeat connected to %s:%s", self.opt.host, self.opt.port)
        # the heartbeat and the served topics together: whichever ends (a lost connection, a failed
        # publish, a relogin) ends the other, and its MqttError makes the session reconnect
        parts = [asyncio.create_task(self._heartbeat(client), name="kiosk-heartbeat"),
                 asyncio.create_task(self._messages(client), name="kiosk-messages")]
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for part in parts:
                part.cancel()
            await asyncio.wait(parts)
            for part in parts:  # retrieved, so an error of the one that lost the race is not reported as lost
                if not part.cancelled():
                    part.exception()
        for part in done:
            part.result()

    async def _messages(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            data = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            await self._dispatch(str(message.topic), data)
        raise aiomqtt.MqttError("the broker closed the session")

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        topic = self.topics.status(self.opt.device_id)
        while True:  # until the session ends; a publish that fails ends the connection (MqttError)
            self._status_due.clear()
            await client.publish(topic, self._status("online"), qos=1, retain=True)
            await wait_set(self._status_due, self.opt.status_interval)

    async def stop(self) -> None:
        """Say offline (retained) before the daemon exits."""
        client = self._client
        if client is not None:
            try:
                await client.publish(self.topics.status(self.opt.device_id), self._status("offline"),
                                     qos=1, retain=True, timeout=2)
            except aiomqtt.MqttError as exc:
                log.warning("could not publish the offline status: %s", exc)


async def heartbeat(device_id: str, mqtt: MqttConfig, health: Health, interval: float = 10.0,
                    stats: ConnectionStats | None = None) -> None:
    """Publish the kiosk's status forever (cancel the task to stop); ``stats``: its connections (metrics)."""
    link = KioskLink(BrokerLink.from_config(device_id, mqtt, interval), health)
    if stats is not None:
        link.stats = stats
    await link.run()
