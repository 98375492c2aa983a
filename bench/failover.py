"""Benchmark: failover of the elected hub (issue 13 item 4).

    .venv/bin/python bench/failover.py [--rounds 5] [--resend 1.0] [--hubs 2]

Two hubs on one PostgreSQL database (a throwaway server this run starts) behind HAProxy
(deploy/haproxy/hub.cfg), one Mosquitto: tests/support/hub_cluster.py. An open-all is issued through the
balancer while a registered gate reports itself online (status heartbeats every 0.5 s) and never confirms,
so the elected hub re-publishes the command on ``<prefix>/emergency/command`` every ``[emergency]
resend_interval`` (``--resend``). A handheld sends an online check through HAProxy every 50 ms (each
waiting for its answer, 3 s client timeout). Each round: kill -9 the hub that is leader, then measure

* ``republish_s``: from the kill to the first emergency command that reaches a subscriber afterwards: only
  a live hub can publish it (the killed one's earlier ones arrived before); the envelope's seq is checked;
* ``online_s``: from the kill to the first online check answered 200 through HAProxy after it; the checks are
  kept on the hub about to be killed (HAProxy's HUB_LB cookie), so they have to move to the other hub;
* ``elected_s``: from the kill to the other hub's ``GET /api/v1/health`` saying ``"leader": true``;
* ``online_gap_s``: the longest time between two 200 answers to online checks around the kill;

then restart the killed hub (it joins as a follower) for the next round. Also measured in the same run:
the broker's raw QoS 1 round trip (bench/raw.py). Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw import raw_mqtt_round_trip_ms  # noqa: E402

from protocol.envelope import open_envelope  # noqa: E402
from protocol.keys import Keyring  # noqa: E402
from protocol.messages import GateStatus, dump_message  # noqa: E402
from protocol.topics import Topics  # noqa: E402
from tests.support.hub_cluster import HubCluster, cluster_prerequisites  # noqa: E402
from tests.support.postgres import PostgresServer, server_bin  # noqa: E402
from tests.support.scenario import seed_show  # noqa: E402

TOPICS = Topics("venue")
CHECK_EVERY = 0.05  # seconds between online checks
GOAL_S = 5.0
SILENT_GATE = "gate-silent"


class Checks(threading.Thread):
    """Online checks through the balancer every 50 ms; ``answers``: (monotonic when answered, HTTP status)."""

    def __init__(self, url: str, token: str, tickets: list[str], channel: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.tickets, self.channel = url, token, tickets, channel
        self.answers: list[tuple[float, int]] = []
        self.errors: list[tuple[float, str]] = []  # (monotonic, what) of checks that got no HTTP answer
        self.stick: str | None = None  # set: from the next check on, ask HAProxy for this hub (its HUB_LB cookie)
        self.hub: str | None = None  # the hub HAProxy keeps these checks on
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"},
                          timeout=3) as client:
            n = 0
            while not self.stopping.is_set():
                if self.stick is not None:
                    client.cookies.clear()
                    client.cookies.set("HUB_LB", self.stick, domain="127.0.0.1", path="/")
                    self.stick = None
                sent = time.monotonic()
                try:
                    r = client.post("/checkins/online", json={"token": self.tickets[n % len(self.tickets)],
                                                              "channel_id": self.channel,
                                                              "event_id": uuid.uuid4().hex})
                    self.answers.append((time.monotonic(), r.status_code))
                    self.hub = client.cookies.get("HUB_LB")
                except httpx.HTTPError as exc:
                    self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                n += 1
                self.stopping.wait(max(0.0, CHECK_EVERY - (time.monotonic() - sent)))

    def first_ok_after(self, at: float) -> float | None:
        return next((t for t, status in list(self.answers) if t > at and status == 200), None)

    def gap_around(self, at: float, until: float) -> float:
        ok = [t for t, status in list(self.answers) if status == 200 and at - 1.0 <= t <= until]
        return max((b - a for a, b in itertools.pairwise(ok)), default=float("inf"))


class Commands:
    """Every emergency command that reaches a subscriber: (monotonic arrival, seq)."""

    def __init__(self, cluster: HubCluster) -> None:
        self.cluster = cluster
        self.seen: list[tuple[float, int]] = []

    async def watch(self, port: int, ready: asyncio.Event) -> None:
        ring = Keyring.from_b64(json.loads(self.cluster.hubs[0].keys_file.read_text()))
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-watch",
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(TOPICS.emergency_command(), qos=1)
            ready.set()
            async for message in client.messages:
                at = time.monotonic()
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if not payload:
                    continue
                _kind, body = open_envelope(payload, ring, kinds={"emergency.command"})  # a hub's, verified
                self.seen.append((at, int(body["seq"])))

    def first_after(self, at: float, seq: int) -> float | None:
        return next((t for t, s in list(self.seen) if t > at and s == seq), None)


async def heartbeat(port: int, show_group: int, show_channel: int) -> None:
    """The silent gate: online every 0.5 s, never an emergency state (it never confirms)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"gate-{SILENT_GATE}",
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        while True:
            status = GateStatus(device_id=SILENT_GATE, state="online", at=time.time(), kind="gate",
                                group_id=show_group, channel_id=show_channel, interval=0.5)
            await client.publish(TOPICS.status(SILENT_GATE), dump_message(status), qos=1, retain=True)
            await asyncio.sleep(0.5)


def when_in(marks: list[tuple[float, float, float]], t: float) -> str:
    """Where ``t`` falls among the rounds: "round 2: 0.013 s after the kill" or "... during the restart"."""
    for n, (killed, restarting, restarted) in enumerate(marks, start=1):
        if killed <= t < restarting:
            return f"round {n}: {t - killed:.3f} s after the kill"
        if restarting <= t <= restarted:
            return f"round {n}: during the restart of the killed hub, {t - restarting:.3f} s in"
    return "outside the rounds"


# option httplog: "... hubs/hub1 TR/Tw/Tc/Tr/Ta 200 ... act/fe/be/srv/retries ..."
_HTTPLOG = re.compile(r" hubs/(?P<server>\S+) (?P<timers>-?\d+/-?\d+/-?\d+/-?\d+/-?\d+) (?P<status>\d{3}) .*? "
                      r"\d+/\d+/\d+/\d+/(?P<retries>\+?\d+) ")


def haproxy_summary(log: str, over_ms: int = 300) -> dict[str, Any]:
    """From HAProxy's log: how many requests it retried on another hub ("+n": redispatched), and the lines of
    requests that took over ``over_ms`` there (Tw is its wait, e.g. a 1 s turn-around before a retry)."""
    redispatched, slow = 0, []
    for line in log.splitlines():
        m = _HTTPLOG.search(line)
        if m is None:
            continue
        redispatched += m["retries"].startswith("+")
        if int(m["timers"].rsplit("/", 1)[1]) > over_ms and "/auth/login" not in line:  # argon2: slow by design
            slow.append(line.strip())
    return {"redispatched": redispatched, "slow": slow[:20]}


def stats(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"count": 0}
    return {"count": len(xs), "p50_s": round(statistics.median(xs), 3), "max_s": round(max(xs), 3),
            "all_s": [round(x, 3) for x in xs]}


async def run(args: argparse.Namespace, cluster: HubCluster) -> dict[str, Any]:
    show = seed_show(cluster.hubs[0])
    cluster.call("POST", "/provisioning/devices", json={
        "device_id": SILENT_GATE, "kind": "gate", "site": "bench hall", "group_id": show.group_id,
        "channel_id": show.channel_id, "fire_input": False,
        "public_key": base64.b64encode(bytes(nacl.signing.SigningKey.generate().verify_key)).decode()})
    hh_password, sec_password = uuid.uuid4().hex, uuid.uuid4().hex
    cluster.call("POST", "/users", json={"username": "hh1", "password": hh_password, "role": "ops",
                                         "device_id": "hh-1"})
    cluster.call("POST", "/users", json={"username": "sec", "password": sec_password, "role": "security"})
    tickets = [cluster.call("POST", "/tickets", json={"performance_id": show.performance_id,
                                                      "ticket_type_id": show.adult_type,
                                                      "holder_name": f"P{i}"})["token"] for i in range(20)]
    port = cluster.broker.port
    commands = Commands(cluster)
    ready = asyncio.Event()
    watcher = asyncio.create_task(commands.watch(port, ready))
    beating = asyncio.create_task(heartbeat(port, show.group_id, show.channel_id))
    await ready.wait()
    checks = Checks(cluster.lb_url, cluster.login("hh1", hh_password), tickets, show.channel_id)
    checks.start()
    rounds: list[dict[str, Any]] = []
    marks: list[tuple[float, float, float]] = []  # per round: the kill, the restart begun, the restart done
    try:
        await asyncio.sleep(2.0)  # the silent gate is online at both hubs
        r = await asyncio.to_thread(httpx.post, cluster.lb_url + "/api/v1/emergency/open", timeout=10,
                                    headers={"Authorization": f"Bearer {cluster.login('sec', sec_password)}"},
                                    json={"scope": {"all": True}, "reason": "failover bench"})
        r.raise_for_status()
        seq = int(r.json()["seq"])
        for n in range(args.rounds):
            leader = await asyncio.to_thread(cluster.wait_leader, 15.0)
            # the leader is re-publishing (one since this round began), and online checks are answered
            since = time.monotonic()
            checks.stick = f"hub{leader + 1}"  # the handheld's login on the hub about to die
            while commands.first_after(since, seq) is None or checks.first_ok_after(since) is None \
                    or checks.hub != f"hub{leader + 1}":
                if time.monotonic() - since > 15:
                    raise RuntimeError(f"round {n}: no re-publish or no online answer within 15 s\n{cluster.logs()}")
                await asyncio.sleep(0.05)
            killed_at = await asyncio.to_thread(cluster.kill, leader)
            elected = await asyncio.to_thread(cluster.wait_leader, 15.0, leader)
            elected_s = time.monotonic() - killed_at
            deadline = killed_at + 15
            while (commands.first_after(killed_at, seq) is None or checks.first_ok_after(killed_at) is None) \
                    and time.monotonic() < deadline:  # noqa: ASYNC110 - the answers come from a thread
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)
            republished, answered = commands.first_after(killed_at, seq), checks.first_ok_after(killed_at)
            rounds.append({"killed": f"hub-{leader + 1}", "elected": f"hub-{elected + 1}",
                           "checks_moved_to": checks.hub,
                           "republish_s": None if republished is None else round(republished - killed_at, 3),
                           "online_s": None if answered is None else round(answered - killed_at, 3),
                           "elected_s": round(elected_s, 3),
                           "online_gap_s": round(checks.gap_around(killed_at, time.monotonic()), 3)})
            print(f"round {n + 1}: {rounds[-1]}", file=sys.stderr)
            restarting = time.monotonic()
            await asyncio.to_thread(cluster.restart, leader)
            marks.append((killed_at, restarting, time.monotonic()))
    finally:
        checks.stopping.set()
        checks.join(10)
        watcher.cancel()
        beating.cancel()
    rtt = await raw_mqtt_round_trip_ms(port)
    republish = [r["republish_s"] for r in rounds if r["republish_s"] is not None]
    online = [r["online_s"] for r in rounds if r["online_s"] is not None]
    return {
        "bench": "failover",
        "hubs": len(cluster.hubs), "rounds": args.rounds, "resend_interval_s": args.resend,
        "check_every_ms": CHECK_EVERY * 1000,
        "republish": stats(republish), "online": stats(online),
        "elected": stats([r["elected_s"] for r in rounds]),
        "online_gap": stats([r["online_gap_s"] for r in rounds]),
        "republish_missing": args.rounds - len(republish), "online_missing": args.rounds - len(online),
        "online_checks": len(checks.answers), "online_non_200": sum(s != 200 for _, s in checks.answers),
        "online_transport_errors": [{"what": what, "when": when_in(marks, t)} for t, what in checks.errors],
        "per_round": rounds,
        "haproxy": haproxy_summary(cluster.haproxy.logs()),
        "raw_mqtt_qos1_round_trip_ms": round(rtt, 3),
        "cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
        "goal_s": GOAL_S,
        "goal_met": bool(republish and online and max(republish) <= GOAL_S and max(online) <= GOAL_S
                         and len(republish) == len(online) == args.rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--resend", type=float, default=1.0, help="[emergency] resend_interval of the hubs")
    parser.add_argument("--hubs", type=int, default=2)
    args = parser.parse_args()
    reason = cluster_prerequisites()
    bindir = server_bin()
    if reason or bindir is None:
        sys.exit(f"failover bench: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        postgres = PostgresServer(bindir)
        postgres.start()
        try:
            cluster = HubCluster(Path(tmp), postgres, size=args.hubs,
                                 hub_config=f"[emergency]\nresend_interval = {args.resend}\n"
                                            "[provisioning]\nliveness_check = 0.5\n")
            try:
                cluster.start()
                result = asyncio.run(run(args, cluster))
            finally:
                cluster.stop()
        finally:
            postgres.stop()
    print(f"failover: re-publish p50 {result['republish'].get('p50_s')} s max {result['republish'].get('max_s')} s; "
          f"online check p50 {result['online'].get('p50_s')} s max {result['online'].get('max_s')} s",
          file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
