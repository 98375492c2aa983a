"""Benchmark: Live check-in page latency, from a gate publishing a batch to the scan on the SSE stream.

    .venv/bin/python bench/live_latency.py [--gates 4] [--batches 200] [--events 5] [--interval 0.1]

A private Mosquitto and ``python -m hub`` (bench/_hubproc.py) with a show set up, tickets sold and
``--gates`` gates registered with their own Ed25519 keys (as ops would). A manager logs in and opens
``GET /api/v1/live/stream`` (server-sent events, as the console's Live page does) with their bearer token.
Then ``--batches`` device-signed event batches of ``--events`` scans each (mostly admissions of the sold
tickets, every tenth a refusal) are published, QoS 1, round-robin over the gates, one every ``--interval``
seconds plus a random 0..interval jitter (so the publishes do not line up with the feed's 200 ms flush), on
the gates' events topic exactly as ``gate_agent/link.py`` does (bench/hub_ingest.py's approach). Each gate
also subscribes to its ack topic.

Measured per batch (wall clock, one machine): publish -> every scan of the batch seen on the stream (the
figure: goal <= 1 s, issue 12 page 1), split into publish -> the hub's signed ack arriving at the gate
(stored and acked), and the hub's ``received_at`` of the scan -> seen on the stream (the feed's coalescing,
its read and the SSE write). Raw limits measured in the same run: the broker's QoS 1 round trip
(bench/raw.py, a small message to a subscriber on the same client) and the hub's ``GET /api/v1/health``
HTTP round trip. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import BenchHub
from raw import raw_mqtt_round_trip_ms

from protocol.device_signed import KIND_EVENTS, seal_device
from protocol.messages import CheckinEvent, EventBatch
from protocol.reasons import Reason
from protocol.topics import Topics

TOPICS = Topics("venue")
GOAL_MS = 1000.0


def pct(samples: list[float], p: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 1)


def figures(samples: list[float]) -> dict[str, Any]:
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 1) if samples else None,
            "p99_ms": pct(samples, 99), "max_ms": round(max(samples), 1) if samples else None}


class Stream:
    """The SSE stream read as a browser would; records when each scan's event id first arrives (wall clock)."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.seen: dict[str, tuple[float, float]] = {}  # event id -> (arrived, the hub's received_at)
        self.snapshot = asyncio.Event()
        self.changed = asyncio.Event()  # set on every scans event
        self.events = 0
        self.ended: str | None = None

    async def run(self, max_s: float) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=httpx.Timeout(10, read=60)) as client, \
                client.stream("GET", "/live/stream", params={"max_s": max_s},
                              headers={"Authorization": f"Bearer {self.token}"}) as response:
            response.raise_for_status()
            name, data = "message", []
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    arrived = time.time()
                    body = json.loads("\n".join(data))
                    self._event(name, body, arrived)
                    name, data = "message", []
                    if self.ended is not None:
                        return

    def _event(self, name: str, body: Any, arrived: float) -> None:
        self.events += 1
        if name == "snapshot":
            self.snapshot.set()
        elif name == "scans":
            for scan in body["scans"]:
                self.seen.setdefault(scan["event_id"], (arrived, float(scan["received_at"])))
            self.changed.set()
        elif name == "end":
            self.ended = str(body.get("reason"))


def sell(api: httpx.Client, show: dict[str, int], n: int) -> list[int]:
    return [api.post("/tickets", json={"performance_id": show["performance"], "ticket_type_id": show["adult"],
                                       "holder_name": f"P{i}"}).raise_for_status().json()["id"] for i in range(n)]


class Gate:
    def __init__(self, device_id: str, key: nacl.signing.SigningKey, show: dict[str, int]) -> None:
        self.device_id, self.key, self.show = device_id, key, show
        self.seq = 0
        self.acked: dict[str, float] = {}  # event id -> when its ack arrived

    def batch(self, tickets: list[int | None]) -> tuple[list[str], bytes]:
        events = []
        for ticket in tickets:
            self.seq += 1
            admitted = ticket is not None
            events.append(CheckinEvent(
                event_id=uuid.uuid4().hex, device_id=self.device_id, group_id=self.show["group"],
                channel_id=self.show["channel"], seq=self.seq,
                reason=Reason.ADMITTED if admitted else Reason.ALREADY_USED,
                ticket_id=ticket if admitted else 900_000 + self.seq, performance_id=self.show["performance"],
                ticket_type_id=self.show["adult"], persons=1 if admitted else 0, scanned_at=time.time(),
                offline=False, excerpt=None))
        batch = EventBatch(device_id=self.device_id, events=events)
        # what the gate agent's outbox sender publishes (gate_agent/link.py ``_send_outbox``)
        wire = seal_device(KIND_EVENTS, batch.model_dump(mode="json", exclude_none=True), self.device_id, self.key)
        return [e.event_id for e in events], wire

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            body = bytes(message.payload).partition(b"\n")[2]
            arrived = time.time()
            for eid in json.loads(body)["event_ids"]:
                self.acked.setdefault(eid, arrived)


async def drive(bench: BenchHub, token: str, gates: list[Gate], tickets: list[int],
                args: argparse.Namespace) -> dict[str, Any]:
    port = bench.broker.port
    rnd = random.Random(12)
    stream = Stream(bench.base, token)
    reader = asyncio.create_task(stream.run(max_s=args.batches * args.interval * 2 + 60))
    async with asyncio.timeout(20):
        await stream.snapshot.wait()
    clients = []
    listeners = []
    sent: list[tuple[float, list[str], Gate]] = []
    try:
        for gate in gates:
            client = aiomqtt.Client("127.0.0.1", port, identifier=gate.device_id,
                                    protocol=aiomqtt.ProtocolVersion.V5,
                                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])  # as the agent
            await client.__aenter__()
            clients.append(client)
            await client.subscribe(TOPICS.ack(gate.device_id), qos=1)
            listeners.append(asyncio.create_task(gate.listen(client)))
        await asyncio.sleep(0.5)
        for i in range(args.batches):
            gate, client = gates[i % len(gates)], clients[i % len(gates)]
            chosen: list[int | None] = [None if (i * args.events + k) % 10 == 9 or not tickets else tickets.pop()
                                        for k in range(args.events)]
            ids, wire = gate.batch(chosen)
            published = time.time()
            await client.publish(TOPICS.events(gate.device_id), wire, qos=1)
            sent.append((published, ids, gate))
            await asyncio.sleep(args.interval + rnd.random() * args.interval)
        expected = {eid for _, ids, _ in sent for eid in ids}
        try:
            async with asyncio.timeout(10):  # the last ones (or report them missing)
                while not expected <= set(stream.seen):
                    stream.changed.clear()
                    await stream.changed.wait()
        except TimeoutError:
            pass
    finally:
        for task in listeners:
            task.cancel()
        for client in clients:
            await client.__aexit__(None, None, None)
        reader.cancel()
    to_stream, to_ack, hub_to_stream, received_after_publish = [], [], [], []
    missing = 0
    for published, ids, gate in sent:
        if not all(eid in stream.seen for eid in ids):
            missing += 1
            continue
        to_stream.append((max(stream.seen[eid][0] for eid in ids) - published) * 1000)
        if all(eid in gate.acked for eid in ids):
            to_ack.append((max(gate.acked[eid] for eid in ids) - published) * 1000)
        for eid in ids:
            arrived, received = stream.seen[eid]
            hub_to_stream.append((arrived - received) * 1000)
            received_after_publish.append((received - published) * 1000)
    return {"batches_sent": len(sent), "batches_missing_on_stream": missing, "sse_events": stream.events,
            "publish_to_stream": figures(to_stream),
            "publish_to_ack": figures(to_ack),
            "publish_to_hub_received_at": figures(received_after_publish),
            "hub_received_at_to_stream": figures(hub_to_stream),
            "goal_le_1s_met": bool(to_stream) and missing == 0 and max(to_stream) <= GOAL_MS}


def health_rtt_ms(base: str, rounds: int = 100) -> dict[str, Any]:
    laps = []
    with httpx.Client(base_url=base, timeout=10) as client:
        client.get("/health").raise_for_status()
        for _ in range(rounds):
            started = time.perf_counter()
            client.get("/health").raise_for_status()
            laps.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(laps), 2), "p99_ms": pct(laps, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--events", type=int, default=5, help="scans per batch")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between publishes (plus a random 0..interval)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        bench = BenchHub(Path(tmp))
        bench.start()
        try:
            assert bench.hub is not None
            show = bench.setup_show()
            admin = httpx.Client(base_url=bench.base, headers=bench.admin_headers(), timeout=30)
            tickets = sell(admin, show, args.batches * args.events)
            gates = []
            for i in range(args.gates):
                key = nacl.signing.SigningKey.generate()
                bench.register_gate(f"live-gate-{i}", key, show["group"], show["channel"])
                gates.append(Gate(f"live-gate-{i}", key, show))
            admin.post("/users", json={"username": "manager", "password": "manager-password-1",
                                       "role": "manager"}).raise_for_status()
            token = admin.post("/auth/login", json={"username": "manager", "password": "manager-password-1"})
            token.raise_for_status()
            admin.close()
            raw_before = asyncio.run(raw_mqtt_round_trip_ms(bench.broker.port))
            health = health_rtt_ms(bench.base)
            result = asyncio.run(drive(bench, token.json()["token"], gates, tickets, args))
            raw_after = asyncio.run(raw_mqtt_round_trip_ms(bench.broker.port))
            security = bench.security_events()  # refused or quarantined batches: should be 0
        finally:
            bench.stop()
    out: dict[str, Any] = {
        "bench": "live_latency", "gates": args.gates, "batches": args.batches, "events_per_batch": args.events,
        "interval_s": f"{args.interval} + random 0..{args.interval}", "batch_kind": "device-signed, gates registered",
        "stream": "GET /api/v1/live/stream as a manager (SSE)", **result, "security_events": security,
        "raw_mqtt_qos1_rtt_ms": {"before": round(raw_before, 2), "after": round(raw_after, 2)},
        "raw_hub_health_http_rtt": health, "cpus": os.cpu_count(), "loadavg_1m_at_end": round(os.getloadavg()[0], 2)}
    s = result["publish_to_stream"]
    print(f"publish -> stream p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms "
          f"({result['batches_missing_on_stream']} batches missing)", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
