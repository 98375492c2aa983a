"""Benchmark: handheld online checks and /health while a burst of gate events is ingested (issue 13 item 0).

    .venv/bin/python bench/online_during_ingest.py [--events 50000] [--gates 20] [--rate 200] [--tickets 3000]
        [--db sqlite|postgres] [--max-events N] [--thread]

One hub process (storing event batches in its ingest child process, ``[ingest] process = true``; ``--thread``: in
a worker thread, as before issue 13) on SQLite or, ``--db postgres``, on a throwaway PostgreSQL server the
script starts (as tests/support/postgres.py does), with its own Mosquitto (``[devices] accept_unregistered =
true``; unregistered simulated gates send the plain JSON batches of ``bench/hub_ingest.py``'s "unsigned" run):

1. sells ``--tickets`` tickets for the handhelds (and ``--admitted`` more, admitted by the gates' events);
2. baseline, no ingest: paced online checks (``POST /api/v1/checkins/online``, ``--rate`` checks/s from
   ``--clients`` handhelds, open loop: latency counts from each check's scheduled send time) and
   ``GET /api/v1/health`` every 50 ms, for ``--baseline-seconds``;
3. burst: ``--gates`` gates (in a child process, so that their MQTT work does not share an event loop with
   the handhelds' requests) publish ``--events`` events in 200-event batches as fast as they can, each
   event counted when the hub's ack (sent after commit) names it; the same paced online checks and /health
   polling run from the gates' first publish until every batch is acked (or ``--ack-timeout``).

Also measured in the same run: PyNaCl's raw Ed25519 verify, the broker's QoS 1 round trip, and raw
paho-mqtt QoS 1 loopback throughput on the same broker. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import ACCEPT_UNREGISTERED, BenchHub, postgres_server
from hub_ingest import BATCH, TOPICS, Plan, make_batches, raw_paho
from raw import raw_mqtt_round_trip_ms, raw_verify_us

from protocol.messages import dump_message

HEALTH_EVERY = 0.05  # seconds between /health polls
BUDGET_MS = 500  # the handheld's answer budget


def stats(samples: list[float]) -> dict[str, Any]:
    """count and p50/p99/max in milliseconds of ``samples`` (seconds)."""
    if not samples:
        return {"count": 0}
    s = sorted(samples)

    def at(p: float) -> float:
        return round(s[min(len(s) - 1, int(len(s) * p))] * 1000, 2)

    return {"count": len(s), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(s[-1] * 1000, 2),
            "over_budget": sum(1 for x in s if x * 1000 > BUDGET_MS)}


# --- the handhelds and the health poller (parent process) -------------------------------------------------


async def sell(session: aiohttp.ClientSession, base: str, show: dict[str, int], n: int) -> list[tuple[int, str]]:
    """``n`` real tickets, as (id, token)."""
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> tuple[int, str]:
        async with sem, session.post(base + "/tickets", json={
                "performance_id": show["performance"], "ticket_type_id": show["adult"],
                "holder_name": f"P{i}"}) as r:
            r.raise_for_status()
            body = await r.json()
            return int(body["id"]), str(body["token"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


class Tokens:
    """Hands out the handhelds' tokens in order: each fresh once (an admission), then round again (denials)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.next = 0

    def take(self) -> str:
        token = self.tokens[self.next % len(self.tokens)]
        self.next += 1
        return token


async def paced_checks(session: aiohttp.ClientSession, base: str, channel: int, tokens: Tokens, clients: int,
                       rate: float, stop: asyncio.Event, seconds: float | None = None) -> dict[str, Any]:
    """Open loop (as bench/online_check.py ``paced_checks``): ``clients`` handhelds together send ``rate``
    checks/s, each waiting for its answer before its next check; latency from the scheduled send time.
    Runs until ``stop`` is set (or ``seconds`` have passed); ``rate`` 0: no checks (a control run)."""
    if rate <= 0:
        return {"count": 0}
    latencies: list[float] = []
    service: list[float] = []  # from the actual send: the hub's answer time without the handheld's backlog
    reasons: dict[str, int] = {}
    errors: dict[str, int] = {}
    interval = clients / rate
    start = time.perf_counter() + 0.01
    end = start + seconds if seconds is not None else math.inf

    async def handheld(k: int) -> None:
        n = 0
        while True:
            due = start + (n + k / clients) * interval
            n += 1
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            elif stop.is_set():
                return
            sent = time.perf_counter()
            try:
                async with session.post(base + "/checkins/online",
                                        json={"token": tokens.take(), "channel_id": channel}) as r:
                    body = await r.json(content_type=None)
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            now = time.perf_counter()
            latencies.append(now - due)
            service.append(now - sent)
            reason = str(body.get("reason")) if status == 200 and isinstance(body, dict) else f"HTTP {status}"
            reasons[reason] = reasons.get(reason, 0) + 1

    await asyncio.gather(*(handheld(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {**stats(latencies), "rps": round(len(latencies) / elapsed, 1), "seconds": round(elapsed, 2),
            "reasons": reasons, "errors": errors, "from_send": stats(service)}


async def poll_health(session: aiohttp.ClientSession, base: str, stop: asyncio.Event,
                      seconds: float | None = None) -> dict[str, Any]:
    """GET /health every 50 ms (one at a time; a poll due while one is in flight is skipped); latency from send."""
    latencies: list[float] = []
    bad = 0
    start = time.perf_counter()
    end = start + seconds if seconds is not None else math.inf
    tick = 0
    while not stop.is_set():
        due = start + tick * HEALTH_EVERY
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                break
            except TimeoutError:
                pass
        t0 = time.perf_counter()
        try:
            async with session.get(base + "/health") as r:
                await r.read()
                bad += r.status != 200
        except (aiohttp.ClientError, TimeoutError):
            bad += 1
            continue
        finally:
            tick = max(tick + 1, math.ceil((time.perf_counter() - start) / HEALTH_EVERY))
        latencies.append(time.perf_counter() - t0)
    return {**stats(latencies), "non_200": bad}


async def probe(base: str, headers: dict[str, str], channel: int, tokens: Tokens, args: argparse.Namespace,
                stop: asyncio.Event, seconds: float | None = None) -> dict[str, Any]:
    # own sessions: the handhelds' connections are not shared with the health poller's
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=args.clients),
                                     timeout=aiohttp.ClientTimeout(total=30)) as checks, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as health:
        # open the connections before the clock starts
        await asyncio.gather(*(checks.get(base + "/health") for _ in range(args.clients)))
        online, polled = await asyncio.gather(
            paced_checks(checks, base, channel, tokens, args.clients, args.rate, stop, seconds),
            poll_health(health, base, stop, seconds))
    return {"online": online, "health": polled}


# --- the gates (child process) -------------------------------------------------------------------------------


async def gate(port: int, device: str, plan: Plan, acked: set[str], times: dict[str, float],
               ready: asyncio.Event, go: asyncio.Event, ack_seconds: float) -> None:
    """As bench/hub_ingest.py ``one_gate``, but connected and subscribed before ``go``."""
    expected = {eid for ids, _ in plan for eid in ids}
    async with aiomqtt.Client("127.0.0.1", port, identifier=device, protocol=aiomqtt.ProtocolVersion.V5,
                              max_queued_incoming_messages=10_000) as client:
        await client.subscribe(TOPICS.ack(device), qos=1)
        ready.set()
        await go.wait()

        async def send() -> None:
            for _ids, payload in plan:
                times.setdefault("first_publish", time.perf_counter())
                await client.publish(TOPICS.events(device), payload, qos=1)
            times["last_publish"] = max(times.get("last_publish", 0.0), time.perf_counter())

        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(ack_seconds):
                async for message in client.messages:
                    body = bytes(message.payload).partition(b"\n")[2]
                    acked.update(json.loads(body)["event_ids"])
                    times["last_ack"] = time.perf_counter()
                    if expected <= acked:
                        break
        finally:
            await sender


async def gates_main(port: int, plans: dict[str, Plan], conn: Any, ack_seconds: float) -> dict[str, Any]:
    acked: set[str] = set()
    times: dict[str, float] = {}
    readies = {d: asyncio.Event() for d in plans}
    go = asyncio.Event()
    tasks = [asyncio.create_task(gate(port, d, p, acked, times, readies[d], go, ack_seconds)) for d, p in plans.items()]
    await asyncio.gather(*(e.wait() for e in readies.values()))
    conn.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "go"
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]  # reported: gates_failed, first_error
    for device, r in zip(plans, results, strict=True):
        if isinstance(r, BaseException):
            print(f"gate {device} failed: {r!r}", file=sys.stderr)
    total = sum(len(ids) for plan in plans.values() for ids, _ in plan)
    return {"events": total, "batches": sum(len(p) for p in plans.values()), "acked": len(acked),
            "lost": total - len(acked), "gates_failed": len(failed),
            "first_error": repr(failed[0]) if failed else None, **times}


def gates_process(port: int, show: dict[str, int], gates: int, batches: int, admit: list[int], conn: Any,
                  timeout: float) -> None:
    """Child process: build the batches (before the clock), connect every gate, wait for "go", send, report."""
    share = [admit[i::gates] for i in range(gates)]
    plans: dict[str, Plan] = {}
    for i in range(gates):
        device = f"bench-gate-{i}"
        plans[device] = [([e.event_id for e in b.events], dump_message(b))
                         for b in make_batches(device, show, batches, share[i])]
    conn.send(asyncio.run(gates_main(port, plans, conn, timeout)))


# --- the run -------------------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_s(pid)
        except OSError:
            pass  # ended (or a restarted worker): not counted
    return total


def machine_busy_s() -> float:
    """CPU seconds all cores together have spent not idle since boot (Linux /proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


async def run(args: argparse.Namespace, hub: BenchHub) -> dict[str, Any]:
    headers = hub.admin_headers()
    show = hub.setup_show(headers)
    channel = show["channel"]
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=32)) as session:
        sold = await sell(session, hub.base, show, args.tickets + args.admitted)
    sell_s = time.perf_counter() - t0
    tokens = Tokens([token for _id, token in sold[:args.tickets]])
    admit = [ticket_id for ticket_id, _token in sold[args.tickets:]]

    # warm-up (first requests pay imports and connection set-up), not counted
    warm = Tokens([token for _id, token in sold[:20]])
    await probe(hub.base, headers, channel, warm, args, asyncio.Event(), 0.5)
    tokens.next = 20

    assert hub.hub is not None and hub.hub.proc is not None
    hub_pid = hub.hub.proc.pid
    if args.pin_hub is not None:  # every thread of the hub on one core (threads started later inherit it)
        for tid in os.listdir(f"/proc/{hub_pid}/task"):
            os.sched_setaffinity(int(tid), {args.pin_hub})
    children = hub.children()  # the ingest worker (and multiprocessing's resource tracker)
    cpu_base = process_cpu_s(hub_pid)
    baseline = await probe(hub.base, headers, channel, tokens, args, asyncio.Event(), args.baseline_seconds)
    baseline["hub_cpu_s"] = round(process_cpu_s(hub_pid) - cpu_base, 2)  # the checks' and polls' CPU at the hub

    batches = math.ceil(args.events / (args.gates * BATCH))
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=gates_process, args=(hub.broker.port, show, args.gates, batches, admit, child_conn,
                                                    args.ack_timeout), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()
    try:
        ready = await loop.run_in_executor(None, parent_conn.recv)
        assert ready == "ready", ready
        load_before = loadavg()
        cpu_before = process_cpu_s(hub_pid), machine_busy_s(), children_cpu_s(children)
        stop = asyncio.Event()
        fresh_before = tokens.next
        parent_conn.send("go")
        go_at = time.perf_counter()
        probing = asyncio.create_task(probe(hub.base, headers, channel, tokens, args, stop))
        gates_result: dict[str, Any] = await loop.run_in_executor(None, parent_conn.recv)
        cpu_after = process_cpu_s(hub_pid), machine_busy_s(), children_cpu_s(children)
        wall = time.perf_counter() - go_at
        stop.set()
        during = await probing
    finally:
        child.join(10)
        if child.is_alive():
            child.terminate()
    first = gates_result.pop("first_publish", go_at)
    last_ack = gates_result.pop("last_ack", first)
    last_publish = gates_result.pop("last_publish", first)
    seconds = last_ack - first
    ingest = {**gates_result, "gates": args.gates, "batches_per_gate": batches, "events_per_batch": BATCH,
              "admitted_events": len(admit), "seconds": round(seconds, 2),
              "publish_seconds": round(last_publish - first, 2),
              "events_per_s": round(gates_result["acked"] / seconds, 1) if seconds > 0 else None}
    cpu = {"wall_s": round(wall, 2), "hub_cpu_s": round(cpu_after[0] - cpu_before[0], 2),
           "hub_children_cpu_s": round(cpu_after[2] - cpu_before[2], 2),
           "machine_busy_cores": round((cpu_after[1] - cpu_before[1]) / wall, 2)}
    during["online"]["fresh_tokens_used"] = min(tokens.next, args.tickets) - fresh_before

    security = hub.security_events()
    load_after = loadavg()
    rtt = await raw_mqtt_round_trip_ms(hub.broker.port)
    raw_msgs = await loop.run_in_executor(None, raw_paho, hub.broker.port, args.raw)
    assert hub.hub is not None
    hub_alive = hub.hub.alive()
    return {
        "bench": "online_during_ingest",
        "hub": "one process, [devices] accept_unregistered = true, gates unregistered (plain JSON batches)",
        "db": args.db, "ingest_in": "worker thread" if args.thread else "child process",
        "max_events_per_transaction": args.max_events,
        "hub_pinned_to_cpu": args.pin_hub, "tickets": args.tickets, "sell_s": round(sell_s, 2),
        "clients": args.clients, "target_rps": args.rate,
        "health_every_ms": HEALTH_EVERY * 1000,
        "baseline": {**baseline, "seconds": args.baseline_seconds},
        "during_ingest": during,
        "ingest": ingest,
        "burst_cpu": cpu,  # the hub's CPU over the burst, and how many of the cores everything together kept busy
        "security_events": security, "hub_alive": hub_alive,
        "raw_verify_us": round(raw_verify_us(), 1),
        "raw_mqtt_qos1_round_trip_ms": round(rtt, 3),
        "raw_paho_qos1_msgs_per_s": round(raw_msgs, 1),
        "cpu_count": os.cpu_count(), "loadavg_before_burst": load_before, "loadavg_after_burst": load_after,
        "goal": {"online_p99_ms": 20, "events_per_s": 10_000},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000, help="events in the burst (rounded up to whole "
                                                                    "200-event batches per gate)")
    parser.add_argument("--gates", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="online checks/s, all handhelds together")
    parser.add_argument("--clients", type=int, default=8, help="handhelds sending the online checks")
    parser.add_argument("--tickets", type=int, default=3000, help="tickets for the handhelds' online checks")
    parser.add_argument("--admitted", type=int, default=3000,
                        help="further tickets admitted by the burst's events (the rest are denials)")
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    parser.add_argument("--ack-timeout", type=float, default=90.0, help="seconds a gate waits for its acks")
    parser.add_argument("--raw", type=int, default=20000, help="messages of the raw paho-mqtt throughput")
    parser.add_argument("--pin-hub", type=int, default=None, metavar="CPU",
                        help="run every hub thread on this one core (from the baseline on): a GIL experiment")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: a throwaway PostgreSQL server started here")
    parser.add_argument("--max-events", type=int, default=5000,
                        help="[ingest] max_events_per_transaction")
    parser.add_argument("--thread", action="store_true",
                        help="[ingest] process = false: event batches stored in a thread of the hub's process")
    args = parser.parse_args()
    env = {"HUB__INGEST__MAX_EVENTS_PER_TRANSACTION": str(args.max_events),
           "HUB__INGEST__PROCESS": "false" if args.thread else "true"}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = None
        if args.db == "postgres":
            url = stack.enter_context(postgres_server()).create_database("bench")
        hub = BenchHub(Path(tmp), hub_config=ACCEPT_UNREGISTERED, database_url=url, env=env)
        hub.start()
        try:
            result = asyncio.run(run(args, hub))
        finally:
            hub.stop()
    b, d, i = result["baseline"], result["during_ingest"], result["ingest"]
    print(f"online p99 {b['online'].get('p99_ms')} ms -> {d['online'].get('p99_ms')} ms during ingest, "
          f"health p99 {b['health'].get('p99_ms')} -> {d['health'].get('p99_ms')} ms; "
          f"ingest {i['events_per_s']} ev/s ({i['lost']} lost)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
