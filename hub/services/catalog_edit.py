"""Editing and retiring the catalogue: venues, performances, ticket types, channels and check-in groups.

Every change is audited and emits a signed "rules" delta to each check-in group it affects, published
after the commit (so a moved performance reaches the gates within a second: they apply the new times,
and tickets already sold stay valid because the decision uses the performance's schedule, not the
window in the token). Retiring (``retired: true``) keeps the row and its history: a retired
performance or ticket type is no longer sold, a retired channel refuses with ``channel_closed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select, update

from hub.errors import Invalid, NotFound
from hub.services.catalog import check_link, check_timezone, check_venue_performances, get_group
from hub.services.context import HubContext, Outgoing, Principal, row_dict
from hub.services.rulebook import forget
from hub.services.scopes import rescope
from hub.services.usage import recount
from hub.services.whitelist import emit_entry_deltas, emit_rules_delta, entry_of
from hub.tables import (
    channel_types,
    channels,
    checkin_groups,
    group_performances,
    performances,
    ticket_types,
    ticket_usage,
    tickets,
    venues,
)


def publish(ctx: HubContext, outgoing: list[Outgoing]) -> None:
    forget(ctx)  # a cache filled inside the transaction may hold what it changed
    ctx.publish_all(outgoing)


def _row(conn: Connection, table: Table, row_id: int, what: str, listing: str) -> Any:
    row = conn.execute(select(table).where(table.c.id == row_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist; see GET /api/v1/{listing}")
    return row


def _given(changes: dict[str, Any], nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys the caller sent; ``null`` means "unchanged" except for ``nullable`` keys."""
    return {k: v for k, v in changes.items() if v is not None or k in nullable}


def _detail(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(values.items()))


def _groups_of_performance(conn: Connection, performance_id: int) -> list[int]:
    return sorted(conn.execute(select(group_performances.c.group_id)
                               .where(group_performances.c.performance_id == performance_id)).scalars())


def _recount_venue_days(ctx: HubContext, conn: Connection, groups: Sequence[int]) -> list[Outgoing]:
    """The venue's day changed meaning: replay every usage counted in its groups' scopes in the new zone
    (a once-a-day pass used "today" stays used today), and send gates the "used" deltas that differ."""
    forget(ctx)
    pairs = {(int(r[0]), int(r[1])) for r in conn.execute(select(ticket_usage.c.ticket_id, ticket_usage.c.scope_id)
                             .where(ticket_usage.c.scope_id.in_(list(groups))))}
    return recount(ctx, conn, pairs) if pairs else []


def patch_venue(ctx: HubContext, who: Principal, venue_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    values = _given(changes)
    if "timezone" in values:
        check_timezone(values["timezone"])
    with ctx.db.write() as conn:
        row = _row(conn, venues, venue_id, "venue", "venues")
        outgoing: list[Outgoing] = []
        if values:
            conn.execute(update(venues).where(venues.c.id == venue_id).values(**values))
        if values.get("timezone", row.timezone) != row.timezone:
            groups = conn.execute(select(checkin_groups.c.id).where(checkin_groups.c.venue_id == venue_id)
                                  .order_by(checkin_groups.c.id)).scalars().all()
            outgoing = [emit_rules_delta(ctx, conn, g) for g in groups]
            outgoing += _recount_venue_days(ctx, conn, groups)
        ctx.audit(conn, who, "venue.update", f"venue:{venue_id}", _detail(values))
        out = row_dict(conn.execute(select(venues).where(venues.c.id == venue_id)).one())
    publish(ctx, outgoing)
    return out


def patch_performance(ctx: HubContext, who: Principal, performance_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    values = {k: v.timestamp() if isinstance(v, datetime) else v for k, v in _given(changes).items()}
    with ctx.db.write() as conn:
        row = _row(conn, performances, performance_id, "performance", "performances")
        doors, start, end = (values.get(k, getattr(row, k)) for k in ("doors_open", "starts_at", "ends_at"))
        if not doors <= start < end:
            raise Invalid("doors_open, starts_at, ends_at: times must satisfy doors_open <= starts_at < ends_at "
                          f"(now {row.doors_open:.0f}, {row.starts_at:.0f}, {row.ends_at:.0f}); send them together")
        outgoing: list[Outgoing] = []
        if values:
            conn.execute(update(performances).where(performances.c.id == performance_id).values(**values))
            outgoing = [emit_rules_delta(ctx, conn, g) for g in _groups_of_performance(conn, performance_id)]
        ctx.audit(conn, who, "performance.update", f"performance:{performance_id}", _detail(values))
        out = row_dict(conn.execute(select(performances).where(performances.c.id == performance_id)).one())
    publish(ctx, outgoing)
    return out


def patch_ticket_type(ctx: HubContext, who: Principal, type_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    values = _given(changes)
    with ctx.db.write() as conn:
        _row(conn, ticket_types, type_id, "ticket type", "ticket-types")
        if values:
            conn.execute(update(ticket_types).where(ticket_types.c.id == type_id).values(**values))
        ctx.audit(conn, who, "ticket_type.update", f"ticket_type:{type_id}", _detail(values))
        out = row_dict(conn.execute(select(ticket_types).where(ticket_types.c.id == type_id)).one())
    forget(ctx)
    return out


def channel_out(conn: Connection, channel_id: int) -> dict[str, Any]:
    row = conn.execute(select(channels.c.id, channels.c.group_id, channels.c.name, channels.c.max_entries,
                              channels.c.retired).where(channels.c.id == channel_id)).one()
    types = conn.execute(select(channel_types.c.ticket_type_id).where(channel_types.c.channel_id == channel_id)
                         .order_by(channel_types.c.ticket_type_id)).scalars().all()
    return {**row_dict(row), "ticket_type_ids": list(types)}


def patch_channel(ctx: HubContext, who: Principal, channel_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    values = _given(changes)
    type_ids = values.pop("ticket_type_ids", None)
    with ctx.db.write() as conn:
        row = _row(conn, channels, channel_id, "channel", "channels")
        if type_ids is not None:
            wanted = set(type_ids)
            found = set(conn.execute(select(ticket_types.c.id).where(ticket_types.c.id.in_(wanted))).scalars())
            if wanted - found:
                raise NotFound(f"ticket_type_ids: ticket type {', '.join(map(str, sorted(wanted - found)))} "
                               "does not exist; see GET /api/v1/ticket-types")
            conn.execute(delete(channel_types).where(channel_types.c.channel_id == channel_id))
            if wanted:
                conn.execute(insert(channel_types), [{"channel_id": channel_id, "ticket_type_id": t}
                                                     for t in sorted(wanted)])
        if values:
            conn.execute(update(channels).where(channels.c.id == channel_id).values(**values))
        outgoing = [emit_rules_delta(ctx, conn, row.group_id)]
        ctx.audit(conn, who, "channel.update", f"channel:{channel_id}",
                  _detail({**values, **({"ticket_type_ids": sorted(type_ids)} if type_ids is not None else {})}))
        out = channel_out(conn, channel_id)
    publish(ctx, outgoing)
    return out


def patch_group(ctx: HubContext, who: Principal, group_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    values = _given(changes, nullable=("counter_group_id", "capacity"))
    perf_ids = values.pop("performance_ids", None)
    with ctx.db.write() as conn:
        row = _row(conn, checkin_groups, group_id, "check-in group", "checkin-groups")
        added: set[int] = set()
        if perf_ids is not None:
            wanted = set(perf_ids)
            found = set(conn.execute(select(performances.c.id).where(performances.c.id.in_(wanted))).scalars())
            if wanted - found:
                raise NotFound(f"performance_ids: performance {', '.join(map(str, sorted(wanted - found)))} "
                               "does not exist; see GET /api/v1/performances")
            check_venue_performances(conn, row.venue_id, sorted(wanted))
            old = set(conn.execute(select(group_performances.c.performance_id)
                                   .where(group_performances.c.group_id == group_id)).scalars())
            added = wanted - old
            conn.execute(delete(group_performances).where(group_performances.c.group_id == group_id))
            if wanted:
                conn.execute(insert(group_performances), [{"group_id": group_id, "performance_id": p}
                                                          for p in sorted(wanted)])
        relink = "counter_group_id" in values and values["counter_group_id"] != row.counter_group_id
        if relink and values["counter_group_id"] is not None:
            check_link(conn, group_id, row.venue_id, values["counter_group_id"])
        if values:
            conn.execute(update(checkin_groups).where(checkin_groups.c.id == group_id).values(**values))
        forget(ctx)  # the group's performances and scope changed inside this transaction
        outgoing = [emit_rules_delta(ctx, conn, group_id)]
        if relink:
            outgoing += rescope(ctx, conn, group_id, row.counter_group_id or group_id,
                                values["counter_group_id"] or group_id)
        outgoing += _announce_tickets(ctx, conn, group_id, added)
        ctx.audit(conn, who, "group.update", f"group:{group_id}",
                  _detail({**values, **({"performance_ids": sorted(perf_ids)} if perf_ids is not None else {})}))
    publish(ctx, outgoing)
    return get_group(ctx, group_id)


def _announce_tickets(ctx: HubContext, conn: Connection, group_id: int, performance_ids: set[int]) -> list[Outgoing]:
    """A performance added to a group: its tickets reach the group's gates as entries (op "sale")."""
    if not performance_ids:
        return []
    rows = conn.execute(select(tickets.c.id, tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons,
                               tickets.c.status, tickets.c.used)
                        .where(tickets.c.performance_id.in_(sorted(performance_ids))).order_by(tickets.c.id)).all()
    out: list[Outgoing] = []
    for r in rows:
        out += emit_entry_deltas(ctx, conn, entry_of(r), "sale", only_group=group_id)
    return out
