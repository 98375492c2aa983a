"""Whitelists per check-in group: rules, entries, signed deltas (stored with the change) and snapshots."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select, update

from hub.errors import NotFound
from hub.services.context import HubContext, Outgoing
from hub.services.rulebook import forget, group_rules, topology
from hub.tables import (
    channels,
    checkin_groups,
    group_performances,
    member_cards,
    ticket_usage,
    tickets,
    whitelist_deltas,
)
from protocol.cards import CardEntry
from protocol.envelope import reseal, seal
from protocol.usage import Usage
from protocol.whitelist import (
    KIND_DELTA,
    KIND_SNAPSHOT,
    CardUsage,
    Delta,
    DeltaOp,
    GroupRules,
    Snapshot,
    WhitelistEntry,
)

log = logging.getLogger(__name__)
MAX_CATCH_UP = 1000
_BUMP_SEQ = (update(checkin_groups).where(checkin_groups.c.id == bindparam("gid"))
             .values(seq=checkin_groups.c.seq + 1).returning(checkin_groups.c.seq))
_INSERT_DELTA = whitelist_deltas.insert()
_GROUPS_OF = select(group_performances.c.group_id).where(group_performances.c.performance_id == bindparam("pid"))

ENTRY_COLUMNS = (tickets.c.id, tickets.c.performance_id, tickets.c.ticket_type_id, tickets.c.persons,
                 tickets.c.status, tickets.c.used)
_USAGE_FIELDS = ("entries", "exits", "credit", "last_entry", "last_exit", "day", "day_entries")


def entry_of(row: Mapping[str, Any] | Any) -> WhitelistEntry:
    """A ticket row (with id, performance_id, ticket_type_id, persons, status, used) as an entry."""
    m = row._mapping if hasattr(row, "_mapping") else row
    return WhitelistEntry(m["id"], m["performance_id"], m["ticket_type_id"], m["persons"],
                          m["status"] != "valid", m["used"])


def groups_covering(conn: Connection, performance_ids: Iterable[int]) -> dict[int, list[int]]:
    """performance id -> ids of the check-in groups whose whitelist holds its tickets."""
    ids = list(set(performance_ids))
    out: dict[int, list[int]] = {p: [] for p in ids}
    if ids:
        rows = conn.execute(select(group_performances.c.performance_id, group_performances.c.group_id)
                            .where(group_performances.c.performance_id.in_(ids))).all()
        for perf, group in rows:
            out[perf].append(group)
    return out


def card_entry(row: Any) -> CardEntry:
    """A member_cards row as the gates' card entry (no holder data)."""
    m = row._mapping if hasattr(row, "_mapping") else row
    return CardEntry(m["uid_hash"], m["id"], m["kind"], int(m["valid_from"]), int(m["valid_until"]),
                     frozenset(int(c) for c in m["channel_ids"]), m["entries_per_day"], bool(m["revoked"]))


def group_cards(conn: Connection, group_id: int) -> list[CardEntry]:
    """The cards accepted at one or more channels of the group."""
    chans = set(conn.execute(select(channels.c.id).where(channels.c.group_id == group_id)).scalars())
    rows = conn.execute(select(member_cards).order_by(member_cards.c.id)).all() if chans else []
    return [card_entry(r) for r in rows if chans.intersection(r.channel_ids)]


def emit_delta(ctx: HubContext, conn: Connection, group_id: int, op: DeltaOp, *,
               entry: WhitelistEntry | None = None, rules: GroupRules | None = None,
               card: CardEntry | None = None, card_used: CardUsage | None = None) -> Outgoing:
    """Bump the group's seq and store the signed delta in the caller's transaction."""
    seq = conn.execute(_BUMP_SEQ, {"gid": group_id}).scalar_one()
    now = ctx.clock()
    delta = Delta(group_id, seq, now, op, entry, rules, card, card_used)
    envelope = seal(KIND_DELTA, delta.to_wire(), ctx.signer)
    conn.execute(_INSERT_DELTA, {"group_id": group_id, "seq": seq, "op": op, "envelope": envelope,
                                 "created_at": now})
    return ctx.topics.group_whitelist(group_id), envelope


def emit_entry_deltas(ctx: HubContext, conn: Connection, entry: WhitelistEntry, op: DeltaOp, *,
                      only_group: int | None = None) -> list[Outgoing]:
    """``op`` for the ticket to every group holding its performance (or only to ``only_group``), each with
    the ticket's usage in that group's counting scope."""
    groups = [g for g in conn.execute(_GROUPS_OF, {"pid": entry.performance_id}).scalars()
              if only_group is None or g == only_group]
    if not groups:
        return []
    scope = topology(ctx, conn).scope
    usage = {r.scope_id: Usage(*(int(getattr(r, f)) for f in _USAGE_FIELDS)) for r in conn.execute(
        select(ticket_usage).where(ticket_usage.c.ticket_id == entry.ticket_id))}
    return [emit_delta(ctx, conn, g, op, entry=entry.with_usage(usage.get(scope.get(g, g), Usage())))
            for g in groups]


def emit_rules_delta(ctx: HubContext, conn: Connection, group_id: int) -> Outgoing:
    forget(ctx)  # decision inputs are cached (under the writer lock); the caller forgets again after commit
    return emit_delta(ctx, conn, group_id, "rules", rules=group_rules(conn, group_id))


def _group_seq(conn: Connection, group_id: int) -> int:
    seq = conn.execute(select(checkin_groups.c.seq).where(checkin_groups.c.id == group_id)).scalar()
    if seq is None:
        raise NotFound(f"check-in group {group_id} does not exist; list groups with GET /checkin-groups")
    return int(seq)


def snapshot(ctx: HubContext, group_id: int) -> bytes:
    """The group's whole whitelist at one seq, signed and compressed."""
    with ctx.db.write() as conn:  # the writer lock makes the reads below one consistent state
        seq = _group_seq(conn, group_id)
        rules = group_rules(conn, group_id)
        scope = topology(ctx, conn).scope.get(group_id, group_id)
        u = ticket_usage
        rows = conn.execute(
            select(*ENTRY_COLUMNS[:5], *(u.c[f] for f in _USAGE_FIELDS)).select_from(tickets.join(
                group_performances, group_performances.c.performance_id == tickets.c.performance_id)
                .outerjoin(u, and_(u.c.ticket_id == tickets.c.id, u.c.scope_id == scope)))
            .where(group_performances.c.group_id == group_id)).all()
        cards = group_cards(conn, group_id)
    entries = [WhitelistEntry(t, p, y, n, s != "valid").with_usage(Usage(*rest)) if rest[0] is not None
               else WhitelistEntry(t, p, y, n, s != "valid") for t, p, y, n, s, *rest in rows]
    snap = Snapshot(group_id, seq, ctx.clock(), rules, entries, cards)
    return seal(KIND_SNAPSHOT, snap.to_wire(), ctx.signer, compress=True)


def catch_up(ctx: HubContext, group_id: int, have_seq: int) -> list[bytes]:
    """What a device at ``have_seq`` needs: nothing, the missing deltas in order, or a snapshot."""
    with ctx.db.read() as conn:
        seq = _group_seq(conn, group_id)
        if have_seq == seq:
            return []
        if 0 <= have_seq < seq and seq - have_seq <= MAX_CATCH_UP:
            rows = conn.execute(select(whitelist_deltas.c.seq, whitelist_deltas.c.envelope)
                                .where(whitelist_deltas.c.group_id == group_id,
                                       whitelist_deltas.c.seq > have_seq, whitelist_deltas.c.seq <= seq)
                                .order_by(whitelist_deltas.c.seq)).all()
            if [r.seq for r in rows] == list(range(have_seq + 1, seq + 1)):
                # re-signed with the active control key: stored deltas may be signed by a retired key
                return [reseal(bytes(r.envelope), ctx.signer) for r in rows]
            log.warning("group %s deltas after seq %s are incomplete; sending a snapshot", group_id, have_seq)
    return [snapshot(ctx, group_id)]
