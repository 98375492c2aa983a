"""The printer's durable job queue in one SQLite file (WAL, ``synchronous=FULL``).

A job row goes ``queued`` -> ``printing`` -> ``done``; each step is committed before the next action,
so after a crash a ``printing`` row is a job whose bytes may or may not have reached the paper: it is
finished as ``failed``/``interrupted`` (never printed twice), and ``queued`` rows are printed. Results
wait in the row (``sent = 0``) until published, so they survive a lost connection or a restart.

Schema versions (``PRAGMA user_version``, :mod:`confkit.storeschema`; a ``printer.db`` from before
versioning is version 1): 1 the first release (d3e3a2e); 2 ``jobs.set_aside``; 3 the ``meta`` key/value
table (an enrolled printer's provisioning state: :mod:`printer_agent.enrolled`). A store from a newer
release is refused (:class:`~confkit.storeschema.StoreTooNew`).

A row this code cannot use would block the queue or the results behind it: a queued job it cannot read
is finished ``failed``/``unreadable`` (that result goes to the hub; the job is not printed) and a result
it cannot build is marked ``sent = 2``; both keep the reason in ``set_aside``, are logged once at ERROR
and counted in every heartbeat (health ``outbox: error``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from confkit.storeschema import (
    META_TABLE,
    StoreSchema,
    UnknownStoreLayout,
    add_column,
    get_meta,
    open_store,
    set_meta,
    tables,
)
from protocol.printing import PrintJob, PrintResult

log = logging.getLogger(__name__)

_V1 = (  # d3e3a2e: the first release
    """CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, state TEXT NOT NULL, job TEXT NOT NULL, data BLOB,
    received_at REAL NOT NULL, status TEXT, reason TEXT, finished_at REAL, sent INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, received_at)",
)
_V2 = (add_column("jobs", "set_aside", "TEXT"),)  # why a row was set aside (None: it was not)
_V3 = (META_TABLE,)
_SET_ASIDE_RESULT = 2  # ``sent``: a result this code cannot build, never published


def _detect(conn: sqlite3.Connection) -> int:
    """A printer.db from before versioning (``user_version`` 0): the first release made only ``jobs``."""
    if "jobs" not in tables(conn):
        raise UnknownStoreLayout(f"printer.db with tables {sorted(tables(conn))[:20]} was not made by any release")
    return 1


SCHEMA = StoreSchema("printer.db", (_V1, _V2, _V3), _detect)


def _why(exc: ValidationError) -> str:
    """The first error's field and rule, never its value (a job holds a ticket token and a name)."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    if first["type"] == "json_invalid":
        return "not JSON"
    where = ".".join(str(p) for p in first["loc"])[:64] or "row"
    return f"unreadable by this release: {where}: {first['msg']}"[:200]


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
        # 0600 (print jobs carry holder names); migrated in one transaction; StoreTooNew: a newer release's
        return cls(open_store(data_dir / "printer.db", SCHEMA), printer_id)

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
        """The oldest queued job. One this code cannot read is finished ``failed``/``unreadable`` (set aside,
        reported to the hub as that result) and the next one is returned: never raises on a row."""
        while True:
            row = self._db.execute("SELECT job_id, job, data FROM jobs WHERE state = 'queued' "
                                   "ORDER BY received_at, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            job_id, body, data = row
            try:
                if not isinstance(data, bytes):
                    raise TypeError("no print data")
                return QueuedJob(PrintJob.model_validate_json(body), data)
            except ValidationError as exc:
                why = _why(exc)
            except (ValueError, TypeError) as exc:
                why = f"unreadable by this release: {type(exc).__name__}"
            self._db.execute("UPDATE jobs SET state = 'done', status = 'failed', reason = 'unreadable', "
                             "finished_at = ?, data = NULL, set_aside = ? WHERE job_id = ?", (time.time(), why, job_id))
            log.error("queued job %s set aside, not printed (reported failed/unreadable): %s", str(job_id)[:64], why)

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
        """Results not yet published, oldest first. One this code cannot build (a status of a newer release)
        is set aside (``sent = 2``, logged once at ERROR) and the next ones are returned in its place."""
        while True:
            rows = self._db.execute("SELECT job_id, status, reason, finished_at FROM jobs WHERE state = 'done' "
                                    "AND sent = 0 ORDER BY finished_at LIMIT ?", (limit,)).fetchall()
            results: list[PrintResult] = []
            bad = 0
            for job_id, status, reason, at in rows:
                try:
                    results.append(PrintResult(printer_id=self.printer_id, job_id=job_id, status=status,
                                               reason=reason, at=at))
                except ValidationError as exc:
                    bad += 1
                    why = _why(exc)
                    self._db.execute("UPDATE jobs SET sent = ?, set_aside = ? WHERE job_id = ?",
                                     (_SET_ASIDE_RESULT, why, job_id))
                    log.error("result of job %s set aside, not sent to the hub: %s", str(job_id)[:64], why)
            if not bad:
                return results

    def set_aside_count(self) -> int:
        """Rows set aside (unreadable jobs, unsendable results): in every heartbeat, health ``outbox: error``."""
        return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE set_aside IS NOT NULL").fetchone()[0])

    def mark_sent(self, job_id: str) -> None:
        self._db.execute("UPDATE jobs SET sent = 1 WHERE job_id = ?", (job_id,))

    def get_meta(self, key: str) -> str | None:
        return get_meta(self._db, key)

    def set_meta(self, **values: str) -> None:
        """Store ``key=value`` pairs in ``meta`` in one committed transaction."""
        set_meta(self._db, values)

    def result_of(self, job_id: str) -> tuple[str | None, str | None]:
        row = self._db.execute("SELECT status, reason FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])
