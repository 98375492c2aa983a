"""Provisioning: enrollment requests, the device registry, config, lifecycle, commands, hub key rotation.

Ops or admin for devices; admin only for hub keys. Every write is audited; no response carries a secret.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hub.api.deps import (
    Admin,
    Ctx,
    DeviceIdPath,
    EventIdPath,
    LimitQuery,
    Operator,
    OptDeviceIdQuery,
    OptUnixQuery,
)
from hub.errors import Invalid, NotFound
from hub.provisioning_link import ProvisioningLink
from hub.services import device_admin, enrollment, registry, signing_keys
from hub.services.context import HubContext
from protocol.bounds import DEVICE_ID_PATTERN, JsonObject, OptId
from protocol.provisioning import normalize_fingerprint

SerialPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="the serial the device enrolled with")]

router = APIRouter(prefix="/provisioning", tags=["provisioning"])


async def _link(request: Request) -> ProvisioningLink:
    link: ProvisioningLink | None = request.app.state.bridge.provisioning
    if link is None:
        raise NotFound("provisioning is not running in this hub")
    return link


Link = Annotated[ProvisioningLink, Depends(_link)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestOut(BaseModel):
    serial: str
    kind: str
    hardware_model: str
    software_version: str
    public_key: str
    fingerprint: str = Field(description="the key's fingerprint, as the device prints it (AB12-CD34-EF56-7890)")
    contested: bool = Field(description="another key claims the same serial: approve only the fingerprint "
                                        "the device itself shows")
    at: float = Field(description="device clock when it asked")
    received_at: float
    status: str


_FINGERPRINT = Field(None, max_length=40, examples=["AB12-CD34-EF56-7890"],
                     description="required: the key fingerprint the device prints when it enrols (see GET "
                                 "/requests); a missing or wrong one is refused (422 / 409)")


class ApproveIn(_In):
    fingerprint: str | None = _FINGERPRINT
    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="also the device's broker login")
    site: str = Field(min_length=1, max_length=100)
    group_id: OptId = None
    channel_id: OptId = None
    kind: Literal["gate", "handheld", "kiosk", "printer"] | None = Field(None, description="default: as requested")
    config: JsonObject = Field(default_factory=dict, description="initial config (version 1)")
    fire_input: StrictBool = Field(False, description="a fire-alarm contact is wired to it: its verified local "
                                                      "fire alarm may open every gate (emergency.spread_local_fire)")


_KIND = Literal["gate", "handheld", "kiosk", "printer"]


class RegisterIn(_In):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    kind: _KIND
    site: str = Field(min_length=1, max_length=100)
    public_key: str = Field(min_length=40, max_length=64, pattern=r"^[A-Za-z0-9+/]+={0,2}$",
                            description="the device's Ed25519 public key, base64, as `python -m gate_agent "
                                        "--show-key` prints it")
    group_id: OptId = Field(None, description="required for a gate or handheld")
    channel_id: OptId = None
    fire_input: StrictBool = False


class ChangeIn(_In):
    site: str | None = Field(None, min_length=1, max_length=100)
    group_id: OptId = Field(None, description="a new group clears the channel unless channel_id is given too")
    channel_id: OptId = None
    fire_input: StrictBool | None = None


class SecurityEventOut(BaseModel):
    id: int
    at: float
    device_id: str
    what: str = Field(description="unregistered, revoked, unsigned, bad_signature, foreign_device, wrong_group, "
                                  "wrong_kind, wrong_identity, no_group, fire_not_spread")
    detail: str
    payload: Any = Field(description="the quarantined events, kept but never counted")


class ReasonIn(_In):
    reason: str = Field(min_length=1, max_length=200)


class RejectIn(ReasonIn):
    fingerprint: str | None = _FINGERPRINT


class ConfigIn(_In):
    config: JsonObject


class CommandIn(_In):
    name: Literal["resync_whitelist", "restart", "diagnostics"]
    timeout_s: float = Field(60.0, gt=0, le=3600, allow_inf_nan=False, description="the device must not run it later")


class RotateIn(_In):
    timeout_s: float | None = Field(None, gt=0, le=3600, allow_inf_nan=False,
                                    description="default: provisioning.rotate_timeout")


class RetireIn(_In):
    kid: int = Field(ge=0, le=255)


class KeyRotateIn(_In):
    purpose: Literal["control", "ticket"] = Field(
        "control", description="control: the key of every envelope (emergency, commands, configs, whitelists); "
                               "ticket: the key of ticket tokens")


class CommandOut(BaseModel):
    command_id: str
    device_id: str
    name: str
    state: Literal["pending", "ok", "failed", "timed_out"]
    issued_by: str
    issued_at: float
    expires_at: float
    result: dict[str, Any] | None
    error: str | None
    done_at: float | None


class DeviceOut(BaseModel):
    device_id: str
    serial: str
    kind: str
    site: str
    group_id: int | None = Field(description="the registry's: what the hub believes, whatever its messages say")
    channel_id: int | None
    fire_input: bool
    fingerprint: str = Field(description="of the device key its event batches and emergency states are signed with")
    status: Literal["active", "revoked"]
    status_reason: str | None
    config_version: int = Field(description="the version assigned by the hub")
    acked_version: int | None = Field(description="the newest version the device confirmed applied")
    ack_error: str | None
    config_drift: bool = Field(description="assigned version != acked version")
    online: bool
    last_seen: float | None = Field(description="hub clock of the newest status")
    birth: int | None
    reboots: int
    software_version: str | None
    state: str | None = Field(None, description="online or offline, from its heartbeats (None: never heard)")
    state_since: float | None = Field(None, description="hub clock when it went online or offline")
    health: dict[str, str] | None = Field(None, description="per part, as the device reports it")
    outbox: int | None = Field(None, description="events queued on the device, not yet at the hub")
    set_aside: int | None = None
    whitelist_seq: int | None = Field(None, description="the whitelist seq the device holds")
    hub_whitelist_seq: int | None = Field(None, description="the hub's seq of the device's registered group")
    whitelist_lag: int | None = Field(None, description="hub_whitelist_seq - whitelist_seq: changes not yet "
                                                        "applied on the device (None: no group or not said)")
    reported_config_version: int | None = Field(None, description="the config version its heartbeat says")
    commands: list[CommandOut] = Field(description="the newest commands, newest first")


@router.get("/requests")
def requests(ctx: Ctx, _who: Operator) -> list[RequestOut]:
    """Pending enrollment requests, oldest first, with key fingerprints; a serial claimed by two keys is
    ``contested`` (both listed)."""
    return [RequestOut(**r) for r in enrollment.pending(ctx)]


@router.post("/requests/{serial}/approve", status_code=201)
async def approve(serial: SerialPath, body: ApproveIn, ctx: Ctx, link: Link, who: Operator) -> DeviceOut:
    """Approve the request of ``serial`` whose key has ``fingerprint``: create the device's broker login,
    store it, send it the signed reply and its first config. Other keys claiming the serial are rejected."""
    await link.approve(who, serial, body.fingerprint, enrollment.Approval(
        body.device_id, body.site, body.group_id, body.channel_id, body.kind, body.config, body.fire_input))
    return await asyncio.to_thread(_device, ctx, body.device_id)


@router.post("/devices", status_code=201)
async def register(body: RegisterIn, ctx: Ctx, link: Link, who: Operator) -> DeviceOut:
    """Register a device that runs from its config file, by the public key it shows (``python -m gate_agent
    --show-key``): the hub then believes its signed batches, in the group and channel given here."""
    await link.register(who, **body.model_dump())
    return await asyncio.to_thread(_device, ctx, body.device_id)


@router.patch("/devices/{device_id}")
async def change(device_id: DeviceIdPath, body: ChangeIn, ctx: Ctx, link: Link, who: Operator) -> DeviceOut:
    """Change what a device is: site, group (its broker role follows), channel, fire input. Move a gate
    once its outbox is empty: events still queued for the old group are quarantined, not counted."""
    changes = body.model_dump(exclude_unset=True)
    if any(changes.get(k, 0) is None for k in ("site", "fire_input")):
        raise Invalid("site and fire_input cannot be null")
    await link.change(who, device_id, changes)
    return await asyncio.to_thread(_device, ctx, device_id)


@router.get("/security-events")
def security_events(ctx: Ctx, _who: Operator, device_id: OptDeviceIdQuery = None, since: OptUnixQuery = None,
                    limit: LimitQuery = 100) -> list[SecurityEventOut]:
    """Newest first: messages a device sent that the registry contradicts or that did not verify."""
    return [SecurityEventOut(**e) for e in registry.list_events(ctx, device_id=device_id, since=since,
                                                               limit=min(limit, 1000))]


@router.post("/requests/{serial}/reject")
async def reject(serial: SerialPath, body: RejectIn, link: Link, who: Operator) -> dict[str, str]:
    """Reject the request of ``serial`` whose key has ``fingerprint`` (other keys of the serial stay pending)."""
    await link.reject(who, serial, body.fingerprint, body.reason)
    return {"serial": serial, "fingerprint": normalize_fingerprint(body.fingerprint or ""), "status": "rejected"}


def _device(ctx: HubContext, device_id: str) -> DeviceOut:
    for d in device_admin.registry(ctx):
        if d["device_id"] == device_id:
            return DeviceOut(**d)
    raise NotFound(f"no provisioned device {device_id!r}")


@router.get("/devices")
def devices(ctx: Ctx, _who: Operator) -> list[DeviceOut]:
    """Every provisioned device: status, config drift, liveness and its newest commands."""
    return [DeviceOut(**d) for d in device_admin.registry(ctx)]


@router.put("/devices/{device_id}/config")
async def set_config(device_id: DeviceIdPath, body: ConfigIn, link: Link, who: Operator) -> dict[str, Any]:
    """Store the next config version and publish it signed and retained."""
    return {"device_id": device_id, "config_version": await link.set_config(who, device_id, body.config)}


@router.post("/devices/{device_id}/rotate", status_code=202)
async def rotate(device_id: DeviceIdPath, link: Link, who: Operator, body: RotateIn | None = None) -> dict[str, str]:
    """Send the new password; the broker switches to it once the device confirms (see the command)."""
    command_id = await link.rotate_credentials(who, device_id, body.timeout_s if body else None)
    return {"device_id": device_id, "command_id": command_id}


@router.post("/devices/{device_id}/revoke")
async def revoke(device_id: DeviceIdPath, body: ReasonIn, ctx: Ctx, link: Link, who: Operator) -> DeviceOut:
    """Remove its broker login (its session ends now) and refuse its events from now on."""
    await link.revoke(who, device_id, body.reason)
    return await asyncio.to_thread(_device, ctx, device_id)


@router.post("/devices/{device_id}/command", status_code=202)
async def command(device_id: DeviceIdPath, body: CommandIn, ctx: Ctx, link: Link, who: Operator) -> CommandOut:
    command_id = await link.command(who, device_id, body.name, body.timeout_s)
    return CommandOut(**await asyncio.to_thread(device_admin.command, ctx, command_id))


@router.get("/commands/{command_id}")
def command_state(command_id: EventIdPath, ctx: Ctx, _who: Operator) -> CommandOut:
    """pending, ok, failed, or timed_out (no result before ``expires_at``)."""
    return CommandOut(**device_admin.command(ctx, command_id))


@router.post("/keys/rotate", status_code=201)
async def rotate_keys(ctx: Ctx, link: Link, who: Admin, body: KeyRotateIn | None = None) -> dict[str, Any]:
    """Make key n+1 for ``purpose`` (default control) and sign with it from now on; devices get {old keys,
    new}, signed with the old control key. Answers the new ``kid``, ``active_kid`` (control), ``ticket_kid``
    and every trusted key id with its purposes."""
    kid = await link.rotate_keys(who, (body or KeyRotateIn()).purpose)
    return {"kid": kid, **signing_keys.summary(ctx)}


@router.post("/keys/retire")
async def retire_key(body: RetireIn, ctx: Ctx, link: Link, who: Admin) -> dict[str, Any]:
    """Stop trusting an old key id (devices get the shorter list, signed with the active key)."""
    await link.retire_key(who, body.kid)
    return signing_keys.summary(ctx)
