"""Print jobs for ticket printers: stored with the collection, sent signed, closed by the printer's result."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select, update

from hub.config import KioskSettings
from hub.errors import NotFound
from hub.services.context import HubContext, Outgoing, Principal, row_dict
from hub.tables import devices, performances, print_jobs, ticket_types, tickets, venues
from protocol.envelope import seal
from protocol.printing import KIND_PRINT_JOB, PrintJob, PrintResult

log = logging.getLogger(__name__)


def mask_name(name: str) -> str:
    """张三 -> 张*, Li Lei -> L* ***: the first character, the rest starred (spaces kept)."""
    name = name.strip()
    return name[:1] + "".join(c if c.isspace() else "*" for c in name[1:]) if len(name) > 1 else "*"


DETAIL_COLUMNS = (tickets.c.id, tickets.c.token, tickets.c.persons, tickets.c.holder_name,
                  performances.c.name.label("performance_name"), performances.c.starts_at,
                  venues.c.name.label("venue_name"), ticket_types.c.name.label("type_en"),
                  ticket_types.c.name_zh.label("type_zh"))


def _details(conn: Connection, ticket_id: int) -> Any:
    return conn.execute(select(*DETAIL_COLUMNS).select_from(
        tickets.join(performances, performances.c.id == tickets.c.performance_id)
        .join(venues, venues.c.id == performances.c.venue_id)
        .join(ticket_types, ticket_types.c.id == tickets.c.ticket_type_id))
        .where(tickets.c.id == ticket_id)).one()


def new_job(ctx: HubContext, conn: Connection, settings: KioskSettings, who: Principal, ticket_id: int,
            printer_id: str, kind: str) -> tuple[dict[str, Any], Outgoing]:
    """Store a queued job for ``ticket_id`` in the caller's transaction; return it and its signed envelope."""
    d = _details(conn, ticket_id)
    now = ctx.clock()
    starts = datetime.fromtimestamp(d.starts_at, ZoneInfo(settings.timezone))
    fields = {"performance": d.performance_name, "venue": d.venue_name, "date": starts.strftime("%Y-%m-%d"),
              "time": starts.strftime("%H:%M"), "ticket_type_zh": d.type_zh, "ticket_type_en": d.type_en,
              "persons": str(d.persons), "holder": mask_name(d.holder_name), "ticket_id": str(d.id)}
    job = PrintJob(job_id=uuid.uuid4().hex, printer_id=printer_id, template=settings.template, fields=fields,
                   token=d.token, ticket_id=d.id, issued_at=now, expires_at=now + settings.job_ttl)
    conn.execute(insert(print_jobs).values(job_id=job.job_id, ticket_id=d.id, printer_id=printer_id, kind=kind,
                                           requested_by=who.username, status="queued", created_at=now,
                                           expires_at=job.expires_at))
    envelope = seal(KIND_PRINT_JOB, job.model_dump(), ctx.signer)
    return {"job_id": job.job_id, "ticket_id": d.id}, (ctx.topics.print_job(printer_id), envelope)


def record_result(ctx: HubContext, result: PrintResult) -> bool:
    """Close a job with the printer's answer; False if the printer has no such job."""
    with ctx.db.write() as conn:
        row = conn.execute(select(print_jobs.c.status).where(print_jobs.c.job_id == result.job_id,
                                                             print_jobs.c.printer_id == result.printer_id)).first()
        if row is None:
            log.warning("printer %s reports job %s, which the hub never sent it", result.printer_id, result.job_id)
            return False
        if row.status == "printed" and result.status == "duplicate":
            return True  # a re-delivered job the printer refused to print twice: it stays printed
        conn.execute(update(print_jobs).where(print_jobs.c.job_id == result.job_id)
                     .values(status=result.status, reason=result.reason, done_at=ctx.clock()))
    log.info("print job %s on %s: %s%s", result.job_id, result.printer_id, result.status,
             f" ({result.reason})" if result.reason else "")
    return True


def get_job(ctx: HubContext, job_id: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        row = conn.execute(select(print_jobs).where(print_jobs.c.job_id == job_id)).first()
    if row is None:
        raise NotFound(f"print job {job_id[:40]} does not exist")
    return row_dict(row)


def printer_status(ctx: HubContext, printer_id: str) -> dict[str, Any]:
    """The printer's newest condition and whether a kiosk can print on it now (``in_service``)."""
    with ctx.db.read() as conn:
        row = conn.execute(select(devices.c.state, devices.c.printer).where(devices.c.device_id == printer_id)).first()
    if row is None:
        return {"online": False, "paper": "unknown", "cover": "unknown", "error": None, "in_service": False,
                "reason": "never_seen"}
    cond = row.printer or {}
    online = row.state == "online" and bool(cond.get("online", False))
    paper, cover, error = cond.get("paper", "unknown"), cond.get("cover", "unknown"), cond.get("error")
    reason = ("offline" if not online else "paper_out" if paper == "out" else "cover_open" if cover == "open"
              else "error" if error else None)
    return {"online": online, "paper": paper, "cover": cover, "error": error, "in_service": reason is None,
            "reason": reason}
