"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: str
    password: str


class LoginOut(BaseModel):
    token: str
    role: str
    expires_at: float


class UserIn(_In):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: str


class UserOut(BaseModel):
    id: int
    username: str
    role: str


class VenueIn(_In):
    name: str = Field(min_length=1, max_length=200)


class VenueOut(VenueIn):
    id: int


class PerformanceIn(_In):
    venue_id: int
    name: str = Field(min_length=1, max_length=200)
    doors_open: AwareDatetime
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    print_replaces_eticket: bool = Field(True, description="a ticket printed at a kiosk replaces the e-ticket: "
                                                           "the e-ticket's QR code is revoked, the paper one is new")


class PerformanceOut(BaseModel):
    id: int
    venue_id: int
    name: str
    doors_open: float
    starts_at: float
    ends_at: float
    print_replaces_eticket: bool = True


class TicketTypeIn(_In):
    name: str = Field(min_length=1, max_length=100)
    name_zh: str = Field(min_length=1, max_length=100)
    price_cents: int = Field(ge=0)


class TicketTypeOut(TicketTypeIn):
    id: int


class GroupIn(_In):
    name: str = Field(min_length=1, max_length=200)
    venue_id: int
    performance_ids: list[int] = Field(default_factory=list)


class GroupOut(GroupIn):
    id: int
    seq: int


class ChannelIn(_In):
    name: str = Field(min_length=1, max_length=200)
    ticket_type_ids: list[int]
    max_entries: int = Field(1, ge=1, le=255)


class ChannelOut(ChannelIn):
    id: int
    group_id: int


class TicketIn(_In):
    performance_id: int
    ticket_type_id: int
    persons: int = Field(1, ge=1, le=255)
    holder_name: str = Field(min_length=1, max_length=200)
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
    channel_id: int
    device_id: str = Field("hub-online", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    event_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$",
                                 description="the device's own event id: a retried check returns the first answer")


class OnlineCheckOut(BaseModel):
    event_id: str
    reason: str
    admitted: bool
    text_en: str
    text_zh: str
    ticket_id: int | None
    persons: int


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


class AuditOut(BaseModel):
    id: int
    at: float
    username: str
    action: str
    target: str
    detail: str
