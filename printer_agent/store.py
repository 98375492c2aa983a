"""The printer's durable job queue in one SQLite file (WAL, ``synchronous=FULL``).

A job row goes ``queued`` -> ``printing`` -> ``done``; each step is committed before the next action,
so after a crash a ``printing`` row is a job whose bytes may or may not have reached the paper: it is
finished as ``failed``/``interrupted`` (never printed twice), and ``queued`` rows are printed. Results
wait in the row (``sent = 0``) until published, so they survive a lost connection or a restart.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from protocol.printing import PrintJob, PrintResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, state TEXT NOT NULL, job TEXT NOT NULL, data BLOB,
    received_at REAL NOT NULL, status TEXT, reason TEXT, finished_at REAL, sent INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, received_at);
"""


def private_sqlite(path: Path) -> None:
    """Create ``path`` 0600 if missing and make it and its -wal/-shm files 0600 (they hold personal data)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            os.chmod(part, 0o600)


@dataclass(frozen=True)
class QueuedJob:
    job: PrintJob
    data: bytes


class JobStore:
    """The queue. Use as a context manager, or call :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, printer_id: str) -> None:
        self._db = conn
        self.printer_id = printer_id

    @classmethod
    def open(cls, data_dir: Path, printer_id: str) -> JobStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        private_sqlite(data_dir / "printer.db")  # 0600: print jobs carry holder names
        conn = sqlite3.connect(data_dir / "printer.db", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        private_sqlite(data_dir / "printer.db")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        return cls(conn, printer_id)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def known(self, job_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None

    def enqueue(self, job: PrintJob, data: bytes, now: float) -> bool:
        """Store a verified job to print; False if its job_id was seen before (a duplicate)."""
        cur = self._db.execute("INSERT OR IGNORE INTO jobs (job_id, state, job, data, received_at) "
                               "VALUES (?, 'queued', ?, ?, ?)", (job.job_id, job.model_dump_json(), data, now))
        return cur.rowcount == 1

    def finish_unqueued(self, job: PrintJob, status: str, reason: str, now: float) -> bool:
        """Record a verified job that will not be printed (refused); False if seen before."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO jobs (job_id, state, job, received_at, status, reason, finished_at) "
            "VALUES (?, 'done', ?, ?, ?, ?, ?)", (job.job_id, job.model_dump_json(), now, status, reason, now))
        return cur.rowcount == 1

    def next_queued(self) -> QueuedJob | None:
        row = self._db.execute("SELECT job, data FROM jobs WHERE state = 'queued' ORDER BY received_at, rowid "
                               "LIMIT 1").fetchone()
        return None if row is None else QueuedJob(PrintJob.model_validate_json(row[0]), bytes(row[1]))

    def mark_printing(self, job_id: str) -> None:
        self._db.execute("UPDATE jobs SET state = 'printing' WHERE job_id = ? AND state = 'queued'", (job_id,))

    def finish(self, job_id: str, status: str, reason: str | None, now: float) -> None:
        self._db.execute("UPDATE jobs SET state = 'done', status = ?, reason = ?, finished_at = ?, data = NULL "
                         "WHERE job_id = ?", (status, reason, now, job_id))

    def recover(self, now: float) -> list[str]:
        """After a restart: jobs caught while printing become failed/interrupted. Returns their ids."""
        ids = [r[0] for r in self._db.execute("SELECT job_id FROM jobs WHERE state = 'printing'")]
        for job_id in ids:
            self.finish(job_id, "failed", "interrupted", now)
        return ids

    def queue_depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE state != 'done'").fetchone()[0])

    def unsent_results(self, limit: int = 100) -> list[PrintResult]:
        rows = self._db.execute("SELECT job_id, status, reason, finished_at FROM jobs WHERE state = 'done' "
                                "AND sent = 0 ORDER BY finished_at LIMIT ?", (limit,)).fetchall()
        return [PrintResult(printer_id=self.printer_id, job_id=r[0], status=r[1], reason=r[2], at=r[3])
                for r in rows]

    def mark_sent(self, job_id: str) -> None:
        self._db.execute("UPDATE jobs SET sent = 1 WHERE job_id = ?", (job_id,))

    def result_of(self, job_id: str) -> tuple[str | None, str | None]:
        row = self._db.execute("SELECT status, reason FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])
