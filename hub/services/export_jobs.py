"""Export jobs: a report written to a file by a child process (followed from a pool thread), never on the
event loop nor in the hub's interpreter.

    jobs = ExportJobs(ctx, data_dir / "exports")
    job = jobs.start(who, "checkin_detail", "xlsx", ReportFilters(performance_id=1))   # queued at once
    jobs.get(who, job.id).rows_done                                                     # progress
    path, filename, media_type = jobs.file(who, job.id)                                 # once it is done

* ``MAX_RUNNING`` exports run at a time (worker threads: the hub has two cores); at most ``MAX_ACTIVE``
  exports are queued or running per hub and ``MAX_PER_USER`` per user, beyond that ``start`` refuses with
  429 (wait for one to finish, or cancel it).
* Files go to ``<data dir>/exports`` (0700), each file 0600, named by a random export id; a file is deleted
  ``KEEP_SECONDS`` after its export finished, or when it is cancelled.
* Nothing survives a restart: jobs live in this process's memory, and the directory is emptied when the
  hub's first export request makes this registry.
* Only the user who started an export (or an admin) sees it; for anyone else it does not exist (404).
* A download link (``ticket``): a one-time, short-lived token in the URL, so the browser streams a big
  file to disk itself; the bearer token never goes into a URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hub.errors import KioskError
from hub.services import reports
from hub.services.context import HubContext, Principal
from hub.services.export_worker import ExportWorker
from hub.services.report_export import REPORTS
from hub.services.reports import ReportFilters
from protocol.localtime import zone

log = logging.getLogger(__name__)

MAX_RUNNING = 2
MAX_ACTIVE = 4
MAX_PER_USER = 2
KEEP_SECONDS = 3600.0
TICKET_SECONDS = 60.0
SWEEP_EVERY = 60.0
PROGRESS_POLL = 0.2  # seconds between reads of a running export's row counter
State = Literal["queued", "running", "done", "failed", "cancelled"]
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}
_FILE_NAMES = {"checkin_summary": "checkin-summary", "checkin_detail": "checkin-detail", "sales": "sales-summary"}


class ExportRefused(KioskError):
    """Coded and bilingual (``detail``, ``detail_zh``, ``code``), rendered by hub/app.py like a kiosk refusal."""


def _not_found(export_id: str) -> ExportRefused:
    return ExportRefused(404, "export_not_found",
                         f"There is no export {export_id[:40]} of yours (exports are kept 1 hour and not across a "
                         "hub restart); start the export again",
                         "没有找到您的这个导出文件(导出文件保留 1 小时,中心服务器重启后不保留),请重新导出")


@dataclass
class ExportJob:
    id: str
    user_id: int | None
    username: str
    report: str
    format: str
    filters: ReportFilters
    created_at: float
    path: Path
    state: State = "queued"
    rows_done: int = 0
    rows_total: int | None = None
    size: int | None = None
    error: str | None = None
    error_zh: str | None = None
    finished_at: float | None = None
    timezone: str = "UTC"  # the venue's: the file name's date and time
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def filename(self) -> tuple[str, str]:
        """(Chinese, ASCII) file names: 检票明细表-20261202-1930.xlsx, checkin-detail-20261202-1930.xlsx."""
        stamp = dt.datetime.fromtimestamp(self.created_at, zone(self.timezone)).strftime("%Y%m%d-%H%M")
        return (f"{REPORTS[self.report][0]}-{stamp}.{self.format}",
                f"{_FILE_NAMES[self.report]}-{stamp}.{self.format}")

    def owned_by(self, who: Principal) -> bool:
        return who.role == "admin" or (who.user_id == self.user_id and who.username == self.username)


class ExportJobs:
    """The hub's export jobs (one registry per hub process)."""

    def __init__(self, ctx: HubContext, directory: Path, *, max_running: int = MAX_RUNNING,
                 max_active: int = MAX_ACTIVE, max_per_user: int = MAX_PER_USER, keep_seconds: float = KEEP_SECONDS,
                 clock: Callable[[], float] = time.time, sweep_every: float = SWEEP_EVERY) -> None:
        self.ctx, self.directory, self.clock = ctx, directory, clock
        self.max_active, self.max_per_user, self.keep_seconds = max_active, max_per_user, keep_seconds
        self._jobs: dict[str, ExportJob] = {}
        self._tickets: dict[str, tuple[str, float]] = {}  # sha256(ticket) -> (export id, valid until)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if directory.exists():  # files of a previous run: their jobs are gone with it
            shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self._pool = ThreadPoolExecutor(max_running, thread_name_prefix="report-export")
        self._sweeper = threading.Thread(target=self._sweep_loop, args=(sweep_every,), name="export-sweeper",
                                         daemon=True)
        self._sweeper.start()

    # ---- jobs ----------------------------------------------------------------------------------------

    def start(self, who: Principal, report: str, fmt: str, filters: ReportFilters) -> ExportJob:
        """Queue an export (429 if the hub or this user has too many under way) and audit it."""
        if report not in REPORTS or fmt not in MEDIA_TYPES:
            raise ExportRefused(422, "export_invalid", f"unknown report {report!r} or format {fmt!r}",
                                "未知的报表或文件格式")
        self.sweep()
        with self.ctx.db.read() as conn:
            timezone = reports.venue_timezone(conn, filters)
        with self._lock:
            active = [j for j in self._jobs.values() if j.active]
            mine = [j for j in active if j.user_id == who.user_id and j.username == who.username]
            if len(mine) >= self.max_per_user:
                raise ExportRefused(429, "exports_busy_user",
                                    f"You already have {len(mine)} exports under way (at most {self.max_per_user}); "
                                    "wait for one to finish or cancel it, then export again",
                                    f"您已有 {len(mine)} 个导出正在进行(最多 {self.max_per_user} 个),"
                                    "请等待完成或取消后再导出", retry_after=10)
            if len(active) >= self.max_active:
                raise ExportRefused(429, "exports_busy_hub",
                                    f"The hub is already writing {len(active)} exports (at most {self.max_active}); "
                                    "try again in a minute",
                                    f"中心服务器正在生成 {len(active)} 个导出(最多 {self.max_active} 个),"
                                    "请一分钟后再试", retry_after=30)
            export_id = secrets.token_hex(16)
            job = ExportJob(export_id, who.user_id, who.username, report, fmt, filters, self.clock(),
                            self.directory / f"{export_id}.{fmt}", timezone=timezone)
            self._jobs[export_id] = job
        with self.ctx.db.write() as conn:
            self.ctx.audit(conn, who, "report.export", f"{report}.{fmt}",
                           f"export {export_id}; filters {filters.model_dump_json(exclude_none=True)}")
        self._pool.submit(self._run, job)
        return job

    def _run(self, job: ExportJob) -> None:
        """In a pool thread: start the export's child process (hub.services.export_worker) and follow it."""
        if job.cancel.is_set() or self._closed.is_set():
            self._finish(job, "cancelled")
            return
        job.state = "running"
        # the child writes in a directory of its own: XlsxWriter's temporary files go there too, and a child
        # that is killed leaves nothing behind once it is removed
        work = job.path.with_name(job.path.name + ".work")
        partial = work / job.path.name
        worker: ExportWorker | None = None
        outcome: State = "failed"
        try:
            work.mkdir(mode=0o700)
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # writers keep the mode
            url = self.ctx.db.engine.url.render_as_string(hide_password=False)
            worker = ExportWorker.start(url, job.report, job.format, job.filters.model_dump_json(), partial,
                                        self.clock())
            while worker.running(PROGRESS_POLL):
                job.rows_done, job.rows_total = worker.progress()
                if job.cancel.is_set() or self._closed.is_set():
                    worker.cancel()
            job.rows_done, job.rows_total = worker.progress()  # the last count, written as the child ended
            outcome = worker.outcome()
            if outcome == "done":
                os.replace(partial, job.path)
                job.size = job.path.stat().st_size
            elif outcome == "failed":
                job.error = "The export failed; try again, and if it fails again tell ops (the hub's log has why)"
        except Exception as exc:  # the user sees what to do; the log has the traceback
            log.exception("export %s (%s %s) failed", job.id, job.report, job.format)
            job.error = f"The export failed ({type(exc).__name__}); try again, and if it fails again tell ops"
        finally:
            if worker is not None:
                worker.kill()  # only if still alive (this thread was interrupted)
            shutil.rmtree(work, ignore_errors=True)
        if outcome == "failed":
            job.error_zh = "导出失败,请重试;如仍失败请联系运维人员"
        self._finish(job, outcome)

    def _finish(self, job: ExportJob, state: State) -> None:
        job.state, job.finished_at = state, self.clock()
        if state != "done":
            job.path.unlink(missing_ok=True)

    def get(self, who: Principal, export_id: str) -> ExportJob:
        with self._lock:
            job = self._jobs.get(export_id)
        if job is None or not job.owned_by(who):
            raise _not_found(export_id)
        return job

    def file(self, who: Principal | None, export_id: str) -> ExportJob:
        """The finished job whose file may be sent (``who`` None: a download ticket vouched for it)."""
        with self._lock:
            job = self._jobs.get(export_id)
        if job is None or (who is not None and not job.owned_by(who)):
            raise _not_found(export_id)
        if job.state != "done":
            raise ExportRefused(409, "export_not_ready",
                                f"The export is {job.state}, not done; wait until its progress reaches the end"
                                if job.active else f"The export is {job.state}; start it again",
                                "导出尚未完成,请等待进度完成" if job.active else "此导出未完成,请重新导出")
        if not job.path.is_file():
            raise _not_found(export_id)
        return job

    def cancel(self, who: Principal, export_id: str) -> ExportJob:
        """Stop an export under way (its partial file is deleted), or delete a finished one's file."""
        job = self.get(who, export_id)
        job.cancel.set()
        if not job.active:
            with self._lock:
                self._jobs.pop(job.id, None)
            job.path.unlink(missing_ok=True)
            if job.state == "done":
                job.state = "cancelled"
        return job

    # ---- download tickets ----------------------------------------------------------------------------

    def ticket(self, who: Principal, export_id: str) -> tuple[str, float]:
        """A one-time download token for a finished export, valid ``TICKET_SECONDS``: (token, valid until)."""
        job = self.file(who, export_id)
        token = secrets.token_urlsafe(24)
        until = self.clock() + TICKET_SECONDS
        with self._lock:
            self._tickets[hashlib.sha256(token.encode()).hexdigest()] = (job.id, until)
        return token, until

    def redeem(self, export_id: str, token: str) -> ExportJob:
        """The export a ticket is for; the ticket is used up (a second download needs a new one)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            found = self._tickets.pop(digest, None)
        if found is None or found[0] != export_id or found[1] < self.clock():
            raise ExportRefused(403, "download_ticket_invalid",
                                "This download link is used up or expired (links work once, for a minute); "
                                "click the download button again",
                                "下载链接已使用或已过期(每个链接只能使用一次,一分钟内有效),请重新点击下载")
        return self.file(None, export_id)

    # ---- clean-up ------------------------------------------------------------------------------------

    def sweep(self) -> None:
        """Forget exports finished more than ``keep_seconds`` ago (deleting their files) and stale tickets."""
        now = self.clock()
        with self._lock:
            old = [j for j in self._jobs.values()
                   if not j.active and j.finished_at is not None and now - j.finished_at > self.keep_seconds]
            for job in old:
                del self._jobs[job.id]
            self._tickets = {k: v for k, v in self._tickets.items() if v[1] >= now}
        for job in old:
            job.path.unlink(missing_ok=True)

    def _sweep_loop(self, every: float) -> None:
        while not self._closed.wait(every):
            try:
                self.sweep()
            except Exception:
                log.exception("sweeping old exports failed; will retry")

    def close(self) -> None:
        """Stop every export and delete every file (hub shutdown)."""
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.directory, ignore_errors=True)
