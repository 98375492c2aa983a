"""Message models for what devices send (validated with pydantic v2, unknown fields refused).

Hub-to-device messages a device acts on are signed envelopes (see :mod:`protocol.envelope`); their
payload shapes are defined here too (``AckPayload``) or in :mod:`protocol.whitelist`.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.bounds import (
    DEVICE_ID_PATTERN,
    EVENT_ID_PATTERN,
    MAX_COUNT,
    MAX_SEQ,
    Id,
    OptId,
    Seq,
    UnixTime,
)
from protocol.errors import MalformedError
from protocol.reasons import Reason

KIND_ACK = "checkin.ack"

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]  # pydantic's (Rust) regex: "$" is the very end
EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
MAX_BATCH = 500


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckinEvent(_Message):
    """One decision, as journalled on the device and stored once at the hub."""

    event_id: EventId = Field(description="uuid4 hex made by the device; the hub's idempotency key")
    device_id: DeviceId
    group_id: Id
    channel_id: Id
    seq: Seq = Field(description="device-local journal sequence, for ordering")
    reason: Reason
    ticket_id: OptId = None
    performance_id: OptId = None
    ticket_type_id: OptId = None
    persons: int = Field(0, ge=0, le=255, description="persons admitted; 0 unless admitted")
    direction: Literal["entry", "exit"] = "entry"
    offline: bool = Field(True, description="decided locally, without asking the hub")
    source: Literal["serial", "qr", "nfc", "online", "keyboard"] = "serial"
    scanned_at: UnixTime = Field(description="unix time of the scan on the device clock")
    excerpt: str | None = Field(None, max_length=64, description="printable start of unreadable input")
    annuls: EventId | None = Field(None, description="for reason 'annulled': the admission event taken back")
    card_id: OptId = Field(None, description="a member card / annual pass decision: the hub's card id")
    credit: bool = Field(False, description="admitted on persons given back by an earlier partial annulment "
                                            "of the same ticket: finishes that entry, is not a new one")
    unlisted: bool = Field(False, description="a validly signed ticket newer than the gate's whitelist, "
                                              "admitted offline; the hub checks it when it arrives")
    forced_by: str | None = Field(None, min_length=1, max_length=64,
                                  description="supervisor override: who force-admitted a denied ticket")
    denied: Reason | None = Field(None, description="supervisor override: the reason the ticket was refused")

    @property
    def admitted(self) -> bool:
        return self.reason is Reason.ADMITTED


class EventBatch(_Message):
    v: Literal[1] = 1
    device_id: DeviceId
    events: list[CheckinEvent] = Field(min_length=1, max_length=MAX_BATCH)


class AckPayload(_Message):
    """Body of a signed ``checkin.ack`` envelope: these events are committed at the hub.

    ``echo_seq``: the device group's whitelist seq once the counts of these events are in it. Until
    the device has applied that seq, it keeps counting the acknowledged events itself, so an entry is
    never counted twice nor forgotten between the ack and the "used" delta (absent: already in).
    """

    device_id: DeviceId
    event_ids: list[EventId]
    at: float
    echo_seq: int | None = Field(None, ge=0, le=MAX_SEQ)


_Key = Annotated[str, Field(max_length=40)]
_Value = Annotated[str, Field(max_length=200)] | Annotated[int, Field(ge=-MAX_COUNT, le=MAX_COUNT)] | bool | None


class HubPresence(_Message):
    """A hub's retained presence on ``{prefix}/hub/presence/<hub_id>``: "online" on each connect, "offline"
    when it stops and, as its Last Will, when its session is lost (the convention of every device's status)."""

    v: Literal[1] = 1
    hub_id: DeviceId
    state: Literal["online", "offline"]
    at: UnixTime
    version: str | None = Field(None, max_length=64)


class GateStatus(_Message):
    """Retained device status; the Last Will publishes ``state="offline"``."""

    v: Literal[1] = 1
    device_id: DeviceId
    state: Literal["online", "offline"]
    at: UnixTime
    kind: Literal["gate", "handheld", "kiosk", "printer"] = "gate"
    group_id: OptId = None
    channel_id: OptId = None
    whitelist_seq: int | None = Field(None, ge=0, le=MAX_COUNT)
    outbox: int | None = Field(None, ge=0, le=MAX_COUNT)
    version: str | None = Field(None, max_length=64)
    health: dict[_Key, Literal["ok", "missing", "error", "disabled", "stale", "failed"]] | None = Field(
        None, max_length=50, description="per part (turnstile, scanner, camera, rfid, ...): its state; "
                                         "whitelist/keys: stale when the device cannot verify what the hub sends; "
                                         "failed: its background task died (confkit.supervise), restarting")
    birth: int | None = Field(None, ge=0, le=MAX_COUNT, description="boot counter persisted on the device: a new "
                              "value means the device restarted, the same value a mere reconnect")
    config_version: int | None = Field(None, ge=0, le=MAX_COUNT,
                                       description="version of the hub-assigned config in force")
    interval: float | None = Field(None, gt=0, le=7 * 86400, allow_inf_nan=False,
                                   description="seconds until the next heartbeat at the latest")
    printer: dict[_Key, _Value] | None = Field(
        None, max_length=20, description="a ticket printer's condition: protocol.printing.PrinterCondition as a dict")
    set_aside: int | None = Field(None, ge=0, le=MAX_COUNT,
                                  description="outbox rows (events, print results) this release cannot send, set "
                                              "aside so the rows behind them are sent; absent: none")


class SyncRequest(_Message):
    v: Literal[1] = 1
    device_id: DeviceId
    group_id: Id
    have_seq: int = Field(ge=-1, le=2**63 - 1, description="-1: nothing installed, send a snapshot")


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
