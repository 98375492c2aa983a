"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from protocol.bounds import (
    DEVICE_ID_PATTERN,
    EVENT_ID_PATTERN,
    MAX_LIST,
    MAX_NAME,
    Count,
    Id,
    OptId,
    Persons,
    TokenDatetime,
    TypeId,
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: str = Field(max_length=MAX_NAME)
    password: str = Field(max_length=256)


class LoginOut(BaseModel):
    token: str
    role: str
    expires_at: float


class UserIn(_In):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: str = Field(max_length=40)
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN,
                                  description="a device's own login (handheld, kiosk): its online checks are "
                                              "recorded under this device id and it may name no other")


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    device_id: str | None = None


class VenueIn(_In):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    timezone: str = Field("Asia/Shanghai", min_length=1, max_length=64,
                          description="IANA time zone: the venue's day, weekday and midnight in check-in rules")


class VenueOut(VenueIn):
    id: int


class PerformanceIn(_In):
    venue_id: Id
    name: str = Field(min_length=1, max_length=MAX_NAME)
    doors_open: TokenDatetime
    starts_at: TokenDatetime
    ends_at: TokenDatetime
    print_replaces_eticket: StrictBool = Field(True, description="a ticket printed at a kiosk replaces the e-ticket: "
                                                           "the e-ticket's QR code is revoked, the paper one is new")


class PerformanceOut(BaseModel):
    id: int
    venue_id: int
    name: str
    doors_open: float
    starts_at: float
    ends_at: float
    print_replaces_eticket: bool = True
    retired: bool = False


class TicketTypeIn(_In):
    name: str = Field(min_length=1, max_length=100)
    name_zh: str = Field(min_length=1, max_length=100)
    price_cents: Count


class TicketTypeOut(TicketTypeIn):
    id: int
    retired: bool = False


class GroupIn(_In):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    venue_id: Id
    performance_ids: list[Id] = Field(default_factory=list, max_length=MAX_LIST)
    admit_unlisted: StrictBool = Field(True, description="offline gates admit validly signed tickets newer than their "
                                                   "whitelist; the hub checks them when they arrive")
    counter_group_id: OptId = Field(None, description="count entries together with this group (same venue)")


class GroupOut(GroupIn):
    id: int
    seq: int


class ChannelIn(_In):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    ticket_type_ids: list[TypeId] = Field(max_length=MAX_LIST)
    max_entries: int = Field(1, ge=1, le=255)


class ChannelOut(ChannelIn):
    id: int
    group_id: int
    retired: bool = False


class TicketIn(_In):
    performance_id: Id
    ticket_type_id: TypeId
    persons: Persons = 1
    holder_name: str = Field(min_length=1, max_length=MAX_NAME)
    holder_phone: str | None = Field(None, max_length=40)
    holder_id_number: str | None = Field(None, max_length=40)
    collection_code: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{4,16}$",
                                        description="取票码 shared by tickets bought together; default: a new one")


class TicketOut(BaseModel):
    id: int
    performance_id: int
    ticket_type_id: int
    persons: int
    holder_name: str
    holder_phone: str | None
    holder_id_number: str | None
    status: str
    status_reason: str | None
    used: int
    token: str
    created_at: float
    collection_code: str | None = None
    collected_at: float | None = None
    replaced_by: int | None = None


class CancelIn(_In):
    reason: str | None = Field(None, max_length=200)


class TokenOut(BaseModel):
    token: str


class OnlineCheckIn(_In):
    token: str = Field(max_length=4096)
    channel_id: Id
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN,
                                  description="optional: the device id comes from the login (its users.device_id, "
                                              "else 'hub-online'); naming another device is refused (403)")
    event_id: str | None = Field(None, pattern=EVENT_ID_PATTERN,
                                 description="the device's own event id: a retried check returns the first answer")


class OnlineCheckOut(BaseModel):
    event_id: str
    reason: str
    admitted: bool
    text_en: str
    text_zh: str
    ticket_id: int | None
    persons: int
    next_at: float | None = Field(None, description="a refusal that ends: when (admission opens, next day, "
                                                    "cool-down over); also in text_en / text_zh")
    credit: bool = Field(False, description="admitted on persons given back by a partial annulment")
    hint: list[str] = Field(default_factory=list, description="latecomer: the channels that still admit")
    signed: str | None = Field(None, description="base64 of the hub-signed envelope (kind checkin.online_answer: "
                                                 "event_id, device_id, ticket_id, reason, persons, credit, at); a "
                                                 "handheld acts only on this, checked against its hub keys")


class CheckinOut(BaseModel):
    event_id: str
    device_id: str
    group_id: int
    channel_id: int
    device_seq: int
    reason: str
    ticket_id: int | None
    performance_id: int | None
    ticket_type_id: int | None
    persons: int
    direction: str
    offline: bool
    source: str
    scanned_at: float
    received_at: float
    conflict: bool
    annuls: str | None = None
    card_id: int | None = None
    credit: bool = False
    unlisted: bool = False
    forced_by: str | None = None
    denied: str | None = None


class DeviceOut(BaseModel):
    device_id: str
    kind: str
    state: str
    last_seen: float
    group_id: int | None
    channel_id: int | None
    whitelist_seq: int | None
    outbox: int | None
    version: str | None
    health: dict[str, str] | None = None
    set_aside: int | None = Field(None, description="outbox rows the device set aside because this release "
                                                    "cannot send them (health outbox: error); see "
                                                    "docs/operations.md, Upgrades and rollbacks")
    registered: bool = Field(False, description="in the device registry: kind, group and channel are the "
                                                "registry's; false: only what the device claims, and its "
                                                "events are refused (register it)")


class AuditOut(BaseModel):
    id: int
    at: float
    username: str
    action: str
    target: str
    detail: str
