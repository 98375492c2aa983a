"""Self-service kiosks (自助取票机): lookups, collection, print jobs and printer state; staff reprints.

Refusals a kiosk shows carry ``{"detail", "detail_zh", "code", ...}`` (see ``hub.errors.KioskError``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import Ctx, DeviceIdPath, EventIdPath, IdPath, Kiosk, Sales
from hub.config import Settings
from hub.services import collection, printing
from hub.services.collection import KioskDesk
from hub.sms import make_gateway
from protocol.bounds import DEVICE_ID_PATTERN, Id

router = APIRouter(tags=["kiosk"])
PHONE = r"^\+?[0-9]{5,20}$"
PRINTER = DEVICE_ID_PATTERN


def make_desk(settings: Settings) -> KioskDesk:
    return KioskDesk(settings.kiosk, make_gateway(settings.sms))


async def _desk(request: Request) -> KioskDesk:
    desk: KioskDesk = request.app.state.kiosk
    return desk


Desk = Annotated[KioskDesk, Depends(_desk)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeIn(_In):
    code: str = Field(min_length=4, max_length=20, description="取票码 (case, spaces and dashes ignored)")


class IdCardIn(_In):
    id_number: str = Field(min_length=6, max_length=40, description="身份证 number as read by the card reader")


class PhoneIn(_In):
    phone: str = Field(pattern=PHONE)


class PhoneOtpIn(_In):
    phone: str = Field(pattern=PHONE)
    otp: str = Field(pattern=r"^[0-9]{6}$", description="the 6-digit code sent by SMS")


class TicketTypeName(BaseModel):
    id: int
    name: str
    name_zh: str


class KioskTicket(BaseModel):
    ticket_id: int
    performance_id: int
    performance_name: str
    starts_at: float
    ticket_type: TicketTypeName
    persons: int
    holder: str = Field(description="masked: 张*")
    status: str = Field(description="collectable, collected or refunded")


class LookupOut(BaseModel):
    lookup_token: str = Field(description="needed to collect; bound to these tickets and this kiosk user")
    expires_in: float
    tickets: list[KioskTicket]


class OtpSent(BaseModel):
    sent: bool
    expires_in: float


class CollectIn(_In):
    lookup_token: str = Field(min_length=1, max_length=200)
    ticket_ids: list[Id] = Field(min_length=1, max_length=50)
    printer_id: str = Field(pattern=PRINTER)


class JobRef(BaseModel):
    job_id: str
    ticket_id: int = Field(description="the ticket printed (a new one when the printed ticket replaces the e-ticket)")


class JobsOut(BaseModel):
    jobs: list[JobRef]


class JobOut(BaseModel):
    job_id: str
    ticket_id: int
    printer_id: str
    kind: str
    status: str = Field(description="queued, printed, failed, duplicate or refused")
    reason: str | None
    created_at: float
    expires_at: float
    done_at: float | None


class PrinterOut(BaseModel):
    online: bool
    paper: str
    cover: str
    error: str | None
    in_service: bool
    reason: str | None = Field(description="why not in service: offline, paper_out, cover_open, error, never_seen")


class ReprintIn(_In):
    printer_id: str = Field(pattern=PRINTER)
    reason: str = Field(min_length=1, max_length=200)


@router.post("/kiosk/lookup/code")
def lookup_code(body: CodeIn, ctx: Ctx, desk: Desk, who: Kiosk) -> LookupOut:
    return LookupOut(**collection.lookup_code(ctx, desk, who, body.code))


@router.post("/kiosk/lookup/id-card")
def lookup_id_card(body: IdCardIn, ctx: Ctx, desk: Desk, who: Kiosk) -> LookupOut:
    return LookupOut(**collection.lookup_id_card(ctx, desk, who, body.id_number))


@router.post("/kiosk/otp/request")
def request_otp(body: PhoneIn, ctx: Ctx, desk: Desk, who: Kiosk) -> OtpSent:
    return OtpSent(**collection.request_otp(ctx, desk, who, body.phone))


@router.post("/kiosk/lookup/phone")
def lookup_phone(body: PhoneOtpIn, ctx: Ctx, desk: Desk, who: Kiosk) -> LookupOut:
    return LookupOut(**collection.lookup_phone(ctx, desk, who, body.phone, body.otp))


@router.post("/kiosk/collect")
def collect(body: CollectIn, ctx: Ctx, desk: Desk, who: Kiosk) -> JobsOut:
    return JobsOut(**collection.collect(ctx, desk, who, body.lookup_token, body.ticket_ids, body.printer_id))


@router.get("/kiosk/jobs/{job_id}")
def get_job(job_id: EventIdPath, ctx: Ctx, _who: Kiosk) -> JobOut:
    return JobOut(**printing.get_job(ctx, job_id))


@router.get("/kiosk/printers/{printer_id}")
def printer_status(printer_id: DeviceIdPath, ctx: Ctx, _who: Kiosk) -> PrinterOut:
    return PrinterOut(**printing.printer_status(ctx, printer_id))


@router.post("/tickets/{ticket_id}/reprint", tags=["tickets"])
def reprint(ticket_id: IdPath, body: ReprintIn, ctx: Ctx, desk: Desk, who: Sales) -> JobsOut:
    return JobsOut(**collection.reprint(ctx, desk, who, ticket_id, body.printer_id, body.reason))
