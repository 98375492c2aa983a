"""Benchmark: online check-ins per second, sequential and 32 concurrent, against a real hub process.

    .venv/bin/python bench/online_check.py [--tickets 2000] [--concurrent-checks 4000]

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import HubProcess


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


async def run(args: argparse.Namespace, hub: HubProcess) -> dict[str, object]:
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
    return {"bench": "online_check", "tickets": args.tickets, "sequential": sequential, "concurrent_32": concurrent,
            "goal": {"rps": 1000, "p99_ms": 20}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--concurrent-checks", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProcess(Path(tmp))
        hub.start()
        try:
            result = asyncio.run(run(args, hub))
        finally:
            hub.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
