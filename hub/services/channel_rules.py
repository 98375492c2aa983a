"""A channel's check-in rules: set them (validated, audited, sent to the gates) and read the effective ones.

Stored as partial rule sets (only the keys the operator set): the channel's own over the defaults
(with the channel's ``max_entries``), each ticket type's over the channel's, the cards' over the card
defaults. Gates get the merged, effective rules (see :func:`hub.services.rulebook.channel_rules`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from hub.errors import Invalid, NotFound
from hub.services.catalog_edit import publish
from hub.services.context import HubContext, Principal
from hub.services.rulebook import CARD_BASE, channel_base, channel_rules
from hub.services.whitelist import emit_rules_delta
from hub.tables import channel_types, channels, ticket_types
from protocol.errors import MalformedError
from protocol.rules import EntryRules, as_dict, merged

MAX_CHANNEL_ENTRIES = 255  # a channel's own max_entries (a ticket type's may go up to protocol.bounds.MAX_ENTRIES)


def _check(where: str, base: EntryRules, partial: Any) -> EntryRules:
    try:
        return merged(base, partial)
    except (MalformedError, TypeError, ValueError) as exc:
        text = str(exc).removeprefix("check-in rules: ")
        raise Invalid(f"{where}: {text}") from exc


def _normal(partial: dict[str, Any]) -> dict[str, Any] | None:
    out = {k: sorted(v) if isinstance(v, list | tuple | set | frozenset) else v for k, v in partial.items()}
    return out or None


def _channel(conn: Connection, channel_id: int) -> Any:
    row = conn.execute(select(channels).where(channels.c.id == channel_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"channel {channel_id} does not exist; see GET /api/v1/channels")
    return row


def set_rules(ctx: HubContext, who: Principal, channel_id: int, rules: dict[str, Any],
              by_type: dict[str, dict[str, Any]], cards: dict[str, Any] | None) -> dict[str, Any]:
    """Replace the channel's rules (all three parts); 422 naming the field of the first problem."""
    rules = dict(rules)
    with ctx.db.write() as conn:
        row = _channel(conn, channel_id)
        max_entries = rules.pop("max_entries", row.max_entries)
        if type(max_entries) is not int or not 1 <= max_entries <= MAX_CHANNEL_ENTRIES:
            raise Invalid(f"rules.max_entries: a channel allows 1 to {MAX_CHANNEL_ENTRIES} entries "
                          "(narrow per ticket type in by_type for more)")
        effective = _check("rules", channel_base(max_entries), rules)
        types: dict[str, dict[str, Any]] = {}
        for key, partial in by_type.items():
            if not (key.isascii() and key.isdigit() and len(key) <= 10) or not 1 <= int(key) <= 2**31 - 1:
                raise Invalid(f"by_type.{key[:20]}: keys are ticket type ids, e.g. \"2\"")
            if conn.execute(select(ticket_types.c.id).where(ticket_types.c.id == int(key))).first() is None:
                raise NotFound(f"by_type.{key}: ticket type {key} does not exist; see GET /api/v1/ticket-types")
            _check(f"by_type.{key}", effective, partial)
            types[str(int(key))] = _normal(partial) or {}
        if cards is not None:
            _check("cards", CARD_BASE, cards)
        conn.execute(update(channels).where(channels.c.id == channel_id).values(
            max_entries=max_entries, rules=_normal(rules), type_rules=types or None,
            card_rules=_normal(cards) or {} if cards is not None else None))
        outgoing = [emit_rules_delta(ctx, conn, row.group_id)]
        ctx.audit(conn, who, "channel.rules", f"channel:{channel_id}",
                  f"max_entries={max_entries} rules={_normal(rules)} by_type={types} cards={cards}")
        out = _effective(conn, channel_id)
    publish(ctx, outgoing)
    return out


def get_rules(ctx: HubContext, channel_id: int) -> dict[str, Any]:
    with ctx.db.read() as conn:
        if conn.execute(select(channels.c.id).where(channels.c.id == channel_id)).first() is None:
            raise NotFound(f"channel {channel_id} does not exist; see GET /api/v1/channels")
        return _effective(conn, channel_id)


def _effective(conn: Connection, channel_id: int) -> dict[str, Any]:
    row = conn.execute(select(channels).where(channels.c.id == channel_id)).one()
    types = frozenset(conn.execute(select(channel_types.c.ticket_type_id)
                                   .where(channel_types.c.channel_id == channel_id)).scalars())
    chan = channel_rules(row, types)
    return {"channel_id": channel_id, "group_id": row.group_id, "retired": bool(row.retired),
            "rules": as_dict(chan.rules_for(-1)),
            "by_type": {str(t): as_dict(chan.rules_for(t)) for t in sorted(types | set(chan.by_type))},
            "cards": as_dict(chan.card_rules()),
            "configured": {"rules": {"max_entries": row.max_entries, **(row.rules or {})},
                           "by_type": row.type_rules or {}, "cards": row.card_rules}}
