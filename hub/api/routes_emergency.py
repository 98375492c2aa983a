"""Emergency release: open or clear gates (security only), and the board of every gate's state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.api.deps import Ctx, OptUnixQuery, current_user, roles
from hub.errors import Forbidden
from hub.services import emergency, evacuation
from hub.services.context import Principal
from protocol.bounds import MAX_LIST, Id
from protocol.emergency import EmergencyCommand

router = APIRouter(tags=["emergency"])


async def _security(who: Annotated[Principal, Depends(current_user)]) -> Principal:
    if who.role != "security":
        raise Forbidden(f"only the security role may open or clear emergency release; you are {who.username} "
                        f"({who.role}). Ask the security desk to do it, or an admin to give you a security account.")
    return who


Security = Annotated[Principal, Depends(_security)]
BoardReader = Annotated[Principal, Depends(roles("security", "admin", "ops", "viewer"))]


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: bool = Field(False, description="the whole venue")
    group_ids: list[Id] = Field(default_factory=list, max_length=MAX_LIST, description="check-in groups (zones)")
    channel_ids: list[Id] = Field(default_factory=list, max_length=MAX_LIST, description="check-in channels")

    @model_validator(mode="after")
    def _one_kind(self) -> ScopeIn:
        if self.all and (self.group_ids or self.channel_ids):
            raise ValueError('give either {"all": true} or group_ids/channel_ids, not both')
        if not self.all and not (self.group_ids or self.channel_ids):
            raise ValueError('name what to open or clear: {"all": true}, or group_ids and/or channel_ids')
        return self


class EmergencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: ScopeIn
    reason: str = Field(min_length=1, max_length=200, description="why, for the audit log and the gates")


class EmergencyOut(BaseModel):
    seq: int = Field(description="0 before the first command; grows by one with every command")
    open_all: bool
    open_group_ids: list[int]
    open_channel_ids: list[int]
    issued_at: float
    issued_by: str
    reason: str

    @classmethod
    def of(cls, cmd: EmergencyCommand) -> EmergencyOut:
        return cls(**cmd.to_wire())


class GateOut(BaseModel):
    device_id: str
    kind: str | None
    group_id: int | None
    channel_id: int | None
    online: bool
    in_scope: bool = Field(description="the current command wants this device open")
    wanted: str = Field(description="open or normal")
    state: str | None = Field(description="what the device reports: open, normal, or null (no report)")
    seq: int | None = Field(description="newest command the device applied")
    cause: str | None = Field(description="why it is open: command, fire, button")
    reported_at: float | None
    confirmed: bool = Field(description="reported seq >= current seq and reported state == wanted")
    confirmed_at: float | None = Field(description="when the hub received the confirming report")
    stale: list[str] = Field(default_factory=list,
                             description="parts the device reports stale (whitelist, keys): it cannot verify what "
                                         "the hub sends and must be re-keyed (docs/security.md, Keys)")


class ZoneOut(BaseModel):
    group_id: int
    name: str | None
    admitted: int
    annulled: int
    exits: int
    inside: int


class EvacuationOut(BaseModel):
    formula: str
    since: float
    groups: list[ZoneOut]
    total_inside: int


class BoardOut(BaseModel):
    command: EmergencyOut
    active: bool
    gates: list[GateOut]
    gates_confirmed: int
    gates_unconfirmed: list[str] = Field(description="online gates that have not confirmed the current command")
    evacuation: EvacuationOut


def _scope(body: EmergencyIn) -> emergency.Scope:
    return emergency.Scope(body.scope.all, frozenset(body.scope.group_ids), frozenset(body.scope.channel_ids))


@router.post("/emergency/open", status_code=201)
def open_gates(body: EmergencyIn, ctx: Ctx, who: Security) -> EmergencyOut:
    """The new state is the current one plus ``scope``; published retained and signed to every gate."""
    return EmergencyOut.of(emergency.issue(ctx, who, "open", _scope(body), body.reason))


@router.post("/emergency/clear", status_code=201)
def clear_gates(body: EmergencyIn, ctx: Ctx, who: Security) -> EmergencyOut:
    """The new state is the current one minus ``scope``; ``{"all": true}`` clears everything."""
    return EmergencyOut.of(emergency.issue(ctx, who, "clear", _scope(body), body.reason))


@router.get("/emergency")
def board(ctx: Ctx, _who: BoardReader, since: OptUnixQuery = None) -> BoardOut:
    """The current state, every device judged against it, and the evacuation count per zone."""
    cmd = emergency.current(ctx)
    gates: list[dict[str, Any]] = emergency.gate_rows(ctx, cmd)
    return BoardOut(command=EmergencyOut.of(cmd), active=cmd.active, gates=[GateOut(**g) for g in gates],
                    gates_confirmed=sum(g["confirmed"] for g in gates),
                    gates_unconfirmed=[g["device_id"] for g in gates
                                       if g["online"] and g["kind"] == "gate" and not g["confirmed"]],
                    evacuation=EvacuationOut(**evacuation.count(ctx, since)))
