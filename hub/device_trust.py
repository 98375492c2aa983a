"""What the hub believes of a device's message: the registry's word, and the device's own signature.

The bridge hands each device message here before it is stored. A device is believed only about itself:

* its **kind, check-in group and channel** come from the registry (:mod:`hub.services.registry`), never
  from the message: a status naming another group is stored with the registry's, a sync request for
  another group is refused, and events naming another group or channel are quarantined (kept in
  ``security_events``, acked so the device stops re-sending them, never counted);
* **event batches and emergency states** must be signed with the device's enrolled key
  (:mod:`protocol.device_signed`); an unsigned one, one that does not verify, or one naming another
  device changes nothing;
* a **local fire alarm** opens other gates only when the device is registered with ``fire_input``.

Every refusal is a security event (stored and logged, rate limited per device). A device that is not
registered is refused altogether unless ``[devices] accept_unregistered`` (bench and demo only).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hub.config import DeviceSettings
from hub.services.context import HubContext, Outgoing
from hub.services.registry import CHECKIN_KINDS, Registered, RegistryCache, SecurityLog
from protocol.device_signed import KIND_EMERGENCY_STATE, KIND_EVENTS, is_device_signed, peek_body, verified_body
from protocol.emergency import EmergencyState
from protocol.envelope import seal
from protocol.errors import MalformedError, SignatureError
from protocol.messages import KIND_ACK, AckPayload, CheckinEvent, EventBatch, GateStatus, SyncRequest

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: Any, data: bytes) -> M:
    """The verified body bytes (or a peeked dict, or with None the raw unsigned JSON) as ``model``; a
    MalformedError names the first bad field."""
    try:
        if body is None:
            return model.model_validate_json(data)
        return model.model_validate_json(body) if isinstance(body, bytes) else model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise MalformedError(f"{model.__name__}: {where}: {first.get('msg')}") from exc


class Refused(Exception):
    """The message changes nothing; the security event is recorded already."""


class DeviceTrust:
    def __init__(self, ctx: HubContext, settings: DeviceSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.registry = RegistryCache(ctx, settings.registry_refresh)
        self.security = SecurityLog(ctx, settings.security_log_interval)
        self._said: dict[str, tuple[Any, ...]] = {}  # device -> the identity its status claimed last

    async def _refuse(self, device_id: str, what: str, detail: str, payload: Any = None) -> Refused:
        await self.security.report(device_id, what, detail, payload)
        return Refused(f"{what}: {detail}")

    async def _registered(self, device_id: str, what: str) -> Registered | None:
        """The device's registry entry; None for an unregistered device when those are accepted."""
        reg = await self.registry.get(device_id)
        if reg is None:
            if self.settings.accept_unregistered:
                return None
            raise await self._refuse(device_id, "unregistered",
                                     f"{what} from a device the hub has not registered (enrol it, or register it "
                                     "with POST /api/v1/provisioning/devices and its --show-key output)")
        if not reg.active:
            raise await self._refuse(device_id, "revoked", f"{what} from a revoked device")
        return reg

    async def _open(self, device_id: str, reg: Registered | None, kind: str, data: bytes, what: str) -> Any:
        """The verified body; None for an unsigned message that is accepted (parse the raw JSON)."""
        if reg is None:  # an unregistered device, accepted: nothing to verify with
            return peek_body(data) if is_device_signed(data) else None
        if not is_device_signed(data):
            until = self.settings.accept_unsigned_until
            if until is not None and self.ctx.clock() < until:
                await self.security.report(device_id, "unsigned_accepted",
                                           f"{what} not signed (a device of the previous release), accepted "
                                           f"until devices.accept_unsigned_until; upgrade it")
                return None
            raise await self._refuse(device_id, "unsigned", f"{what} is not signed with the device's key")
        try:
            return verified_body(data, kind, device_id, reg.key)
        except SignatureError as exc:
            raise await self._refuse(device_id, "bad_signature", f"{what}: {exc}") from exc

    # -- check-in events --------------------------------------------------------------------------------
    async def events(self, device_id: str, data: bytes) -> tuple[EventBatch | None, list[Outgoing]]:
        """The batch to store (its events all the device's own, in its registered group and channel) and
        the ack of any quarantined events; raises Refused or MalformedError."""
        reg = await self._registered(device_id, "event batch")
        if reg is not None and reg.kind not in CHECKIN_KINDS:
            raise await self._refuse(device_id, "wrong_kind", f"event batch from a device registered as {reg.kind}")
        body = await self._open(device_id, reg, KIND_EVENTS, data, "event batch")
        batch = _parse(EventBatch, body, data)
        foreign = sorted({e.device_id for e in batch.events if e.device_id != device_id} |
                         ({batch.device_id} if batch.device_id != device_id else set()))
        if foreign:
            raise await self._refuse(device_id, "foreign_device",
                                     f"event batch names device(s) {', '.join(foreign)[:200]}; nothing stored")
        if reg is None:
            return batch, []
        if reg.group_id is None:
            raise await self._refuse(device_id, "no_group", "event batch from a device with no check-in group "
                                                            "in the registry; assign one")
        mine: list[CheckinEvent] = []
        stray: list[CheckinEvent] = []
        for e in batch.events:
            here = e.group_id == reg.group_id and (reg.channel_id is None or e.channel_id == reg.channel_id)
            (mine if here else stray).append(e)
        acks: list[Outgoing] = []
        if stray:
            where = sorted({(e.group_id, e.channel_id) for e in stray})
            await self.security.report(
                device_id, "wrong_group",
                f"{len(stray)} event(s) name group/channel {where[:5]}, registered group {reg.group_id} channel "
                f"{reg.channel_id}: quarantined, not counted (first event {stray[0].event_id})",
                [e.model_dump(mode="json") for e in stray])
            ack = AckPayload(device_id=device_id, event_ids=[e.event_id for e in stray], at=self.ctx.clock())
            acks.append((self.ctx.topics.ack(device_id), seal(KIND_ACK, ack.model_dump(), self.ctx.signer)))
        return (batch.model_copy(update={"events": mine}) if mine else None), acks

    # -- status, sync, print results ---------------------------------------------------------------------
    async def status(self, device_id: str, status: GateStatus) -> GateStatus:
        """The status with the registry's kind, group and channel in place of what it claims."""
        reg = await self.registry.get(device_id)
        if reg is None or status.state == "offline":
            return status  # shown as unregistered in the device list (what it claims, not believed)
        claimed = (status.kind, status.group_id, status.channel_id)
        known = (reg.kind, reg.group_id, reg.channel_id)
        if claimed != known and self._said.get(device_id) != claimed:
            self._said[device_id] = claimed
            await self.security.report(device_id, "wrong_identity",
                                       f"status claims kind/group/channel {claimed}, registered as {known}; "
                                       "the registry's are kept")
        return status.model_copy(update={"kind": reg.kind, "group_id": reg.group_id, "channel_id": reg.channel_id})

    async def sync_group(self, device_id: str, request: SyncRequest) -> int:
        """The group whose whitelist the device may have: its registered one."""
        reg = await self._registered(device_id, "sync request")
        if reg is None:
            return request.group_id
        if reg.group_id != request.group_id:
            raise await self._refuse(device_id, "wrong_group",
                                     f"sync request for group {request.group_id}, registered group {reg.group_id}")
        return reg.group_id

    async def printer(self, device_id: str) -> None:
        reg = await self.registry.get(device_id)
        if reg is not None and (reg.kind != "printer" or not reg.active):
            raise await self._refuse(device_id, "wrong_kind", f"print result from a {reg.kind} "
                                                              f"({'active' if reg.active else 'revoked'})")

    # -- emergency states ------------------------------------------------------------------------------
    async def emergency_state(self, device_id: str, data: bytes) -> tuple[EmergencyState, bool]:
        """The verified state, and whether a fire it reports may open other gates (registered fire input)."""
        reg = await self._registered(device_id, "emergency state")
        body = await self._open(device_id, reg, KIND_EMERGENCY_STATE, data, "emergency state")
        state = _parse(EmergencyState, body, data)
        if state.device_id != device_id:
            raise await self._refuse(device_id, "foreign_device", f"emergency state names {state.device_id}")
        trusted_fire = reg is not None and reg.fire_input and body is not None  # signed and verified
        if state.cause == "fire" and state.state == "open" and not trusted_fire:
            await self.security.report(device_id, "fire_not_spread",
                                       "reports its local fire alarm but is not registered with a fire input: "
                                       "other gates are not opened (set fire_input in the registry)")
        return state, trusted_fire
