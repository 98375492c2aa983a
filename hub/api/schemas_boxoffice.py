"""Bodies of the box-office routes (hub/api/routes_boxoffice.py): ticket search results and print jobs."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TicketSummary(BaseModel):
    """A ticket as the box office finds it, with its performance and ticket type; no token (see
    GET /api/v1/tickets/{id} and its qr.svg for that)."""

    id: int
    performance_id: int
    performance_name: str
    starts_at: float
    ticket_type_id: int
    ticket_type_name: str
    ticket_type_name_zh: str
    price_cents: int
    persons: int
    holder_name: str
    holder_phone: str | None = Field(description="in full for admin and box_office, else masked")
    holder_id_number: str | None = Field(description="in full for admin and box_office, else masked")
    status: str = Field(description="valid, refunded or void")
    status_reason: str | None
    status_at: float | None
    used: int
    created_at: float
    collection_code: str | None
    collected_at: float | None
    replaced_by: int | None = Field(description="the printed ticket that replaced this e-ticket")
    replaces: int | None = Field(description="the e-ticket this printed ticket replaced")


class TicketSearchOut(BaseModel):
    tickets: list[TicketSummary] = Field(description="newest first")
    truncated: bool = Field(description="more tickets match than the limit: narrow the search")


class PrintJobOut(BaseModel):
    job_id: str
    ticket_id: int = Field(description="the ticket printed (a new one when it replaced the e-ticket)")
    printer_id: str
    kind: str = Field(description="collect or reprint")
    requested_by: str
    status: str = Field(description="queued, printed, failed, duplicate or refused")
    reason: str | None
    created_at: float
    expires_at: float
    done_at: float | None
