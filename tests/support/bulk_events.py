"""Check-in events written straight into a hub's SQLite file, in bulk: for exports and benchmarks that need
hundreds of thousands of rows (sending them through gates would take hours). The hub may be running: SQLite
in WAL mode lets this process write while the hub reads."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

COLUMNS = ("event_id", "device_id", "group_id", "channel_id", "device_seq", "reason", "ticket_id", "performance_id",
           "ticket_type_id", "persons", "direction", "offline", "source", "scanned_at", "received_at", "conflict",
           "credit", "unlisted", "forced_by")
DEVICES = ("gate-a1", "gate-a2", "handheld-7")


def add_events(db: Path, *, count: int, performance_id: int, group_id: int, channel_ids: list[int],
               ticket_type_id: int, start: float, every: float = 0.05, chunk: int = 50_000) -> dict[str, int]:
    """``count`` events from ``start`` on, ``every`` seconds apart: every tenth one refused (already_used),
    every fifth offline, spread over ``channel_ids`` and three devices. Returns the counts by reason."""
    counts = {"admitted": 0, "already_used": 0}
    sql = f"INSERT INTO checkin_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute("PRAGMA busy_timeout=30000")
        rows = []
        for i in range(count):
            reason = "already_used" if i % 10 == 9 else "admitted"
            counts[reason] += 1
            at = start + i * every
            rows.append((uuid.uuid4().hex, DEVICES[i % len(DEVICES)], group_id, channel_ids[i % len(channel_ids)], i,
                         reason, 1_000_000 + i, performance_id, ticket_type_id, 1, "entry", int(i % 5 == 0), "qr",
                         at, at + 0.2, 0, 0, 0, None))
            if len(rows) >= chunk:
                conn.executemany(sql, rows)
                rows.clear()
        if rows:
            conn.executemany(sql, rows)
    return counts
