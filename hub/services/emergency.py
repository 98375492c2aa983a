"""Emergency release at the hub: issue whole-state commands, store what devices report, build the board.

Every call makes a new :class:`~protocol.emergency.EmergencyCommand`: the old state plus (open) or
minus (clear) a scope, with the next ``seq``. The command row, its sealed envelope and the audit
entry are written in one transaction; only after the commit is the envelope published, retained, on
``{prefix}/emergency/command`` (the bridge publishes that topic retained). ``seq`` is ``max + 1`` of
the stored commands, so it only grows, across restarts too.

    >>> cmd = open_scope(ctx, guard, Scope(all=True), "fire in hall B")   # doctest: +SKIP
    >>> cmd.seq, cmd.open_all
    (1, True)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Table, delete, insert, select

from hub.errors import Conflict, NotFound
from hub.services import sequences
from hub.services.context import HubContext, Principal
from hub.tables import channels, checkin_groups, device_emergency, devices, emergency_commands
from protocol.emergency import KIND_EMERGENCY, EmergencyCommand, EmergencyState
from protocol.envelope import reseal, seal

log = logging.getLogger(__name__)
Action = Literal["open", "clear"]
NONE = EmergencyCommand(0, 0.0, "", "")  # the state before the first command: nothing open


@dataclass(frozen=True)
class Scope:
    """What an open or clear call is about: the whole venue, or some check-in groups and channels."""

    all: bool = False
    group_ids: frozenset[int] = field(default_factory=frozenset)
    channel_ids: frozenset[int] = field(default_factory=frozenset)

    def describe(self) -> dict[str, Any]:
        return {"all": True} if self.all else {"group_ids": sorted(self.group_ids),
                                               "channel_ids": sorted(self.channel_ids)}


def _command(row: Any) -> EmergencyCommand:
    state = row.state if isinstance(row.state, dict) else json.loads(row.state)
    return EmergencyCommand(row.seq, row.issued_at, row.issued_by, row.reason, bool(state["open_all"]),
                            frozenset(state["open_group_ids"]), frozenset(state["open_channel_ids"]))


def _newest(conn: Connection) -> Any:
    return conn.execute(select(emergency_commands).order_by(emergency_commands.c.seq.desc()).limit(1)).first()


def current(ctx: HubContext) -> EmergencyCommand:
    """The newest command (``NONE``, seq 0, before the first one)."""
    with ctx.db.read() as conn:
        row = _newest(conn)
    return NONE if row is None else _command(row)


def current_envelope(ctx: HubContext) -> bytes | None:
    """The newest command's sealed envelope, as published (None before the first command)."""
    with ctx.db.read() as conn:
        row = _newest(conn)
    return None if row is None else reseal(bytes(row.envelope), ctx.signer)  # the active control key


def _check_exist(conn: Connection, table: Table, ids: frozenset[int], what: str, listing: str) -> None:
    found = set(conn.execute(select(table.c.id).where(table.c.id.in_(sorted(ids)))).scalars()) if ids else set()
    missing = sorted(ids - found)
    if missing:
        raise NotFound(f"{what} {', '.join(map(str, missing))} does not exist; pick ids from GET /api/v1/{listing}, "
                       "or use {\"all\": true} for the whole venue")


def _combine(old: EmergencyCommand, action: Action, scope: Scope) -> tuple[bool, frozenset[int], frozenset[int]]:
    if action == "open":
        return old.open_all or scope.all, old.open_group_ids | scope.group_ids, old.open_channel_ids | scope.channel_ids
    if scope.all:
        return False, frozenset(), frozenset()
    if old.open_all:
        raise Conflict("every gate is open (open all); a part cannot be cleared from it. Clear all with "
                       "{\"all\": true}, then open again the groups or channels that must stay open")
    return False, old.open_group_ids - scope.group_ids, old.open_channel_ids - scope.channel_ids


def _locked_current(conn: Connection) -> EmergencyCommand:
    """The newest command, read after taking the emergency sequence's lock: another hub issuing at the same time
    waits until this transaction ends, and then combines with what this one issued."""
    sequences.lock(conn, "emergency")
    row = _newest(conn)
    return NONE if row is None else _command(row)


def _issue_in(ctx: HubContext, conn: Connection, who: Principal, issued_by: str, action: Action, scope: Scope,
              reason: str, old: EmergencyCommand) -> tuple[EmergencyCommand, bytes]:
    """Issue after :func:`_locked_current` returned ``old`` in this transaction."""
    open_all, group_ids, channel_ids = _combine(old, action, scope)
    seq = sequences.next_value(conn, "emergency")
    cmd = EmergencyCommand(seq, ctx.clock(), issued_by, reason, open_all, group_ids, channel_ids)
    wire = cmd.to_wire()
    envelope = seal(KIND_EMERGENCY, wire, ctx.signer)
    state = {k: wire[k] for k in ("open_all", "open_group_ids", "open_channel_ids")}
    conn.execute(insert(emergency_commands).values(seq=seq, issued_at=cmd.issued_at, issued_by=issued_by,
                                                   reason=reason, action=action, state=state, envelope=envelope))
    ctx.audit(conn, who, f"emergency.{action}", f"emergency:{seq}",
              json.dumps({"scope": scope.describe(), "reason": reason, "issued_by": issued_by, "state": state},
                         ensure_ascii=False))
    return cmd, envelope


def _publish(ctx: HubContext, cmd: EmergencyCommand, envelope: bytes) -> None:
    ctx.publish(ctx.topics.emergency_command(), envelope)
    log.warning("emergency command %s by %s: open_all=%s groups=%s channels=%s (%s)", cmd.seq, cmd.issued_by,
                cmd.open_all, sorted(cmd.open_group_ids), sorted(cmd.open_channel_ids), cmd.reason)


def issue(ctx: HubContext, who: Principal, action: Action, scope: Scope, reason: str) -> EmergencyCommand:
    """Open or clear ``scope``; raises NotFound for unknown ids, Conflict for a part of open-all."""
    with ctx.db.write() as conn:
        _check_exist(conn, checkin_groups, scope.group_ids, "check-in group", "checkin-groups")
        _check_exist(conn, channels, scope.channel_ids, "check-in channel", "channels")
        cmd, envelope = _issue_in(ctx, conn, who, who.username, action, scope, reason, _locked_current(conn))
    _publish(ctx, cmd, envelope)
    return cmd


def spread_fire(ctx: HubContext, device_id: str) -> EmergencyCommand | None:
    """A device's local fire alarm opens every gate, unless every gate is open already."""
    issued_by = f"fire-alarm:{device_id}"
    with ctx.db.write() as conn:
        old = _locked_current(conn)
        if old.open_all:
            return None
        cmd, envelope = _issue_in(ctx, conn, Principal(None, issued_by[:64], "system"), issued_by, "open",
                                  Scope(all=True), f"fire alarm reported by {device_id}", old)
    _publish(ctx, cmd, envelope)
    return cmd


def store_states(ctx: HubContext, states: Sequence[EmergencyState]) -> list[str]:
    """Store the newest report of each device in one transaction; return devices that newly report fire."""
    newest: dict[str, EmergencyState] = {}
    for s in states:
        if s.device_id not in newest or s.at >= newest[s.device_id].at:
            newest[s.device_id] = s
    now = ctx.clock()
    with ctx.db.write() as conn:
        sequences.lock(conn, "emergency_reports")  # another hub storing a re-sent report waits, then sees it
        before = {r.device_id: r for r in conn.execute(
            select(device_emergency.c.device_id, device_emergency.c.state, device_emergency.c.cause,
                   device_emergency.c.at)
            .where(device_emergency.c.device_id.in_(sorted(newest))))}
        for device_id, old in before.items():  # an older report (a replay, a late duplicate) changes nothing
            if newest[device_id].at < old.at:
                log.warning("emergency state of %s at %.0f is older than the one stored (%.0f): ignored",
                            device_id, newest[device_id].at, old.at)
                del newest[device_id]
        before = {k: v for k, v in before.items() if k in newest}
        conn.execute(delete(device_emergency).where(device_emergency.c.device_id.in_(sorted(before))))
        if newest:
            conn.execute(insert(device_emergency), [
                {"device_id": s.device_id, "state": s.state, "seq": s.seq, "cause": s.cause, "at": s.at,
                 "received_at": now} for s in newest.values()])
    fires = []
    for s in newest.values():
        prior = before.get(s.device_id)
        newly = prior is None or (prior.state, prior.cause) != ("open", "fire")
        if s.state == "open" and s.cause == "fire" and newly:
            fires.append(s.device_id)
    return fires


def _wants(cmd: EmergencyCommand, group_id: int | None, channel_id: int | None) -> str:
    return "open" if cmd.opens(-1 if group_id is None else group_id, -1 if channel_id is None else channel_id) \
        else "normal"


def _confirmed(cmd: EmergencyCommand, want: str, state: str | None, seq: int | None) -> bool:
    if state is None or seq is None:
        return cmd.seq == 0  # nothing commanded yet: nothing to confirm
    return seq >= cmd.seq and state == want


def gate_rows(ctx: HubContext, cmd: EmergencyCommand) -> list[dict[str, Any]]:
    """Every known device (registered, or only reporting an emergency state), judged against ``cmd``."""
    with ctx.db.read() as conn:
        registered = conn.execute(
            select(devices.c.device_id, devices.c.kind, devices.c.state.label("status"), devices.c.group_id,
                   devices.c.channel_id, devices.c.health, device_emergency.c.state, device_emergency.c.seq,
                   device_emergency.c.cause, device_emergency.c.at, device_emergency.c.received_at)
            .select_from(devices.outerjoin(device_emergency, device_emergency.c.device_id == devices.c.device_id))
        ).all()
        unregistered = conn.execute(
            select(device_emergency).where(device_emergency.c.device_id.not_in(select(devices.c.device_id)))).all()
    out = []
    for r in registered:
        gate = _gate(cmd, r.device_id, r.kind, r.status == "online", r.group_id, r.channel_id, r)
        gate["stale"] = sorted(k for k, v in (r.health or {}).items() if v == "stale")  # whitelist, keys
        out.append(gate)
    for r in unregistered:
        out.append({**_gate(cmd, r.device_id, None, False, None, None, r), "stale": []})
    return sorted(out, key=lambda g: g["device_id"])


def _gate(cmd: EmergencyCommand, device_id: str, kind: str | None, online: bool, group_id: int | None,
          channel_id: int | None, r: Any) -> dict[str, Any]:
    want = _wants(cmd, group_id, channel_id)
    confirmed = _confirmed(cmd, want, r.state, r.seq)
    return {"device_id": device_id, "kind": kind, "group_id": group_id, "channel_id": channel_id, "online": online,
            "in_scope": want == "open", "wanted": want, "state": r.state, "seq": r.seq, "cause": r.cause,
            "reported_at": r.at, "confirmed": confirmed,
            "confirmed_at": r.received_at if confirmed and r.state is not None else None}


def unconfirmed_gates(ctx: HubContext) -> tuple[EmergencyCommand, list[str]]:
    """The current command and the online gates (kind "gate") that have not confirmed it."""
    cmd = current(ctx)
    if cmd.seq == 0:
        return cmd, []
    return cmd, [g["device_id"] for g in gate_rows(ctx, cmd)
                 if g["online"] and g["kind"] == "gate" and not g["confirmed"]]
