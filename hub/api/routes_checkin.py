"""Tickets, online check-in, the check-in journal, devices and whitelist snapshots."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from hub.api.deps import (
    Checker,
    Ctx,
    IdPath,
    LimitQuery,
    Operator,
    OptDeviceIdQuery,
    OptIdQuery,
    OptUnixQuery,
    Sales,
    TicketReader,
    Viewer,
)
from hub.api.schemas import (
    CancelIn,
    CheckinOut,
    DeviceOut,
    OnlineCheckIn,
    OnlineCheckOut,
    TicketIn,
    TicketOut,
    TokenOut,
)
from hub.services import checkins, devices, registry, tickets, whitelist
from hub.services.context import Principal

router = APIRouter()


def _ticket_out(row: dict[str, Any], who: Principal) -> TicketOut:
    """Phone and ID numbers in full only for the roles that sell and refund (tickets.FULL_HOLDER_ROLES)."""
    return TicketOut(**tickets.for_role(row, who.role))


@router.post("/tickets", tags=["tickets"], status_code=201)
def sell(body: TicketIn, ctx: Ctx, who: Sales) -> TicketOut:
    return _ticket_out(tickets.sell(ctx, who, **body.model_dump()), who)


@router.get("/tickets/{ticket_id}", tags=["tickets"])
def get_ticket(ticket_id: IdPath, ctx: Ctx, who: TicketReader) -> TicketOut:
    return _ticket_out(tickets.get(ctx, ticket_id), who)


@router.get("/tickets/{ticket_id}/token", tags=["tickets"])
def get_token(ticket_id: IdPath, ctx: Ctx, _who: TicketReader) -> TokenOut:
    return TokenOut(token=tickets.get(ctx, ticket_id)["token"])


@router.get("/tickets/{ticket_id}/qr.svg", tags=["tickets"], response_class=Response)
def get_qr(ticket_id: IdPath, ctx: Ctx, _who: TicketReader) -> Response:
    return Response(tickets.qr_svg(ctx, ticket_id), media_type="image/svg+xml")


@router.post("/tickets/{ticket_id}/refund", tags=["tickets"])
def refund(ticket_id: IdPath, body: CancelIn, ctx: Ctx, who: Sales) -> TicketOut:
    return _ticket_out(tickets.cancel(ctx, who, ticket_id, "refunded", body.reason), who)


@router.post("/tickets/{ticket_id}/void", tags=["tickets"])
def void(ticket_id: IdPath, body: CancelIn, ctx: Ctx, who: Sales) -> TicketOut:
    return _ticket_out(tickets.cancel(ctx, who, ticket_id, "void", body.reason), who)


@router.post("/checkins/online", tags=["checkins"], responses={403: {"description": "device_id names a device "
                                                                                    "other than this login's"}})
async def online_check(body: OnlineCheckIn, request: Request, ctx: Ctx, who: Checker) -> OnlineCheckOut:
    # Runs on the event loop: one short SQLite write (well under a millisecond) costs less than the
    # thread-pool hop, and handhelds wait on this answer with a 500 ms budget.
    with ctx.metrics.online_check_seconds.time():  # venue_hub_online_check_seconds, refusals included
        device_id = checkins.device_of(ctx, who, body.device_id)  # from the login, never from the body
        channel_id = registry.online_channel(ctx, request.app.state.bridge.trust.security, device_id,
                                             body.channel_id)
        answer = checkins.online_check(ctx, body.token, channel_id, device_id, event_id=body.event_id)
    request.app.state.live.checked_online(answer["event_id"])  # the live page shows it like any stored scan
    return OnlineCheckOut(**answer)


@router.get("/checkins", tags=["checkins"])
def list_checkins(ctx: Ctx, _who: Viewer, ticket_id: OptIdQuery = None, device_id: OptDeviceIdQuery = None,
                  conflict: bool | None = None, group_id: OptIdQuery = None, since: OptUnixQuery = None,
                  until: OptUnixQuery = None, limit: LimitQuery = 100) -> list[CheckinOut]:
    """Newest scan first (scanned_at, with received_at beside it); since/until bound the scan time."""
    rows = checkins.list_checkins(ctx, ticket_id=ticket_id, device_id=device_id, conflict=conflict,
                                  group_id=group_id, since=since, until=until, limit=min(limit, 1000))
    return [CheckinOut(**r) for r in rows]


@router.get("/devices", tags=["devices"])
def list_devices(ctx: Ctx, _who: Viewer) -> list[DeviceOut]:
    return [DeviceOut(**d) for d in devices.list_devices(ctx)]


@router.get("/whitelists/{group_id}/snapshot", tags=["whitelists"], response_class=Response)
def get_snapshot(group_id: IdPath, ctx: Ctx, _who: Operator) -> Response:
    return Response(whitelist.snapshot(ctx, group_id), media_type="application/octet-stream")
