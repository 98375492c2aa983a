"""Venues, performances, ticket types, check-in groups and channels (changes emit "rules" deltas)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, literal_column, select

from hub.errors import Invalid, NotFound
from hub.services.context import HubContext, Principal, row_dict
from hub.services.rulebook import forget
from hub.services.whitelist import emit_rules_delta
from hub.tables import (
    channel_types,
    channels,
    checkin_groups,
    group_performances,
    performances,
    ticket_types,
    venues,
)
from protocol.errors import MalformedError
from protocol.localtime import DEFAULT_TIMEZONE, check_zone


def _exists(conn: Connection, table: Table, ids: Sequence[int], what: str, listing: str) -> None:
    wanted = set(ids)
    found = set(conn.execute(select(table.c.id).where(table.c.id.in_(wanted))).scalars())
    missing = sorted(wanted - found)
    if missing:
        raise NotFound(f"{what} {', '.join(map(str, missing))} does not exist; see GET /api/v1/{listing}")


def _list(ctx: HubContext, table: Table) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [row_dict(r) for r in conn.execute(select(table).order_by(table.c.id))]


def check_timezone(name: str) -> str:
    try:
        return check_zone(name)
    except MalformedError as exc:
        raise Invalid(f"timezone: {exc}") from exc


def create_venue(ctx: HubContext, who: Principal, name: str, timezone: str = DEFAULT_TIMEZONE) -> dict[str, Any]:
    check_timezone(timezone)
    with ctx.db.write() as conn:
        vid: int = conn.execute(insert(venues).values(name=name, timezone=timezone)
                                .returning(literal_column("id"))).scalar_one()
        ctx.audit(conn, who, "venue.create", f"venue:{vid}", f"{name} timezone={timezone}")
    return {"id": vid, "name": name, "timezone": timezone}


def list_venues(ctx: HubContext) -> list[dict[str, Any]]:
    return _list(ctx, venues)


def create_performance(ctx: HubContext, who: Principal, venue_id: int, name: str, doors_open: datetime,
                       starts_at: datetime, ends_at: datetime, print_replaces_eticket: bool = True) -> dict[str, Any]:
    if not doors_open <= starts_at < ends_at:
        raise Invalid("times must satisfy doors_open <= starts_at < ends_at; correct them and retry")
    values = {"venue_id": venue_id, "name": name, "doors_open": doors_open.timestamp(),
              "starts_at": starts_at.timestamp(), "ends_at": ends_at.timestamp(),
              "print_replaces_eticket": print_replaces_eticket}
    with ctx.db.write() as conn:
        _exists(conn, venues, [venue_id], "venue", "venues")
        pid: int = conn.execute(insert(performances).values(**values).returning(literal_column("id"))).scalar_one()
        ctx.audit(conn, who, "performance.create", f"performance:{pid}", name)
    return {"id": pid, **values}


def list_performances(ctx: HubContext) -> list[dict[str, Any]]:
    return _list(ctx, performances)


def create_ticket_type(ctx: HubContext, who: Principal, name: str, name_zh: str, price_cents: int) -> dict[str, Any]:
    with ctx.db.write() as conn:
        tid: int = conn.execute(insert(ticket_types).values(name=name, name_zh=name_zh, price_cents=price_cents)
                           .returning(literal_column("id"))).scalar_one()
        ctx.audit(conn, who, "ticket_type.create", f"ticket_type:{tid}", name)
    return {"id": tid, "name": name, "name_zh": name_zh, "price_cents": price_cents}


def list_ticket_types(ctx: HubContext) -> list[dict[str, Any]]:
    return _list(ctx, ticket_types)


def check_venue_performances(conn: Connection, venue_id: int, performance_ids: Sequence[int]) -> None:
    """A group's performances are its venue's: their days and weekdays are the venue's."""
    others = sorted(conn.execute(select(performances.c.id).where(
        performances.c.id.in_(set(performance_ids)), performances.c.venue_id != venue_id)).scalars())
    if others:
        raise Invalid(f"performance_ids: performance {', '.join(map(str, others))} is at another venue; "
                      "a check-in group holds performances of its own venue only")


def check_link(conn: Connection, group_id: int | None, venue_id: int, counter_group_id: int) -> None:
    """A group may count with another group of its venue that counts on its own (no chains, no cycles)."""
    if counter_group_id == group_id:
        raise Invalid("counter_group_id: a group cannot count with itself; send null to count on its own")
    other = conn.execute(select(checkin_groups.c.venue_id, checkin_groups.c.counter_group_id)
                         .where(checkin_groups.c.id == counter_group_id)).first()
    if other is None:
        raise NotFound(f"counter_group_id: check-in group {counter_group_id} does not exist; "
                       "see GET /api/v1/checkin-groups")
    if other.venue_id != venue_id:
        raise Invalid(f"counter_group_id: check-in group {counter_group_id} is at another venue; "
                      "only groups of the same venue can count together")
    if other.counter_group_id is not None:
        raise Invalid(f"counter_group_id: check-in group {counter_group_id} counts with group "
                      f"{other.counter_group_id}; link to group {other.counter_group_id} instead")
    if group_id is not None and conn.execute(select(checkin_groups.c.id)
                                             .where(checkin_groups.c.counter_group_id == group_id)).first():
        raise Invalid(f"counter_group_id: other groups count with group {group_id}; unlink them first "
                      "(links are one level deep)")


def create_group(ctx: HubContext, who: Principal, name: str, venue_id: int, performance_ids: Sequence[int],
                 admit_unlisted: bool = True, counter_group_id: int | None = None) -> dict[str, Any]:
    with ctx.db.write() as conn:
        _exists(conn, venues, [venue_id], "venue", "venues")
        _exists(conn, performances, performance_ids, "performance", "performances")
        check_venue_performances(conn, venue_id, performance_ids)
        if counter_group_id is not None:
            check_link(conn, None, venue_id, counter_group_id)
        gid: int = conn.execute(insert(checkin_groups).values(name=name, venue_id=venue_id, seq=0,
                                                              admit_unlisted=admit_unlisted,
                                                              counter_group_id=counter_group_id)
                                .returning(literal_column("id"))).scalar_one()
        if performance_ids:
            conn.execute(insert(group_performances),
                         [{"group_id": gid, "performance_id": p} for p in sorted(set(performance_ids))])
        out = emit_rules_delta(ctx, conn, gid)
        ctx.audit(conn, who, "group.create", f"group:{gid}", f"{name} performances={sorted(performance_ids)} "
                  f"admit_unlisted={admit_unlisted} counter_group_id={counter_group_id}")
    forget(ctx)
    ctx.publish_all([out])
    return get_group(ctx, gid)


def get_group(ctx: HubContext, group_id: int) -> dict[str, Any]:
    with ctx.db.read() as conn:
        row = conn.execute(select(checkin_groups).where(checkin_groups.c.id == group_id)).first()
        if row is None:
            raise NotFound(f"check-in group {group_id} does not exist; see GET /api/v1/checkin-groups")
        perfs = conn.execute(select(group_performances.c.performance_id)
                             .where(group_performances.c.group_id == group_id)).scalars().all()
    return {**row_dict(row), "performance_ids": sorted(perfs)}


def list_groups(ctx: HubContext) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        ids = conn.execute(select(checkin_groups.c.id).order_by(checkin_groups.c.id)).scalars().all()
    return [get_group(ctx, g) for g in ids]


def create_channel(ctx: HubContext, who: Principal, group_id: int, name: str, ticket_type_ids: Sequence[int],
                   max_entries: int) -> dict[str, Any]:
    with ctx.db.write() as conn:
        _exists(conn, checkin_groups, [group_id], "check-in group", "checkin-groups")
        _exists(conn, ticket_types, ticket_type_ids, "ticket type", "ticket-types")
        cid: int = conn.execute(insert(channels).values(group_id=group_id, name=name, max_entries=max_entries)
                           .returning(literal_column("id"))).scalar_one()
        if ticket_type_ids:
            conn.execute(insert(channel_types),
                         [{"channel_id": cid, "ticket_type_id": t} for t in sorted(set(ticket_type_ids))])
        out = emit_rules_delta(ctx, conn, group_id)
        ctx.audit(conn, who, "channel.create", f"channel:{cid}", f"{name} group={group_id}")
    forget(ctx)
    ctx.publish_all([out])
    return {"id": cid, "group_id": group_id, "name": name, "ticket_type_ids": sorted(set(ticket_type_ids)),
            "max_entries": max_entries}


def list_channels(ctx: HubContext) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(channels).order_by(channels.c.id)).all()
        types = conn.execute(select(channel_types)).all()
    by_channel: dict[int, list[int]] = {}
    for cid, tid in types:
        by_channel.setdefault(cid, []).append(tid)
    return [{**{k: v for k, v in row_dict(r).items() if k not in _RULE_COLUMNS},
             "ticket_type_ids": sorted(by_channel.get(r.id, []))} for r in rows]


_RULE_COLUMNS = ("rules", "type_rules", "card_rules")  # see GET /api/v1/channels/{id}/rules
