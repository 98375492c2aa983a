"""Storing event batches from devices exactly once, counting admissions, flagging double admissions,
taking back admissions a turnstile annulled (nobody passed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from hub.services.card_usage import count_card_admissions
from hub.services.context import HubContext, Outgoing
from hub.services.whitelist import emit_entry_deltas, entry_of
from hub.tables import channels, checkin_events, tickets
from protocol.envelope import seal
from protocol.messages import KIND_ACK, AckPayload, CheckinEvent, EventBatch
from protocol.reasons import Reason

log = logging.getLogger(__name__)
_CHUNK = 500  # bound parameters per IN (...) list


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _existing(conn: Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(conn.execute(select(checkin_events.c.event_id)
                                  .where(checkin_events.c.event_id.in_(chunk))).scalars())
    return found


def _by_id(conn: Connection, table: Any, columns: Sequence[Any], ids: set[int], lock: bool = False) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for chunk in _chunks(sorted(ids)):
        query = select(table.c.id, *columns).where(table.c.id.in_(chunk))
        out.update({r.id: r for r in conn.execute(query.with_for_update() if lock else query)})
    return out


def _count_admissions(ctx: HubContext, conn: Connection, new: list[CheckinEvent]) -> tuple[set[str], list[Outgoing]]:
    """Bump ``used`` for admitted events; return the conflicting event ids and the "used" deltas."""
    admitted = [e for e in new if e.admitted and e.ticket_id is not None and e.direction == "entry"]
    if not admitted:
        return set(), []
    ticket_ids = {e.ticket_id for e in admitted if e.ticket_id is not None}
    rows = _by_id(conn, tickets, [tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons,
                                  tickets.c.status, tickets.c.used], ticket_ids, lock=True)
    max_entries = {r.id: r.max_entries for r in _by_id(conn, channels, [channels.c.max_entries],
                                                       {e.channel_id for e in admitted}).values()}
    used = {tid: r.used for tid, r in rows.items()}
    conflicts: set[str] = set()
    for e in admitted:
        assert e.ticket_id is not None
        if e.ticket_id not in used:
            continue
        if used[e.ticket_id] >= max_entries.get(e.channel_id, 1):
            conflicts.add(e.event_id)
            log.warning("ticket %s admitted again by %s (event %s) after %s admission(s): stored as conflict",
                        e.ticket_id, e.device_id, e.event_id, used[e.ticket_id])
        used[e.ticket_id] += 1
    changed = [{"tid": tid, "used": n} for tid, n in used.items() if n != rows[tid].used]
    conn.execute(update(tickets).where(tickets.c.id == bindparam("tid")).values(used=bindparam("used")), changed)
    outgoing: list[Outgoing] = []
    for c in changed:
        entry = entry_of({**rows[c["tid"]]._mapping, "used": c["used"]})
        outgoing.extend(emit_entry_deltas(ctx, conn, entry, "used"))
    return conflicts, outgoing


def _admissions(conn: Connection, ids: set[str], new: list[CheckinEvent]) -> dict[str, Any]:
    """The admissions ``ids`` name: stored ones and those arriving in this same batch."""
    found: dict[str, Any] = {e.event_id: e for e in new if e.event_id in ids}
    cols = (checkin_events.c.event_id, checkin_events.c.device_id, checkin_events.c.reason,
            checkin_events.c.ticket_id, checkin_events.c.persons, checkin_events.c.direction)
    for chunk in _chunks(sorted(ids - found.keys())):
        found.update({r.event_id: r for r in conn.execute(select(*cols).where(checkin_events.c.event_id.in_(chunk)))})
    return found


def _take_back(ctx: HubContext, conn: Connection, new: list[CheckinEvent]) -> list[Outgoing]:
    """A full annulment (nobody of the admission passed the turnstile) takes the admission back:
    ``used`` goes down by one (not below 0) and a "used" delta tells every gate. Partial ones only stay stored."""
    annulments = {e.annuls: e for e in new if e.reason is Reason.ANNULLED and e.annuls is not None}
    if not annulments:
        return []
    admissions = _admissions(conn, set(annulments), new)
    taken: dict[int, int] = {}
    for admission_id, e in annulments.items():
        a = admissions.get(admission_id)
        if (a is None or a.reason != Reason.ADMITTED or a.direction != "entry" or a.ticket_id is None
                or a.device_id != e.device_id or a.ticket_id != e.ticket_id or a.persons != e.persons):
            continue
        taken[a.ticket_id] = taken.get(a.ticket_id, 0) + 1
    rows = _by_id(conn, tickets, [tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons,
                                  tickets.c.status, tickets.c.used], set(taken), lock=True)
    changed = [{"tid": tid, "used": max(0, r.used - taken[tid])} for tid, r in rows.items()
               if max(0, r.used - taken[tid]) != r.used]
    if not changed:
        return []
    conn.execute(update(tickets).where(tickets.c.id == bindparam("tid")).values(used=bindparam("used")), changed)
    log.info("annulled admission(s) taken back for ticket(s) %s", [c["tid"] for c in changed])
    outgoing: list[Outgoing] = []
    for c in changed:
        outgoing.extend(emit_entry_deltas(ctx, conn, entry_of({**rows[c["tid"]]._mapping, "used": c["used"]}), "used"))
    return outgoing


def _row(e: CheckinEvent, received_at: float, conflict: bool) -> dict[str, Any]:
    return {"event_id": e.event_id, "device_id": e.device_id, "group_id": e.group_id, "channel_id": e.channel_id,
            "device_seq": e.seq, "reason": e.reason.value, "ticket_id": e.ticket_id,
            "performance_id": e.performance_id, "ticket_type_id": e.ticket_type_id, "persons": e.persons,
            "direction": e.direction, "offline": e.offline, "source": e.source, "scanned_at": e.scanned_at,
            "received_at": received_at, "conflict": conflict, "excerpt": e.excerpt,
            "annuls": e.annuls, "card_id": e.card_id}


def store_batches(ctx: HubContext, batches: Sequence[EventBatch]) -> list[Outgoing]:
    """Store every new event of ``batches`` in one transaction; return acks and deltas to publish."""
    now = ctx.clock()
    unique: dict[str, CheckinEvent] = {}
    for batch in batches:
        for e in batch.events:
            unique.setdefault(e.event_id, e)
    with ctx.db.write() as conn:
        known = _existing(conn, list(unique))
        new = [e for eid, e in unique.items() if eid not in known]
        conflicts, outgoing = _count_admissions(ctx, conn, new)
        outgoing += _take_back(ctx, conn, new)
        if new:
            conn.execute(insert(checkin_events), [_row(e, now, e.event_id in conflicts) for e in new])
            outgoing += count_card_admissions(ctx, conn, new)
    if new:
        log.debug("stored %s new event(s), %s duplicate(s)", len(new), len(unique) - len(new))
    acks = [(ctx.topics.ack(b.device_id),
             seal(KIND_ACK, AckPayload(device_id=b.device_id, event_ids=[e.event_id for e in b.events],
                                       at=now).model_dump(), ctx.signer)) for b in batches]
    return acks + outgoing
