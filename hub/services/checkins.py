"""Online check-in (the gate's own decision, made atomically at the hub) and the check-in journal."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from hub.errors import NotFound
from hub.services.context import HubContext, Outgoing, row_dict
from hub.services.whitelist import emit_entry_deltas, entry_of
from hub.tables import channel_types, channels, checkin_events, group_performances, tickets
from protocol.decision import Decision, UsageHistory, decision_for_error, validate
from protocol.errors import MalformedError, SignatureError
from protocol.reasons import Reason
from protocol.token import TicketToken, decode_token
from protocol.whitelist import ChannelRules

log = logging.getLogger(__name__)


_TICKET = (select(tickets.c.id, tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons,
                  tickets.c.status, tickets.c.used).where(tickets.c.id == bindparam("tid")).with_for_update())
_BUMP_USED = update(tickets).where(tickets.c.id == bindparam("tid")).values(used=tickets.c.used + 1)
_INSERT_EVENT = insert(checkin_events)


def _channel(ctx: HubContext, conn: Connection, channel_id: int) -> tuple[int, ChannelRules, frozenset[int]]:
    """(group id, channel rules, the group's performance ids) of one channel, cached until rules change."""
    cached = ctx.rules_cache.get(channel_id)
    if cached is not None:
        return cached
    row = conn.execute(select(channels.c.group_id, channels.c.max_entries)
                       .where(channels.c.id == channel_id)).first()
    if row is None:
        raise NotFound(f"channel {channel_id} does not exist; see GET /api/v1/channels")
    types = conn.execute(select(channel_types.c.ticket_type_id)
                         .where(channel_types.c.channel_id == channel_id)).scalars().all()
    perfs = conn.execute(select(group_performances.c.performance_id)
                         .where(group_performances.c.group_id == row.group_id)).scalars().all()
    result = row.group_id, ChannelRules(channel_id, frozenset(types), row.max_entries), frozenset(perfs)
    ctx.rules_cache[channel_id] = result
    return result


def _decide(ctx: HubContext, conn: Connection, token: TicketToken | None, channel_id: int,
            error: Decision | None, now: float) -> tuple[int, Decision, list[Outgoing]]:
    group_id, rules, perf_ids = _channel(ctx, conn, channel_id)
    if token is None:
        return group_id, error if error is not None else Decision(Reason.MALFORMED), []
    row = conn.execute(_TICKET, {"tid": token.ticket_id}).first()
    entry = entry_of(row) if row is not None and row.performance_id in perf_ids else None
    decision = validate(token, entry, rules, perf_ids, UsageHistory(), now)
    outgoing: list[Outgoing] = []
    if decision.admitted and entry is not None:
        conn.execute(_BUMP_USED, {"tid": entry.ticket_id})
        outgoing = emit_entry_deltas(ctx, conn, entry.with_used(entry.used + 1), "used")
    return group_id, decision, outgoing


def _answer(event_id: str, reason: Reason, ticket_id: int | None, persons: int) -> dict[str, Any]:
    return {"event_id": event_id, "reason": reason.value, "admitted": reason is Reason.ADMITTED,
            "text_en": reason.text_en, "text_zh": reason.text_zh, "ticket_id": ticket_id, "persons": persons}


def _earlier_answer(conn: Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(checkin_events.c.reason, checkin_events.c.ticket_id, checkin_events.c.persons)
                       .where(checkin_events.c.event_id == event_id)).first()
    return None if row is None else _answer(event_id, Reason(row.reason), row.ticket_id, row.persons)


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
    with ctx.db.write() as conn:
        if (earlier := _earlier_answer(conn, event_id)) is not None:
            return earlier
        group_id, decision, outgoing = _decide(ctx, conn, token, channel_id, error, now)
        conn.execute(_INSERT_EVENT, dict(
            event_id=event_id, device_id=device_id, group_id=group_id, channel_id=channel_id, device_seq=0,
            reason=decision.reason.value, ticket_id=decision.ticket_id, performance_id=decision.performance_id,
            ticket_type_id=decision.ticket_type_id, persons=decision.persons, direction="entry",
            offline=False, source="online", scanned_at=now, received_at=now, conflict=False,
            excerpt=None if token else _printable(token_text)))
    ctx.publish_all(outgoing)
    return _answer(event_id, decision.reason, decision.ticket_id, decision.persons)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:64])


def list_checkins(ctx: HubContext, *, ticket_id: int | None = None, device_id: str | None = None,
                  conflict: bool | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = select(checkin_events).order_by(checkin_events.c.received_at.desc()).limit(limit)
    if ticket_id is not None:
        query = query.where(checkin_events.c.ticket_id == ticket_id)
    if device_id is not None:
        query = query.where(checkin_events.c.device_id == device_id)
    if conflict is not None:
        query = query.where(checkin_events.c.conflict == conflict)
    with ctx.db.read() as conn:
        return [row_dict(r) for r in conn.execute(query)]
