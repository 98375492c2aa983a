"""Enrollment at the hub: check and store device requests, approve or reject them.

A request (:class:`~protocol.provisioning.EnrollmentRequest`) is accepted only when its topic names the
serial it carries, it is signed by the key it carries, it is fresh (``at`` within ``max_age``) and its
nonce was never seen. One row per serial: a re-request updates the pending row. Nothing here touches
the broker; :mod:`hub.provisioning_link` creates the device's login first and then calls :func:`approve`.

    >>> refusal = receive(ctx, "GATE-0042", request, max_age=600)   # doctest: +SKIP
    >>> refusal is None                                              # stored as pending
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hub.errors import Conflict, NotFound
from hub.services import device_admin
from hub.services.context import HubContext, Outgoing, Principal, row_dict
from hub.tables import enrollment_nonces, enrollment_requests, provisioned_devices
from protocol.envelope import seal
from protocol.errors import SignatureError
from protocol.provisioning import KIND_REPLY, BrokerAccess, EnrollmentRequest, ReplyPayload, seal_secret

log = logging.getLogger(__name__)
FUTURE_SLACK = 120.0  # seconds a device clock may run ahead


@dataclass(frozen=True)
class Approval:
    """What ops decide for a pending request."""

    device_id: str
    site: str
    group_id: int | None = None
    channel_id: int | None = None
    kind: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


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
        conn.execute(insert(enrollment_nonces).values(nonce=req.nonce, serial=req.serial, seen_at=now))
        values = {"kind": req.kind, "hardware_model": req.hardware_model, "software_version": req.software_version,
                  "public_key": req.public_key, "reply_to": req.reply_to, "nonce": req.nonce, "at": req.at,
                  "received_at": now, "status": "pending", "decided_by": None, "reason": None}
        old = conn.execute(select(enrollment_requests.c.public_key, enrollment_requests.c.status)
                           .where(enrollment_requests.c.serial == req.serial)).first()
        if old is None:
            conn.execute(insert(enrollment_requests).values(serial=req.serial, **values))
        else:
            if old.status == "pending" and old.public_key != req.public_key:
                log.warning("pending enrollment of %s now carries another public key", req.serial)
            conn.execute(update(enrollment_requests).where(enrollment_requests.c.serial == req.serial)
                         .values(**values))
    log.info("enrollment request of %s (%s, %s %s) is pending", req.serial, req.kind, req.hardware_model,
             req.software_version)
    return None


_PUBLIC = ("serial", "kind", "hardware_model", "software_version", "public_key", "at", "received_at", "status")


def pending(ctx: HubContext) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(*(enrollment_requests.c[c] for c in _PUBLIC))
                            .where(enrollment_requests.c.status == "pending")
                            .order_by(enrollment_requests.c.received_at))
        return [row_dict(r) for r in rows]


def pending_request(ctx: HubContext, serial: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return _pending(conn, serial)


def _pending(conn: Connection, serial: str) -> dict[str, Any]:
    row = conn.execute(select(enrollment_requests).where(enrollment_requests.c.serial == serial)).first()
    if row is None or row.status != "pending":
        raise NotFound(f"no pending enrollment request of serial {serial!r}; see GET /api/v1/provisioning/requests")
    return row_dict(row)


def check_device_id_free(ctx: HubContext, device_id: str) -> None:
    with ctx.db.read() as conn:
        row = conn.execute(select(provisioned_devices.c.status)
                           .where(provisioned_devices.c.device_id == device_id)).first()
    if row is not None and row.status == "active":
        raise Conflict(f"device id {device_id!r} is taken by an active device; pick another or revoke that one")


def approve(ctx: HubContext, who: Principal, serial: str, a: Approval, password: str,
            broker: BrokerAccess) -> list[Outgoing]:
    """Store the device (its broker login already exists) and return the reply and its first config."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        req = _pending(conn, serial)
        kind = a.kind or req["kind"]
        conn.execute(update(enrollment_requests).where(enrollment_requests.c.serial == serial)
                     .values(status="approved", decided_by=who.username, reason=None))
        config = {k: v for k, v in (("group_id", a.group_id), ("channel_id", a.channel_id)) if v is not None}
        config_out = device_admin.create(ctx, conn, {
            "device_id": a.device_id, "serial": serial, "kind": kind, "site": a.site, "group_id": a.group_id,
            "channel_id": a.channel_id, "public_key": req["public_key"], "status": "active", "status_reason": None,
            "created_at": now}, {**config, **a.config})
        ctx.audit(conn, who, "provisioning.approve", serial,
                  f"device {a.device_id} kind {kind} site {a.site} group {a.group_id} channel {a.channel_id}")
    reply = ReplyPayload(serial=serial, nonce=req["nonce"], status="approved", device_id=a.device_id,
                         kind=kind,
                         site=a.site, group_id=a.group_id, channel_id=a.channel_id, broker=broker,
                         sealed=seal_secret({"password": password}, req["public_key"]), at=now)
    log.info("enrollment of %s approved by %s as %s", serial, who.username, a.device_id)
    return [(device_admin.ptopics(ctx).reply(req["reply_to"]), seal(KIND_REPLY, reply.model_dump(), ctx.signer)),
            config_out]


def reject(ctx: HubContext, who: Principal, serial: str, reason: str) -> list[Outgoing]:
    now = ctx.clock()
    with ctx.db.write() as conn:
        req = _pending(conn, serial)
        conn.execute(update(enrollment_requests).where(enrollment_requests.c.serial == serial)
                     .values(status="rejected", decided_by=who.username, reason=reason))
        ctx.audit(conn, who, "provisioning.reject", serial, reason)
    reply = ReplyPayload(serial=serial, nonce=req["nonce"], status="rejected", reason=reason, at=now)
    log.info("enrollment of %s rejected by %s: %s", serial, who.username, reason)
    return [(device_admin.ptopics(ctx).reply(req["reply_to"]), seal(KIND_REPLY, reply.model_dump(), ctx.signer))]
