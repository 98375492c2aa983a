"""Benchmark: event batches from many simulated gates, counted only when the signed ack arrives.

    .venv/bin/python bench/hub_ingest.py [--gates 20] [--batches 15] [--admitted 3000] [--raw 20000]
    .venv/bin/python bench/hub_ingest.py --hubs 1,2 [--gates 20] [--batches 15] [--admitted 3000]

Two hub processes, one after the other, each with its own Mosquitto and the same load:

* **signed** (the product path): every simulated gate is registered at the hub with its own Ed25519 key
  (``POST /api/v1/provisioning/devices``, as ops would) and sends device-signed batches
  (:func:`protocol.device_signed.seal_device`, as ``gate_agent/link.py`` does), which the hub verifies
  under the registered key before it parses them;
* **unsigned** (the previous figure, for comparison): a hub with ``[devices] accept_unregistered = true``
  and unregistered gates sending the plain JSON batches they sent before issue 10.

The batches are built (and signed) before the clock starts: a real gate signs on its own CPU, and
``bench/gate_decision.py`` reports that cost. Also measured in the same run: the per-batch cost at the
hub measured directly (``open_device`` on one of the bench's batches, the Ed25519 verify over its bytes
alone, and the parse that follows), PyNaCl's raw Ed25519 verify of a token-sized message, and raw
paho-mqtt QoS 1 loopback throughput (one publisher, one subscriber) on the signed run's broker.
Prints one JSON object as its last line.

``--hubs 1,2`` (issue 13 item 2) runs the signed load instead against N hub processes on one PostgreSQL database
(a throwaway server the script starts) and one Mosquitto, for each N given: the hubs consume the gates' batches
through MQTT v5 shared subscriptions (``$share/hub/...``), each batch handled (stored, acked) by one of them;
events/s per configuration, with each hub's share (its own ``venue_hub_scans_total``); and, in the same run,
one hub on SQLite for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import nacl.signing
import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import ACCEPT_UNREGISTERED, BenchHub, postgres_server
from raw import raw_verify_us

from protocol.device_signed import KIND_EVENTS, _signed_bytes, open_device, seal_device
from protocol.messages import CheckinEvent, EventBatch, dump_message
from protocol.reasons import Reason
from protocol.topics import Topics

TOPICS = Topics("venue")
BATCH = 200  # events per batch, as gate_agent.link.BATCH_SIZE

Plan = list[tuple[list[str], bytes]]  # per batch: its event ids and the payload on the wire


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


def make_batches(device: str, show: dict[str, int], batches: int, admit: list[int]) -> list[EventBatch]:
    out = []
    seq = 0
    for _ in range(batches):
        events = []
        for _ in range(BATCH):
            seq += 1
            ticket = admit.pop() if admit else None
            events.append(CheckinEvent(event_id=uuid.uuid4().hex, device_id=device, group_id=show["group"],
                                       channel_id=show["channel"], seq=seq,
                                       reason=Reason.ADMITTED if ticket else Reason.ALREADY_USED,
                                       ticket_id=ticket or 100_000 + seq, performance_id=show["performance"],
                                       ticket_type_id=show["adult"], persons=1 if ticket else 0,
                                       scanned_at=time.time(), offline=True, excerpt=None))
        out.append(EventBatch(device_id=device, events=events))
    return out


def signed_wire(batch: EventBatch, key: nacl.signing.SigningKey) -> bytes:
    """What the gate agent's outbox sender publishes (gate_agent/link.py ``_send_outbox``)."""
    return seal_device(KIND_EVENTS, batch.model_dump(mode="json", exclude_none=True), batch.device_id, key)


async def one_gate(port: int, device: str, batches: Plan, acked: set[str]) -> None:
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


async def ingest(port: int, plans: dict[str, Plan]) -> dict[str, float]:
    acked: set[str] = set()
    started = time.perf_counter()
    results = await asyncio.gather(*(one_gate(port, d, b, acked) for d, b in plans.items()), return_exceptions=True)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"{len(failed)} gate(s) did not get every ack: {failed[0]!r}", file=sys.stderr)
    total = sum(len(ids) for plan in plans.values() for ids, _ in plan)
    return {"events": total, "acked": len(acked), "lost": total - len(acked), "gates_failed": len(failed),
            "seconds": round(elapsed, 2),
            "events_per_s": round(len(acked) / elapsed, 1),
            "messages_per_s": round(sum(len(p) for p in plans.values()) / elapsed, 1)}


def scans_stored(base_url: str) -> float:
    """venue_hub_scans_total summed over its labels: the events this hub process itself stored."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("venue_hub_scans_total{"))


def run_hub(workdir: Path, signed: bool, args: argparse.Namespace, database_url: str | None = None,
            hubs: int = 1) -> dict[str, Any]:
    """Hub process(es) with their own broker, the whole load, and (signed run) the raw broker figure."""
    hub = BenchHub(workdir, hub_config="" if signed else ACCEPT_UNREGISTERED, database_url=database_url, hubs=hubs)
    hub.start()
    try:
        headers = hub.admin_headers()
        show = hub.setup_show(headers)
        admit = sell(hub.base, headers, show, args.admitted)
        share = [admit[i::args.gates] for i in range(args.gates)]
        plans: dict[str, Plan] = {}
        for i in range(args.gates):
            device = f"bench-gate-{i}"
            batches = make_batches(device, show, args.batches, share[i])
            if signed:
                key = nacl.signing.SigningKey.generate()
                hub.register_gate(device, key, show["group"], show["channel"])
                plans[device] = [([e.event_id for e in b.events], signed_wire(b, key)) for b in batches]
            else:
                plans[device] = [([e.event_id for e in b.events], dump_message(b)) for b in batches]
        if hubs > 1:
            time.sleep(2.5)  # the other hubs read the registry again ([devices] registry_refresh = 2 s)
        result: dict[str, Any] = asyncio.run(ingest(hub.broker.port, plans))
        if hubs > 1:
            result["stored_per_hub"] = [scans_stored(h.base_url) for h in hub.hubs]
        result["security_events"] = hub.security_events()  # refused or quarantined batches: should be 0
        result["batch_bytes"] = len(next(iter(plans.values()))[0][1])
        if signed:
            result["raw_paho_qos1_msgs_per_s"] = round(raw_paho(hub.broker.port, args.raw), 1)
    finally:
        hub.stop()
    return result


def median_us(fn: Callable[[], object], rounds: int) -> float:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return round(statistics.median(samples) * 1e6, 1)


def per_batch_costs(rounds: int = 300) -> dict[str, Any]:
    """The hub's per-batch work on one batch of the bench's size, in-process, in microseconds."""
    show = {"group": 1, "channel": 1, "performance": 1, "adult": 1}
    batch = make_batches("bench-gate-0", show, 1, list(range(1, BATCH // 20 + 1)))[0]
    key = nacl.signing.SigningKey.generate()
    vk = key.verify_key
    wire = signed_wire(batch, key)
    unsigned = dump_message(batch)
    head, _, body = wire.partition(b"\n")
    sig = base64.b64decode(json.loads(head)["sig"])
    signed_bytes = _signed_bytes(KIND_EVENTS, "bench-gate-0", body)
    opened = open_device(wire, KIND_EVENTS, "bench-gate-0", vk)
    return {
        "batch_events": BATCH, "batch_bytes_signed": len(wire), "batch_bytes_unsigned": len(unsigned),
        # what hub/device_trust.py does with a signed batch: open_device (split, verify, json.loads) ...
        "open_device_batch_us": median_us(lambda: open_device(wire, KIND_EVENTS, "bench-gate-0", vk), rounds),
        # ... of which the Ed25519 verify over the batch's bytes alone (SHA-512 over ~all of them)
        "verify_only_batch_us": median_us(lambda: vk.verify(signed_bytes, sig), rounds),
        # ... then EventBatch.model_validate(body dict); the unsigned path parses the bytes at once instead
        "parse_after_open_us": median_us(lambda: EventBatch.model_validate(opened), rounds),
        "parse_unsigned_us": median_us(lambda: EventBatch.model_validate_json(unsigned), rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gates", type=int, default=20)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--raw", type=int, default=20000)
    parser.add_argument("--admitted", type=int, default=3000,
                        help="events admitting a real ticket (each costs a signed delta); the rest are denials")
    parser.add_argument("--unsigned-first", action="store_true",
                        help="run the unsigned hub before the signed one (to see whether the order matters)")
    parser.add_argument("--hubs", default="", help="comma-separated hub counts on PostgreSQL, e.g. 1,2 (plus one "
                                                   "hub on SQLite): events/s per configuration")
    args = parser.parse_args()
    if args.hubs:
        hub_counts(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.unsigned_first:
            unsigned = run_hub(Path(tmp) / "unsigned", False, args)
            signed = run_hub(Path(tmp) / "signed", True, args)
        else:
            signed = run_hub(Path(tmp) / "signed", True, args)
            unsigned = run_hub(Path(tmp) / "unsigned", False, args)
    costs = per_batch_costs()
    raw_us = raw_verify_us()
    raw = signed.pop("raw_paho_qos1_msgs_per_s")
    result: dict[str, Any] = {"bench": "hub_ingest", "batches": "device-signed, gates registered", **signed,
                              "admitted_events": args.admitted, "raw_paho_qos1_msgs_per_s": raw,
                              "ratio_events_to_raw": round(signed["events_per_s"] / raw, 2),
                              "unsigned": {"hub": "[devices] accept_unregistered = true, gates unregistered",
                                           **unsigned},
                              "signed_to_unsigned": round(signed["events_per_s"] / unsigned["events_per_s"], 2),
                              "order": "unsigned first" if args.unsigned_first else "signed first",
                              **costs, "raw_verify_us": round(raw_us, 1)}
    print(f"signed {signed['events_per_s']} ev/s ({signed['lost']} lost), unsigned {unsigned['events_per_s']} ev/s "
          f"({unsigned['lost']} lost); open_device {costs['open_device_batch_us']} us per {BATCH}-event batch",
          file=sys.stderr)
    print(json.dumps(result))


def hub_counts(args: argparse.Namespace) -> None:
    """``--hubs``: the signed load on SQLite (one hub), then on PostgreSQL with each number of hubs."""
    counts = [int(n) for n in args.hubs.split(",") if n.strip()]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        sqlite = run_hub(Path(tmp) / "sqlite", True, args)
        runs.append({"db": "sqlite", "hubs": 1, **sqlite})
        for n in counts:
            url = pg.create_database(f"bench_{n}_hubs")
            result = run_hub(Path(tmp) / f"pg-{n}", True, args, database_url=url, hubs=n)
            runs.append({"db": "postgres", "hubs": n, **result})
    for r in runs:
        print(f"{r['db']}, {r['hubs']} hub(s): {r['events_per_s']} ev/s ({r['lost']} lost)"
              f"{', per hub ' + str(r['stored_per_hub']) if 'stored_per_hub' in r else ''}", file=sys.stderr)
    print(json.dumps({"bench": "hub_ingest --hubs", "batches": "device-signed, gates registered",
                      "gates": args.gates, "batches_per_gate": args.batches, "events_per_batch": BATCH,
                      "admitted_events": args.admitted, "runs": runs}))


if __name__ == "__main__":
    main()
