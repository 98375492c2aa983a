"""Benchmark: a 100,000-ticket whitelist from the hub to a gate.

    .venv/bin/python bench/whitelist_sync.py [--tickets 100000]

Hub side (this process): build and sign the group's snapshot from a real SQLite sales database with
the hub's own service. Wire: publish it QoS 1 through a real Mosquitto. Gate side (a separate
process, like the daemon): receive it, verify the signature, install it atomically into the gate's
SQLite store, then report the time of each step and its resident memory. Next to these, the raw
limits measured in the same run: PyNaCl Ed25519 verify of a small message and a small QoS 1 broker
round trip. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.raw import raw_mqtt_round_trip_ms, raw_verify_us  # noqa: E402
from hub.db import Database, make_engine, migrate  # noqa: E402
from hub.services import catalog, whitelist  # noqa: E402
from hub.services.context import SYSTEM, HubContext  # noqa: E402
from hub.tables import tickets  # noqa: E402
from protocol.keys import Signer  # noqa: E402
from protocol.topics import Topics  # noqa: E402
from tests.support.broker import Mosquitto  # noqa: E402

GATE_SIDE = """
import asyncio, json, sys, time
from pathlib import Path
import aiomqtt, psutil
import gate_agent.app  # everything the daemon imports
from gate_agent import sync
from gate_agent.store import Store
from protocol.keys import Keyring

async def main(port, topic, data_dir, key_b64):
    keyring = Keyring.from_b64({1: key_b64})
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic, qos=1)
        print("ready", flush=True)
        async for message in client.messages:
            received = time.time()
            payload = bytes(message.payload)
            break
    with Store.open(Path(data_dir)) as store:
        t0 = time.perf_counter()
        kind, body = sync.verify(payload, keyring)
        t1 = time.perf_counter()
        outcome = sync.apply(kind, body, store, 1)
        t2 = time.perf_counter()
        del body, payload
        print(json.dumps({"received_at": received, "verify_s": t1 - t0, "install_s": t2 - t1,
                          "outcome": str(outcome), "entries": store.entry_count(),
                          "rss_mb": psutil.Process().memory_info().rss / 2**20}), flush=True)

asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
"""


def hub_with_tickets(workdir: Path, n: int) -> tuple[HubContext, int]:
    engine = make_engine(f"sqlite:///{workdir}/hub.db")
    migrate(engine)
    ctx = HubContext(Database(engine), Signer.generate(kid=1))
    now = datetime.now(UTC)
    venue = catalog.create_venue(ctx, SYSTEM, "Grand Theatre")
    perf = catalog.create_performance(ctx, SYSTEM, venue["id"], "Teahouse", now, now + timedelta(hours=1),
                                      now + timedelta(hours=3))
    ttype = catalog.create_ticket_type(ctx, SYSTEM, "Adult", "成人票", 18000)
    group = catalog.create_group(ctx, SYSTEM, "Hall", venue["id"], [perf["id"]])
    catalog.create_channel(ctx, SYSTEM, group["id"], "Gate A", [ttype["id"]], 1)
    rows = [{"performance_id": perf["id"], "ticket_type_id": ttype["id"], "persons": 1 + i % 4,
             "holder_name": f"patron {i}", "status": "refunded" if i % 50 == 0 else "valid",
             "used": 0, "token": "-", "created_at": 0.0} for i in range(n)]
    with ctx.db.write() as conn:
        conn.execute(tickets.insert(), rows)
    return ctx, group["id"]


async def publish(port: int, topic: str, payload: bytes) -> float:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        started = time.time()
        await client.publish(topic, payload, qos=1)
        return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        broker.start()
        gate = None
        try:
            ctx, group_id = hub_with_tickets(work, args.tickets)
            t0 = time.perf_counter()
            envelope = whitelist.snapshot(ctx, group_id)
            build_s = time.perf_counter() - t0
            topic = Topics().device_whitelist("bench-gate")
            gate = subprocess.Popen([sys.executable, "-c", GATE_SIDE, str(broker.port), topic, str(work / "gate"),
                                     ctx.signer.public_key_b64], stdout=subprocess.PIPE, text=True, cwd=ROOT)
            assert gate.stdout is not None
            assert gate.stdout.readline().strip() == "ready"
            sent_at = asyncio.run(publish(broker.port, topic, envelope))
            result = json.loads(gate.stdout.readline())
            gate.wait(30)
            raw_rtt = asyncio.run(raw_mqtt_round_trip_ms(broker.port))
        finally:
            if gate and gate.poll() is None:
                gate.kill()
            broker.stop()
    assert result["entries"] == args.tickets and result["outcome"] == "installed", result
    figures = {
        "bench": "whitelist_sync", "tickets": args.tickets,
        "build_sign_s": round(build_s, 3), "wire_bytes": len(envelope),
        "transfer_s": round(result["received_at"] - sent_at, 3),
        "verify_s": round(result["verify_s"], 3), "install_s": round(result["install_s"], 3),
        "gate_rss_mb": round(result["rss_mb"], 1),
        "raw_verify_us": round(raw_verify_us(), 1), "raw_mqtt_rtt_ms": round(raw_rtt, 2),
        "goal": {"build_sign_s": 1.0, "verify_install_s": 2.0, "gate_rss_mb": 60},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
