"""Finding tickets at the box office: by collection code, phone, ID number, ticket id, performance or the
start of the holder's name; and a ticket's print jobs (the result of a reprint).

Phone and ID numbers come back in full only for the roles that may read them (``tickets.for_role``); a
role that may not is not allowed to search by them either (the answer would tell it whose number it is).
A search by personal data (phone, ID number, name) is audited as ``ticket.search`` with the kinds of key
used and how many tickets were found, never the values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select

from hub.errors import Forbidden, Invalid
from hub.services.context import HubContext, Principal, row_dict
from hub.services.tickets import FULL_HOLDER_ROLES, for_role, normalise_code
from hub.tables import performances, print_jobs, ticket_types, tickets

MAX_RESULTS = 100
PERSONAL_KEYS = frozenset({"phone", "id_number", "holder_name"})  # audited; phone/ID only for FULL_HOLDER_ROLES

SUMMARY_COLUMNS = (
    tickets.c.id, tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons, tickets.c.holder_name,
    tickets.c.holder_phone, tickets.c.holder_id_number, tickets.c.status, tickets.c.status_reason,
    tickets.c.status_at, tickets.c.used, tickets.c.created_at, tickets.c.collection_code, tickets.c.collected_at,
    tickets.c.replaced_by, tickets.c.replaces, performances.c.name.label("performance_name"),
    performances.c.starts_at, ticket_types.c.name.label("ticket_type_name"),
    ticket_types.c.name_zh.label("ticket_type_name_zh"), ticket_types.c.price_cents,
)


@dataclass(frozen=True)
class TicketQuery:
    """What the box office typed; at least one key. Values are already bounded by the API."""

    collection_code: str | None = None
    phone: str | None = None
    id_number: str | None = None
    ticket_id: int | None = None
    performance_id: int | None = None
    holder_name: str | None = None  # the start of the holder's name

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) not in (None, "")]


def normalise_phone(phone: str) -> str:
    """``138 0000-0000`` -> ``13800000000`` (a leading + kept)."""
    phone = phone.strip()
    return ("+" if phone.startswith("+") else "") + "".join(c for c in phone if c.isdigit())


def _conditions(q: TicketQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if q.collection_code:
        where.append(tickets.c.collection_code == normalise_code(q.collection_code))
    if q.phone:  # as typed (trimmed) or with the spaces and dashes taken out
        where.append(tickets.c.holder_phone.in_(sorted({q.phone.strip(), normalise_phone(q.phone)})))
    if q.id_number:
        number = q.id_number.strip()
        where.append(tickets.c.holder_id_number.in_(sorted({number, number.upper()})))
    if q.ticket_id is not None:
        where.append(tickets.c.id == q.ticket_id)
    if q.performance_id is not None:
        where.append(tickets.c.performance_id == q.performance_id)
    if q.holder_name and q.holder_name.strip():
        where.append(tickets.c.holder_name.startswith(q.holder_name.strip(), autoescape=True))
    return where


def search(ctx: HubContext, who: Principal, q: TicketQuery, limit: int = 50) -> dict[str, Any]:
    """Tickets matching every key given, newest first; ``truncated`` when more than ``limit`` match."""
    keys = q.keys()
    where = _conditions(q)
    if not where:
        raise Invalid("give at least one of collection_code, phone, id_number, ticket_id, performance_id, "
                      "holder_name")
    if who.role not in FULL_HOLDER_ROLES and {"phone", "id_number"} & set(keys):
        raise Forbidden(f"the {who.role} role may not search by phone or ID number; search by collection code "
                        "or ticket id, or ask the box office")
    limit = max(1, min(limit, MAX_RESULTS))
    query = (select(*SUMMARY_COLUMNS)
             .select_from(tickets.join(performances, performances.c.id == tickets.c.performance_id)
                          .join(ticket_types, ticket_types.c.id == tickets.c.ticket_type_id))
             .where(and_(*where)).order_by(tickets.c.id.desc()).limit(limit + 1))
    personal = sorted(PERSONAL_KEYS & set(keys))
    with (ctx.db.write() if personal else ctx.db.read()) as conn:
        rows = [row_dict(r) for r in conn.execute(query)]
        if personal:
            found = min(len(rows), limit)
            ctx.audit(conn, who, "ticket.search", "tickets",
                      f"by {', '.join(keys)}: {found}{'+' if len(rows) > limit else ''} found")
    return {"tickets": [for_role(r, who.role) for r in rows[:limit]], "truncated": len(rows) > limit}


def print_jobs_of(ctx: HubContext, ticket_id: int) -> list[dict[str, Any]]:
    """Print jobs for ``ticket_id``, newest first: jobs that printed it, and jobs that printed the ticket that
    replaced it (a reprint of a kiosk-collected e-ticket prints a new ticket)."""
    with ctx.db.read() as conn:
        replacing = or_(print_jobs.c.ticket_id == ticket_id,
                        print_jobs.c.ticket_id.in_(select(tickets.c.id).where(tickets.c.replaces == ticket_id)))
        rows = conn.execute(select(print_jobs).where(replacing)
                            .order_by(print_jobs.c.created_at.desc()).limit(MAX_RESULTS))
        return [row_dict(r) for r in rows]
