"""Message models for what devices send (validated with pydantic v2, unknown fields refused).

Hub-to-device messages a device acts on are signed envelopes (see :mod:`protocol.envelope`); their
payload shapes are defined here too (``AckPayload``) or in :mod:`protocol.whitelist`.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import MalformedError
from protocol.reasons import Reason

KIND_ACK = "checkin.ack"

DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
EventId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
MAX_BATCH = 500


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckinEvent(_Message):
    """One decision, as journalled on the device and stored once at the hub."""

    event_id: EventId = Field(description="uuid4 hex made by the device; the hub's idempotency key")
    device_id: DeviceId
    group_id: int
    channel_id: int
    seq: int = Field(ge=0, description="device-local journal sequence, for ordering")
    reason: Reason
    ticket_id: int | None = None
    performance_id: int | None = None
    ticket_type_id: int | None = None
    persons: int = Field(0, ge=0, le=255, description="persons admitted; 0 unless admitted")
    direction: Literal["entry", "exit"] = "entry"
    offline: bool = Field(True, description="decided locally, without asking the hub")
    source: Literal["serial", "qr", "nfc", "online", "keyboard"] = "serial"
    scanned_at: float = Field(description="unix time of the scan on the device clock")
    excerpt: str | None = Field(None, max_length=64, description="printable start of unreadable input")
    annuls: EventId | None = Field(None, description="for reason 'annulled': the admission event taken back")
    card_id: int | None = Field(None, description="a member card / annual pass decision: the hub's card id")

    @property
    def admitted(self) -> bool:
        return self.reason is Reason.ADMITTED


class EventBatch(_Message):
    v: Literal[1] = 1
    device_id: DeviceId
    events: list[CheckinEvent] = Field(min_length=1, max_length=MAX_BATCH)


class AckPayload(_Message):
    """Body of a signed ``checkin.ack`` envelope: these events are committed at the hub."""

    device_id: DeviceId
    event_ids: list[EventId]
    at: float


class GateStatus(_Message):
    """Retained device status; the Last Will publishes ``state="offline"``."""

    v: Literal[1] = 1
    device_id: DeviceId
    state: Literal["online", "offline"]
    at: float
    kind: Literal["gate", "handheld", "kiosk", "printer"] = "gate"
    group_id: int | None = None
    channel_id: int | None = None
    whitelist_seq: int | None = None
    outbox: int | None = None
    version: str | None = None
    health: dict[str, Literal["ok", "missing", "error", "disabled"]] | None = Field(
        None, description="per part (turnstile, scanner, camera, rfid, ...): its state")
    birth: int | None = Field(None, ge=0, description="boot counter persisted on the device: a new value "
                              "means the device restarted, the same value a mere reconnect")
    config_version: int | None = Field(None, ge=0, description="version of the hub-assigned config in force")
    interval: float | None = Field(None, gt=0, description="seconds until the next heartbeat at the latest")
    printer: dict[str, str | int | bool | None] | None = Field(
        None, description="a ticket printer's condition: protocol.printing.PrinterCondition as a dict")


class SyncRequest(_Message):
    v: Literal[1] = 1
    device_id: DeviceId
    group_id: int
    have_seq: int = Field(ge=-1, description="-1: nothing installed, send a snapshot")


M = TypeVar("M", bound=_Message)


def parse_message(model: type[M], payload: bytes | str) -> M:
    """Parse a JSON payload into ``model``; raise MalformedError with a short, safe message."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise MalformedError(f"{model.__name__}: {where or 'payload'}: {first.get('msg')}") from exc
    except (ValueError, json.JSONDecodeError) as exc:
        raise MalformedError(f"{model.__name__}: not JSON") from exc


def dump_message(message: _Message) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()
