"""Provisioned devices: the registry, assigned config (versioned, signed, retained), acks, revocation,
remote commands and liveness.

Every function owns its transaction and returns what to publish after the commit; the broker side
(logins, passwords) is done by :mod:`hub.provisioning_link` around these calls.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from hub.errors import Conflict, NotFound
from hub.services import otp
from hub.services.context import HubContext, Outgoing, Principal, row_dict
from hub.tables import checkin_groups, device_commands, devices, provisioned_devices
from protocol.envelope import reseal, seal
from protocol.provisioning import (
    KIND_COMMAND,
    KIND_CONFIG,
    CommandPayload,
    CommandResult,
    ConfigAck,
    ConfigPayload,
    ProvisioningTopics,
    key_fingerprint,
)

log = logging.getLogger(__name__)
RECENT_COMMANDS = 5


def ptopics(ctx: HubContext) -> ProvisioningTopics:
    return ProvisioningTopics(ctx.topics.prefix)


def _config_envelope(ctx: HubContext, device_id: str, version: int, config: dict[str, Any]) -> bytes:
    payload = ConfigPayload(device_id=device_id, version=version, issued_at=ctx.clock(), config=config)
    return seal(KIND_CONFIG, payload.model_dump(), ctx.signer)


def create(ctx: HubContext, conn: Connection, row: dict[str, Any], config: dict[str, Any]) -> Outgoing:
    """Insert (or replace a revoked) device with config version 1; return the config publish."""
    envelope = _config_envelope(ctx, row["device_id"], 1, config)
    old = conn.execute(select(provisioned_devices.c.status)
                       .where(provisioned_devices.c.device_id == row["device_id"])).first()
    if old is not None and old.status == "active":
        raise Conflict(f"device id {row['device_id']!r} is taken by an active device")
    if old is not None:
        conn.execute(delete(provisioned_devices).where(provisioned_devices.c.device_id == row["device_id"]))
    conn.execute(insert(provisioned_devices).values(**row, config=config, config_version=1,
                                                    config_envelope=envelope, acked_version=None))
    return ptopics(ctx).config(row["device_id"]), envelope


def _device(conn: Connection, device_id: str, *, active: bool = True, lock: bool = False) -> Any:
    """The device's row; ``lock``: held until the transaction ends (a hub changing it on another process waits)."""
    query = select(provisioned_devices).where(provisioned_devices.c.device_id == device_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no provisioned device {device_id!r}; see GET /api/v1/provisioning/devices")
    if active and row.status != "active":
        raise Conflict(f"device {device_id} is {row.status}")
    return row


def device(ctx: HubContext, device_id: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return row_dict(_device(conn, device_id, active=False))


def set_config(ctx: HubContext, who: Principal, device_id: str, config: dict[str, Any]) -> tuple[int, Outgoing]:
    with ctx.db.write() as conn:
        version = _device(conn, device_id, lock=True).config_version + 1  # two hubs never give out one version
        envelope = _config_envelope(ctx, device_id, version, config)
        conn.execute(update(provisioned_devices).where(provisioned_devices.c.device_id == device_id)
                     .values(config=config, config_version=version, config_envelope=envelope))
        ctx.audit(conn, who, "provisioning.config", device_id, f"version {version}, keys {sorted(config)}")
    log.info("config version %s of %s set by %s", version, device_id, who.username)
    return version, (ptopics(ctx).config(device_id), envelope)


def config_envelopes(ctx: HubContext) -> list[Outgoing]:
    """The current config of every active device (re-published retained on every connect)."""
    with ctx.db.read() as conn:
        rows = conn.execute(select(provisioned_devices.c.device_id, provisioned_devices.c.config_envelope)
                            .where(provisioned_devices.c.status == "active"))
        # re-signed with the active control key: a stored config may be signed by a retired key
        return [(ptopics(ctx).config(r.device_id), reseal(bytes(r.config_envelope), ctx.signer)) for r in rows]


def record_ack(ctx: HubContext, ack: ConfigAck) -> None:
    with ctx.db.write() as conn:
        row = conn.execute(select(provisioned_devices.c.acked_version)
                           .where(provisioned_devices.c.device_id == ack.device_id)).first()
        if row is None:
            log.warning("config ack from unprovisioned device %s ignored", ack.device_id)
            return
        if not ack.applied:
            log.warning("device %s could not apply config version %s: %s", ack.device_id, ack.version, ack.error)
            conn.execute(update(provisioned_devices).where(provisioned_devices.c.device_id == ack.device_id)
                         .values(ack_error=ack.error or "not applied", acked_at=ctx.clock()))
            return
        if row.acked_version is None or ack.version >= row.acked_version:
            conn.execute(update(provisioned_devices).where(provisioned_devices.c.device_id == ack.device_id)
                         .values(acked_version=ack.version, ack_error=None, acked_at=ctx.clock()))


def revoke(ctx: HubContext, who: Principal, device_id: str, reason: str) -> Outgoing:
    """Mark revoked; return the clearing of its retained config."""
    with ctx.db.write() as conn:
        _device(conn, device_id)
        conn.execute(update(provisioned_devices).where(provisioned_devices.c.device_id == device_id)
                     .values(status="revoked", status_reason=reason))
        ctx.audit(conn, who, "provisioning.revoke", device_id, reason)
    log.warning("device %s revoked by %s: %s", device_id, who.username, reason)
    return ptopics(ctx).config(device_id), b""


def revoked_ids(ctx: HubContext) -> set[str]:
    with ctx.db.read() as conn:
        return set(conn.execute(select(provisioned_devices.c.device_id)
                                .where(provisioned_devices.c.status == "revoked")).scalars())


def audit(ctx: HubContext, who: Principal, action: str, target: str, detail: str = "") -> None:
    with ctx.db.write() as conn:
        ctx.audit(conn, who, action, target, detail)


# -- commands -------------------------------------------------------------------------------------
def issue_command(ctx: HubContext, who: Principal, device_id: str, name: str, timeout_s: float,
                  args: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Store a new command; return its id and payload (:func:`command_envelope` makes what to publish)."""
    now = ctx.clock()
    command_id = uuid.uuid4().hex
    payload = CommandPayload(device_id=device_id, command_id=command_id, name=name,
                             issued_at=now, expires_at=now + timeout_s, args=args or {})
    with ctx.db.write() as conn:
        _device(conn, device_id)
        conn.execute(insert(device_commands).values(command_id=command_id, device_id=device_id, name=name,
                                                    issued_by=who.username, issued_at=now,
                                                    expires_at=now + timeout_s))
        ctx.audit(conn, who, f"provisioning.command.{name}", device_id, f"command {command_id}, {timeout_s:.0f} s")
    log.info("command %s %s sent to %s by %s", name, command_id, device_id, who.username)
    return command_id, payload.model_dump()


def pending_commands(ctx: HubContext) -> list[tuple[str, dict[str, Any]]]:
    """Every command of an active device not answered and not expired, oldest first, as ``(device id,
    payload)``: the hub re-sends them when their device is heard from (:mod:`hub.provisioning_link`).
    ``rotate_credentials`` is left out: its new password lived only in the memory of the hub that sent it."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        rows = conn.execute(
            select(device_commands).join(provisioned_devices,
                                         provisioned_devices.c.device_id == device_commands.c.device_id)
            .where(device_commands.c.done_at.is_(None), device_commands.c.expires_at > now,
                   device_commands.c.name != "rotate_credentials", provisioned_devices.c.status == "active")
            .order_by(device_commands.c.issued_at)).all()
    return [(r.device_id, CommandPayload(device_id=r.device_id, command_id=r.command_id, name=r.name,
                                         issued_at=r.issued_at, expires_at=r.expires_at, args={}).model_dump())
            for r in rows]


def command_envelope(ctx: HubContext, payload: dict[str, Any]) -> Outgoing:
    """A command again (the same id: the device runs it at most once), signed with the active control key."""
    return ptopics(ctx).command(str(payload["device_id"])), seal(KIND_COMMAND, payload, ctx.signer)


def record_result(ctx: HubContext, res: CommandResult) -> str | None:
    """Store a result; return the command's name, or None if unknown, foreign or already done."""
    with ctx.db.write() as conn:
        row = conn.execute(select(device_commands).where(device_commands.c.command_id == res.command_id)
                           .with_for_update()).first()  # every hub hears a result: the first stores it
        if row is not None and row.device_id == res.device_id and row.done_at is not None:
            log.debug("command result %s from %s stored already (by another hub, or a repeat)", res.command_id,
                      res.device_id)
            return None
        if row is None or row.device_id != res.device_id:
            log.warning("command result %s from %s ignored: unknown, or another device's", res.command_id,
                        res.device_id)
            return None
        if ctx.clock() > row.expires_at:
            log.warning("command result %s from %s came after the command expired; stored anyway",
                        res.command_id, res.device_id)
        conn.execute(update(device_commands).where(device_commands.c.command_id == res.command_id)
                     .values(ok=res.ok, result=res.result, error=res.error, done_at=ctx.clock()))
    return str(row.name)


def _command_view(row: Any, now: float) -> dict[str, Any]:
    if row.ok is not None:
        state = "ok" if row.ok else "failed"
    else:
        state = "timed_out" if now > row.expires_at else "pending"
    return {"command_id": row.command_id, "device_id": row.device_id, "name": row.name, "state": state,
            "issued_by": row.issued_by, "issued_at": row.issued_at, "expires_at": row.expires_at,
            "result": row.result, "error": row.error, "done_at": row.done_at}


def command(ctx: HubContext, command_id: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        row = conn.execute(select(device_commands).where(device_commands.c.command_id == command_id)).first()
    if row is None:
        raise NotFound(f"no command {command_id!r}")
    return _command_view(row, ctx.clock())


# -- the registry and liveness --------------------------------------------------------------------
def _heartbeat(seen: Any, hub_seq: int | None) -> dict[str, Any]:
    """What the newest heartbeat said, and the whitelist lag: the hub's seq of the device's registered
    group minus the seq the device holds (None: no group, or the device has not said)."""
    if seen is None:
        return {"state": None, "state_since": None, "health": None, "outbox": None, "set_aside": None,
                "whitelist_seq": None, "hub_whitelist_seq": hub_seq, "whitelist_lag": None,
                "reported_config_version": None}
    lag = hub_seq - seen.whitelist_seq if hub_seq is not None and seen.whitelist_seq is not None else None
    return {"state": seen.state, "state_since": seen.state_since, "health": seen.health, "outbox": seen.outbox,
            "set_aside": seen.set_aside, "whitelist_seq": seen.whitelist_seq, "hub_whitelist_seq": hub_seq,
            "whitelist_lag": lag, "reported_config_version": seen.config_version}


def registry(ctx: HubContext) -> list[dict[str, Any]]:
    now = ctx.clock()
    with ctx.db.read() as conn:
        live = {r.device_id: r for r in conn.execute(select(devices))}
        hub_seqs = {r.id: r.seq for r in conn.execute(select(checkin_groups.c.id, checkin_groups.c.seq))}
        out = []
        for d in conn.execute(select(provisioned_devices).order_by(provisioned_devices.c.device_id)):
            seen = live.get(d.device_id)
            cmds = conn.execute(select(device_commands).where(device_commands.c.device_id == d.device_id)
                                .order_by(device_commands.c.issued_at.desc()).limit(RECENT_COMMANDS))
            out.append({
                "device_id": d.device_id, "serial": d.serial, "kind": d.kind, "site": d.site,
                "group_id": d.group_id, "channel_id": d.channel_id, "fire_input": bool(d.fire_input),
                "fingerprint": key_fingerprint(d.public_key), "status": d.status,
                "status_reason": d.status_reason, "config_version": d.config_version,
                "acked_version": d.acked_version, "ack_error": d.ack_error,
                "config_drift": d.acked_version != d.config_version,
                "online": bool(seen is not None and seen.state == "online"),
                "last_seen": seen.heard_at if seen is not None else None,
                "birth": seen.birth if seen is not None else None,
                "reboots": seen.reboots if seen is not None else 0,
                "software_version": seen.version if seen is not None else None,
                **_heartbeat(seen, hub_seqs.get(d.group_id) if d.group_id is not None else None),
                "commands": [_command_view(c, now) for c in cmds]})
    return out


def sweep_offline(ctx: HubContext, default_interval: float, factor: float) -> list[str]:
    """Mark offline every online device silent for ``factor`` heartbeat intervals; return their ids."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        rows = conn.execute(select(devices.c.device_id, devices.c.heard_at, devices.c.interval)
                            .where(devices.c.state == "online", devices.c.heard_at.is_not(None))).all()
        silent = [r.device_id for r in rows if now - r.heard_at > factor * (r.interval or default_interval)]
        if silent:
            conn.execute(update(devices).where(devices.c.device_id.in_(silent)).values(state="offline",
                                                                                    state_since=now))
    return silent


def prune_rate_limits(ctx: HubContext) -> int:
    """Drop the kiosk rate-limit windows no limit looks at any more (the elected hub, with the offline sweep)."""
    with ctx.db.write() as conn:
        return otp.prune_rate_hits(conn, ctx.clock())
