"""Member cards and annual passes (RFID): issue, list, revoke."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import Ctx, IdPath, Sales, Viewer
from hub.services import cards
from protocol.bounds import MAX_LIST, MAX_NAME, Id, TokenDatetime

router = APIRouter(tags=["cards"])
_HOLDER_ROLES = {"admin", "box_office"}


class CardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uid: str = Field(min_length=8, max_length=40, description="the card UID in hex, as the reader shows it")
    kind: Literal["member", "annual"]
    holder_name: str = Field(min_length=1, max_length=MAX_NAME)
    valid_from: TokenDatetime
    valid_until: TokenDatetime
    channel_ids: list[Id] = Field(min_length=1, max_length=MAX_LIST, description="check-in channels the card opens")
    entries_per_day: int = Field(1, ge=1, le=255)


class CardRevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=200)


class CardOut(BaseModel):
    id: int
    kind: str
    holder_name: str | None = Field(None, description="only for admin and box_office")
    valid_from: float
    valid_until: float
    channel_ids: list[int]
    entries_per_day: int
    revoked: bool
    revoked_reason: str | None
    created_at: float


@router.post("/cards", status_code=201)
def issue_card(body: CardIn, ctx: Ctx, who: Sales) -> CardOut:
    return CardOut(**cards.issue(ctx, who, **body.model_dump()))


@router.get("/cards", response_model_exclude_none=True)
def list_cards(ctx: Ctx, who: Viewer) -> list[CardOut]:
    return [CardOut(**c) for c in cards.list_cards(ctx, with_holder=who.role in _HOLDER_ROLES)]


@router.post("/cards/{card_id}/revoke")
def revoke_card(card_id: IdPath, body: CardRevokeIn, ctx: Ctx, who: Sales) -> CardOut:
    return CardOut(**cards.revoke(ctx, who, card_id, body.reason))
