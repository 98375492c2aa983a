"""Online check-in (the gate's own decision, made atomically at the hub) and the check-in journal."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from hub.errors import Forbidden
from hub.services.context import HubContext, Outgoing, Principal, row_dict
from hub.services.rulebook import cached_rules, group_of_channel, topology
from hub.services.usage import TICKET_COLUMNS, entry_with_usage, recount, usage_of
from hub.tables import checkin_events, ticket_usage, tickets
from protocol.decision import Decision, UsageHistory, decision_for_error, explain, validate
from protocol.errors import MalformedError, SignatureError
from protocol.online import OnlineAnswer, seal_answer
from protocol.reasons import Reason
from protocol.token import TicketToken, decode_token
from protocol.usage import NO_USAGE

log = logging.getLogger(__name__)


_TICKET = select(*TICKET_COLUMNS).where(tickets.c.id == bindparam("tid")).with_for_update()
_USAGE = select(ticket_usage).where(ticket_usage.c.ticket_id == bindparam("tid"),
                                    ticket_usage.c.scope_id == bindparam("sid"))
_INSERT_EVENT = insert(checkin_events)


def _decide(ctx: HubContext, conn: Connection, token: TicketToken | None, channel_id: int,
            error: Decision | None, now: float) -> tuple[int, Decision, int]:
    """(group id, decision, counting scope) with the group's rules and the ticket's usage in the scope."""
    group_id = group_of_channel(ctx, conn, channel_id)
    scope = topology(ctx, conn).scope.get(group_id, group_id)
    if token is None:
        return group_id, error if error is not None else Decision(Reason.MALFORMED), scope
    rules = cached_rules(ctx, conn, group_id)
    row = conn.execute(_TICKET, {"tid": token.ticket_id}).first()
    entry = None
    if row is not None and row.performance_id in rules.performance_ids:
        used = conn.execute(_USAGE, {"tid": row.id, "sid": scope}).first()
        entry = entry_with_usage(row, usage_of(used) if used is not None else NO_USAGE)
    decision = validate(token, entry, rules.channels[channel_id], rules, UsageHistory(), now)
    return group_id, decision, scope


def _answer(event_id: str, decision: Decision, now: float | None = None) -> dict[str, Any]:
    en, zh = explain(decision, now)
    return {"event_id": event_id, "reason": decision.reason.value, "admitted": decision.admitted,
            "text_en": en, "text_zh": zh, "ticket_id": decision.ticket_id, "persons": decision.persons,
            "next_at": decision.next_at, "credit": decision.credit, "hint": list(decision.hint)}


def _earlier_answer(conn: Connection, event_id: str) -> tuple[dict[str, Any], float] | None:
    """The first answer to ``event_id`` and when it was decided (so its signed form is the same again)."""
    row = conn.execute(select(checkin_events.c.reason, checkin_events.c.ticket_id, checkin_events.c.persons,
                              checkin_events.c.credit, checkin_events.c.received_at)
                       .where(checkin_events.c.event_id == event_id)).first()
    if row is None:
        return None
    decision = Decision(Reason(row.reason), row.ticket_id, persons=row.persons, credit=row.credit)
    return _answer(event_id, decision), float(row.received_at)


ONLINE_DEVICE = "hub-online"  # the device id of an online check by a login that is not a device's own


def device_of(ctx: HubContext, who: Principal, named: str | None) -> str:
    """The device id an online check is recorded under: the login's own (users.device_id), else
    ONLINE_DEVICE. A body that names another device is refused and audited as a security event."""
    own = who.device_id or ONLINE_DEVICE
    if named is not None and named != own:
        with ctx.db.write() as conn:
            ctx.audit(conn, who, "security.device_mismatch", f"device:{named[:100]}",
                      f"online check naming device {named!r} by {who.username}, whose device is {own!r}; refused")
        ctx.metrics.security_event("device_mismatch")
        log.warning("refused an online check by %s naming device %s (its own: %s)", who.username, named, own)
        raise Forbidden(f"this login checks in as device {own!r}, not {named!r}; log in with that device's "
                        "own user (or leave device_id out)")
    return own


def online_check(ctx: HubContext, token_text: str, channel_id: int, device_id: str,
                 event_id: str | None = None) -> dict[str, Any]:
    """Verify, decide, journal and (if admitted) count one scan, all in one write transaction.

    A device passes its own ``event_id``: asking again (its first answer timed out) returns the first
    answer, and the same event later arriving over MQTT is stored once.
    """
    token: TicketToken | None = None
    error: Decision | None = None
    try:
        token = decode_token(token_text, ctx.keyring)
    except (MalformedError, SignatureError) as exc:
        error = decision_for_error(exc)
    now = ctx.clock()
    event_id = event_id or uuid.uuid4().hex
    try:
        return _online_check(ctx, token, error, token_text, channel_id, device_id, event_id, now)
    except IntegrityError:  # the same check, asked again through another hub while the first was deciding it
        with ctx.db.read() as conn:
            earlier = _earlier_answer(conn, event_id)
        if earlier is None:
            raise
        log.info("online check %s of %s was decided by another hub at the same time: its answer stands", event_id,
                 device_id)
        return _signed(ctx, device_id, *earlier)


def _online_check(ctx: HubContext, token: TicketToken | None, error: Decision | None, token_text: str,
                  channel_id: int, device_id: str, event_id: str, now: float) -> dict[str, Any]:
    outgoing: list[Outgoing] = []
    with ctx.db.write(urgent=True) as conn:  # a handheld waits: before the ordinary writers waiting
        if (earlier := _earlier_answer(conn, event_id)) is not None:
            return _signed(ctx, device_id, *earlier)
        group_id, decision, scope = _decide(ctx, conn, token, channel_id, error, now)
        conn.execute(_INSERT_EVENT, dict(
            event_id=event_id, device_id=device_id, group_id=group_id, channel_id=channel_id, device_seq=0,
            reason=decision.reason.value, ticket_id=decision.ticket_id, performance_id=decision.performance_id,
            ticket_type_id=decision.ticket_type_id, persons=decision.persons, direction="entry",
            offline=False, source="online", scanned_at=now, received_at=now, conflict=False,
            excerpt=None if token else _printable(token_text), credit=decision.credit, unlisted=False))
        if decision.admitted and decision.ticket_id is not None:
            outgoing = recount(ctx, conn, {(decision.ticket_id, scope)})
    ctx.metrics.scanned(decision.reason.value, channel_id, "online")  # committed: counted once
    ctx.publish_all(outgoing)
    return _signed(ctx, device_id, _answer(event_id, decision, now), now)


def _signed(ctx: HubContext, device_id: str, answer: dict[str, Any], now: float) -> dict[str, Any]:
    """``answer`` with ``signed``: the hub-signed envelope (base64) of what a handheld acts on, bound to the
    device and the scan's event id (protocol.online), so no one without the hub's key can admit anyone."""
    sealed = OnlineAnswer(event_id=answer["event_id"], device_id=device_id, ticket_id=answer["ticket_id"],
                          reason=Reason(answer["reason"]), persons=answer["persons"], credit=answer["credit"], at=now)
    return {**answer, "signed": seal_answer(sealed, ctx.signer)}


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:64])


def list_checkins(ctx: HubContext, *, ticket_id: int | None = None, device_id: str | None = None,
                  conflict: bool | None = None, group_id: int | None = None, since: float | None = None,
                  until: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest scan first (scan time, not arrival: an offline gate's events sort where they happened)."""
    e = checkin_events
    query = select(e).order_by(e.c.scanned_at.desc(), e.c.received_at.desc(), e.c.event_id).limit(limit)
    for column, value in ((e.c.ticket_id, ticket_id), (e.c.device_id, device_id), (e.c.conflict, conflict),
                          (e.c.group_id, group_id)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(e.c.scanned_at >= since)
    if until is not None:
        query = query.where(e.c.scanned_at < until)
    with ctx.db.read() as conn:
        return [row_dict(r) for r in conn.execute(query)]
