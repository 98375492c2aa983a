"""Responses of the live check-in endpoints (GET /api/v1/live/snapshot; the stream's ``snapshot`` event)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MinuteCount(BaseModel):
    minute: int = Field(description="unix seconds of the minute's start (scan time, device clock)")
    key: str = Field(description="the channel id (by_channel) or the device id (by_gate)")
    persons: int


class Admissions(BaseModel):
    by_channel: list[MinuteCount]
    by_gate: list[MinuteCount]


class ChannelName(BaseModel):
    id: int
    name: str
    group_id: int


class Zone(BaseModel):
    group_id: int
    name: str
    capacity: int | None = Field(description="people the zone holds; null: not set (PATCH /checkin-groups/{id})")
    admitted: int
    annulled: int
    exits: int
    inside: int = Field(description="admitted - annulled - exits, never below 0 (as GET /api/v1/emergency counts)")


class Denial(BaseModel):
    reason: str
    count: int


class Scan(BaseModel):
    """A journalled scan: the ticket id and the reason, never the holder's name, phone or ID number."""

    event_id: str
    device_id: str
    group_id: int
    channel_id: int
    reason: str
    ticket_id: int | None
    performance_id: int | None
    persons: int
    direction: str
    offline: bool
    source: str
    scanned_at: float
    received_at: float
    conflict: bool
    credit: bool


class LiveDevice(BaseModel):
    device_id: str
    kind: str
    state: str
    online: bool
    heard_at: float | None
    last_seen: float
    outbox: int | None = Field(description="events waiting on the device to reach the hub, as it last said")
    set_aside: int | None
    group_id: int | None
    channel_id: int | None


class ReasonText(BaseModel):
    zh: str
    en: str


class Filters(BaseModel):
    performance_id: int | None
    group_id: int | None


class LiveSnapshot(BaseModel):
    at: float = Field(description="hub time of the snapshot")
    as_of: float = Field(description="the newest received_at included; the stream sends only what came after")
    since: int = Field(description="start of the oldest minute of the window")
    window_s: float
    zones_since: float = Field(description="inside counts events scanned since this time")
    filters: Filters
    channels: list[ChannelName]
    admissions: Admissions
    zones: list[Zone]
    denials: list[Denial]
    scans: list[Scan] = Field(description="the newest 50 scans of the window, newest first")
    devices: list[LiveDevice]
    reasons: dict[str, ReasonText] = Field(description="display text of every reason code")
