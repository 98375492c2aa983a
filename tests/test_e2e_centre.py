"""The whole centre at once (issue 13 item 4): two hubs on one PostgreSQL database behind HAProxy, on a central
Mosquitto that a venue's Mosquitto is bridged to (TLS, the bridge's own login), and two real gates at the venue.

The pieces are tested one by one in tests/test_hub_cluster.py (kill -9 a hub: online checks, an open-all, a
20,000-event burst) and tests/test_venue_bridge.py (the link cut for 30 s); here they run together: the elected hub
is killed while the venue's gates scan through the bridge, and an open-all issued after it reaches both gates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.bridged_brokers import BridgedBrokers, bridged_brokers
from tests.support.hub_cluster import HubCluster, cluster_prerequisites, run_cluster
from tests.support.net import wait_for
from tests.support.postgres import PostgresServer, postgres  # noqa: F401  (fixture)
from tests.support.processes import GateProcess
from tests.support.scenario import Show, seed_show, sell
from tests.test_hub_cluster import add_user, bearer, board, register


@pytest.fixture(name="brokers")
def brokers_fixture(tmp_path: Path) -> Iterator[BridgedBrokers]:
    with bridged_brokers(tmp_path / "brokers") as brokers:
        yield brokers


@pytest.fixture(name="centre")
def centre_fixture(tmp_path: Path, postgres: PostgresServer,  # noqa: F811
                   brokers: BridgedBrokers) -> Iterator[HubCluster]:
    reason = cluster_prerequisites()
    if reason:
        pytest.skip(reason)
    central = brokers.central
    yield from run_cluster(tmp_path / "centre", postgres, broker=central, env={
        "HUB__MQTT__USERNAME": central.admin_user, "HUB__MQTT__PASSWORD": central.admin_password})


def events(centre: HubCluster) -> list[dict[str, Any]]:
    body = centre.call("GET", "/checkins", params={"limit": 10000})
    return list(body["items"] if isinstance(body, dict) else body)


def current(centre: HubCluster, gate: GateProcess, group_id: int) -> bool:
    seq = next(g["seq"] for g in centre.call("GET", "/checkin-groups") if g["id"] == group_id)
    row = next((d for d in centre.call("GET", "/devices") if d["device_id"] == gate.device_id), {})
    return bool(row.get("whitelist_seq") == seq)


@pytest.mark.timeout(240)
def test_the_elected_hub_dies_while_a_bridged_venue_scans_and_an_open_all_still_reaches_every_gate(
        centre: HubCluster, brokers: BridgedBrokers, tmp_path: Path) -> None:
    show: Show = seed_show(centre)  # type: ignore[arg-type]  # through HAProxy: .call as a HubProcess has
    gates = [GateProcess(tmp_path / d, d, brokers.venue.port, centre.hubs[0].keys_file, show.group_id,
                         show.channel_id) for d in ("gate-1", "gate-2")]
    try:
        for g in gates:
            register(centre, g)
            g.start()
        tickets = [sell(centre, show) for _ in range(16)]  # type: ignore[arg-type]
        wait_for(lambda: all(current(centre, g, show.group_id) for g in gates), timeout=30,
                 what="the sales to reach both venue gates over the bridge")
        before = [gates[i % 2].scan(t["token"]).reason for i, t in enumerate(tickets[:6])]
        assert before == ["admitted"] * 6
        wait_for(lambda: len(events(centre)) >= 6, timeout=20, what="the first scans at the centre")

        leader = centre.wait_leader(timeout=10)
        centre.kill(leader)
        after = [gates[i % 2].scan(t["token"]).reason for i, t in enumerate(tickets[6:14])]
        assert after == ["admitted"] * 8  # the gates decide on their own: the centre is not asked
        survivor = centre.wait_leader(timeout=10, other_than=leader)
        assert survivor != leader

        # every scan reaches the surviving hub once (gates re-send what the dead hub never acknowledged)
        wait_for(lambda: len(events(centre)) >= 14, timeout=60, what="every scan at the surviving hub")
        marker = gates[1].scan(tickets[14]["token"])  # after the others, on the same path: no late duplicate
        assert marker.reason == "admitted"
        wait_for(lambda: any(e["ticket_id"] == tickets[14]["id"] for e in events(centre)), timeout=30,
                 what="the marker scan at the centre")
        stored = events(centre)
        assert len(stored) == 15 and len({e["event_id"] for e in stored}) == 15, centre.logs()
        assert Counter(e["device_id"] for e in stored) == {"gate-1": 7, "gate-2": 8}
        assert sorted(e["ticket_id"] for e in stored) == sorted(t["id"] for t in tickets[:15])

        # an open-all issued now (through the balancer, at the surviving hub) reaches both gates over the bridge
        token = centre.login("sec", add_user(centre, "sec", "security"))
        r = httpx.post(centre.lb_url + "/api/v1/emergency/open", headers=bearer(token), timeout=10,
                       json={"scope": {"all": True}, "reason": "evacuation drill"})
        assert r.status_code == 201, r.text
        seq = r.json()["seq"]

        def confirmed() -> set[str]:
            return {g["device_id"] for g in board(centre, token)["gates"] if g["confirmed"] and g["seq"] == seq}

        wait_for(lambda: confirmed() >= {"gate-1", "gate-2"}, timeout=30, interval=0.2,
                 what=f"both venue gates to confirm open-all seq {seq}")
    finally:
        for g in gates:
            g.stop_all()
