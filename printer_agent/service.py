"""Accepting and printing jobs: no MQTT here (pretix-style service layer).

:meth:`PrintService.accept` verifies a ``print.job`` envelope and either queues the job (returns
None) or returns the result to send at once (``refused``/``duplicate``). :meth:`PrintService.run`
prints queued jobs one at a time, at most once each (see :mod:`printer_agent.store`).

A job whose signature does not verify is never stored: a forger must not be able to burn a job_id
the hub will use. Only signed jobs are recorded, refused or not, so a re-sent job_id is a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from confkit.aio import wait_set
from confkit.logs import truncate
from printer_agent import DeviceError, TemplateError
from printer_agent.device import Printer
from printer_agent.escpos_render import CjkMode, render_job
from printer_agent.preview import TicketData
from printer_agent.store import JobStore, QueuedJob
from printer_agent.template import load_template
from protocol.envelope import open_envelope
from protocol.errors import ProtocolError, SignatureError
from protocol.keys import Keyring
from protocol.printing import KIND_PRINT_JOB, PrinterCondition, PrintJob, PrintResult

log = logging.getLogger(__name__)
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def unverified_job_id(data: bytes) -> str | None:
    """The job_id of an envelope we refuse, to address the refusal; never trusted for anything else."""
    try:
        body = json.loads(data.partition(b"\n")[2])
    except (ValueError, UnicodeDecodeError):
        return None
    job_id = body.get("job_id") if isinstance(body, dict) else None
    return job_id if isinstance(job_id, str) and _JOB_ID.match(job_id) else None


class PrintService:
    def __init__(self, printer_id: str, store: JobStore, device: Printer, keyring: Keyring, *,
                 template_dir: Path, profile: str = "TM-T20II", cjk: CjkMode = "gb18030",
                 poll_interval: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.printer_id = printer_id
        self.store = store
        self.device = device
        self.keyring = keyring
        self.template_dir = template_dir
        self.profile = profile
        self.cjk: CjkMode = cjk
        self.poll_interval = poll_interval
        self.clock = clock
        self.condition = PrinterCondition(online=False, error="not yet queried")
        self.results_ready = asyncio.Event()  # a result is waiting in the store
        self._work = asyncio.Event()
        self.on_condition: Callable[[], None] = lambda: None
        self.results: Counter[str] = Counter()  # job results by status (printer_agent.metrics)

    def _result(self, job_id: str, status: str, reason: str | None) -> PrintResult:
        self.results[status] += 1
        return PrintResult(printer_id=self.printer_id, job_id=job_id, status=status,
                           reason=reason, at=self.clock())

    def accept(self, data: bytes) -> PrintResult | None:
        """Verify and queue one job message. Returns the immediate result, or None when queued."""
        try:
            _kind, body = open_envelope(data, self.keyring, kinds={KIND_PRINT_JOB})
            job = PrintJob.model_validate(body)
        except (ProtocolError, ValidationError) as exc:
            reason = "bad_signature" if isinstance(exc, SignatureError) else "malformed"
            job_id = unverified_job_id(data)
            log.warning("refused a print job (%s): %s", reason, str(exc)[:200], extra={"payload": truncate(data)})
            return None if job_id is None else self._result(job_id, "refused", reason)
        now = self.clock()
        if job.printer_id != self.printer_id:
            log.warning("refused job %s addressed to printer %s", job.job_id, job.printer_id)
            return self._result(job.job_id, "refused", "wrong_printer")
        if self.store.known(job.job_id):
            before, _why = self.store.result_of(job.job_id)
            log.info("job %s is a duplicate (%s)", job.job_id, before or "queued")
            return self._result(job.job_id, "duplicate", before or "queued")
        refusal: str | None = None
        rendered = b""
        if job.expires_at <= now:
            refusal = "expired"
        else:
            try:
                tpl = load_template(job.template, self.template_dir)
                rendered = render_job(tpl, TicketData(job.token, job.ticket_id, job.job_id, dict(job.fields)),
                                      profile=self.profile, cjk=self.cjk)
            except TemplateError as exc:
                log.warning("refused job %s: %s", job.job_id, exc)
                refusal = exc.code
        if refusal is not None:
            self.store.finish_unqueued(job, "refused", refusal, now)
            self.results["refused"] += 1
            self.results_ready.set()
            return None
        self.store.enqueue(job, rendered, now)
        log.info("queued job %s (ticket %s, %d bytes)", job.job_id, job.ticket_id, len(rendered))
        self._work.set()
        self.on_condition()
        return None

    async def refresh_condition(self) -> PrinterCondition:
        cond = await asyncio.to_thread(self.device.condition)
        self.condition = cond.model_copy(update={"queue": self.store.queue_depth()})
        self.on_condition()
        return self.condition

    def recover(self) -> None:
        for job_id in self.store.recover(self.clock()):
            log.warning("job %s was being printed when the agent stopped: reported failed/interrupted", job_id)
        self.results_ready.set()

    async def run(self) -> None:
        """Print queued jobs forever; poll the printer's condition while idle."""
        while True:
            queued = self.store.next_queued()
            if queued is None:
                await self.refresh_condition()
                self._work.clear()
                await wait_set(self._work, self.poll_interval)
                continue
            await self._print(queued)

    async def _print(self, queued: QueuedJob) -> None:
        job = queued.job
        cond = await self.refresh_condition()
        status, reason = "failed", None
        if job.expires_at <= self.clock():
            status, reason = "refused", "expired"
        elif cond.paper == "out":
            reason = "paper_out"
        elif cond.cover == "open":
            reason = "cover_open"
        elif not cond.online:
            reason = "offline"
        else:
            self.store.mark_printing(job.job_id)  # committed: from here on a crash means "interrupted"
            try:
                await asyncio.to_thread(self.device.send, queued.data)
                status = "printed"
            except DeviceError as exc:
                log.warning("job %s failed while sending: %s", job.job_id, exc)
                reason = exc.code
        self.store.finish(job.job_id, status, reason, self.clock())
        self.results[status] += 1
        log.info("job %s %s%s", job.job_id, status, f" ({reason})" if reason else "")
        self.results_ready.set()
        await self.refresh_condition()
