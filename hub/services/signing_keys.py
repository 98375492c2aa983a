"""Hub signing-key rotation with an overlap window.

``rotate`` makes key id n+1 (seed saved 0600 next to the configured key file, as ``<key file>.<kid>``),
publishes a retained ``hub.keys`` list {old, new} signed with the OLD key (devices that trust only the
old key accept it), then signs everything new with the new key while still verifying both. ``retire``
drops an old key id: a new list signed with the active key. The newest list is stored, so a restart
(:func:`restore`) signs with the active key and trusts exactly the listed ones.

    >>> rotate(ctx, admin, Path("var/hub/signing.key"))   # doctest: +SKIP
    (2, ('venue/hub/keys', b'{"v":1,"kind":"hub.keys","kid":1,...'))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from hub.errors import Conflict, Invalid
from hub.services.context import HubContext, Outgoing, Principal
from hub.services.device_admin import ptopics
from hub.tables import hub_key_lists
from protocol.envelope import seal
from protocol.keys import Keyring, Signer
from protocol.provisioning import KIND_KEYS, KeysPayload

log = logging.getLogger(__name__)


def key_path(base: Path, base_kid: int, kid: int) -> Path:
    return base if kid == base_kid else base.with_name(f"{base.name}.{kid}")


def _newest(conn: Connection) -> Any:
    return conn.execute(select(hub_key_lists).order_by(hub_key_lists.c.version.desc()).limit(1)).first()


def restore(ctx: HubContext, base: Path) -> None:
    """At start: sign with the stored active key and trust exactly the newest published list."""
    with ctx.db.read() as conn:
        row = _newest(conn)
    if row is None:
        return
    path = key_path(base, ctx.signer.kid, row.active_kid)
    if row.active_kid != ctx.signer.kid:
        if not path.exists():
            log.error("active signing key %s is missing (%s); signing with key %s", row.active_kid, path,
                      ctx.signer.kid)
            return
        ctx.signer = Signer.load(path)
    ctx.keyring = Keyring.from_b64({int(k): v for k, v in row.keys.items()})
    log.info("hub signs with key %s and trusts keys %s (list version %s)", ctx.signer.kid, ctx.keyring.kids(),
             row.version)


def _publish(ctx: HubContext, conn: Connection, keys: dict[int, str], active: int, signer: Signer) -> Outgoing:
    row = _newest(conn)
    version = 1 if row is None else row.version + 1
    now = ctx.clock()
    payload = KeysPayload(version=version, keys={str(k): v for k, v in sorted(keys.items())}, issued_at=now)
    envelope = seal(KIND_KEYS, payload.model_dump(), signer)
    conn.execute(insert(hub_key_lists).values(version=version, keys=payload.keys, active_kid=active,
                                              issued_at=now, envelope=envelope))
    return ptopics(ctx).hub_keys(), envelope


def rotate(ctx: HubContext, who: Principal, base: Path, base_kid: int) -> tuple[int, Outgoing]:
    """Make and switch to key id n+1; return it and the retained list to publish."""
    old = ctx.signer
    keys = ctx.keyring.to_b64()
    kid = max(keys) + 1
    if kid > 255:
        raise Conflict("key ids are exhausted (255); retire keys and reconfigure key_id")
    new = Signer.generate(kid)
    path = key_path(base, base_kid, kid)
    if path.exists():
        raise Conflict(f"key file {path} exists already; move it away first")
    new.save(path)
    with ctx.db.write() as conn:
        out = _publish(ctx, conn, {**keys, kid: new.public_key_b64}, kid, old)  # signed by the OLD key
        ctx.audit(conn, who, "keys.rotate", str(kid), f"from key {old.kid}; trusted {[*sorted(keys), kid]}")
    ctx.keyring = Keyring.from_b64({**keys, kid: new.public_key_b64})
    ctx.signer = new
    log.warning("hub signing key rotated by %s: key %s -> %s (both trusted until %s is retired)",
                who.username, old.kid, kid, old.kid)
    return kid, out


def retire(ctx: HubContext, who: Principal, kid: int) -> Outgoing:
    keys = ctx.keyring.to_b64()
    if kid not in keys:
        raise Invalid(f"key {kid} is not trusted now; trusted: {sorted(keys)}")
    if kid == ctx.signer.kid:
        raise Conflict(f"key {kid} is the one the hub signs with; rotate first")
    rest = {k: v for k, v in keys.items() if k != kid}
    with ctx.db.write() as conn:
        out = _publish(ctx, conn, rest, ctx.signer.kid, ctx.signer)
        ctx.audit(conn, who, "keys.retire", str(kid), f"trusted {sorted(rest)}")
    ctx.keyring = Keyring.from_b64(rest)
    log.warning("hub signing key %s retired by %s; trusted now %s", kid, who.username, sorted(rest))
    return out


def current_envelope(ctx: HubContext) -> bytes | None:
    with ctx.db.read() as conn:
        row = _newest(conn)
    return None if row is None else bytes(row.envelope)
