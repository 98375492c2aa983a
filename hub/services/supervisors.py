"""Supervisors who may force-admit a refused ticket on a handheld (PIN, optionally their own card).

Only a salted PBKDF2 hash of the PIN (:func:`protocol.supervisor.hash_pin`) and the card's UID hash
(:func:`protocol.cards.card_key`) are stored, and no API answer ever includes them; gates get both in
the signed check-in rules of every group, so every change is sent to all groups as a "rules" delta.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, literal_column, select, update

from hub.errors import Conflict, Invalid, NotFound
from hub.services.catalog_edit import publish
from hub.services.context import HubContext, Outgoing, Principal
from hub.services.whitelist import emit_rules_delta
from hub.tables import checkin_groups, supervisors
from protocol.cards import card_key, parse_uid
from protocol.errors import MalformedError
from protocol.supervisor import hash_pin, pin_matches


def _out(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "has_pin": bool(row.pin_hash), "has_card": row.card_key is not None,
            "retired": bool(row.retired), "created_at": row.created_at}


def _card_key(conn: Connection, uid: str, supervisor_id: int | None) -> str:
    try:
        key = card_key(parse_uid(uid))
    except MalformedError as exc:
        raise Invalid(f"card_uid: {exc}") from exc
    holder = conn.execute(select(supervisors.c.id).where(supervisors.c.card_key == key)).scalar()
    if holder is not None and holder != supervisor_id:
        raise Conflict(f"card_uid: this card already belongs to supervisor {holder}; retire that one or use "
                       "another card")
    return key


def _pin_hash(pin: str) -> str:
    try:
        return hash_pin(pin)
    except MalformedError as exc:
        raise Invalid(f"pin: {exc}") from exc


def _check_pin_free(conn: Connection, pin: str, supervisor_id: int | None) -> None:
    """Two active supervisors with one PIN would make ``forced_by`` name the wrong person."""
    rows = conn.execute(select(supervisors.c.id, supervisors.c.pin_hash)
                        .where(supervisors.c.retired.is_(False))).all()
    if any(r.id != supervisor_id and r.pin_hash and pin_matches(r.pin_hash, pin) for r in rows):
        raise Conflict("pin: another supervisor already has this PIN; choose a different one")


def _to_all_groups(ctx: HubContext, conn: Connection) -> list[Outgoing]:
    groups = conn.execute(select(checkin_groups.c.id).order_by(checkin_groups.c.id)).scalars().all()
    return [emit_rules_delta(ctx, conn, g) for g in groups]


def create(ctx: HubContext, who: Principal, name: str, pin: str, card_uid: str | None) -> dict[str, Any]:
    pin_hash = _pin_hash(pin)
    with ctx.db.write() as conn:
        _check_pin_free(conn, pin, None)
        key = _card_key(conn, card_uid, None) if card_uid else None
        sid: int = conn.execute(insert(supervisors).values(name=name, pin_hash=pin_hash, card_key=key,
                                                           retired=False, created_at=ctx.clock())
                                .returning(literal_column("id"))).scalar_one()
        outgoing = _to_all_groups(ctx, conn)
        ctx.audit(conn, who, "supervisor.create", f"supervisor:{sid}", f"{name} card={'yes' if key else 'no'}")
        row = conn.execute(select(supervisors).where(supervisors.c.id == sid)).one()
    publish(ctx, outgoing)
    return _out(row)


def list_all(ctx: HubContext) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [_out(r) for r in conn.execute(select(supervisors).order_by(supervisors.c.id))]


def patch(ctx: HubContext, who: Principal, supervisor_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """``pin``: a new PIN; ``card_uid``: a new card ("" removes it); ``name``; ``retired``."""
    values: dict[str, Any] = {k: changes[k] for k in ("name", "retired") if changes.get(k) is not None}
    if changes.get("pin") is not None:
        values["pin_hash"] = _pin_hash(changes["pin"])
    with ctx.db.write() as conn:
        if conn.execute(select(supervisors.c.id).where(supervisors.c.id == supervisor_id)).first() is None:
            raise NotFound(f"supervisor {supervisor_id} does not exist; see GET /api/v1/supervisors")
        if changes.get("pin") is not None:
            _check_pin_free(conn, changes["pin"], supervisor_id)
        if changes.get("card_uid") is not None:
            values["card_key"] = _card_key(conn, changes["card_uid"], supervisor_id) if changes["card_uid"] else None
        if values:
            conn.execute(update(supervisors).where(supervisors.c.id == supervisor_id).values(**values))
        outgoing = _to_all_groups(ctx, conn)
        shown = sorted("pin" if k == "pin_hash" else "card" if k == "card_key" else f"{k}={v}"
                       for k, v in values.items())
        ctx.audit(conn, who, "supervisor.update", f"supervisor:{supervisor_id}", " ".join(shown))
        row = conn.execute(select(supervisors).where(supervisors.c.id == supervisor_id)).one()
    publish(ctx, outgoing)
    return _out(row)
