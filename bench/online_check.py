"""Benchmark: online check-ins per second, sequential and 32 concurrent, against a real hub process.

    .venv/bin/python bench/online_check.py [--tickets 2000] [--concurrent-checks 4000]

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
from raw import raw_verify_us


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


async def checks(session: aiohttp.ClientSession, base: str, channel: int, tokens: list[str],
                 concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    reasons: dict[str, int] = {}
    queue = list(reversed(tokens))

    async def worker() -> None:
        while queue:
            token = queue.pop()
            t0 = time.perf_counter()
            async with session.post(base + "/checkins/online", json={"token": token, "channel_id": channel}) as r:
                body = await r.json()
            latencies.append(time.perf_counter() - t0)
            reasons[body["reason"]] = reasons.get(body["reason"], 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
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
                       clients: int, rate: float, seconds: float) -> dict[str, float]:
    """Open loop: ``clients`` handhelds together send ``rate`` checks/s; latency counts from the
    scheduled send time, so time spent waiting behind a slow answer is not hidden."""
    latencies: list[float] = []
    interval = clients / rate
    start = time.perf_counter() + 0.05
    per_client = int(seconds * rate / clients)

    async def handheld(k: int) -> None:
        for n in range(per_client):
            due = start + (n + k / clients) * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            token = tokens[(n * clients + k) % len(tokens)]
            async with session.post(base + "/checkins/online", json={"token": token, "channel_id": channel}) as r:
                await r.read()
            latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(handheld(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {"clients": clients, "target_rps": rate, "checks": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}


async def run(args: argparse.Namespace, hub: BenchHub) -> dict[str, object]:
    headers = hub.admin_headers()
    show = hub.setup_show(headers)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        tokens = await sell_all(session, hub.base, show, args.tickets)
        half = args.tickets // 2
        await checks(session, hub.base, show["channel"], tokens[:50], 1)  # warm-up
        sequential = await checks(session, hub.base, show["channel"], tokens[50:half], 1)
        pool = tokens[half:]
        concurrent_tokens = [pool[i % len(pool)] for i in range(args.concurrent_checks)]
        concurrent = await checks(session, hub.base, show["channel"], concurrent_tokens, 32)
        paced = await paced_checks(session, hub.base, show["channel"], tokens, 32, args.rate, 5.0)
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = BenchHub(Path(tmp))
        hub.start()
        try:
            result = asyncio.run(run(args, hub))
        finally:
            hub.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
