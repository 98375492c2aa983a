"""Enrollment at the hub: check and store device requests, approve or reject them.

A request (:class:`~protocol.provisioning.EnrollmentRequest`) is accepted only when its topic names the
serial it carries, it is signed by the key it carries, it is fresh (``at`` within ``max_age``) and its
nonce was never seen. One row per (serial, device key): a new request with the same key (the device
asking again) refreshes its row; a request with *another* key never replaces a pending one: both are
kept and the serial is **contested**. Ops approve or reject one request by its key fingerprint
(:func:`protocol.provisioning.key_fingerprint`, printed by the device), never by serial alone; approving
one key of a contested serial rejects the others (audited, and each gets a signed rejection). Nothing
here touches the broker; :mod:`hub.provisioning_link` creates the device's login first and then calls
:func:`approve`.

    >>> refusal = receive(ctx, "GATE-0042", request, max_age=600)   # doctest: +SKIP
    >>> refusal is None                                              # stored as pending
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from hub.errors import Conflict, Invalid, NotFound
from hub.services import device_admin
from hub.services.context import SYSTEM, HubContext, Outgoing, Principal, row_dict
from hub.tables import enrollment_nonces, enrollment_requests, provisioned_devices
from protocol.envelope import seal
from protocol.errors import MalformedError, SignatureError
from protocol.provisioning import (
    FINGERPRINT_EXAMPLE,
    KIND_REPLY,
    BrokerAccess,
    EnrollmentRequest,
    ReplyPayload,
    key_fingerprint,
    normalize_fingerprint,
    seal_secret,
)

log = logging.getLogger(__name__)
FUTURE_SLACK = 120.0  # seconds a device clock may run ahead
MAX_CLAIMS = 16  # pending keys one serial may carry; more are refused (nothing stored, the nonce stays unseen)
CONTENDER_REJECTED = "another key was approved for this serial"


@dataclass(frozen=True)
class Approval:
    """What ops decide for a pending request."""

    device_id: str
    site: str
    group_id: int | None = None
    channel_id: int | None = None
    kind: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    fire_input: bool = False  # its local fire alarm may open every gate (spread_local_fire)


def receive(ctx: HubContext, topic_serial: str, req: EnrollmentRequest, max_age: float) -> str | None:
    """Store ``req`` as pending; return None, or why it was refused (nothing changed then)."""
    if topic_serial != req.serial:
        return f"topic serial {topic_serial!r} differs from the request's {req.serial!r}"
    try:
        req.verify()
    except SignatureError as exc:
        return str(exc)
    now = ctx.clock()
    if req.at < now - max_age or req.at > now + FUTURE_SLACK:
        return f"request is stale or from the future (at {req.at:.0f}, hub clock {now:.0f})"
    with ctx.db.write() as conn:
        if conn.execute(select(enrollment_nonces.c.nonce).where(enrollment_nonces.c.nonce == req.nonce)).first():
            return f"nonce {req.nonce} was seen before: a replayed request"
        active = conn.execute(select(provisioned_devices.c.device_id, provisioned_devices.c.public_key).where(
            provisioned_devices.c.serial == req.serial, provisioned_devices.c.status == "active")).first()
        if active is not None and active.public_key != req.public_key:
            return f"serial {req.serial} is approved as {active.device_id} with another key"
        if active is not None:
            return f"serial {req.serial} is already approved as {active.device_id}; revoke it to enroll again"
        mine = (enrollment_requests.c.serial == req.serial) & (enrollment_requests.c.public_key == req.public_key)
        others = [r.public_key for r in conn.execute(
            select(enrollment_requests.c.public_key).where(
                enrollment_requests.c.serial == req.serial, enrollment_requests.c.status == "pending",
                enrollment_requests.c.public_key != req.public_key))]
        old = conn.execute(select(enrollment_requests.c.status).where(mine)).first()
        if old is None and len(others) >= MAX_CLAIMS:
            return f"serial {req.serial} already has {len(others)} pending keys; reject some by fingerprint first"
        conn.execute(insert(enrollment_nonces).values(nonce=req.nonce, serial=req.serial, seen_at=now))
        values = {"kind": req.kind, "hardware_model": req.hardware_model, "software_version": req.software_version,
                  "reply_to": req.reply_to, "nonce": req.nonce, "at": req.at,
                  "received_at": now, "status": "pending", "decided_by": None, "reason": None}
        if old is None:
            conn.execute(insert(enrollment_requests).values(serial=req.serial, public_key=req.public_key, **values))
        else:  # the same device asking again (a restart: new nonce and reply topic)
            conn.execute(update(enrollment_requests).where(mine).values(**values))
        detail = ""
        if others:
            fps = ", ".join(sorted(key_fingerprint(k) for k in others))
            detail = f"key {req.fingerprint} claims serial {req.serial}, pending with key(s) {fps}"
            ctx.audit(conn, SYSTEM, "provisioning.contested", req.serial, detail)
    if others:
        log.warning("enrollment of serial %s is CONTESTED: %s; approve only the key whose fingerprint the "
                    "device shows", req.serial, detail)
    log.info("enrollment request of %s (%s, %s %s, key %s) is pending", req.serial, req.kind, req.hardware_model,
             req.software_version, req.fingerprint)
    return None


_PUBLIC = ("serial", "kind", "hardware_model", "software_version", "public_key", "at", "received_at", "status")


def _with_fingerprint(row: dict[str, Any], claims: int) -> dict[str, Any]:
    return {**row, "fingerprint": key_fingerprint(row["public_key"]), "contested": claims > 1}


def pending(ctx: HubContext) -> list[dict[str, Any]]:
    """Pending requests, oldest first, each with its key ``fingerprint`` and ``contested`` (its serial has
    more than one pending key)."""
    r = enrollment_requests.c
    with ctx.db.read() as conn:
        claims: dict[str, int] = {s: n for s, n in conn.execute(
            select(r.serial, func.count()).where(r.status == "pending").group_by(r.serial))}
        rows = conn.execute(select(*(r[c] for c in _PUBLIC)).where(r.status == "pending")
                            .order_by(r.received_at, r.public_key))
        return [_with_fingerprint(row_dict(x), claims.get(x.serial, 0)) for x in rows]


def pending_request(ctx: HubContext, serial: str, fingerprint: str | None) -> dict[str, Any]:
    """The pending request of ``serial`` whose key has ``fingerprint``; raises Invalid, NotFound or Conflict
    with what to do."""
    with ctx.db.read() as conn:
        return _pending(conn, serial, fingerprint)


def _pending(conn: Connection, serial: str, fingerprint: str | None) -> dict[str, Any]:
    rows = [row_dict(r) for r in conn.execute(select(enrollment_requests).where(
        enrollment_requests.c.serial == serial, enrollment_requests.c.status == "pending"))]
    if not rows:
        raise NotFound(f"no pending enrollment request of serial {serial!r}; see GET /api/v1/provisioning/requests")
    shown = ", ".join(sorted(key_fingerprint(r["public_key"]) for r in rows))
    contested = f"serial {serial} is contested by {len(rows)} keys ({shown}); " if len(rows) > 1 else ""
    if not fingerprint:
        raise Invalid(f"{contested}give the key fingerprint the device shows (fingerprint "
                      f"{FINGERPRINT_EXAMPLE!r}; CLI: --fingerprint); pending: {shown}")
    try:
        want = normalize_fingerprint(fingerprint)
    except MalformedError as exc:
        raise Invalid(str(exc)) from exc
    match = [r for r in rows if key_fingerprint(r["public_key"]) == want]
    if not match:
        raise Conflict(f"{contested}no pending request of serial {serial} has key fingerprint {want} (pending: "
                       f"{shown}); read the fingerprint off the device's label or screen and try again")
    if len(match) > 1:  # 64 bits: only a deliberately made look-alike key gets here
        raise Conflict(f"serial {serial}: {len(match)} pending keys share fingerprint {want}; reject them and "
                       "enroll the device again")
    return match[0]


def check_device_id_free(ctx: HubContext, device_id: str) -> None:
    with ctx.db.read() as conn:
        row = conn.execute(select(provisioned_devices.c.status)
                           .where(provisioned_devices.c.device_id == device_id)).first()
    if row is not None and row.status == "active":
        raise Conflict(f"device id {device_id!r} is taken by an active device; pick another or revoke that one")


def approve(ctx: HubContext, who: Principal, serial: str, fingerprint: str | None, a: Approval, password: str,
            broker: BrokerAccess) -> list[Outgoing]:
    """Store the device (its broker login already exists) and return the reply and its first config.

    Only the request whose key has ``fingerprint`` is approved; any other pending key of the serial is
    rejected (audited) and gets a signed rejection."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        req = _pending(conn, serial, fingerprint)
        kind = a.kind or req["kind"]
        conn.execute(update(enrollment_requests).where(enrollment_requests.c.serial == serial,
                                                       enrollment_requests.c.public_key == req["public_key"])
                     .values(status="approved", decided_by=who.username, reason=None))
        losers = _reject_others(ctx, conn, who, serial, req["public_key"])
        config = {k: v for k, v in (("group_id", a.group_id), ("channel_id", a.channel_id)) if v is not None}
        config_out = device_admin.create(ctx, conn, {
            "device_id": a.device_id, "serial": serial, "kind": kind, "site": a.site, "group_id": a.group_id,
            "channel_id": a.channel_id, "public_key": req["public_key"], "status": "active", "status_reason": None,
            "created_at": now, "fire_input": a.fire_input}, {**config, **a.config})
        ctx.audit(conn, who, "provisioning.approve", serial,
                  f"device {a.device_id} key {key_fingerprint(req['public_key'])} kind {kind} site {a.site} "
                  f"group {a.group_id} channel {a.channel_id} fire_input {a.fire_input}")
    reply = ReplyPayload(serial=serial, nonce=req["nonce"], status="approved", device_id=a.device_id,
                         kind=kind,
                         site=a.site, group_id=a.group_id, channel_id=a.channel_id, broker=broker,
                         sealed=seal_secret({"password": password}, req["public_key"]), at=now)
    log.info("enrollment of %s (key %s) approved by %s as %s", serial, key_fingerprint(req["public_key"]),
             who.username, a.device_id)
    return [(device_admin.ptopics(ctx).reply(req["reply_to"]), seal(KIND_REPLY, reply.model_dump(), ctx.signer)),
            *(_rejection(ctx, r, CONTENDER_REJECTED) for r in losers), config_out]


def _reject_others(ctx: HubContext, conn: Connection, who: Principal, serial: str,
                   chosen_key: str) -> list[dict[str, Any]]:
    c = enrollment_requests.c
    where = (c.serial == serial) & (c.status == "pending") & (c.public_key != chosen_key)
    losers = [row_dict(r) for r in conn.execute(select(enrollment_requests).where(where))]
    if losers:
        conn.execute(update(enrollment_requests).where(where)
                     .values(status="rejected", decided_by=who.username, reason=CONTENDER_REJECTED))
    for r in losers:
        fp = key_fingerprint(r["public_key"])
        ctx.audit(conn, who, "provisioning.reject", serial, f"key {fp}: {CONTENDER_REJECTED}")
        log.warning("contested enrollment of %s: key %s rejected, %s", serial, fp, CONTENDER_REJECTED)
    return losers


def _rejection(ctx: HubContext, req: dict[str, Any], reason: str) -> Outgoing:
    reply = ReplyPayload(serial=req["serial"], nonce=req["nonce"], status="rejected", reason=reason, at=ctx.clock())
    return device_admin.ptopics(ctx).reply(req["reply_to"]), seal(KIND_REPLY, reply.model_dump(), ctx.signer)


def reject(ctx: HubContext, who: Principal, serial: str, fingerprint: str | None, reason: str) -> list[Outgoing]:
    """Reject the pending request of ``serial`` whose key has ``fingerprint`` (the others stay pending)."""
    with ctx.db.write() as conn:
        req = _pending(conn, serial, fingerprint)
        conn.execute(update(enrollment_requests).where(enrollment_requests.c.serial == serial,
                                                       enrollment_requests.c.public_key == req["public_key"])
                     .values(status="rejected", decided_by=who.username, reason=reason))
        fp = key_fingerprint(req["public_key"])
        ctx.audit(conn, who, "provisioning.reject", serial, f"key {fp}: {reason}")
    log.info("enrollment of %s (key %s) rejected by %s: %s", serial, fp, who.username, reason)
    return [_rejection(ctx, req, reason)]
