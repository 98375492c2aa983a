"""Ticket printing: the hub's signed print job, the printer's result and its condition.

Print jobs come only from the hub (a kiosk asks the hub to collect tickets; the hub collects them
atomically and sends the job), signed, so nothing else on the broker can make a printer print.

    {prefix}/device/{printer_id}/print          hub -> printer: signed "print.job" envelope (QoS 1)
    {prefix}/device/{printer_id}/print_result   printer -> hub: PrintResult (QoS 1)

A printer prints each ``job_id`` at most once (its queue is persisted) and never after
``expires_at``; its condition (paper, cover, online) rides in its GateStatus heartbeat (``printer``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.bounds import MAX_COUNT, Id, UnixTime
from protocol.messages import DeviceId, EventId

KIND_PRINT_JOB = "print.job"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrintJob(_Message):
    """Body of a signed ``print.job`` envelope."""

    job_id: EventId
    printer_id: DeviceId
    template: str = Field(pattern=r"^[a-z0-9_-]{1,40}$", description="template file name, without .toml")
    fields: dict[str, str] = Field(default_factory=dict, description="text fields of the template")
    token: str = Field(max_length=200, description="the ticket token printed as the QR code")
    ticket_id: Id
    issued_at: float
    expires_at: float


class PrintResult(_Message):
    v: Literal[1] = 1
    printer_id: DeviceId
    job_id: EventId
    status: Literal["printed", "failed", "duplicate", "refused"]
    reason: str | None = Field(None, max_length=200, description="paper_out, cover_open, offline, "
                               "unknown_template, expired, bad_signature, ...")
    at: UnixTime


class PrinterCondition(_Message):
    """What a ticket printer reports about itself in every heartbeat."""

    online: bool
    paper: Literal["ok", "low", "out", "unknown"] = "unknown"
    cover: Literal["closed", "open", "unknown"] = "unknown"
    queue: int = Field(0, ge=0, le=MAX_COUNT, description="jobs accepted and not yet printed")
    error: str | None = Field(None, max_length=200)
