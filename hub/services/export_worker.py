"""One report export in a child process, so writing a 1,000,000-row file never competes with the hub's event
loop for the interpreter (in a worker thread it took /health from 1 ms to 150-370 ms: docs/benchmarks.md).

    worker = ExportWorker.start(engine_url, "checkin_detail", "xlsx", filters, path, now)
    while worker.running(0.2):
        job.rows_done, job.rows_total = worker.progress()      # shared counters, no pipe to drain
        if cancelled: worker.cancel()                          # the child stops at its next progress call
    worker.outcome()                                           # "done" | "cancelled" | "failed"

The child is started with ``spawn`` (a fresh interpreter: forking a process with an event loop and threads is
unsafe), opens its own engine from the database URL and reads in one transaction, as the thread did. A child
that dies (killed, out of memory) is a failed export with its exit code in the hub's log; its traceback, if
any, goes to the hub's stderr (journald under systemd).
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
EXIT_CANCELLED = 3
Outcome = Literal["done", "cancelled", "failed"]


def _child(url: str, report: str, fmt: str, filters_json: str, path: str, now: float, done: Any, total: Any,
           cancel: Any) -> None:
    # imported here: the hub's process has them already; the child pays for them once, off the hub's loop
    from hub.db import Database, make_engine
    from hub.services.report_export import Cancelled, export_to_file
    from hub.services.reports import ReportFilters

    logging.basicConfig(level=logging.WARNING, format="report export worker: %(levelname)s %(name)s: %(message)s")

    def progress(rows: int, of: int | None) -> None:
        if cancel.is_set():
            raise Cancelled
        done.value, total.value = rows, -1 if of is None else of

    db = Database(make_engine(url))
    try:
        rows = export_to_file(db, report, fmt, ReportFilters.model_validate_json(filters_json), Path(path),
                              progress, now)
        done.value = rows
    except Cancelled:
        sys.exit(EXIT_CANCELLED)
    finally:
        db.dispose()


@dataclass
class ExportWorker:
    process: BaseProcess
    _done: Any
    _total: Any
    _cancel: Any

    @classmethod
    def start(cls, url: str, report: str, fmt: str, filters_json: str, path: Path, now: float) -> ExportWorker:
        done, total, cancel = _SPAWN.Value("q", 0), _SPAWN.Value("q", -1), _SPAWN.Event()
        process = _SPAWN.Process(target=_child, name=f"report-export-{path.stem[:8]}", daemon=True,
                                 args=(url, report, fmt, filters_json, str(path), now, done, total, cancel))
        process.start()
        return cls(process, done, total, cancel)

    def running(self, wait: float) -> bool:
        self.process.join(wait)
        return self.process.is_alive()

    def progress(self) -> tuple[int, int | None]:
        total = int(self._total.value)
        return int(self._done.value), None if total < 0 else total

    def cancel(self) -> None:
        self._cancel.set()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def outcome(self) -> Outcome:
        code = self.process.exitcode
        if code == 0:
            return "done"
        if code == EXIT_CANCELLED:
            return "cancelled"
        log.error("report export worker %s ended with exit code %s", self.process.name, code)
        return "failed"
