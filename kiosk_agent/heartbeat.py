"""The kiosk's own heartbeat over MQTT, so ops see it online/offline with the health of its parts.

A retained :class:`protocol.messages.GateStatus` (``kind="kiosk"``) every ``interval`` seconds on
``{prefix}/device/{id}/status``, with a retained Last Will that says offline; one explicit reconnect
loop with capped backoff. The kiosk works without it: a failed broker only delays the next status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiomqtt

from confkit import MqttConfig
from confkit.mqtt import BrokerLink, ConnectionStats
from kiosk_agent import __version__
from protocol.messages import GateStatus, dump_message
from protocol.topics import Topics

log = logging.getLogger(__name__)

Health = Callable[[], dict[str, str]]


def status(device_id: str, state: str, health: dict[str, str] | None, interval: float) -> bytes:
    return dump_message(GateStatus(device_id=device_id, state=state, at=time.time(), kind="kiosk",
                                   version=__version__, health=health, interval=interval))


async def heartbeat(device_id: str, mqtt: MqttConfig, health: Health, interval: float = 10.0,
                    stats: ConnectionStats | None = None) -> None:
    """Publish the kiosk's status forever (cancel the task to stop); ``stats``: its connections (metrics)."""
    stats = stats if stats is not None else ConnectionStats()
    topic = Topics(mqtt.prefix).status(device_id)
    will = aiomqtt.Will(topic, status(device_id, "offline", None, interval), qos=1, retain=True)
    delay = 0.5
    while True:
        try:
            async with BrokerLink.from_config(device_id, mqtt, interval).client(f"kiosk-{device_id}", will) as client:
                delay = 0.5
                stats.up()
                log.info("kiosk heartbeat connected to %s:%s", mqtt.host, mqtt.port)
                while True:
                    await client.publish(topic, status(device_id, "online", health(), interval), qos=1, retain=True)
                    await asyncio.sleep(interval)
        except aiomqtt.MqttError as exc:
            stats.down()
            log.warning("kiosk heartbeat: broker unreachable (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
