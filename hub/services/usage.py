"""Counting: each ticket's usage per counting scope, and the conflict flags, replayed from stored events.

For one (ticket, scope) the usage is the fold (:func:`protocol.usage.fold`) of every stored event of
the ticket in the scope's groups, in scan-time order, whatever order they arrived in:

* admissions (entry direction, reason ``admitted``, forced ones included; ``credit`` ones finish a
  partly annulled entry instead of starting one);
* exits that name the ticket;
* annulments, with the persons of the admission they name (same device, same ticket) and its credit flag.

Replaying in that order, an admission (not forced, not on credit) that the rules of its channel
(:func:`protocol.decision.usage_refusal`) would have refused at its scan time is a **conflict**: of
two offline admissions of a single-entry ticket the later scan is flagged, even if it arrived first.
An admission of a ticket refunded or voided before its scan (a gate offline since), and one made on
the signature alone (``unlisted``) of a ticket the hub does not know or for another performance or
type, are conflicts too.

A ticket printed at a kiosk to replace its e-ticket (``tickets.replaces``) counts the events of the
tickets it replaces as its own, so one purchase never admits more persons than it was sold for.
``tickets.used`` is the sum of the ticket's entries over all its scopes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select, update

from hub.services.context import HubContext, Outgoing
from hub.services.rulebook import Topology, rules_for_event, topology
from hub.services.whitelist import emit_delta
from hub.tables import checkin_events, ticket_usage, tickets
from protocol.decision import usage_refusal
from protocol.reasons import Reason
from protocol.usage import NO_USAGE, Usage, UsageEvent, step
from protocol.whitelist import WhitelistEntry

log = logging.getLogger(__name__)
CHUNK = 500  # bound parameters per IN (...) list
USAGE_FIELDS = ("entries", "exits", "credit", "last_entry", "last_exit", "day", "day_entries")
TICKET_COLUMNS = (tickets.c.id, tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons,
                  tickets.c.status, tickets.c.status_at, tickets.c.used, tickets.c.replaces, tickets.c.replaced_by)
_EVENT_COLUMNS = (checkin_events.c.event_id, checkin_events.c.device_id, checkin_events.c.group_id,
                  checkin_events.c.channel_id, checkin_events.c.device_seq, checkin_events.c.reason,
                  checkin_events.c.ticket_id, checkin_events.c.performance_id, checkin_events.c.ticket_type_id,
                  checkin_events.c.persons, checkin_events.c.direction, checkin_events.c.scanned_at,
                  checkin_events.c.conflict, checkin_events.c.annuls, checkin_events.c.credit,
                  checkin_events.c.unlisted, checkin_events.c.forced_by)
_ADMITTED, _ANNULLED = Reason.ADMITTED.value, Reason.ANNULLED.value

Pair = tuple[int, int]  # (ticket id, scope id)


def chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def rows_by_id(conn: Connection, table: Any, columns: Sequence[Any], ids: Iterable[int],
               lock: bool = False) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for chunk in chunks(sorted(set(ids))):
        query = select(table.c.id, *columns).where(table.c.id.in_(chunk))
        out.update({r.id: r for r in conn.execute(query.with_for_update() if lock else query)})
    return out


def usage_of(row: Any) -> Usage:
    return Usage(*(int(getattr(row, f)) for f in USAGE_FIELDS))


def usage_rows(conn: Connection, ticket_ids: Iterable[int]) -> dict[Pair, Usage]:
    """Every stored usage of these tickets, by (ticket, scope)."""
    out: dict[Pair, Usage] = {}
    for chunk in chunks(sorted(set(ticket_ids))):
        for r in conn.execute(select(ticket_usage).where(ticket_usage.c.ticket_id.in_(chunk))):
            out[(r.ticket_id, r.scope_id)] = usage_of(r)
    return out


def entry_with_usage(ticket: Any, usage: Usage) -> WhitelistEntry:
    return WhitelistEntry(ticket.id, ticket.performance_id, ticket.ticket_type_id, ticket.persons,
                          ticket.status != "valid").with_usage(usage)


def _family(conn: Connection, ids: set[int]) -> dict[int, Any]:
    """The tickets ``ids``, locked, with the tickets they replace and those that replaced them."""
    rows: dict[int, Any] = {}
    todo = set(ids)
    while todo:
        found = rows_by_id(conn, tickets, TICKET_COLUMNS[1:], todo, lock=True)
        rows.update(found)
        todo = {rel for r in found.values() for rel in (r.replaces, r.replaced_by) if rel is not None} - rows.keys()
    return rows


def _chain(rows: dict[int, Any], start: int, link: str) -> list[int]:
    out, seen = [], {start}
    row = rows.get(start)
    while row is not None and getattr(row, link) is not None and getattr(row, link) not in seen:
        nxt = getattr(row, link)
        out.append(nxt)
        seen.add(nxt)
        row = rows.get(nxt)
    return out


def _events(conn: Connection, ticket_ids: Iterable[int]) -> dict[int, list[Any]]:
    """The counting events (admissions, annulments, exits) of these tickets, one query per chunk."""
    out: dict[int, list[Any]] = {}
    for chunk in chunks(sorted(set(ticket_ids))):
        query = select(*_EVENT_COLUMNS).where(
            checkin_events.c.ticket_id.in_(chunk),
            or_(checkin_events.c.reason.in_((_ADMITTED, _ANNULLED)), checkin_events.c.direction == "exit"))
        for r in conn.execute(query):
            out.setdefault(r.ticket_id, []).append(r)
    return out


def _not_valid_then(e: Any, family: dict[int, Any]) -> bool:
    """Was the ticket not admissible when ``e`` was scanned? Unknown, another performance or type (an
    unlisted admission), or refunded / voided before the scan (a gate offline since). A ticket voided
    because a printed ticket replaced it is counted through the replacement instead. Decided from the
    scan time and the refund time, so the flag does not depend on when the event arrived."""
    t = family.get(e.ticket_id)
    if t is None:
        return True
    if e.unlisted and (t.performance_id != e.performance_id or t.ticket_type_id != e.ticket_type_id):
        return True
    return (t.status != "valid" and t.replaced_by is None
            and (t.status_at is None or t.status_at <= e.scanned_at))


def replay(ctx: HubContext, conn: Connection, ticket: Any, events: Sequence[Any], tz: str,
           family: dict[int, Any]) -> tuple[Usage, dict[str, bool]]:
    """The ticket's usage after ``events`` (one scope's), and the conflict flag of each admission."""
    by_id = {e.event_id: e for e in events}

    def order(e: Any) -> tuple[float, int, str]:
        a = by_id.get(e.annuls) if e.reason == _ANNULLED else None  # never before what it annuls
        return (max(e.scanned_at, a.scanned_at) if a is not None else e.scanned_at, e.device_seq, e.event_id)

    state, flags = NO_USAGE, {}
    for e in sorted(events, key=order):
        if e.direction == "exit":
            state = step(state, UsageEvent("exit", e.scanned_at), tz)
        elif e.reason == _ADMITTED:
            if e.forced_by:
                flags[e.event_id] = False
            elif _not_valid_then(e, family):
                flags[e.event_id] = True
            elif e.credit:
                flags[e.event_id] = False
            else:
                rules = rules_for_event(ctx, conn, e.group_id, e.channel_id, ticket.ticket_type_id)
                flags[e.event_id] = usage_refusal(rules, state, e.scanned_at, tz) is not None
            state = step(state, UsageEvent("entry", e.scanned_at, max(1, e.persons), credit=bool(e.credit)), tz)
        elif e.reason == _ANNULLED:
            a = by_id.get(e.annuls)
            if (a is not None and a.reason == _ADMITTED and a.direction == "entry" and a.device_id == e.device_id
                    and a.ticket_id == e.ticket_id and 0 < e.persons <= max(1, a.persons)):
                state = step(state, UsageEvent("annul", e.scanned_at, e.persons, max(1, a.persons),
                                               credit=bool(a.credit)), tz)
    return state, flags


def _store_usage(conn: Connection, changed: dict[Pair, Usage], stored: dict[Pair, Usage]) -> None:
    updates = [{"tid": t, "sid": s, **dict(zip(USAGE_FIELDS, u.to_wire(), strict=True))}
               for (t, s), u in changed.items() if (t, s) in stored]
    inserts = [{"ticket_id": t, "scope_id": s, **dict(zip(USAGE_FIELDS, u.to_wire(), strict=True))}
               for (t, s), u in changed.items() if (t, s) not in stored]
    if updates:
        conn.execute(update(ticket_usage).where(ticket_usage.c.ticket_id == bindparam("tid"),
                                                ticket_usage.c.scope_id == bindparam("sid"))
                     .values({f: bindparam(f) for f in USAGE_FIELDS}), updates)
    if inserts:
        conn.execute(insert(ticket_usage), inserts)


def _store_flags(conn: Connection, flags: dict[str, bool], events: dict[int, list[Any]]) -> None:
    old = {e.event_id: e for evs in events.values() for e in evs}
    changed = [{"eid": eid, "flag": f} for eid, f in flags.items() if eid in old and bool(old[eid].conflict) != f]
    for c in changed:
        e = old[c["eid"]]
        if c["flag"]:
            log.warning("ticket %s admitted again by %s (event %s, scanned %.0f): stored as conflict",
                        e.ticket_id, e.device_id, e.event_id, e.scanned_at)
        else:
            log.info("event %s of ticket %s is no longer a conflict (an earlier scan arrived)", e.event_id, e.ticket_id)
    if changed:
        conn.execute(update(checkin_events).where(checkin_events.c.event_id == bindparam("eid"))
                     .values(conflict=bindparam("flag")), changed)


def recount(ctx: HubContext, conn: Connection, pairs: Iterable[Pair]) -> list[Outgoing]:
    """Replay the usage of each (ticket, scope) (and of tickets replacing them); store what changed,
    re-flag conflicts, and return the "used" deltas for every group of the scope holding the ticket."""
    wanted = set(pairs)
    if not wanted:
        return []
    topo = topology(ctx, conn)
    family = _family(conn, {t for t, _ in wanted})
    for t, s in list(wanted):
        wanted.update((d, s) for d in _chain(family, t, "replaced_by"))
    lineage = {t: [t, *_chain(family, t, "replaces")] for t, _ in wanted}
    events = _events(conn, {i for ids in lineage.values() for i in ids})
    counted = {t for t, _ in wanted if t in family}
    stored = usage_rows(conn, counted)
    flags: dict[str, bool] = {}
    changed: dict[Pair, Usage] = {}
    for t, s in sorted(wanted):  # replacing tickets (higher ids) last: their view of shared events wins
        if t not in family:
            continue
        evs = [e for i in lineage[t] for e in events.get(i, []) if topo.scope.get(e.group_id) == s]
        usage, found = replay(ctx, conn, family[t], evs, topo.zone(s), family)
        flags.update(found)
        if usage != stored.get((t, s), NO_USAGE):
            changed[(t, s)] = usage
    _store_usage(conn, changed, stored)
    _store_flags(conn, flags, events)
    _store_used(conn, counted, {**stored, **changed}, family)
    return _used_deltas(ctx, conn, topo, changed, family)


def _store_used(conn: Connection, ticket_ids: set[int], usage: dict[Pair, Usage], family: dict[int, Any]) -> None:
    totals = {t: 0 for t in ticket_ids}
    for (t, _s), u in usage.items():
        if t in totals:
            totals[t] += u.entries
    rows = [{"tid": t, "n": n} for t, n in totals.items() if family[t].used != n]
    if rows:
        conn.execute(update(tickets).where(tickets.c.id == bindparam("tid")).values(used=bindparam("n")), rows)


def _used_deltas(ctx: HubContext, conn: Connection, topo: Topology, changed: dict[Pair, Usage],
                 family: dict[int, Any]) -> list[Outgoing]:
    out: list[Outgoing] = []
    for (t, s), u in sorted(changed.items()):
        ticket = family[t]
        entry = entry_with_usage(ticket, u)
        out += [emit_delta(ctx, conn, g, "used", entry=entry) for g in topo.groups_holding(s, ticket.performance_id)]
    return out


def copy_usage(conn: Connection, from_ticket: int, to_ticket: int) -> dict[Pair, Usage]:
    """Give ``to_ticket`` (a replacement) the usage of ``from_ticket`` in every scope, and its ``used``."""
    rows = {s: u for (t, s), u in usage_rows(conn, [from_ticket]).items() if t == from_ticket}
    if rows:
        conn.execute(insert(ticket_usage), [{"ticket_id": to_ticket, "scope_id": s,
                                              **dict(zip(USAGE_FIELDS, u.to_wire(), strict=True))}
                                             for s, u in sorted(rows.items())])
    used = conn.execute(select(tickets.c.used).where(tickets.c.id == from_ticket)).scalar() or 0
    conn.execute(update(tickets).where(tickets.c.id == to_ticket).values(used=used))
    return {(to_ticket, s): u for s, u in rows.items()}
