"""Bodies of the catalogue-editing, check-in-rules and supervisor endpoints (PATCH: omitted or null = unchanged)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hub.api.schemas import GroupOut
from protocol.bounds import MAX_LIST, MAX_NAME, Count, Id, JsonObject, OptId, TokenDatetime, TypeId


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VenuePatch(_In):
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    timezone: str | None = Field(None, min_length=1, max_length=64, description="IANA name, e.g. Asia/Shanghai")


class PerformancePatch(_In):
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    doors_open: TokenDatetime | None = None
    starts_at: TokenDatetime | None = None
    ends_at: TokenDatetime | None = None
    print_replaces_eticket: StrictBool | None = None
    retired: StrictBool | None = Field(None, description="retired: no more sales; tickets sold stay valid")


class TicketTypePatch(_In):
    name: str | None = Field(None, min_length=1, max_length=100)
    name_zh: str | None = Field(None, min_length=1, max_length=100)
    price_cents: Count | None = None
    retired: StrictBool | None = Field(None, description="retired: no more sales of this type")


class ChannelPatch(_In):
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    ticket_type_ids: list[TypeId] | None = Field(None, max_length=MAX_LIST)
    max_entries: int | None = Field(None, ge=1, le=255)
    retired: StrictBool | None = Field(None, description="retired: the channel's gates refuse with channel_closed")


class GroupPatch(_In):
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    performance_ids: list[Id] | None = Field(None, max_length=MAX_LIST)
    admit_unlisted: StrictBool | None = None
    counter_group_id: OptId = Field(None, description="count entries with this group of the same venue; "
                                                      "null: count on its own")
    capacity: int | None = Field(None, ge=0, le=1_000_000, description="people the zone holds (live check-in "
                                                                       "shows inside against it); null: not set")


class GroupCapacityOut(GroupOut):
    capacity: int | None = Field(None, description="people the zone holds; null: not set")


class RulesIn(_In):
    rules: JsonObject = Field(default_factory=dict, description="the channel's rules: keys of protocol.rules."
                                                               "EntryRules, absent keys take the defaults")
    by_type: dict[str, JsonObject] = Field(default_factory=dict, max_length=MAX_LIST,
                                           description='per ticket type id ("2"): keys narrowing the channel\'s')
    cards: JsonObject | None = Field(None, description="rules for member cards / annual passes; null: defaults")


class RulesOut(BaseModel):
    channel_id: int
    group_id: int
    retired: bool
    rules: dict[str, Any] = Field(description="the effective rules of the channel (every key)")
    by_type: dict[str, dict[str, Any]] = Field(description="the effective rules of each ticket type it accepts")
    cards: dict[str, Any]
    configured: dict[str, Any] = Field(description="what the operator set (partial rule sets)")


class SupervisorIn(_In):
    name: str = Field(min_length=1, max_length=64)
    pin: str = Field(pattern=r"^[0-9]{4,12}$", description="4 to 12 digits; stored only as a salted hash")
    card_uid: str | None = Field(None, min_length=1, max_length=40, description="the supervisor's card UID, hex")


class SupervisorPatch(_In):
    name: str | None = Field(None, min_length=1, max_length=64)
    pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$", description="a new PIN")
    card_uid: str | None = Field(None, max_length=40, description='a new card UID, hex; "" removes the card')
    retired: StrictBool | None = None


class SupervisorOut(BaseModel):
    id: int
    name: str
    has_pin: bool
    has_card: bool
    retired: bool
    created_at: float
