"""Benchmark: online check-ins per second, sequential and 32 concurrent, against a real hub process.

    .venv/bin/python bench/online_check.py [--tickets 2000] [--concurrent-checks 4000]
    .venv/bin/python bench/online_check.py --hubs 1,2     # also N hubs on PostgreSQL behind HAProxy

With ``--hubs``: first one hub on SQLite (as without it), then for each N a cluster of N hub processes on one
PostgreSQL database the script starts, behind HAProxy (deploy/haproxy/hub.cfg, tests/support/hub_cluster.py), the
checks sent through HAProxy without cookies (so every request is balanced). Everything runs on this machine.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import BenchHub
from raw import raw_mqtt_round_trip_ms, raw_verify_us

from tests.support.hub_cluster import HubCluster, cluster_prerequisites
from tests.support.postgres import PostgresServer, server_bin
from tests.support.scenario import seed_show


class ClusterTarget:
    """N hubs on PostgreSQL behind HAProxy, looking like a :class:`BenchHub` to :func:`run`."""

    def __init__(self, workdir: Path, postgres: PostgresServer, hubs: int) -> None:
        self.workdir = workdir
        self.cluster = HubCluster(workdir, postgres, size=hubs, log_level="WARNING")
        self.base = ""

    def start(self) -> None:
        self.cluster.start()
        self.base = self.cluster.lb_url + "/api/v1"

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": str(self.cluster.lb.headers["Authorization"])}

    def setup_show(self, _headers: dict[str, str] | None = None) -> dict[str, int]:
        show = seed_show(self.cluster)  # type: ignore[arg-type]  # through HAProxy: .call as a HubProcess has
        return {"performance": show.performance_id, "adult": show.adult_type, "group": show.group_id,
                "channel": show.channel_id}

    def stop(self) -> None:
        self.cluster.stop()


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return round(s[min(len(s) - 1, int(len(s) * p))] * 1000, 2)


async def sell_all(session: aiohttp.ClientSession, base: str, show: dict[str, int], n: int) -> list[str]:
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        async with sem, session.post(base + "/tickets", json={
                "performance_id": show["performance"], "ticket_type_id": show["adult"],
                "holder_name": f"P{i}"}) as r:
            r.raise_for_status()
            return str((await r.json())["token"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def handheld_logins(session: aiohttp.ClientSession, base: str, n: int) -> list[str]:
    """``n`` handheld logins (role security, as the ushers' handhelds log in); their bearer headers."""
    out = []
    for k in range(n):
        name, password = f"handheld-{k}", f"handheld-password-{k}"
        async with session.post(base + "/users", json={"username": name, "password": password,
                                                        "role": "security"}) as r:
            r.raise_for_status()
        async with session.post(base + "/auth/login", json={"username": name, "password": password}) as r:
            r.raise_for_status()
            out.append(f"Bearer {(await r.json())['token']}")
    return out


async def checks(session: aiohttp.ClientSession, base: str, channel: int, tokens: list[str],
                 concurrency: int, logins: list[str] | None = None) -> dict[str, float]:
    """``concurrency`` handhelds check ``tokens``; ``logins``: each handheld's own bearer (a load balancer keeps
    a login on one hub), else the session's."""
    latencies: list[float] = []
    reasons: dict[str, int] = {}
    queue = list(reversed(tokens))

    async def worker(k: int) -> None:
        headers = {"Authorization": logins[k % len(logins)]} if logins else None
        while queue:
            token = queue.pop()
            t0 = time.perf_counter()
            async with session.post(base + "/checkins/online", json={"token": token, "channel_id": channel},
                                    headers=headers) as r:
                body = await r.json()
            latencies.append(time.perf_counter() - t0)
            reasons[body["reason"]] = reasons.get(body["reason"], 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"checks": len(latencies), "rps": round(len(latencies) / elapsed, 1), "p50_ms": pct(latencies, 0.5),
            "p99_ms": pct(latencies, 0.99), "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
            "reasons": reasons}  # type: ignore[dict-item]


WRK_SCRIPT = """
local tokens, i = {}, 0
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("AUTH")
request = function()
  i = i + 1
  local token = tokens[(i % #tokens) + 1]
  return wrk.format(nil, nil, nil, '{"token":"' .. token .. '","channel_id":' .. os.getenv("CHANNEL") .. '}')
end
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %f %f %f %d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
"""


def wrk_checks(base: str, channel: int, tokens: list[str], auth: str, workdir: Path,
               connections: int, seconds: int) -> dict[str, float]:
    """The same online checks driven by wrk (C, one thread), so the client costs the hub little CPU."""
    (workdir / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (workdir / "checks.lua").write_text(WRK_SCRIPT)
    env = {**os.environ, "TOKENS_FILE": str(workdir / "tokens.txt"), "AUTH": auth, "CHANNEL": str(channel)}
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(workdir / "checks.lua"),
                          base + "/checkins/online"], env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    n, secs, p50, p99, bad = line.split()[1:]
    return {"checks": int(n), "rps": round(int(n) / float(secs), 1), "p50_ms": round(float(p50), 2),
            "p99_ms": round(float(p99), 2), "non_2xx": int(bad)}


async def paced_checks(session: aiohttp.ClientSession, base: str, channel: int, tokens: list[str],
                       clients: int, rate: float, seconds: float, logins: list[str] | None = None) -> dict[str, float]:
    """Open loop: ``clients`` handhelds together send ``rate`` checks/s; latency counts from the
    scheduled send time, so time spent waiting behind a slow answer is not hidden."""
    latencies: list[float] = []
    interval = clients / rate
    start = time.perf_counter() + 0.05
    per_client = int(seconds * rate / clients)

    async def handheld(k: int) -> None:
        headers = {"Authorization": logins[k % len(logins)]} if logins else None
        for n in range(per_client):
            due = start + (n + k / clients) * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            token = tokens[(n * clients + k) % len(tokens)]
            async with session.post(base + "/checkins/online", json={"token": token, "channel_id": channel},
                                    headers=headers) as r:
                await r.read()
            latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(handheld(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {"clients": clients, "target_rps": rate, "checks": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}


async def run(args: argparse.Namespace, hub: BenchHub | ClusterTarget) -> dict[str, object]:
    headers = hub.admin_headers()
    show = hub.setup_show(headers)
    connector = aiohttp.TCPConnector(limit=64)
    # no cookie jar: through HAProxy each request is balanced on its own (a browser would stick to one hub)
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        tokens = await sell_all(session, hub.base, show, args.tickets)
        logins = await handheld_logins(session, hub.base, 32)  # each handheld its own login, as in the field
        half = args.tickets // 2
        await checks(session, hub.base, show["channel"], tokens[:50], 1)  # warm-up
        sequential = await checks(session, hub.base, show["channel"], tokens[50:half], 1, logins)
        pool = tokens[half:]
        concurrent_tokens = [pool[i % len(pool)] for i in range(args.concurrent_checks)]
        concurrent = await checks(session, hub.base, show["channel"], concurrent_tokens, 32, logins)
        paced = await paced_checks(session, hub.base, show["channel"], tokens, 32, args.rate, 5.0, logins)
    result: dict[str, object] = {"bench": "online_check", "tickets": args.tickets, "sequential": sequential,
                                 "concurrent_32": concurrent, "paced_32_clients": paced}
    if shutil.which("wrk"):
        result["wrk_concurrent_32"] = wrk_checks(hub.base, show["channel"], tokens, headers["Authorization"],
                                                 hub.workdir, 32, args.wrk_seconds)
    result["raw_verify_us"] = round(raw_verify_us(), 1)
    result["goal"] = {"rps": 1000, "p99_ms": 20}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--concurrent-checks", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=1000.0, help="checks/s of the paced (open-loop) phase")
    parser.add_argument("--wrk-seconds", type=int, default=8, help="length of the wrk run (if wrk is installed)")
    parser.add_argument("--hubs", default="", help="e.g. 1,2: also N hub processes on PostgreSQL behind HAProxy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = BenchHub(Path(tmp) / "sqlite")
        hub.start()
        try:
            result = asyncio.run(run(args, hub))
        finally:
            hub.stop()
    if args.hubs:
        result = {"bench": "online_check", "tickets": args.tickets, "sqlite_1_hub": _short(result),
                  **_clusters(args, [int(n) for n in args.hubs.split(",")])}
        result["raw_verify_us"] = round(raw_verify_us(), 1)
        result["goal"] = {"rps": 1000, "p99_ms": 20}
    print(json.dumps(result))


def _short(result: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in result.items() if k not in ("bench", "tickets", "raw_verify_us", "goal")}


def _clusters(args: argparse.Namespace, sizes: list[int]) -> dict[str, object]:
    reason = cluster_prerequisites()
    bindir = server_bin()
    if reason or bindir is None:
        raise SystemExit(f"--hubs needs PostgreSQL and HAProxy: {reason}")
    out: dict[str, object] = {}
    postgres = PostgresServer(bindir)
    postgres.start()
    try:
        for n in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                target = ClusterTarget(Path(tmp), postgres, n)
                target.start()
                try:
                    found = _short(asyncio.run(run(args, target)))
                    found["raw_mqtt_qos1_round_trip_ms"] = round(
                        asyncio.run(raw_mqtt_round_trip_ms(target.cluster.broker.port)), 3)
                    out[f"postgres_{n}_hubs_haproxy"] = found
                finally:
                    target.stop()
            print(f"{n} hub(s) on PostgreSQL behind HAProxy: {json.dumps(out[f'postgres_{n}_hubs_haproxy'])}",
                  file=sys.stderr)
    finally:
        postgres.stop()
    return out


if __name__ == "__main__":
    main()
