"""The box office's own reads: find tickets (GET /tickets) and a ticket's print jobs. Selling, refunds, voids,
the QR code and reprints are in routes_checkin.py and routes_kiosk.py; the console page is
hub/static/boxoffice.html (docs/console.md, "Box office")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import Ctx, IdPath, OptIdQuery, TicketReader
from hub.api.schemas_boxoffice import PrintJobOut, TicketSearchOut, TicketSummary
from hub.services import ticket_search
from hub.services.ticket_search import MAX_RESULTS, TicketQuery
from protocol.bounds import MAX_NAME

router = APIRouter(tags=["tickets"])

CodeQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9 -]{4,20}$",
                                        description="取票码 collection code (case, spaces and dashes ignored)")]
PhoneQuery = Annotated[str | None, Query(pattern=r"^\+?[0-9][0-9 -]{3,38}[0-9]$",
                                         description="the holder's phone, whole (spaces and dashes ignored)")]
IdNumberQuery = Annotated[str | None, Query(pattern=r"^[0-9A-Za-z]{4,40}$",
                                            description="the holder's ID number, whole")]
NameQuery = Annotated[str | None, Query(min_length=1, max_length=MAX_NAME,
                                        description="the start of the holder's name")]
ResultLimit = Annotated[int, Query(ge=1, le=MAX_RESULTS, description=f"at most {MAX_RESULTS} tickets")]


@router.get("/tickets", responses={422: {"description": "no search key given, or one out of bounds"}})
def search_tickets(ctx: Ctx, who: TicketReader, collection_code: CodeQuery = None, phone: PhoneQuery = None,
                   id_number: IdNumberQuery = None, ticket_id: OptIdQuery = None, performance_id: OptIdQuery = None,
                   holder_name: NameQuery = None, limit: ResultLimit = 50) -> TicketSearchOut:
    """Tickets matching every key given (at least one), newest first. Phone and ID numbers are masked for a
    role that may not read them; a search by phone, ID number or name is audited (ticket.search, without
    the values)."""
    query = TicketQuery(collection_code=collection_code, phone=phone, id_number=id_number, ticket_id=ticket_id,
                        performance_id=performance_id, holder_name=holder_name)
    found = ticket_search.search(ctx, who, query, limit)
    return TicketSearchOut(tickets=[TicketSummary(**t) for t in found["tickets"]], truncated=found["truncated"])


@router.get("/tickets/{ticket_id}/print-jobs")
def ticket_print_jobs(ticket_id: IdPath, ctx: Ctx, _who: TicketReader) -> list[PrintJobOut]:
    """Print jobs of this ticket (and of the printed ticket that replaced it), newest first: a reprint's
    result (queued until the printer answers printed or failed)."""
    return [PrintJobOut(**j) for j in ticket_search.print_jobs_of(ctx, ticket_id)]
