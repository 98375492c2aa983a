"""Self-service collection (自助取票): lookups by code, ID card or phone + SMS code; atomic collection;
staff reprints. A printed ticket replaces the e-ticket when the performance says so (new token, old one
voided by the usual signed delta); the new ticket carries the old one's usage in every counting scope
(and counts its events as its own, see :mod:`hub.services.usage`)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update

from hub.config import KioskSettings
from hub.errors import Conflict, KioskError, NotFound
from hub.services import otp, printing
from hub.services.context import HubContext, Outgoing, Principal
from hub.services.tickets import issue, normalise_code
from hub.services.usage import copy_usage
from hub.services.whitelist import emit_entry_deltas, entry_of
from hub.sms import SmsGateway, mask_phone
from hub.tables import kiosk_lookups, performances, ticket_types, tickets
from protocol.topics import check_device_id

log = logging.getLogger(__name__)


@dataclass
class KioskDesk:
    """What the kiosk services keep between requests: settings, the SMS gateway and the rate limits."""

    settings: KioskSettings
    gateway: SmsGateway
    limiter: otp.RateLimiter = field(default_factory=otp.RateLimiter)

    def limit(self, conn: Connection, who: Principal, subject: str, now: float) -> KioskError | None:
        """Count a lookup by ``who`` of ``subject`` (shared by every hub process: in the database)."""
        for key, limit in ((f"user:{who.username}", self.settings.user_lookups_per_minute),
                           (subject, self.settings.lookups_per_minute)):
            wait = self.limiter.hit(conn, key, limit, now)
            if wait is not None:
                return KioskError(429, "rate_limited", "Too many attempts; please wait a moment and try again",
                                  "操作过于频繁，请稍后再试", retry_after=max(1, round(wait)))
        return None


def _not_found(what_en: str, what_zh: str) -> KioskError:
    return KioskError(404, "not_found", f"No tickets to collect for this {what_en}; check it and try again",
                      f"未找到可取的票，请核对{what_zh}后重试")


def _status(row: Any) -> str:
    return "refunded" if row.status == "refunded" else "collected" if row.collected_at is not None else "collectable"


def _find(conn: Connection, where: ColumnElement[bool], now: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(tickets.c.id, tickets.c.performance_id, tickets.c.persons, tickets.c.holder_name, tickets.c.status,
               tickets.c.collected_at, performances.c.name.label("performance_name"), performances.c.starts_at,
               ticket_types.c.id.label("type_id"), ticket_types.c.name.label("type_en"),
               ticket_types.c.name_zh.label("type_zh"))
        .select_from(tickets.join(performances, performances.c.id == tickets.c.performance_id)
                     .join(ticket_types, ticket_types.c.id == tickets.c.ticket_type_id))
        .where(where, tickets.c.status != "void", performances.c.ends_at > now)
        .order_by(performances.c.starts_at, tickets.c.id)).all()
    return [{"ticket_id": r.id, "performance_id": r.performance_id, "performance_name": r.performance_name,
             "starts_at": r.starts_at, "ticket_type": {"id": r.type_id, "name": r.type_en, "name_zh": r.type_zh},
             "persons": r.persons, "holder": printing.mask_name(r.holder_name), "status": _status(r)}
            for r in rows]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lookup_token(conn: Connection, who: Principal, found: list[dict[str, Any]], now: float, ttl: float) -> str:
    token = secrets.token_urlsafe(24)
    conn.execute(delete(kiosk_lookups).where(kiosk_lookups.c.expires_at < now))
    conn.execute(insert(kiosk_lookups).values(token_hash=_hash(token), username=who.username, expires_at=now + ttl,
                                              ticket_ids=[t["ticket_id"] for t in found]))
    return token


def _lookup(ctx: HubContext, desk: KioskDesk, who: Principal, kind: str, subject: str, shown: str,
            where: ColumnElement[bool], missing: KioskError, *, limited: bool = True) -> dict[str, Any]:
    now = ctx.clock()
    result: dict[str, Any] = {}
    with ctx.db.write() as conn:
        error: KioskError | None = desk.limit(conn, who, f"{kind}:{subject}", now) if limited else None
        if error is None:
            found = _find(conn, where, now)
            if found:
                result = {"lookup_token": _lookup_token(conn, who, found, now, desk.settings.lookup_ttl),
                          "expires_in": desk.settings.lookup_ttl, "tickets": found}
            else:
                error = missing
        ctx.audit(conn, who, f"kiosk.lookup.{kind}", shown,
                  error.code if error is not None else f"found {len(result['tickets'])} ticket(s)")
    if error is not None:
        raise error
    return result


def lookup_code(ctx: HubContext, desk: KioskDesk, who: Principal, code: str) -> dict[str, Any]:
    code = normalise_code(code)
    return _lookup(ctx, desk, who, "code", code, f"code:{code[:2]}******", tickets.c.collection_code == code,
                   _not_found("collection code", "取票码"))


def lookup_id_card(ctx: HubContext, desk: KioskDesk, who: Principal, id_number: str) -> dict[str, Any]:
    id_number = id_number.strip().upper()
    return _lookup(ctx, desk, who, "id_card", id_number, f"id:{id_number[:3]}***{id_number[-4:]}",
                   tickets.c.holder_id_number == id_number, _not_found("ID card", "身份证"))


def request_otp(ctx: HubContext, desk: KioskDesk, who: Principal, phone: str) -> dict[str, Any]:
    """Send a one-time code to ``phone`` if it has tickets to collect."""
    now = ctx.clock()
    s = desk.settings
    code = None
    with ctx.db.write() as conn:
        error = desk.limit(conn, who, f"phone:{phone}", now)
        locked = otp.locked_for(conn, phone, now)
        if locked is not None:
            error = _locked(locked)
        elif error is None:
            if _find(conn, tickets.c.holder_phone == phone, now):
                code = otp.issue(conn, phone, now, s.otp_ttl)
            else:
                error = _not_found("phone number", "手机号")
        ctx.audit(conn, who, "kiosk.otp.request", f"phone:{mask_phone(phone)}",
                  error.code if error is not None else "sent")
    if error is not None:
        raise error
    assert code is not None
    desk.gateway.send(phone, f"您的取票验证码是 {code}，{int(s.otp_ttl // 60)} 分钟内有效。"
                             f"Your ticket collection code is {code}.", code=code)
    return {"sent": True, "expires_in": s.otp_ttl}


def _locked(seconds: float) -> KioskError:
    return KioskError(423, "locked", "Too many wrong codes; this phone number is locked for a while, "
                      "or ask staff for help", "验证码错误次数过多，该手机号已暂时锁定，请稍后再试或联系工作人员",
                      retry_after=max(1, round(seconds)))


def lookup_phone(ctx: HubContext, desk: KioskDesk, who: Principal, phone: str, code: str) -> dict[str, Any]:
    now = ctx.clock()
    s = desk.settings
    with ctx.db.write() as conn:
        locked = otp.locked_for(conn, phone, now)
        error = _locked(locked) if locked is not None else desk.limit(conn, who, f"otp:{phone}", now)
        if error is None:
            verdict = otp.verify(conn, phone, code, now, s.otp_max_failures, s.otp_lockout)
            if verdict.outcome == "locked":
                error = _locked(verdict.retry_after)
            elif verdict.outcome == "expired":
                error = KioskError(401, "code_expired", "The code has expired or was used; request a new one",
                                   "验证码已失效，请重新获取")
            elif verdict.outcome == "wrong":
                error = KioskError(401, "wrong_code", f"Wrong code; {verdict.attempts_left} attempt(s) left",
                                   f"验证码错误，还可尝试 {verdict.attempts_left} 次",
                                   attempts_left=verdict.attempts_left)
        ctx.audit(conn, who, "kiosk.otp.verify", f"phone:{mask_phone(phone)}",
                  error.code if error is not None else "ok")
    if error is not None:
        raise error
    return _lookup(ctx, desk, who, "phone", phone, f"phone:{mask_phone(phone)}",
                   tickets.c.holder_phone == phone, _not_found("phone number", "手机号"), limited=False)


ALREADY_COLLECTED = ("Already collected; ask staff for a reprint", "已取票，如需补打请联系工作人员")


def _print_one(ctx: HubContext, conn: Connection, desk: KioskDesk, who: Principal, row: Any, printer_id: str,
               kind: str, note: str = "") -> tuple[dict[str, Any], list[Outgoing]]:
    """Mark ``row`` collected (replacing it by a new ticket if the performance says so) and queue its job."""
    now = ctx.clock()
    marks = {"collected_at": now, "collected_by": who.username, "collected_printer": printer_id}
    replace = conn.execute(select(performances.c.print_replaces_eticket)
                           .where(performances.c.id == row.performance_id)).scalar_one()
    outgoing: list[Outgoing] = []
    printed_id = row.id
    if replace:
        new = issue(ctx, conn, performance_id=row.performance_id, ticket_type_id=row.ticket_type_id,
                    persons=row.persons, holder_name=row.holder_name, holder_phone=row.holder_phone,
                    holder_id_number=row.holder_id_number, collection_code=row.collection_code, replaces=row.id,
                    **marks)
        printed_id = new.id
        copy_usage(conn, row.id, new.id)  # entries, exits and credit carry over: one purchase, one count
        conn.execute(update(tickets).where(tickets.c.id == row.id).values(
            status="void", status_reason=f"replaced by printed ticket {new.id}", replaced_by=new.id,
            status_at=ctx.clock(),
            **({} if row.collected_at is not None else marks)))
        old = conn.execute(select(tickets).where(tickets.c.id == row.id)).one()
        outgoing += emit_entry_deltas(ctx, conn, entry_of(old), "void")
        outgoing += emit_entry_deltas(ctx, conn, entry_of(new), "sale")
    elif row.collected_at is None:
        conn.execute(update(tickets).where(tickets.c.id == row.id).values(**marks))
    job, message = printing.new_job(ctx, conn, desk.settings, who, printed_id, printer_id, kind)
    ctx.audit(conn, who, f"ticket.{kind}", f"ticket:{row.id}",
              f"printer={printer_id} job={job['job_id']}" + (f" replaced by ticket {printed_id}" if replace else "")
              + (f"; {note}" if note else ""))
    return job, [*outgoing, message]


def collect(ctx: HubContext, desk: KioskDesk, who: Principal, lookup_token: str, ticket_ids: Sequence[int],
            printer_id: str) -> dict[str, Any]:
    """Collect tickets of one lookup atomically and send their print jobs (after the commit)."""
    check_device_id(printer_id)
    now = ctx.clock()
    jobs: list[dict[str, Any]] = []
    outgoing: list[Outgoing] = []
    with ctx.db.write() as conn:
        grant = conn.execute(select(kiosk_lookups).where(kiosk_lookups.c.token_hash == _hash(lookup_token))).first()
        if grant is None or grant.expires_at < now or grant.username != who.username:
            raise KioskError(403, "lookup_expired", "This lookup has expired; look up your tickets again",
                             "查询已失效，请重新查询")
        if not set(ticket_ids) <= set(grant.ticket_ids):
            raise KioskError(403, "not_in_lookup", "These tickets were not part of your lookup; look them up first",
                             "所选票不在本次查询结果中，请重新查询")
        for ticket_id in sorted(set(ticket_ids)):
            row = conn.execute(select(tickets).where(tickets.c.id == ticket_id).with_for_update()).one()
            if row.collected_at is not None:
                raise KioskError(409, "already_collected", *ALREADY_COLLECTED, ticket_id=ticket_id)
            if row.status != "valid":
                raise KioskError(409, "not_collectable", f"Ticket {ticket_id} is {row.status}; ask staff for help",
                                 "该票已退或已作废，请联系工作人员", ticket_id=ticket_id)
            job, out = _print_one(ctx, conn, desk, who, row, printer_id, "collect")
            jobs.append(job)
            outgoing += out
    ctx.publish_all(outgoing)
    log.info("%s collected %s ticket(s) on printer %s", who.username, len(jobs), printer_id)
    return {"jobs": jobs}


def reprint(ctx: HubContext, desk: KioskDesk, who: Principal, ticket_id: int, printer_id: str,
            reason: str) -> dict[str, Any]:
    """Staff: print an already collected ticket again (replacing it again when the policy says so)."""
    check_device_id(printer_id)
    with ctx.db.write() as conn:
        row = conn.execute(select(tickets).where(tickets.c.id == ticket_id).with_for_update()).first()
        if row is None:
            raise NotFound(f"ticket {ticket_id} does not exist; check the number on the ticket")
        if row.replaced_by is not None:
            raise Conflict(f"ticket {ticket_id} was replaced by ticket {row.replaced_by}; reprint that one")
        if row.status != "valid":
            raise Conflict(f"ticket {ticket_id} is {row.status}; it cannot be printed")
        if row.collected_at is None:
            raise Conflict(f"ticket {ticket_id} has not been collected yet; collect it at a kiosk")
        job, outgoing = _print_one(ctx, conn, desk, who, row, printer_id, "reprint", f"reason: {reason}")
    ctx.publish_all(outgoing)
    return {"jobs": [job]}
