"""The kiosk reports itself (online, health of its parts) over MQTT, and comes back after the broker does."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt

from confkit import MqttConfig
from kiosk_agent.heartbeat import heartbeat
from protocol.messages import GateStatus, parse_message
from tests.support.broker import Mosquitto


async def next_status(port: int) -> GateStatus:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe("venue/device/kiosk-1/status", qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                return parse_message(GateStatus, bytes(message.payload))  # type: ignore[arg-type]
    raise AssertionError("no status")


async def test_kiosk_heartbeat_reports_its_parts_and_survives_a_broker_restart(broker: Mosquitto) -> None:
    parts = {"hub": "ok", "printer": "error", "id_reader": "missing"}
    task = asyncio.create_task(heartbeat("kiosk-1", MqttConfig(port=broker.port), lambda: dict(parts), 0.2))
    try:
        status = await next_status(broker.port)
        assert (status.kind, status.state, status.health) == ("kiosk", "online", parts)
        broker.kill()
        await asyncio.sleep(0.5)
        broker.start()
        parts["printer"] = "ok"
        async with asyncio.timeout(20):
            for _ in range(60):  # the retained status from before the restart comes first
                if (await next_status(broker.port)).health == parts:
                    break
                await asyncio.sleep(0.25)
            else:
                raise AssertionError("the heartbeat did not come back after the broker restart")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
