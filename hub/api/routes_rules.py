"""Editing the catalogue (PATCH; retiring = PATCH retired true, DELETE is an alias), channel rules, supervisors."""

from __future__ import annotations

from fastapi import APIRouter

from hub.api.deps import Admin, Checker, Ctx, IdPath, Sales, Viewer
from hub.api.schemas import ChannelOut, PerformanceOut, TicketTypeOut, VenueOut
from hub.api.schemas_rules import (
    ChannelPatch,
    GroupCapacityOut,
    GroupPatch,
    PerformancePatch,
    RulesIn,
    RulesOut,
    SupervisorIn,
    SupervisorOut,
    SupervisorPatch,
    TicketTypePatch,
    VenuePatch,
)
from hub.services import catalog_edit, channel_rules, supervisors

router = APIRouter(tags=["catalog"])
RETIRE = {"retired": True}


@router.patch("/venues/{venue_id}")
def patch_venue(venue_id: IdPath, body: VenuePatch, ctx: Ctx, who: Sales) -> VenueOut:
    """Rename, or set the venue's time zone (its groups' gates get it as a rules delta)."""
    return VenueOut(**catalog_edit.patch_venue(ctx, who, venue_id, body.model_dump(exclude_unset=True)))


@router.patch("/performances/{performance_id}")
def patch_performance(performance_id: IdPath, body: PerformancePatch, ctx: Ctx, who: Sales) -> PerformanceOut:
    """Rename, move (new doors/start/end: every gate of its groups applies them within a second) or retire."""
    return PerformanceOut(**catalog_edit.patch_performance(ctx, who, performance_id,
                                                           body.model_dump(exclude_unset=True)))


@router.delete("/performances/{performance_id}")
def retire_performance(performance_id: IdPath, ctx: Ctx, who: Sales) -> PerformanceOut:
    """Alias of PATCH {"retired": true}: no more sales; the row and its tickets stay."""
    return PerformanceOut(**catalog_edit.patch_performance(ctx, who, performance_id, RETIRE))


@router.patch("/ticket-types/{type_id}")
def patch_ticket_type(type_id: IdPath, body: TicketTypePatch, ctx: Ctx, who: Sales) -> TicketTypeOut:
    return TicketTypeOut(**catalog_edit.patch_ticket_type(ctx, who, type_id, body.model_dump(exclude_unset=True)))


@router.delete("/ticket-types/{type_id}")
def retire_ticket_type(type_id: IdPath, ctx: Ctx, who: Sales) -> TicketTypeOut:
    """Alias of PATCH {"retired": true}: no more sales of this type."""
    return TicketTypeOut(**catalog_edit.patch_ticket_type(ctx, who, type_id, RETIRE))


@router.patch("/channels/{channel_id}")
def patch_channel(channel_id: IdPath, body: ChannelPatch, ctx: Ctx, who: Sales) -> ChannelOut:
    return ChannelOut(**catalog_edit.patch_channel(ctx, who, channel_id, body.model_dump(exclude_unset=True)))


@router.delete("/channels/{channel_id}")
def retire_channel(channel_id: IdPath, ctx: Ctx, who: Sales) -> ChannelOut:
    """Alias of PATCH {"retired": true}: its gates refuse with channel_closed."""
    return ChannelOut(**catalog_edit.patch_channel(ctx, who, channel_id, RETIRE))


@router.put("/channels/{channel_id}/rules")
def put_channel_rules(channel_id: IdPath, body: RulesIn, ctx: Ctx, who: Sales) -> RulesOut:
    """Replace the channel's check-in rules; a bad value is a 422 naming its field."""
    return RulesOut(**channel_rules.set_rules(ctx, who, channel_id, body.rules, body.by_type, body.cards))


@router.get("/channels/{channel_id}/rules")
def get_channel_rules(channel_id: IdPath, ctx: Ctx, _who: Viewer) -> RulesOut:
    """The effective rules (every key), per ticket type and for cards, and what was configured."""
    return RulesOut(**channel_rules.get_rules(ctx, channel_id))


@router.patch("/checkin-groups/{group_id}")
def patch_group(group_id: IdPath, body: GroupPatch, ctx: Ctx, who: Sales) -> GroupCapacityOut:
    """Rename, change performances, admit_unlisted, link the group's counting to another group, or set its
    capacity (null: not set)."""
    return GroupCapacityOut(**catalog_edit.patch_group(ctx, who, group_id, body.model_dump(exclude_unset=True)))


@router.post("/supervisors", tags=["supervisors"], status_code=201)
def create_supervisor(body: SupervisorIn, ctx: Ctx, who: Admin) -> SupervisorOut:
    return SupervisorOut(**supervisors.create(ctx, who, body.name, body.pin, body.card_uid))


@router.get("/supervisors", tags=["supervisors"])
def list_supervisors(ctx: Ctx, _who: Checker) -> list[SupervisorOut]:
    """Never returns PIN hashes or card UIDs."""
    return [SupervisorOut(**s) for s in supervisors.list_all(ctx)]


@router.patch("/supervisors/{supervisor_id}", tags=["supervisors"])
def patch_supervisor(supervisor_id: IdPath, body: SupervisorPatch, ctx: Ctx, who: Admin) -> SupervisorOut:
    return SupervisorOut(**supervisors.patch(ctx, who, supervisor_id, body.model_dump(exclude_unset=True)))
