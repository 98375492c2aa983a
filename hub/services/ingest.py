"""Storing event batches from devices exactly once, then recounting the tickets and cards they touch.

Counting and conflict flags are :mod:`hub.services.usage` (tickets) and :mod:`hub.services.card_usage`
(member cards): both replay the stored events in scan-time order, so the result does not depend on
the order in which offline gates come back. The ack names the device group's whitelist seq once those
counts are in it (``echo_seq``), so a gate knows when to stop counting its own events itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from hub.services.card_usage import count_card_admissions
from hub.services.context import HubContext, Outgoing
from hub.services.rulebook import topology
from hub.services.usage import Pair, chunks, recount
from hub.tables import checkin_events, checkin_groups, tickets
from protocol.envelope import seal
from protocol.messages import KIND_ACK, AckPayload, CheckinEvent, EventBatch
from protocol.reasons import Reason

log = logging.getLogger(__name__)


def _existing(conn: Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(ids):
        found.update(conn.execute(select(checkin_events.c.event_id)
                                  .where(checkin_events.c.event_id.in_(chunk))).scalars())
    return found


def _counts(e: CheckinEvent) -> bool:
    """Does the event change its ticket's usage (an admission, an exit naming it, an annulment)?"""
    return e.ticket_id is not None and (e.direction == "exit" or e.reason in (Reason.ADMITTED, Reason.ANNULLED))


def _unknown_tickets(conn: Connection, new: list[CheckinEvent]) -> set[str]:
    """Admissions on the signature alone of tickets the hub never sold: conflicts from the start."""
    unlisted = [e for e in new if e.unlisted and e.admitted and e.ticket_id is not None]
    ids = sorted({e.ticket_id for e in unlisted if e.ticket_id is not None})
    known: set[int] = set()
    for chunk in chunks(ids):
        known.update(conn.execute(select(tickets.c.id).where(tickets.c.id.in_(chunk))).scalars())
    flagged = {e.event_id for e in unlisted if e.ticket_id not in known}
    for e in unlisted:
        if e.event_id in flagged:
            log.warning("device %s admitted unknown ticket %s offline (event %s): stored as conflict",
                        e.device_id, e.ticket_id, e.event_id)
    return flagged


def _row(e: CheckinEvent, received_at: float, conflict: bool) -> dict[str, Any]:
    return {"event_id": e.event_id, "device_id": e.device_id, "group_id": e.group_id, "channel_id": e.channel_id,
            "device_seq": e.seq, "reason": e.reason.value, "ticket_id": e.ticket_id,
            "performance_id": e.performance_id, "ticket_type_id": e.ticket_type_id, "persons": e.persons,
            "direction": e.direction, "offline": e.offline, "source": e.source, "scanned_at": e.scanned_at,
            "received_at": received_at, "conflict": conflict, "excerpt": e.excerpt,
            "annuls": e.annuls, "card_id": e.card_id, "credit": e.credit, "unlisted": e.unlisted,
            "forced_by": e.forced_by, "denied": e.denied.value if e.denied is not None else None}


def _echo_seqs(conn: Connection, batches: Sequence[EventBatch]) -> dict[int, int]:
    groups = sorted({b.events[-1].group_id for b in batches if b.events})
    rows = conn.execute(select(checkin_groups.c.id, checkin_groups.c.seq).where(checkin_groups.c.id.in_(groups)))
    return {r.id: r.seq for r in rows}


@dataclass
class Stored:
    """What one ingest transaction did: the acks and deltas to publish (after its commit), the event ids that
    were stored already, its ``received_at`` and how long it took."""

    outgoing: list[Outgoing]
    known: set[str]
    now: float
    seconds: float


def store(ctx: HubContext, batches: Sequence[EventBatch]) -> Stored:
    """Store every new event of ``batches`` in one transaction; metrics are the caller's (:func:`record`):
    the ingest child process (hub/ingest_worker.py) runs this, the hub's process counts."""
    started = time.perf_counter()
    now = ctx.clock()
    unique: dict[str, CheckinEvent] = {}
    for batch in batches:
        for e in batch.events:
            unique.setdefault(e.event_id, e)
    outgoing: list[Outgoing] = []
    with ctx.db.write() as conn:
        known = _existing(conn, list(unique))
        new = [e for eid, e in unique.items() if eid not in known]
        if new:
            unknown = _unknown_tickets(conn, new)
            conn.execute(insert(checkin_events), [_row(e, now, e.event_id in unknown) for e in new])
            scope = topology(ctx, conn).scope
            pairs: set[Pair] = {(e.ticket_id, scope[e.group_id]) for e in new
                                if _counts(e) and e.ticket_id is not None and e.group_id in scope}
            outgoing += recount(ctx, conn, pairs)
            outgoing += count_card_admissions(ctx, conn, new)
        echo = _echo_seqs(conn, batches)
    seconds = time.perf_counter() - started
    if new:
        log.debug("stored %s new event(s), %s duplicate(s)", len(new), len(unique) - len(new))
    acks = [(ctx.topics.ack(b.device_id),
             seal(KIND_ACK, AckPayload(device_id=b.device_id, event_ids=[e.event_id for e in b.events], at=now,
                                       echo_seq=echo.get(b.events[-1].group_id)).model_dump(), ctx.signer))
            for b in batches]
    return Stored(acks + outgoing, known, now, seconds)


def record(ctx: HubContext, batches: Sequence[EventBatch], stored: Stored) -> None:
    """Count a committed ingest transaction in the hub's metrics (once)."""
    seen: set[str] = set()
    new: list[CheckinEvent] = []
    for batch in batches:
        for e in batch.events:
            if e.event_id not in seen and e.event_id not in stored.known:
                seen.add(e.event_id)
                new.append(e)
    ctx.metrics.stored(new, batches, stored.known, stored.now, stored.seconds)


def store_batches(ctx: HubContext, batches: Sequence[EventBatch]) -> list[Outgoing]:
    """Store every new event of ``batches`` in one transaction; return acks and deltas to publish."""
    stored = store(ctx, batches)
    record(ctx, batches, stored)  # committed: count once
    return stored.outgoing
