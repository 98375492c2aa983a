"""Two hub processes on one PostgreSQL database and one Mosquitto consume the device uplinks through MQTT v5 shared
subscriptions (``$share/hub/...``, ``[mqtt] shared_group``; issue 13 item 2): each event batch is handled by one
hub, stored once and acked once after the commit, and both hubs take a share; kill -9 one hub mid-burst and every
event is still stored exactly once (the gate re-sends what was not acked; storing is idempotent by event id)."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from tests.support.broker import Mosquitto
from tests.support.postgres import PostgresServer, postgres  # noqa: F401  (fixture)
from tests.support.processes import HubProcess
from tests.support.resending_gate import ACCEPT_UNREGISTERED, ResendingGate
from tests.support.scenario import seed_show

_names = itertools.count(1)


@pytest.fixture(name="hubs")
def hubs_fixture(tmp_path: Path, broker: Mosquitto, postgres: PostgresServer) -> Iterator[list[HubProcess]]:  # noqa: F811
    url = postgres.create_database(f"shared{next(_names)}_{os.getpid()}")
    hubs = []
    for name in ("hub-a", "hub-b"):
        hub = HubProcess(tmp_path / name, broker.port,
                         # its own client id; the broker drops a dead hub's share of the messages after 5 s
                         env={"HUB__DATABASE_URL": url, "HUB__MQTT__CLIENT_ID": name, "HUB__MQTT__SESSION_EXPIRY": "5"})
        with hub.config.open("a") as f:
            f.write(ACCEPT_UNREGISTERED)
        hubs.append(hub)
    try:
        hubs[0].start()  # the schema, the admin, the keys
        for key in ("signing.key", "control.key"):  # one venue: the same ticket and control keys on every hub
            shutil.copy2(hubs[0].workdir / key, hubs[1].workdir / key)
        hubs[1].start()
        yield hubs
    finally:
        for hub in hubs:
            hub.stop()
            hub.api.close()


def scans_stored(hub: HubProcess) -> float:
    """venue_hub_scans_total summed over its labels: what this hub itself stored (its metrics, not the database)."""
    text = httpx.get(hub.base_url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("venue_hub_scans_total{"))


def stored(hub: HubProcess, device: str) -> int:
    body = hub.call("GET", "/reports/checkins/detail", params={"device_id": device, "with_total": "true",
                                                                "limit": 1})
    return int(body["total"])


async def _shared_topic(port: int) -> str:
    """The topic a shared-subscription message arrives with at an aiomqtt (paho) client."""
    v5 = aiomqtt.ProtocolVersion.V5
    async with aiomqtt.Client("127.0.0.1", port, identifier="share-probe", protocol=v5) as sub, \
            aiomqtt.Client("127.0.0.1", port, identifier="share-pub", protocol=v5) as pub:
        await sub.subscribe("$share/probe/probe/+/events", qos=1)
        await pub.publish("probe/gate-9/events", b"x", qos=1)
        async with asyncio.timeout(5):
            async for message in sub.messages:
                return message.topic.value
    raise AssertionError("no message")


def test_a_shared_subscription_message_arrives_with_its_real_topic(broker: Mosquitto) -> None:
    assert asyncio.run(_shared_topic(broker.port)) == "probe/gate-9/events"  # no $share prefix: the bridge parses it


def test_each_batch_is_stored_and_acked_once_and_both_hubs_take_a_share(hubs: list[HubProcess],
                                                                        broker: Mosquitto) -> None:
    show = seed_show(hubs[0])
    gates = [ResendingGate(f"gate-{i}", show, events=4_000, resend_after=60) for i in (1, 2)]  # 20 batches each

    async def burst() -> None:
        await asyncio.gather(*(g.run(broker.port, seconds=60) for g in gates))
        await asyncio.sleep(1.0)  # an ack a second hub would send for the same batch

    asyncio.run(burst())
    per_hub = [scans_stored(h) for h in hubs]
    print(f"8,000 events in 40 batches: events stored per hub {per_hub}")
    assert [n for g in gates for n in g.acks] == [1] * 40  # one hub handled each batch: one ack each
    assert [n for g in gates for n in g.sends] == [1] * 40
    assert sum(per_hub) == 8_000 and all(per_hub), per_hub  # both hubs took a share, nothing stored twice
    assert [stored(hubs[1], g.device) for g in gates] == [4_000, 4_000]


def test_kill_9_one_hub_mid_burst_every_event_is_stored_exactly_once(hubs: list[HubProcess],
                                                                      broker: Mosquitto) -> None:
    show = seed_show(hubs[0])
    gates = [ResendingGate(f"gate-{i}", show, events=10_000, resend_after=3.0) for i in (1, 2)]  # 50 batches each
    killed: list[float] = []

    def kill_after_some(_i: int) -> None:  # once both hubs have stored some batches
        if not killed and sum(g.acked() for g in gates) >= 10 and (there := scans_stored(hubs[1])) > 0:
            killed.append(there)
            hubs[1].kill()

    for g in gates:
        g.on_ack = kill_after_some

    async def burst() -> None:
        await asyncio.gather(*(g.run(broker.port, seconds=120) for g in gates))

    asyncio.run(burst())
    assert killed, "hub-b was not killed mid-burst"
    resent = sum(sum(g.sends) - len(g.sends) for g in gates)
    print(f"20,000 events, hub-b killed after {killed[0]:.0f} events stored there: {resent} batch(es) re-sent")
    assert all(n >= 1 for g in gates for n in g.acks)
    assert [stored(hubs[0], g.device) for g in gates] == [10_000, 10_000]  # each event once (unique event id)
    assert hubs[0].alive()
