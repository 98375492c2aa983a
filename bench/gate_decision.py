#!/usr/bin/env python3
"""Gate decision latency: scanned line -> actuator call, through the real checker and store.

Covers decode + Ed25519 verify + entry lookup + validate + the durable journal commit
(SQLite WAL, synchronous=FULL), next to PyNaCl's raw verify time measured in the same run.

    .venv/bin/python bench/gate_decision.py [--entries 10000] [--scans 3000]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate_agent.checkin import Checker, Station
from gate_agent.store import Store
from protocol.decision import Decision
from protocol.keys import Keyring, Signer
from protocol.token import TicketToken, encode_token, parse_token
from protocol.whitelist import ChannelRules, GroupRules, WhitelistEntry


class TimingActuator:
    """Records when it was called."""

    def __init__(self) -> None:
        self.called_at = 0.0

    async def admit(self, decision: Decision) -> None:
        self.called_at = time.perf_counter()

    async def reject(self, decision: Decision) -> None:
        self.called_at = time.perf_counter()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def run(n_entries: int, n_scans: int, data_dir: Path) -> dict[str, float]:
    logging.disable(logging.INFO)  # the daemon logs at INFO; measure the decision, not the log sink
    signer = Signer.generate(1)
    keyring = Keyring.of(signer)
    now = time.time()
    rules = GroupRules(1, frozenset({42}), {1: ChannelRules(1, frozenset({3}))})
    with Store.open(data_dir) as store:
        store.install_snapshot(1, 1, rules, (WhitelistEntry(i, 42, 3) for i in range(1, n_entries + 1)))
        actuator = TimingActuator()
        checker = Checker(Station("bench", 1, 1), store, keyring, actuator)
        tokens = [encode_token(TicketToken(1 + (i * 7919) % n_entries, 42, 3, int(now - 60), int(now + 3600)), signer)
                  for i in range(n_scans)]
        for text in tokens[:50]:  # warm-up
            await checker.scan(text)
        lat = []
        t_all = time.perf_counter()
        for text in tokens[50:]:
            t0 = time.perf_counter()
            await checker.scan(text)
            lat.append((actuator.called_at - t0) * 1000)
        elapsed = time.perf_counter() - t_all
    # raw PyNaCl verify of the same token bytes
    _token, message, sig = parse_token(tokens[0])
    key = signer.key.verify_key
    raw = []
    for _ in range(2000):
        t0 = time.perf_counter()
        key.verify(message, sig)
        raw.append((time.perf_counter() - t0) * 1e6)
    raw_us = statistics.median(raw)
    p50 = pct(lat, 0.50)
    return {"p50_ms": round(p50, 3), "p99_ms": round(pct(lat, 0.99), 3), "max_ms": round(max(lat), 3),
            "per_s": round(len(lat) / elapsed), "raw_verify_us": round(raw_us, 1),
            "ratio_to_raw": round(p50 * 1000 / raw_us, 1), "entries": n_entries, "scans": len(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--scans", type=int, default=3_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args.entries, args.scans, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
