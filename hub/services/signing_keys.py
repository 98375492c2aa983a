"""Hub signing keys: a ticket key and a control key, each rotated with an overlap window.

Two keys with two powers (``protocol.keys``): the **ticket** key signs ticket tokens (every sale) and
nothing else; the **control** key signs every envelope (emergency, device commands and configs,
whitelists, acks, print jobs, key lists). A device trusts each key only for the purposes the key list
names, so a leaked ticket key cannot open a gate and a leaked control key cannot mint tickets.

``rotate(purpose)`` makes key id n+1 for that purpose (seed saved 0600 next to that purpose's configured
key file, as ``<key file>.<kid>``), publishes a retained ``hub.keys`` list {old keys, new} signed with the
OLD control key (devices that trust only the old keys accept it), then signs with the new key while still
trusting both. ``retire`` drops an old key id: a new list signed with the active control key. The newest
list is stored, so a restart (:func:`restore`) signs with the active keys and trusts exactly the listed
ones. The active key of a purpose is the newest (highest) key id listed for it.

What devices may still need after a rotation is re-signed with the active control key when it is sent
(``protocol.envelope.reseal``: whitelist catch-up, retained configs and the emergency state), so a device
that was offline across rotate + retire is never handed something signed by a key it no longer trusts.
The key lists themselves are never re-signed: each is signed by the control key of its time (the chain).

    >>> rotate(ctx, admin, "control", paths)   # doctest: +SKIP
    (3, ('venue/hub/keys', b'{"v":1,"kind":"hub.keys","kid":2,...'))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from hub.config import Settings
from hub.errors import Conflict, Invalid
from hub.services import sequences
from hub.services.context import HubContext, Outgoing, Principal
from hub.services.device_admin import ptopics
from hub.tables import hub_key_lists
from protocol.envelope import seal
from protocol.errors import MalformedError
from protocol.keys import CONTROL, MAX_KID, PURPOSES, TICKET, Keyring, Signer
from protocol.provisioning import KIND_KEYS, KeysPayload

log = logging.getLogger(__name__)

CHAIN_LIMIT = 32  # key lists sent before a catch-up; a device further behind must be re-keyed by hand
KeyPaths = dict[str, tuple[Path, int]]  # purpose -> (configured key file, its configured key id)


def key_paths(settings: Settings) -> KeyPaths:
    return {TICKET: (settings.key_file, settings.key_id),
            CONTROL: (settings.control_key_path, settings.control_kid)}


def key_path(base: Path, base_kid: int, kid: int) -> Path:
    return base if kid == base_kid else base.with_name(f"{base.name}.{kid}")


def _newest(conn: Connection) -> Any:
    return conn.execute(select(hub_key_lists).order_by(hub_key_lists.c.version.desc()).limit(1)).first()


def active_kid(ring: Keyring, purpose: str) -> int | None:
    kids = ring.kids(purpose)
    return max(kids) if kids else None


def restore(ctx: HubContext, paths: KeyPaths) -> None:
    """At start: sign with the stored active keys and trust exactly the newest published list."""
    with ctx.db.read() as conn:
        row = _newest(conn)
    if row is None:
        return
    if any(not isinstance(v, dict) for v in row.keys.values()):
        log.warning("the newest stored hub key list (version %s) is from a single-key hub (no purposes); "
                    "ignoring it: the hub signs tickets with key %s and everything else with key %s. Give the "
                    "devices the new keys (export-keys) or rotate", row.version, ctx.token_signer.kid, ctx.signer.kid)
        return
    try:
        ring = Keyring.from_b64(row.keys)
    except MalformedError:
        log.error("the newest stored hub key list (version %s) does not load; keeping the configured keys",
                  row.version)
        return
    loaded: dict[str, Signer] = {}
    for purpose, current in ((CONTROL, ctx.signer), (TICKET, ctx.token_signer)):
        kid = row.active_kid if purpose == CONTROL else active_kid(ring, TICKET)
        if kid is None or kid == current.kid:
            loaded[purpose] = current
            continue
        base, base_kid = paths[purpose]
        path = key_path(base, base_kid, kid)
        if not path.exists():
            log.error("active %s key %s is missing (%s); signing with key %s", purpose, kid, path, current.kid)
            loaded[purpose] = current
            continue
        loaded[purpose] = Signer.load(path)
    ctx.signer, ctx.ticket_signer = loaded[CONTROL], loaded[TICKET]
    ctx.keyring = ring
    log.info("hub signs tickets with key %s and control messages with key %s; trusts %s (list version %s)",
             ctx.token_signer.kid, ctx.signer.kid, ring.to_purposes(), row.version)


def _publish(ctx: HubContext, conn: Connection, ring: Keyring, active: int, signer: Signer) -> Outgoing:
    version = sequences.next_value(conn, "key_list")  # several hubs: never the same version twice
    now = ctx.clock()
    payload = KeysPayload(version=version, keys=ring.to_entries(), issued_at=now)
    body = payload.model_dump()
    envelope = seal(KIND_KEYS, body, signer)
    conn.execute(insert(hub_key_lists).values(version=version, keys=body["keys"], active_kid=active,
                                              issued_at=now, envelope=envelope))
    return ptopics(ctx).hub_keys(), envelope


def rotate(ctx: HubContext, who: Principal, purpose: str, paths: KeyPaths) -> tuple[int, Outgoing]:
    """Make and switch to key id n+1 for ``purpose``; return it and the retained list to publish."""
    if purpose not in PURPOSES:
        raise Invalid(f"purpose must be one of {sorted(PURPOSES)}, not {purpose!r}")
    old_control = ctx.signer
    old = ctx.signer if purpose == CONTROL else ctx.token_signer
    kid = max(ctx.keyring.kids()) + 1
    if kid > MAX_KID:
        raise Conflict(f"key ids are exhausted ({MAX_KID}); retire keys and reconfigure key_id/control_key_id")
    new = Signer.generate(kid)
    base, base_kid = paths[purpose]
    path = key_path(base, base_kid, kid)
    try:
        new.save(path)  # atomic, never over an existing file
    except FileExistsError:
        raise Conflict(f"key file {path} exists already; move it away first") from None
    ring = ctx.keyring.merged(Keyring.of(new, purposes={purpose}))
    active_control = kid if purpose == CONTROL else old_control.kid
    with ctx.db.write() as conn:
        out = _publish(ctx, conn, ring, active_control, old_control)  # signed by the OLD control key
        ctx.audit(conn, who, "keys.rotate", str(kid), f"{purpose} key from {old.kid}; trusted {ring.to_purposes()}")
    ctx.keyring = ring
    if purpose == CONTROL:
        ctx.signer = new
    else:
        ctx.ticket_signer = new
    log.warning("hub %s key rotated by %s: key %s -> %s (both trusted until %s is retired)",
                purpose, who.username, old.kid, kid, old.kid)
    ctx.broadcast("keys", str(kid))  # other hubs on the database load it (its file must be on their disk too)
    return kid, out


def retire(ctx: HubContext, who: Principal, kid: int) -> Outgoing:
    kids = ctx.keyring.kids()
    if kid not in kids:
        raise Invalid(f"key {kid} is not trusted now; trusted: {kids}")
    if kid in (ctx.signer.kid, ctx.token_signer.kid):
        raise Conflict(f"key {kid} is one the hub signs with (tickets {ctx.token_signer.kid}, control "
                       f"{ctx.signer.kid}); rotate first")
    ring = ctx.keyring.without(kid)
    with ctx.db.write() as conn:
        out = _publish(ctx, conn, ring, ctx.signer.kid, ctx.signer)
        ctx.audit(conn, who, "keys.retire", str(kid), f"trusted {ring.to_purposes()}")
    ctx.keyring = ring
    log.warning("hub key %s retired by %s; trusted now %s", kid, who.username, ring.to_purposes())
    ctx.broadcast("keys", str(kid))
    return out


def chain(ctx: HubContext, limit: int = CHAIN_LIMIT) -> list[bytes]:
    """The newest ``limit`` key lists in version order (sent before a whitelist catch-up). Each is signed by
    the control key in force when it was issued; a device applies each newer one it can verify, so one that
    missed a rotate + retire still reaches the current keys, if it trusted a key of the chain."""
    with ctx.db.read() as conn:
        rows = conn.execute(select(hub_key_lists.c.envelope).order_by(hub_key_lists.c.version.desc())
                            .limit(limit)).all()
    return [bytes(r.envelope) for r in reversed(rows)]


def current_envelope(ctx: HubContext) -> bytes | None:
    with ctx.db.read() as conn:
        row = _newest(conn)
    return None if row is None else bytes(row.envelope)


def summary(ctx: HubContext) -> dict[str, Any]:
    """What the rotate/retire API answers: the active keys and every trusted key with its purposes."""
    return {"active_kid": ctx.signer.kid, "ticket_kid": ctx.token_signer.kid,
            "trusted": ctx.keyring.kids(), "purposes": ctx.keyring.to_purposes()}
