"""Member-card admissions counted over every gate, per **venue** day, so "entries per day" holds for the
whole venue, and admissions beyond it are flagged by scan time.

Each gate counts its own card admissions per venue day; the hub counts all of them (from the stored
check-in events) and tells every gate of the card's check-in groups with a signed "card_used" delta.
Replaying a card's admissions of one venue day in scan-time order, those beyond the card's entries
per day (or the channel's card rule, if lower) are conflicts (forced ones never are).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, select, update

from hub.services.context import HubContext, Outgoing
from hub.services.rulebook import cached_rules, topology
from hub.services.whitelist import emit_delta
from hub.tables import channels, checkin_events, member_cards
from protocol.errors import MalformedError
from protocol.localtime import day_bounds, local_day
from protocol.messages import CheckinEvent
from protocol.whitelist import CardUsage

_E = checkin_events


def _limit(ctx: HubContext, conn: Connection, group_id: int, channel_id: int, per_day: int) -> int:
    try:
        chan = cached_rules(ctx, conn, group_id).channels.get(channel_id)
    except (LookupError, MalformedError):
        chan = None
    rule = chan.card_rules().entries_per_day if chan is not None else None
    return min(per_day, rule) if rule is not None else per_day


def _recount_day(ctx: HubContext, conn: Connection, card_id: int, per_day: int, start: float, end: float) -> int:
    rows = conn.execute(select(_E.c.event_id, _E.c.group_id, _E.c.channel_id, _E.c.conflict, _E.c.forced_by)
                        .where(_E.c.card_id == card_id, _E.c.reason == "admitted", _E.c.direction == "entry",
                               _E.c.scanned_at >= start, _E.c.scanned_at < end)
                        .order_by(_E.c.scanned_at, _E.c.device_seq, _E.c.event_id)).all()
    changed = []
    for n, r in enumerate(rows):
        flag = r.forced_by is None and n >= _limit(ctx, conn, r.group_id, r.channel_id, per_day)
        if flag != bool(r.conflict):
            changed.append({"eid": r.event_id, "flag": flag})
    if changed:
        conn.execute(update(_E).where(_E.c.event_id == bindparam("eid")).values(conflict=bindparam("flag")), changed)
    return len(rows)


def count_card_admissions(ctx: HubContext, conn: Connection, new: Sequence[CheckinEvent]) -> list[Outgoing]:
    """After ``new`` events are inserted: re-flag, and one "card_used" delta per (card, venue day) they
    admitted on."""
    topo = topology(ctx, conn)
    days = sorted({(e.card_id, topo.zone(e.group_id), local_day(e.scanned_at, topo.zone(e.group_id))) for e in new
                   if e.admitted and e.card_id is not None and e.direction == "entry"})
    outgoing: list[Outgoing] = []
    for card_id, tz, day in days:
        assert card_id is not None
        card = conn.execute(select(member_cards.c.channel_ids, member_cards.c.entries_per_day)
                            .where(member_cards.c.id == card_id)).first()
        if card is None or not card.channel_ids:
            continue  # a card the hub does not know (deleted, or another hub's): nothing to tell
        start, end = day_bounds(day, tz)
        entries = _recount_day(ctx, conn, card_id, card.entries_per_day, start, end)
        groups = sorted(set(conn.execute(select(channels.c.group_id)
                                         .where(channels.c.id.in_(set(card.channel_ids)))).scalars()))
        usage = CardUsage(card_id, day, int(entries))
        outgoing += [emit_delta(ctx, conn, g, "card_used", card_used=usage) for g in groups]
    return outgoing
