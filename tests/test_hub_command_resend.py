"""A command sent while its device is away (offline, or reconnecting after a credential rotation) is not lost:
the hub sends it again, same id and expiry, when the device's "online" heartbeat comes, until it is answered or
expires; after a hub restart too (read back from the database). The device runs each id once
(:mod:`tests.test_device_agent` covers that side). Real SQLite and Mosquitto; the test plays the device.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hub.config import Settings, load_settings
from protocol.messages import GateStatus, dump_message
from protocol.provisioning import KIND_COMMAND, CommandPayload, CommandResult
from tests.hubkit import ADMIN_PASSWORD, Hub, run_hub
from tests.support.broker import Mosquitto
from tests.support.net import wait_for
from tests.test_hub_mqtt import receive
from tests.test_hub_provisioning import TOPICS, Device, P, enroll, get, mqtt, open_signed

hub_at = contextmanager(run_hub)
RESEND = 0.5


def settings(tmp_path: Path, port: int) -> Settings:
    return load_settings(None, database_url=f"sqlite:///{tmp_path}/hub.db", key_file=tmp_path / "signing.key",
                         mqtt={"port": port, "prefix": "venue"},
                         admin={"username": "admin", "password": ADMIN_PASSWORD},
                         provisioning={"liveness_check": 0.1, "rotate_timeout": 30.0, "command_resend": RESEND})


@pytest.fixture(name="rhub")
def rhub_fixture(tmp_path: Path, broker: Mosquitto) -> Iterator[Hub]:
    with hub_at(settings(tmp_path, broker.port), True) as hub:
        yield hub


def online() -> bytes:
    return dump_message(GateStatus(device_id="gate-7", state="online", at=time.time(), group_id=3, interval=5))


async def heartbeat_until_command(hub: Hub, client: aiomqtt.Client, within: float = 5.0) -> CommandPayload:
    """Send heartbeats (as a device does once subscribed) until a command comes."""
    async with asyncio.timeout(within):
        while True:
            await client.publish(TOPICS.status("gate-7"), online(), qos=1)
            try:
                msg = await receive(client, within=RESEND)
            except TimeoutError:
                continue
            return CommandPayload.model_validate(open_signed(hub, msg, KIND_COMMAND))


async def no_command(client: aiomqtt.Client, beats: int = 4) -> None:
    for _ in range(beats):
        await client.publish(TOPICS.status("gate-7"), online(), qos=1)
        with pytest.raises(TimeoutError):
            await receive(client, within=RESEND)


def issue(hub: Hub, name: str, timeout_s: float = 30) -> dict[str, Any]:
    return dict(hub.post("/provisioning/devices/gate-7/command", {"name": name, "timeout_s": timeout_s},
                         status=202))


async def test_a_command_sent_while_the_device_is_away_reaches_it_when_it_is_back(
        rhub: Hub, broker: Mosquitto) -> None:
    await enroll(rhub, broker.port, Device())
    lost = issue(rhub, "restart")  # nobody is subscribed: the publish reaches no one
    late = issue(rhub, "diagnostics", timeout_s=0.3)  # expires while the device is away
    await asyncio.sleep(max(RESEND, 0.3) + 0.2)
    async with mqtt(broker.port, P.command("gate-7")) as client:  # back: subscribed, then its heartbeat
        cmd = await heartbeat_until_command(rhub, client)
        assert cmd.command_id == lost["command_id"] and cmd.name == "restart"
        assert cmd.expires_at == pytest.approx(lost["expires_at"])  # the same command, not a new one
        assert get(rhub, f"/commands/{lost['command_id']}")["state"] == "pending"
        await client.publish(P.command_result("gate-7"), CommandResult(
            device_id="gate-7", command_id=cmd.command_id, ok=True, at=time.time()).model_dump_json(), qos=1)
        wait_for(lambda: get(rhub, f"/commands/{lost['command_id']}")["state"] == "ok", timeout=5, what="ok")
        await no_command(client)  # answered: not sent again; the expired one never is
    assert get(rhub, f"/commands/{late['command_id']}")["state"] == "timed_out"


async def test_unanswered_commands_are_sent_again_after_a_hub_restart_but_not_a_rotation(
        tmp_path: Path, broker: Mosquitto) -> None:
    with hub_at(settings(tmp_path, broker.port), True) as hub:
        await enroll(hub, broker.port, Device())
        resync = issue(hub, "resync_whitelist")
        rotate = hub.post("/provisioning/devices/gate-7/rotate", {}, status=202)
    with hub_at(settings(tmp_path, broker.port), True) as hub:  # its new password died with the old hub
        async with mqtt(broker.port, P.command("gate-7")) as client:
            cmd = await heartbeat_until_command(hub, client)
            assert cmd.command_id == resync["command_id"] and cmd.name == "resync_whitelist"
            await client.publish(P.command_result("gate-7"), CommandResult(
                device_id="gate-7", command_id=cmd.command_id, ok=True, at=time.time()).model_dump_json(), qos=1)
            wait_for(lambda: get(hub, f"/commands/{resync['command_id']}")["state"] == "ok", timeout=5, what="ok")
            await no_command(client)
        assert get(hub, f"/commands/{rotate['command_id']}")["state"] == "pending"  # until it expires


async def test_a_revoked_device_gets_no_command_again(rhub: Hub, broker: Mosquitto) -> None:
    await enroll(rhub, broker.port, Device())
    issue(rhub, "diagnostics")
    rhub.post("/provisioning/devices/gate-7/revoke", {"reason": "stolen"}, status=200)
    await asyncio.sleep(RESEND + 0.1)
    async with mqtt(broker.port, P.command("gate-7")) as client:
        await no_command(client)
