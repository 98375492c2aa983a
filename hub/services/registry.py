"""The device registry: what the hub believes a device is, and the security events when it says otherwise.

A device's kind, check-in group, channel, public key and fire input come from ``provisioned_devices``
(filled by enrolment, :mod:`hub.services.enrollment`, or by registering a config-file device here),
never from what its messages say. The bridge keeps a copy (:class:`RegistryCache`) re-read every
``[devices] registry_refresh`` seconds and at once after a change made through this hub.

A security event (:func:`record`) is a message the registry contradicts or that does not verify: stored
in ``security_events`` (the quarantined payload with it, so nothing is lost) and logged at WARNING, at
most once per ``[devices] security_log_interval`` for the same device and kind of event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import nacl.signing
from sqlalchemy import Connection, insert, select, update

from hub.errors import Forbidden, Invalid, NotFound
from hub.services import device_admin
from hub.services.context import HubContext, Outgoing, Principal, row_dict
from hub.services.enrollment import check_device_id_free
from hub.tables import channels, checkin_groups, provisioned_devices, security_events
from protocol.device_signed import verify_key
from protocol.errors import MalformedError
from protocol.provisioning import key_fingerprint

log = logging.getLogger(__name__)
CHECKIN_KINDS = frozenset({"gate", "handheld"})  # the kinds that send check-in events


@dataclass(frozen=True, slots=True)
class Registered:
    device_id: str
    kind: str
    group_id: int | None
    channel_id: int | None
    key: nacl.signing.VerifyKey
    fire_input: bool
    active: bool


def _registered(row: Any) -> Registered | None:
    try:
        key = verify_key(row.public_key)
    except MalformedError:
        log.error("registry: device %s has an unusable public key; its messages are refused", row.device_id)
        return None
    return Registered(row.device_id, row.kind, row.group_id, row.channel_id, key, bool(row.fire_input),
                      row.status == "active")


def load(ctx: HubContext) -> dict[str, Registered]:
    """Every registered device (active and revoked), by id."""
    with ctx.db.read() as conn:
        rows = conn.execute(select(provisioned_devices)).all()
    return {r.device_id: reg for r in rows if (reg := _registered(r)) is not None}


def active_groups(ctx: HubContext) -> dict[str, int | None]:
    """Every active device's registered check-in group (what its broker role may read)."""
    with ctx.db.read() as conn:
        return {r.device_id: r.group_id for r in conn.execute(
            select(provisioned_devices.c.device_id, provisioned_devices.c.group_id)
            .where(provisioned_devices.c.status == "active"))}


class RegistryCache:
    """The bridge's copy of the registry; :meth:`get` re-reads it (in a worker thread) when it is older
    than ``refresh`` seconds, so a device registered by another hub process is believed soon after."""

    def __init__(self, ctx: HubContext, refresh: float) -> None:
        self.ctx = ctx
        self.refresh = refresh
        self._devices: dict[str, Registered] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def get(self, device_id: str) -> Registered | None:
        if time.monotonic() - self._loaded_at > self.refresh:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self.refresh:
                    self._devices = await asyncio.to_thread(load, self.ctx)
                    self._loaded_at = time.monotonic()
        return self._devices.get(device_id)


# -- security events --------------------------------------------------------------------------------
class SecurityLog:
    """Stores and logs security events, each (device, what, message) at most once per ``interval`` seconds."""

    def __init__(self, ctx: HubContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self._last: dict[tuple[str, str, str], float] = {}
        self.suppressed = 0

    def record(self, device_id: str, what: str, detail: str, payload: Any = None) -> bool:
        """Store and log one event (called in a worker thread); False if it repeated within the interval.
        Quarantined events (``payload``) are always stored: they are what the device would lose."""
        now = self.ctx.clock()
        self.ctx.metrics.security_event(what)  # every one, the repeats the log suppresses too
        key = (device_id, what, detail.split(":", 1)[0][:40])  # the message it is about: "event batch", ...
        if payload is None and now - self._last.get(key, float("-inf")) < self.interval:
            self.suppressed += 1
            return False
        self._last[key] = now
        if len(self._last) > 10_000:
            self._last.clear()
        with self.ctx.db.write() as conn:
            conn.execute(insert(security_events).values(at=now, device_id=device_id, what=what,
                                                        detail=detail[:500], payload=payload))
        log.warning("SECURITY device %s: %s: %s", device_id, what, detail[:500])
        return True

    async def report(self, device_id: str, what: str, detail: str, payload: Any = None) -> None:
        await asyncio.to_thread(self.record, device_id, what, detail, payload)


def list_events(ctx: HubContext, *, device_id: str | None = None, since: float | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    """Newest first."""
    q = select(security_events).order_by(security_events.c.id.desc()).limit(limit)
    if device_id is not None:
        q = q.where(security_events.c.device_id == device_id)
    if since is not None:
        q = q.where(security_events.c.at >= since)
    with ctx.db.read() as conn:
        return [row_dict(r) for r in conn.execute(q)]


def online_channel(ctx: HubContext, security: SecurityLog, device_id: str, claimed: int) -> int:
    """The channel an online check of ``device_id`` is decided for: a registered device's own (a body naming
    another is refused, a security event); an unregistered login's device: the channel it names."""
    with ctx.db.read() as conn:
        row = conn.execute(select(provisioned_devices.c.channel_id, provisioned_devices.c.status)
                           .where(provisioned_devices.c.device_id == device_id)).first()
    if row is None or row.status != "active" or row.channel_id is None or row.channel_id == claimed:
        return claimed
    security.record(device_id, "wrong_group", f"online check: for channel {claimed}, registered channel "
                                              f"{row.channel_id}; refused")
    raise Forbidden(f"device {device_id} is registered at channel {row.channel_id}, not {claimed}; fix the "
                    "handheld's channel_id or move it at the hub (PATCH /api/v1/provisioning/devices)")


# -- registering config-file devices, changing what a device is --------------------------------------
def _check_place(conn: Connection, group_id: int | None, channel_id: int | None) -> None:
    if group_id is not None and conn.execute(select(checkin_groups.c.id)
                                             .where(checkin_groups.c.id == group_id)).first() is None:
        raise Invalid(f"no check-in group {group_id}")
    if channel_id is not None:
        row = conn.execute(select(channels.c.group_id).where(channels.c.id == channel_id)).first()
        if row is None or (group_id is not None and row.group_id != group_id):
            raise Invalid(f"channel {channel_id} is not a channel of check-in group {group_id}")


def register(ctx: HubContext, who: Principal, *, device_id: str, kind: str, site: str, public_key: str,
             group_id: int | None, channel_id: int | None, fire_input: bool) -> Outgoing:
    """Register a device that runs from its config file (no enrolment over MQTT) with its public key
    (``python -m gate_agent --show-key``). Its serial is its id. Returns its (empty) config publish."""
    try:
        verify_key(public_key)
    except MalformedError as exc:
        raise Invalid(f"public_key: {exc}; paste the public_key that 'python -m gate_agent --show-key' "
                      "prints") from exc
    if kind in CHECKIN_KINDS and group_id is None:
        raise Invalid(f"a {kind} needs a group_id: the check-in group whose tickets it checks")
    check_device_id_free(ctx, device_id)
    with ctx.db.write() as conn:
        _check_place(conn, group_id, channel_id)
        out = device_admin.create(ctx, conn, {
            "device_id": device_id, "serial": device_id, "kind": kind, "site": site, "group_id": group_id,
            "channel_id": channel_id, "public_key": public_key, "status": "active", "status_reason": None,
            "created_at": ctx.clock(), "fire_input": fire_input}, {})
        ctx.audit(conn, who, "device.register", device_id,
                  f"kind {kind} site {site} group {group_id} channel {channel_id} fire_input {fire_input} "
                  f"key {key_fingerprint(public_key)}")
    log.info("device %s registered by %s (%s, group %s, channel %s, key %s)", device_id, who.username, kind,
             group_id, channel_id, key_fingerprint(public_key))
    return out


_CHANGEABLE = ("site", "group_id", "channel_id", "fire_input")


def change(ctx: HubContext, who: Principal, device_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change what an active device is (site, group, channel, fire input); audited. Returns the row before."""
    bad = sorted(set(changes) - set(_CHANGEABLE))
    if bad:
        raise Invalid(f"not changeable: {', '.join(bad)}")
    with ctx.db.write() as conn:
        row = conn.execute(select(provisioned_devices).where(provisioned_devices.c.device_id == device_id)).first()
        if row is None or row.status != "active":
            raise NotFound(f"no active registered device {device_id!r}; see GET /api/v1/provisioning/devices")
        group = changes.get("group_id", row.group_id)
        channel = changes.get("channel_id", row.channel_id if "group_id" not in changes else None)
        _check_place(conn, group, channel)
        if row.kind in CHECKIN_KINDS and group is None:
            raise Invalid(f"a {row.kind} needs a group_id")
        values = {**changes, "group_id": group, "channel_id": channel}
        conn.execute(update(provisioned_devices).where(provisioned_devices.c.device_id == device_id).values(**values))
        ctx.audit(conn, who, "device.change", device_id,
                  ", ".join(f"{k} {getattr(row, k)!r} -> {v!r}" for k, v in values.items() if getattr(row, k) != v))
    return row_dict(row)
