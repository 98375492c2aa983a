"""Member cards and annual passes: issue, list, revoke; each change emits a signed "card" delta.

Only the UID hash (:func:`protocol.cards.card_key`) is stored; the raw UID read at the box office is
hashed here and dropped. A card's delta goes to every check-in group holding one of its channels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, literal_column, select, update

from hub.errors import Conflict, Invalid, NotFound
from hub.services.context import HubContext, Outgoing, Principal, row_dict
from hub.services.whitelist import card_entry, emit_delta
from hub.tables import channels, member_cards
from protocol.cards import card_key, parse_uid
from protocol.errors import MalformedError

log = logging.getLogger(__name__)
_PUBLIC = ("id", "kind", "valid_from", "valid_until", "channel_ids", "entries_per_day", "revoked",
           "revoked_reason", "created_at")


def _card(conn: Connection, card_id: int) -> Any:
    row = conn.execute(select(member_cards).where(member_cards.c.id == card_id)).first()
    if row is None:
        raise NotFound(f"card {card_id} does not exist; see GET /api/v1/cards")
    return row


def _groups_of(conn: Connection, channel_ids: Sequence[int]) -> list[int]:
    return sorted(set(conn.execute(select(channels.c.group_id).where(channels.c.id.in_(set(channel_ids))))
                      .scalars()))


def _emit(ctx: HubContext, conn: Connection, row: Any) -> list[Outgoing]:
    entry = card_entry(row)
    return [emit_delta(ctx, conn, g, "card", card=entry) for g in _groups_of(conn, row.channel_ids)]


def _out(row: Any, with_holder: bool) -> dict[str, Any]:
    data = row_dict(row)
    out = {k: data[k] for k in _PUBLIC}
    if with_holder:
        out["holder_name"] = data["holder_name"]
    return out


def issue(ctx: HubContext, who: Principal, *, uid: str, kind: str, holder_name: str, valid_from: datetime,
          valid_until: datetime, channel_ids: Sequence[int], entries_per_day: int) -> dict[str, Any]:
    """Register a card by the UID read from it; the gates of its channels' groups learn it at once."""
    try:
        key = card_key(parse_uid(uid))
    except MalformedError as exc:
        raise Invalid(f"uid: {exc}") from exc
    if valid_from >= valid_until:
        raise Invalid("valid_from must be before valid_until; correct them and retry")
    chans = sorted(set(channel_ids))
    if not chans:
        raise Invalid("channel_ids: name at least one channel the card opens; see GET /api/v1/channels")
    with ctx.db.write() as conn:
        found = set(conn.execute(select(channels.c.id).where(channels.c.id.in_(chans))).scalars())
        if missing := sorted(set(chans) - found):
            raise NotFound(f"channel {', '.join(map(str, missing))} does not exist; see GET /api/v1/channels")
        if conn.execute(select(member_cards.c.id).where(member_cards.c.uid_hash == key)).first() is not None:
            raise Conflict("this card is already registered; revoke the old registration or use another card")
        card_id: int = conn.execute(insert(member_cards).values(
            uid_hash=key, kind=kind, holder_name=holder_name, valid_from=valid_from.timestamp(),
            valid_until=valid_until.timestamp(), channel_ids=chans, entries_per_day=entries_per_day,
            revoked=False, created_at=ctx.clock()).returning(literal_column("id"))).scalar_one()
        row = _card(conn, card_id)
        outgoing = _emit(ctx, conn, row)
        ctx.audit(conn, who, "card.create", f"card:{card_id}",
                  f"kind={kind} channels={chans} entries_per_day={entries_per_day}")
    ctx.publish_all(outgoing)
    log.info("card %s issued (%s)", card_id, kind)
    return _out(row, with_holder=True)


def list_cards(ctx: HubContext, *, with_holder: bool) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(member_cards).order_by(member_cards.c.id)).all()
    return [_out(r, with_holder) for r in rows]


def revoke(ctx: HubContext, who: Principal, card_id: int, reason: str | None) -> dict[str, Any]:
    """Revoke a card (lost, stolen, cancelled): every gate of its channels' groups refuses it."""
    with ctx.db.write() as conn:
        row = _card(conn, card_id)
        if row.revoked:
            raise Conflict(f"card {card_id} is already revoked; issue a new card if the holder needs one")
        conn.execute(update(member_cards).where(member_cards.c.id == card_id)
                     .values(revoked=True, revoked_reason=reason))
        row = _card(conn, card_id)
        outgoing = _emit(ctx, conn, row)
        ctx.audit(conn, who, "card.revoke", f"card:{card_id}", reason or "")
    ctx.publish_all(outgoing)
    log.info("card %s revoked", card_id)
    return _out(row, with_holder=True)
