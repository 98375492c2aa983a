"""Venues, performances, ticket types, check-in groups and channels."""

from __future__ import annotations

from fastapi import APIRouter

from hub.api.deps import Ctx, IdPath, Sales, Viewer
from hub.api.schemas import (
    ChannelIn,
    ChannelOut,
    GroupIn,
    PerformanceIn,
    PerformanceOut,
    TicketTypeIn,
    TicketTypeOut,
    VenueIn,
    VenueOut,
)
from hub.api.schemas_rules import GroupCapacityOut
from hub.services import catalog

router = APIRouter(tags=["catalog"])


@router.post("/venues", status_code=201)
def create_venue(body: VenueIn, ctx: Ctx, who: Sales) -> VenueOut:
    return VenueOut(**catalog.create_venue(ctx, who, body.name, body.timezone))


@router.get("/venues")
def list_venues(ctx: Ctx, _who: Viewer) -> list[VenueOut]:
    return [VenueOut(**v) for v in catalog.list_venues(ctx)]


@router.post("/performances", status_code=201)
def create_performance(body: PerformanceIn, ctx: Ctx, who: Sales) -> PerformanceOut:
    return PerformanceOut(**catalog.create_performance(ctx, who, body.venue_id, body.name, body.doors_open,
                                                       body.starts_at, body.ends_at, body.print_replaces_eticket))


@router.get("/performances")
def list_performances(ctx: Ctx, _who: Viewer) -> list[PerformanceOut]:
    return [PerformanceOut(**p) for p in catalog.list_performances(ctx)]


@router.post("/ticket-types", status_code=201)
def create_ticket_type(body: TicketTypeIn, ctx: Ctx, who: Sales) -> TicketTypeOut:
    return TicketTypeOut(**catalog.create_ticket_type(ctx, who, body.name, body.name_zh, body.price_cents))


@router.get("/ticket-types")
def list_ticket_types(ctx: Ctx, _who: Viewer) -> list[TicketTypeOut]:
    return [TicketTypeOut(**t) for t in catalog.list_ticket_types(ctx)]


@router.post("/checkin-groups", status_code=201)
def create_group(body: GroupIn, ctx: Ctx, who: Sales) -> GroupCapacityOut:
    return GroupCapacityOut(**catalog.create_group(ctx, who, body.name, body.venue_id, body.performance_ids,
                                           body.admit_unlisted, body.counter_group_id))


@router.get("/checkin-groups")
def list_groups(ctx: Ctx, _who: Viewer) -> list[GroupCapacityOut]:
    return [GroupCapacityOut(**g) for g in catalog.list_groups(ctx)]


@router.post("/checkin-groups/{group_id}/channels", status_code=201)
def create_channel(group_id: IdPath, body: ChannelIn, ctx: Ctx, who: Sales) -> ChannelOut:
    return ChannelOut(**catalog.create_channel(ctx, who, group_id, body.name, body.ticket_type_ids,
                                               body.max_entries))


@router.get("/channels")
def list_channels(ctx: Ctx, _who: Viewer) -> list[ChannelOut]:
    return [ChannelOut(**c) for c in catalog.list_channels(ctx)]
