#!/usr/bin/env python3
"""Gate decision latency: scanned line -> actuator call, through the real checker and store.

Covers decode + Ed25519 verify + entry lookup + the gate's own unechoed usage + validate with the
full rule set active (venue time zone, performance schedule with tolerances, latecomers, weekdays and
date range, entries in all and per venue day, cool-down, exit first, a narrowed ticket type) + the
durable journal commit (SQLite WAL, synchronous=FULL), next to PyNaCl's raw verify time measured in
the same run. A third of the tickets arrive already used elsewhere (usage in their entry), and every
ticket is scanned twice, so the second scan meets its own unechoed entry and is refused by a rule.

Also, NOT in the decision path: the gate-side cost of signing one outgoing event batch (issue 10). The
outbox sender (``gate_agent/link.py`` ``_send_outbox``) signs later, off the scan: it takes up to
``BATCH_SIZE`` pending events from the store, dumps them and seals them with the device's own key
(``seal_device``). Timed here on the first ``BATCH_SIZE`` events this run's scans left in the outbox:
the seal alone (JSON encoding of the body + Ed25519 sign), the sign alone, and the dump plus seal (what
the sender does per batch), per batch and per event, next to PyNaCl's raw sign of a token-sized message.

    .venv/bin/python bench/gate_decision.py [--entries 10000,100000] [--scans 3000]

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate_agent.checkin import Checker, Station
from gate_agent.link import BATCH_SIZE
from gate_agent.store import Store
from protocol.decision import Decision
from protocol.device_signed import KIND_EVENTS, _signed_bytes, seal_device
from protocol.keys import Keyring, Signer
from protocol.messages import CheckinEvent, EventBatch
from protocol.rules import EntryRules
from protocol.token import TicketToken, encode_token, parse_token
from protocol.usage import Usage
from protocol.whitelist import ChannelRules, GroupRules, Schedule, WhitelistEntry


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


def full_rules(now: float) -> GroupRules:
    """Every rule switched on, none of them refusing a first entry now."""
    adult = EntryRules(max_entries=3, entries_per_day=2, cooldown_minutes=1, exit_required=True,
                       before_doors_minutes=30, after_end_minutes=30, latecomers=False,
                       weekdays=frozenset(range(1, 8)), date_from="2026-01-01", date_until="2106-01-01",
                       excluded_dates=frozenset({"2026-12-24", "2026-12-25"}))
    vip = EntryRules(max_entries=5, entries_per_day=3, reentry=True)
    channels = {1: ChannelRules(1, frozenset({3, 4}), 3, "Gate A", adult, {4: vip}),
                2: ChannelRules(2, frozenset({3}), 1, "Gate C", EntryRules())}
    schedule = {42: Schedule(int(now - 600), int(now + 3600), int(now + 3 * 3600))}
    return GroupRules(1, frozenset({42}), channels, "Asia/Shanghai", schedule)


def entry(i: int) -> WhitelistEntry:
    e = WhitelistEntry(i, 42, 3)
    if i % 3 == 0:  # used once at another gate yesterday, and left
        return e.with_usage(Usage(entries=1, exits=1, last_entry=1, last_exit=2, day=20260101, day_entries=1))
    return e


async def run(n_entries: int, n_scans: int, data_dir: Path) -> dict[str, Any]:
    logging.disable(logging.INFO)  # the daemon logs at INFO; measure the decision, not the log sink
    signer = Signer.generate(1)
    keyring = Keyring.of(signer)
    now = time.time()
    rules = full_rules(now)
    with Store.open(data_dir) as store:
        t_install = time.perf_counter()
        store.install_snapshot(1, 1, rules, (entry(i) for i in range(1, n_entries + 1)))
        install_s = time.perf_counter() - t_install
        actuator = TimingActuator()
        checker = Checker(Station("bench", 1, 1), store, keyring, actuator)
        ids = [1 + (i * 7919) % n_entries for i in range(n_scans // 2)]
        tokens = [encode_token(TicketToken(t, 42, 3, int(now - 60), int(now + 3600)), signer)
                  for t in ids + ids]  # each ticket twice: the second meets its own unechoed entry
        for text in tokens[:50]:  # warm-up
            await checker.scan(text)
        lat = []
        admitted = 0
        t_all = time.perf_counter()
        for text in tokens[50:]:
            t0 = time.perf_counter()
            event = await checker.scan(text)
            lat.append((actuator.called_at - t0) * 1000)
            admitted += event.admitted
        elapsed = time.perf_counter() - t_all
        outbox = store.pending(BATCH_SIZE)  # what the outbox sender would send next
    sign = outbox_signing(outbox)
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
            "ratio_to_raw": round(p50 * 1000 / raw_us, 1), "p99_ratio_to_raw": round(pct(lat, 0.99) * 1000 / raw_us, 1),
            "entries": n_entries, "scans": len(lat), "admitted": admitted, "refused": len(lat) - admitted,
            "install_s": round(install_s, 2), "outbox_sign_not_in_decision_path": sign}


def median_us(fn: Callable[[], Any], rounds: int) -> float:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def outbox_signing(events: list[CheckinEvent], rounds: int = 300) -> dict[str, float]:
    """What the outbox sender spends signing one batch of ``events`` (after the decisions, not in them)."""
    key = nacl.signing.SigningKey.generate()
    device = events[0].device_id
    batch = EventBatch(device_id=device, events=events)
    body = batch.model_dump(mode="json", exclude_none=True)
    seal_us = median_us(lambda: seal_device(KIND_EVENTS, body, device, key), rounds)
    dump_seal_us = median_us(lambda: seal_device(KIND_EVENTS, batch.model_dump(mode="json", exclude_none=True),
                                                 device, key), rounds)
    wire = seal_device(KIND_EVENTS, body, device, key)
    signed = _signed_bytes(KIND_EVENTS, device, wire.partition(b"\n")[2])
    sign_only_us = median_us(lambda: key.sign(signed), rounds)  # the Ed25519 part of the seal
    raw_sign_us = median_us(lambda: key.sign(b"x" * 37), 2000)
    n = len(events)
    return {"batch_events": n, "batch_bytes": len(wire),
            "seal_batch_us": round(seal_us, 1), "seal_per_event_us": round(seal_us / n, 2),
            "sign_only_batch_us": round(sign_only_us, 1),
            "dump_and_seal_batch_us": round(dump_seal_us, 1), "dump_and_seal_per_event_us": round(dump_seal_us / n, 2),
            "raw_sign_us": round(raw_sign_us, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", default="10000,100000", help="whitelist sizes, comma-separated")
    parser.add_argument("--scans", type=int, default=3_000)
    args = parser.parse_args()
    sizes = [int(x) for x in args.entries.split(",")]
    runs = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(asyncio.run(run(n, args.scans, Path(tmp))))
    result = {**runs[0], "rules": "full"}
    for extra in runs[1:]:
        result[f"at_{extra['entries']}"] = {k: extra[k] for k in ("p50_ms", "p99_ms", "max_ms", "per_s",
                                                                  "ratio_to_raw", "install_s")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
