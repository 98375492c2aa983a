"""Selling, reading, refunding and voiding tickets; each change emits whitelist deltas in its transaction."""

from __future__ import annotations

import io
import logging
import secrets
from typing import Any

import segno
from sqlalchemy import Connection, insert, literal_column, select, update

from hub.errors import Conflict, NotFound
from hub.services.context import HubContext, Principal, row_dict
from hub.services.whitelist import emit_entry_deltas, entry_of
from hub.sms import mask_phone
from hub.tables import performances, ticket_types, tickets
from protocol.token import TicketToken, encode_token
from protocol.whitelist import DeltaOp

log = logging.getLogger(__name__)


def _ticket(conn: Connection, ticket_id: int, *, lock: bool = False) -> Any:
    query = select(tickets).where(tickets.c.id == ticket_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"ticket {ticket_id} does not exist; check the number on the ticket")
    return row


FULL_HOLDER_ROLES = frozenset({"admin", "box_office"})  # see holder phone and ID numbers in full


def mask_id_number(number: str) -> str:
    """``110105194912310021`` -> ``1101**********0021`` (short ones: all stars)."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:] if len(number) > 8 else "*" * len(number)


def for_role(row: dict[str, Any], role: str) -> dict[str, Any]:
    """``row`` (a ticket) as ``role`` may see it: phone and ID number masked unless FULL_HOLDER_ROLES."""
    if role in FULL_HOLDER_ROLES:
        return row
    phone, id_number = row.get("holder_phone"), row.get("holder_id_number")
    return {**row, "holder_phone": mask_phone(phone) if phone else phone,
            "holder_id_number": mask_id_number(id_number) if id_number else id_number}


CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud and typed at a kiosk


def new_collection_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def normalise_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


def issue(ctx: HubContext, conn: Connection, **values: Any) -> Any:
    """Insert a valid ticket with its signed token (in the caller's transaction); return the row."""
    perf = conn.execute(select(performances.c.doors_open, performances.c.ends_at)
                        .where(performances.c.id == values["performance_id"])).first()
    if perf is None:
        raise NotFound(f"performance {values['performance_id']} does not exist; see GET /api/v1/performances")
    ticket_id: int = conn.execute(insert(tickets).values(status="valid", used=0, token="", created_at=ctx.clock(),
                                                         **values).returning(literal_column("id"))).scalar_one()
    token = encode_token(TicketToken(ticket_id, values["performance_id"], values["ticket_type_id"],
                                     int(perf.doors_open), int(perf.ends_at), values["persons"]), ctx.token_signer)
    conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(token=token))
    return _ticket(conn, ticket_id)


def _check_on_sale(conn: Connection, performance_id: int, ticket_type_id: int) -> None:
    kind = conn.execute(select(ticket_types.c.retired).where(ticket_types.c.id == ticket_type_id)).first()
    if kind is None:
        raise NotFound(f"ticket type {ticket_type_id} does not exist; see GET /api/v1/ticket-types")
    if kind.retired:
        raise Conflict(f"ticket type {ticket_type_id} is retired and no longer sold; choose another type "
                       f"(GET /api/v1/ticket-types) or bring it back with PATCH /api/v1/ticket-types/{ticket_type_id} "
                       '{"retired": false}')
    perf = conn.execute(select(performances.c.retired).where(performances.c.id == performance_id)).first()
    if perf is not None and perf.retired:
        raise Conflict(f"performance {performance_id} is retired and no longer sold; choose another performance "
                       f"(GET /api/v1/performances) or bring it back with PATCH /api/v1/performances/{performance_id} "
                       '{"retired": false}')


def sell(ctx: HubContext, who: Principal, *, performance_id: int, ticket_type_id: int, persons: int,
         holder_name: str, holder_phone: str | None = None, holder_id_number: str | None = None,
         collection_code: str | None = None) -> dict[str, Any]:
    code = normalise_code(collection_code) if collection_code else new_collection_code()
    with ctx.db.write() as conn:
        _check_on_sale(conn, performance_id, ticket_type_id)
        row = issue(ctx, conn, performance_id=performance_id, ticket_type_id=ticket_type_id, persons=persons,
                    holder_name=holder_name, holder_phone=holder_phone, holder_id_number=holder_id_number,
                    collection_code=code)
        ticket_id = row.id
        outgoing = emit_entry_deltas(ctx, conn, entry_of(row), "sale")
        ctx.audit(conn, who, "ticket.sell", f"ticket:{ticket_id}",
                  f"performance={performance_id} type={ticket_type_id} persons={persons}")
    ctx.publish_all(outgoing)
    return row_dict(row)


def get(ctx: HubContext, ticket_id: int) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return row_dict(_ticket(conn, ticket_id))


def qr_svg(ctx: HubContext, ticket_id: int) -> bytes:
    token = get(ctx, ticket_id)["token"]
    out = io.BytesIO()
    segno.make_qr(token, error="m").save(out, kind="svg", scale=4, border=2)
    return out.getvalue()


def cancel(ctx: HubContext, who: Principal, ticket_id: int, status: str, reason: str | None) -> dict[str, Any]:
    """Refund (``status="refunded"``) or void a valid ticket; it is then revoked at every gate."""
    op: DeltaOp = "refund" if status == "refunded" else "void"
    with ctx.db.write() as conn:
        row = _ticket(conn, ticket_id, lock=True)
        if row.status != "valid":
            raise Conflict(f"ticket {ticket_id} is already {row.status}; nothing to do. "
                           "Sell a new ticket if the patron needs one.")
        conn.execute(update(tickets).where(tickets.c.id == ticket_id)
                     .values(status=status, status_reason=reason, status_at=ctx.clock()))
        row = _ticket(conn, ticket_id)
        outgoing = emit_entry_deltas(ctx, conn, entry_of(row), op)
        ctx.audit(conn, who, f"ticket.{op}", f"ticket:{ticket_id}", reason or "")
    ctx.publish_all(outgoing)
    log.info("ticket %s %s", ticket_id, status)
    return row_dict(row)
