"""Member-card admissions counted over every gate, so "entries per day" holds for the whole venue.

Each gate counts its own card admissions per local day; the hub counts all of them (from the stored
check-in events) and tells every gate of the card's check-in groups with a signed "card_used" delta.
A gate decides on the larger of its own count and the hub's, as it does for tickets' ``used``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from datetime import time as dt_time

from sqlalchemy import Connection, func, select

from hub.services.context import HubContext, Outgoing
from hub.services.whitelist import emit_delta
from hub.tables import channels, checkin_events, member_cards
from protocol.messages import CheckinEvent
from protocol.whitelist import CardUsage


def local_day(ts: float) -> str:
    """The venue's calendar day of ``ts`` (the hub runs on the venue's local time, as the gates do)."""
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def _day_bounds(day: str) -> tuple[float, float]:
    """Local midnight of ``day`` and of the day after, as unix times (DST-safe: naive = local)."""
    first = date.fromisoformat(day)
    return (datetime.combine(first, dt_time()).timestamp(),
            datetime.combine(first + timedelta(days=1), dt_time()).timestamp())


def count_card_admissions(ctx: HubContext, conn: Connection, new: Sequence[CheckinEvent]) -> list[Outgoing]:
    """After ``new`` events are inserted: one "card_used" delta per (card, day) they admitted on."""
    days = sorted({(e.card_id, local_day(e.scanned_at)) for e in new
                   if e.admitted and e.card_id is not None and e.direction == "entry"})
    outgoing: list[Outgoing] = []
    for card_id, day in days:
        assert card_id is not None
        start, end = _day_bounds(day)
        entries = conn.execute(select(func.count()).select_from(checkin_events).where(
            checkin_events.c.card_id == card_id, checkin_events.c.reason == "admitted",
            checkin_events.c.direction == "entry", checkin_events.c.scanned_at >= start,
            checkin_events.c.scanned_at < end)).scalar_one()
        channel_ids = conn.execute(select(member_cards.c.channel_ids).where(member_cards.c.id == card_id)).scalar()
        if not channel_ids:
            continue  # a card the hub does not know (deleted, or another hub's): nothing to tell
        groups = sorted(set(conn.execute(select(channels.c.group_id).where(channels.c.id.in_(set(channel_ids))))
                            .scalars()))
        usage = CardUsage(card_id, day, int(entries))
        outgoing += [emit_delta(ctx, conn, g, "card_used", card_used=usage) for g in groups]
    return outgoing
