"""Benchmark: event batches from many simulated gates, counted only when the signed ack arrives.

    .venv/bin/python bench/hub_ingest.py [--gates 20] [--batches 15] [--admitted 3000] [--raw 20000]

Also measures raw paho-mqtt QoS 1 loopback throughput (one publisher, one subscriber) on the same
broker. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aiomqtt
import httpx
import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import BenchHub

from protocol.messages import CheckinEvent, EventBatch, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics

TOPICS = Topics("venue")


def raw_paho(port: int, n: int) -> float:
    """Messages/s of QoS 1 publish -> broker -> QoS 1 subscriber, 200-byte payloads."""
    done = threading.Event()
    got = [0]

    def on_message(_c: object, _u: object, _m: object) -> None:
        got[0] += 1
        if got[0] >= n:
            done.set()

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="raw-sub", protocol=paho.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("raw/t", qos=1)
    sub.loop_start()
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="raw-pub", protocol=paho.MQTTv5)
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.3)
    payload = b"x" * 200
    started = time.perf_counter()
    for _ in range(n):
        pub.publish("raw/t", payload, qos=1)
    done.wait(60)
    elapsed = time.perf_counter() - started
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return got[0] / elapsed


def sell(base: str, headers: dict[str, str], show: dict[str, int], n: int) -> list[int]:
    """Real tickets, so that admissions make the hub count them and sign a "used" delta each."""
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        return [client.post("/tickets", json={"performance_id": show["performance"], "ticket_type_id": show["adult"],
                                              "holder_name": f"P{i}"}).raise_for_status().json()["id"]
                for i in range(n)]


def make_batches(device: str, show: dict[str, int], batches: int,
                 admit: list[int]) -> list[tuple[list[str], bytes]]:
    out = []
    seq = 0
    for _ in range(batches):
        events = []
        for _ in range(200):
            seq += 1
            ticket = admit.pop() if admit else None
            events.append(CheckinEvent(event_id=uuid.uuid4().hex, device_id=device, group_id=show["group"],
                                       channel_id=show["channel"], seq=seq,
                                       reason=Reason.ADMITTED if ticket else Reason.ALREADY_USED,
                                       ticket_id=ticket or 100_000 + seq, performance_id=show["performance"],
                                       ticket_type_id=show["adult"], persons=1 if ticket else 0,
                                       scanned_at=time.time(), offline=True, excerpt=None))
        out.append(([e.event_id for e in events], dump_message(EventBatch(device_id=device, events=events))))
    return out


async def one_gate(port: int, device: str, batches: list[tuple[list[str], bytes]], acked: set[str]) -> None:
    expected = {eid for ids, _ in batches for eid in ids}
    async with aiomqtt.Client("127.0.0.1", port, identifier=device, protocol=aiomqtt.ProtocolVersion.V5,
                              max_queued_incoming_messages=10_000) as client:
        await client.subscribe(TOPICS.ack(device), qos=1)

        async def send() -> None:
            for _ids, payload in batches:
                await client.publish(TOPICS.events(device), payload, qos=1)

        sender = asyncio.create_task(send())
        async with asyncio.timeout(60):
            async for message in client.messages:
                body = bytes(message.payload).partition(b"\n")[2]  # type: ignore[arg-type]
                acked.update(json.loads(body)["event_ids"])
                if expected <= acked:
                    break
        await sender


async def ingest(port: int, show: dict[str, int], gates: int, batches: int,
                 admit: list[int]) -> dict[str, float]:
    share = [admit[i::gates] for i in range(gates)]
    plans = {f"bench-gate-{i}": make_batches(f"bench-gate-{i}", show, batches, share[i]) for i in range(gates)}
    acked: set[str] = set()
    started = time.perf_counter()
    await asyncio.gather(*(one_gate(port, d, b, acked) for d, b in plans.items()))
    elapsed = time.perf_counter() - started
    total = gates * batches * 200
    return {"events": total, "acked": len(acked), "seconds": round(elapsed, 2),
            "events_per_s": round(len(acked) / elapsed, 1), "messages_per_s": round(gates * batches / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gates", type=int, default=20)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--raw", type=int, default=20000)
    parser.add_argument("--admitted", type=int, default=3000,
                        help="events admitting a real ticket (each costs a signed delta); the rest are denials")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = BenchHub(Path(tmp))
        hub.start()
        try:
            headers = hub.admin_headers()
            show = hub.setup_show(headers)
            admit = sell(hub.base, headers, show, args.admitted)
            result = asyncio.run(ingest(hub.broker.port, show, args.gates, args.batches, admit))
            raw = raw_paho(hub.broker.port, args.raw)
        finally:
            hub.stop()
    result.update({"bench": "hub_ingest", "admitted_events": args.admitted, "lost": result["events"] - result["acked"],
                   "raw_paho_qos1_msgs_per_s": round(raw, 1),
                   "ratio_events_to_raw": round(result["events_per_s"] / raw, 2)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
