"""Linking and unlinking check-in groups: moving a group to another counting scope.

When a group starts counting with another (or stops), the usage of its tickets is replayed in the
scopes it left and joined (:func:`hub.services.usage.recount`), and its own gates get a "used" delta
for every ticket whose count differs between the two scopes, so they decide on the new scope at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select

from hub.services.context import HubContext, Outgoing
from hub.services.rulebook import forget, topology
from hub.services.usage import entry_with_usage, recount, usage_of
from hub.services.whitelist import emit_delta
from hub.tables import checkin_events, ticket_usage, tickets
from protocol.usage import NO_USAGE, Usage


def _scope_usage(conn: Connection, scope_id: int, performance_ids: frozenset[int]) -> dict[int, tuple[Any, Usage]]:
    if not performance_ids:
        return {}
    rows = conn.execute(select(tickets.c.id, tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons,
                               tickets.c.status, *(ticket_usage.c[f] for f in
                                                   ("entries", "exits", "credit", "last_entry", "last_exit", "day",
                                                    "day_entries")))
                        .select_from(ticket_usage.join(tickets, tickets.c.id == ticket_usage.c.ticket_id))
                        .where(ticket_usage.c.scope_id == scope_id,
                               tickets.c.performance_id.in_(sorted(performance_ids)))).all()
    return {r.id: (r, usage_of(r)) for r in rows}


def rescope(ctx: HubContext, conn: Connection, group_id: int, old_scope: int, new_scope: int) -> list[Outgoing]:
    """``group_id`` now counts in ``new_scope`` (it counted in ``old_scope``); call after the link is updated."""
    forget(ctx)
    topo = topology(ctx, conn)
    perfs = topo.performances.get(group_id, frozenset())
    before = _scope_usage(conn, old_scope, perfs)
    if old_scope == group_id:  # the group counted on its own: nobody else shares that scope
        conn.execute(delete(ticket_usage).where(ticket_usage.c.scope_id == group_id))
    touched = set(conn.execute(select(checkin_events.c.ticket_id).distinct()
                               .where(checkin_events.c.group_id == group_id,
                                      checkin_events.c.ticket_id.is_not(None))).scalars())
    pairs = {(t, new_scope) for t in touched} | ({(t, old_scope) for t in touched} if old_scope != group_id else set())
    outgoing = recount(ctx, conn, pairs)
    after = _scope_usage(conn, new_scope, perfs)
    for ticket_id in sorted(before.keys() | after.keys()):
        row, usage = after.get(ticket_id) or (before[ticket_id][0], NO_USAGE)
        if usage != (before[ticket_id][1] if ticket_id in before else NO_USAGE):
            outgoing.append(emit_delta(ctx, conn, group_id, "used", entry=entry_with_usage(row, usage)))
    return outgoing
