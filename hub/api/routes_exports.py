"""Report exports: start one (202), follow its progress, download the file; docs/console.md, "Exports".

The work is done by hub.services.export_jobs in worker threads; these handlers only parse and answer.
A download is either ``GET .../file`` with the bearer token (scripts, small files) or a one-time link
from ``POST .../ticket`` that a browser follows itself, streaming a big file to disk.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse

from hub.api.deps import Ctx, ReportReader
from hub.api.schemas_exports import DownloadTicketOut, ExportIn, ExportOut, ExportStarted
from hub.services.context import HubContext, Principal
from hub.services.export_jobs import MEDIA_TYPES, ExportJob, ExportJobs

router = APIRouter(tags=["reports"])

ExportIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 lowercase hex digits")]
TicketQuery = Annotated[str, Query(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                   description="the one-time token from POST .../ticket")]
_making = threading.Lock()
_REFUSALS: dict[int | str, dict[str, Any]] = {404: {"description": "no such export of yours"},
                                              409: {"description": "not done yet"}}


def jobs_of(request: Request, ctx: HubContext) -> ExportJobs:
    """This hub's export registry, made on the first export request (under ``<data dir>/exports``, the
    directory of the hub's key file)."""
    with _making:
        jobs: ExportJobs | None = getattr(request.app.state, "export_jobs", None)
        if jobs is None:
            jobs = ExportJobs(ctx, request.app.state.settings.key_file.parent / "exports")
            request.app.state.export_jobs = jobs
        return jobs


def _out(jobs: ExportJobs, job: ExportJob) -> ExportOut:
    return ExportOut(export_id=job.id, report=job.report, format=job.format, state=job.state,
                     rows_done=job.rows_done, rows_total=job.rows_total, size=job.size, error=job.error,
                     error_zh=job.error_zh, filename=job.filename()[0], created_at=job.created_at,
                     finished_at=job.finished_at,
                     expires_at=None if job.finished_at is None else job.finished_at + jobs.keep_seconds,
                     username=job.username)


def _send(job: ExportJob) -> FileResponse:
    name, ascii_name = job.filename()
    return FileResponse(job.path, media_type=MEDIA_TYPES[job.format], headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@router.post("/reports/exports", status_code=202, responses={429: {"description": "too many exports under way"}})
def start_export(request: Request, ctx: Ctx, who: ReportReader, body: ExportIn) -> ExportStarted:
    """Start writing a report to a file (audited: report.export); poll GET .../{export_id} for progress."""
    job = jobs_of(request, ctx).start(who, body.report, body.format, body.filters)
    return ExportStarted(export_id=job.id, state=job.state)


@router.get("/reports/exports/{export_id}", responses=_REFUSALS)
def export_status(request: Request, ctx: Ctx, who: ReportReader, export_id: ExportIdPath) -> ExportOut:
    jobs = jobs_of(request, ctx)
    return _out(jobs, jobs.get(who, export_id))


@router.delete("/reports/exports/{export_id}", responses=_REFUSALS)
def cancel_export(request: Request, ctx: Ctx, who: ReportReader, export_id: ExportIdPath) -> ExportOut:
    """Stop an export under way, or delete a finished export's file now."""
    jobs = jobs_of(request, ctx)
    return _out(jobs, jobs.cancel(who, export_id))


@router.get("/reports/exports/{export_id}/file", response_class=FileResponse, responses=_REFUSALS)
def export_file(request: Request, ctx: Ctx, who: ReportReader, export_id: ExportIdPath) -> FileResponse:
    """The finished file (Content-Disposition names it, in Chinese with an ASCII fallback)."""
    return _send(_downloaded(ctx, who, jobs_of(request, ctx).file(who, export_id)))


@router.post("/reports/exports/{export_id}/ticket", responses=_REFUSALS)
def download_ticket(request: Request, ctx: Ctx, who: ReportReader, export_id: ExportIdPath) -> DownloadTicketOut:
    """A link to download the finished file once within a minute without the bearer (for a browser)."""
    jobs = jobs_of(request, ctx)
    token, until = jobs.ticket(who, export_id)
    _downloaded(ctx, who, jobs.get(who, export_id))
    return DownloadTicketOut(url=f"/api/v1/reports/exports/{export_id}/download?ticket={token}", expires_at=until)


@router.get("/reports/exports/{export_id}/download", response_class=FileResponse,
            responses={403: {"description": "the link is used up or expired"}, **_REFUSALS})
def download_with_ticket(request: Request, ctx: Ctx, export_id: ExportIdPath, ticket: TicketQuery) -> FileResponse:
    """The file of a download link (audited when the link was made); the link is used up."""
    return _send(jobs_of(request, ctx).redeem(export_id, ticket))


def _downloaded(ctx: HubContext, who: Principal, job: ExportJob) -> ExportJob:
    with ctx.db.write() as conn:
        ctx.audit(conn, who, "report.export.download", f"{job.report}.{job.format}", f"export {job.id}")
    return job
