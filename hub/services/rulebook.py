"""The check-in rules of each group as gates get them (``GroupRules``), and how groups count together.

Built from the catalogue (venue time zone, performance times, channels with their rules, supervisors)
and cached in ``ctx.rules_cache`` until the next rules change (:func:`forget`): the online check and
the ingest of event batches read them on every scan.

A group counts entries on its own unless it is linked to another (``counter_group_id``): its counting
*scope* is then that group's id, shared with every group linked to it. Links are one level deep (a
group that others count with counts on its own), so there are no chains and no cycles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, select

from hub.errors import NotFound
from hub.services.context import HubContext
from hub.tables import (
    channel_types,
    channels,
    checkin_groups,
    group_performances,
    performances,
    supervisors,
    venues,
)
from protocol.localtime import DEFAULT_TIMEZONE
from protocol.rules import DEFAULT_RULES, EntryRules, merged
from protocol.supervisor import Supervisor
from protocol.whitelist import ChannelRules, GroupRules, Schedule

CARD_BASE = replace(DEFAULT_RULES, max_entries=10_000)  # what ChannelRules.card_rules() assumes


def channel_base(max_entries: int) -> EntryRules:
    return replace(DEFAULT_RULES, max_entries=max_entries)


def channel_rules(row: Any, type_ids: frozenset[int]) -> ChannelRules:
    """A channels row (with rules, type_rules, card_rules) as the gates' effective ChannelRules."""
    base = channel_base(row.max_entries)
    entry = merged(base, row.rules) if row.rules else None
    effective = entry or base
    by_type = {int(t): merged(effective, partial) for t, partial in (row.type_rules or {}).items()}
    cards = merged(CARD_BASE, row.card_rules) if row.card_rules is not None else None
    return ChannelRules(row.id, type_ids, row.max_entries, row.name, entry, by_type, cards, bool(row.retired))


def _schedule(row: Any) -> Schedule:
    starts = int(row.starts_at)
    return Schedule(min(int(row.doors_open), starts), starts, max(int(row.ends_at), starts + 1))


def group_rules(conn: Connection, group_id: int) -> GroupRules:
    """The group's full rules, read now (not cached)."""
    g = conn.execute(select(checkin_groups.c.admit_unlisted, venues.c.timezone)
                     .select_from(checkin_groups.join(venues, venues.c.id == checkin_groups.c.venue_id))
                     .where(checkin_groups.c.id == group_id)).first()
    if g is None:
        raise NotFound(f"check-in group {group_id} does not exist; see GET /api/v1/checkin-groups")
    perfs = conn.execute(select(performances.c.id, performances.c.doors_open, performances.c.starts_at,
                                performances.c.ends_at)
                         .select_from(group_performances.join(performances,
                                                              performances.c.id == group_performances.c.performance_id))
                         .where(group_performances.c.group_id == group_id)).all()
    rows = conn.execute(select(channels).where(channels.c.group_id == group_id).order_by(channels.c.id)).all()
    types: dict[int, set[int]] = {r.id: set() for r in rows}
    if rows:
        for cid, tid in conn.execute(select(channel_types.c.channel_id, channel_types.c.ticket_type_id)
                                     .where(channel_types.c.channel_id.in_(list(types)))):
            types[cid].add(tid)
    chans = {r.id: channel_rules(r, frozenset(types[r.id])) for r in rows}
    sups = tuple(Supervisor(s.id, s.name, s.pin_hash, s.card_key) for s in conn.execute(
        select(supervisors).where(supervisors.c.retired.is_(False)).order_by(supervisors.c.id)))
    return GroupRules(group_id, frozenset(p.id for p in perfs), chans, g.timezone or DEFAULT_TIMEZONE,
                      {p.id: _schedule(p) for p in perfs}, bool(g.admit_unlisted), sups)


@dataclass(frozen=True)
class Topology:
    """Every group's counting scope, venue time zone and performances."""

    scope: Mapping[int, int]  # group id -> scope id
    timezone: Mapping[int, str]  # group id -> its venue's IANA zone
    performances: Mapping[int, frozenset[int]]  # group id -> performance ids

    def members(self, scope_id: int) -> list[int]:
        return sorted(g for g, s in self.scope.items() if s == scope_id)

    def zone(self, group_id: int) -> str:
        return self.timezone.get(group_id, DEFAULT_TIMEZONE)

    def groups_holding(self, scope_id: int, performance_id: int) -> list[int]:
        """The scope's groups whose whitelist holds tickets of ``performance_id``."""
        return [g for g in self.members(scope_id) if performance_id in self.performances.get(g, frozenset())]


def load_topology(conn: Connection) -> Topology:
    rows = conn.execute(select(checkin_groups.c.id, checkin_groups.c.counter_group_id, venues.c.timezone)
                        .select_from(checkin_groups.join(venues, venues.c.id == checkin_groups.c.venue_id))).all()
    perfs: dict[int, set[int]] = {r.id: set() for r in rows}
    for gid, pid in conn.execute(select(group_performances.c.group_id, group_performances.c.performance_id)):
        perfs.setdefault(gid, set()).add(pid)
    return Topology({r.id: r.counter_group_id or r.id for r in rows},
                    {r.id: r.timezone or DEFAULT_TIMEZONE for r in rows},
                    {g: frozenset(p) for g, p in perfs.items()})


def _cached(ctx: HubContext, key: Any, load: Callable[[], Any]) -> Any:
    """``ctx.rules_cache[key]``, else ``load()``, kept only if no :func:`forget` ran meanwhile: what a transaction
    read before a change committed (here or on another hub) must not outlive that change in the cache."""
    found = ctx.rules_cache.get(key)
    if found is None:
        generation = ctx.rules_generation
        found = load()
        if ctx.rules_generation == generation:
            ctx.rules_cache[key] = found
    return found


def topology(ctx: HubContext, conn: Connection) -> Topology:
    found = _cached(ctx, "topology", lambda: load_topology(conn))
    assert isinstance(found, Topology)
    return found


def cached_rules(ctx: HubContext, conn: Connection, group_id: int) -> GroupRules:
    found = _cached(ctx, ("group", group_id), lambda: group_rules(conn, group_id))
    assert isinstance(found, GroupRules)
    return found


def group_of_channel(ctx: HubContext, conn: Connection, channel_id: int) -> int:
    key = ("channel", channel_id)

    def load() -> int:
        found = conn.execute(select(channels.c.group_id).where(channels.c.id == channel_id)).scalar()
        if found is None:
            raise NotFound(f"channel {channel_id} does not exist; see GET /api/v1/channels")
        return int(found)

    return int(_cached(ctx, key, load))


def rules_for_event(ctx: HubContext, conn: Connection, group_id: int, channel_id: int,
                    ticket_type_id: int) -> EntryRules:
    """The rules a gate applied to an admission at ``channel_id`` (defaults if the channel is unknown)."""
    try:
        chan = cached_rules(ctx, conn, group_id).channels.get(channel_id)
    except NotFound:
        chan = None
    return chan.rules_for(ticket_type_id) if chan is not None else DEFAULT_RULES


def forget(ctx: HubContext, *, broadcast: bool = True) -> None:
    """Drop every cached rule (after any change to the catalogue, rules, links or supervisors), here and (unless
    ``broadcast`` is off: this is the other hubs' word) in every other hub process on the database."""
    ctx.rules_generation += 1
    ctx.rules_cache.clear()
    if broadcast:
        ctx.broadcast("rules", "")
