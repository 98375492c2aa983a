"""Tickets, online check-in, the check-in journal, devices and whitelist snapshots."""

from __future__ import annotations

from fastapi import APIRouter, Response

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
from hub.services import checkins, devices, tickets, whitelist

router = APIRouter()


@router.post("/tickets", tags=["tickets"], status_code=201)
def sell(body: TicketIn, ctx: Ctx, who: Sales) -> TicketOut:
    return TicketOut(**tickets.sell(ctx, who, **body.model_dump()))


@router.get("/tickets/{ticket_id}", tags=["tickets"])
def get_ticket(ticket_id: IdPath, ctx: Ctx, _who: TicketReader) -> TicketOut:
    return TicketOut(**tickets.get(ctx, ticket_id))


@router.get("/tickets/{ticket_id}/token", tags=["tickets"])
def get_token(ticket_id: IdPath, ctx: Ctx, _who: TicketReader) -> TokenOut:
    return TokenOut(token=tickets.get(ctx, ticket_id)["token"])


@router.get("/tickets/{ticket_id}/qr.svg", tags=["tickets"], response_class=Response)
def get_qr(ticket_id: IdPath, ctx: Ctx, _who: TicketReader) -> Response:
    return Response(tickets.qr_svg(ctx, ticket_id), media_type="image/svg+xml")


@router.post("/tickets/{ticket_id}/refund", tags=["tickets"])
def refund(ticket_id: IdPath, body: CancelIn, ctx: Ctx, who: Sales) -> TicketOut:
    return TicketOut(**tickets.cancel(ctx, who, ticket_id, "refunded", body.reason))


@router.post("/tickets/{ticket_id}/void", tags=["tickets"])
def void(ticket_id: IdPath, body: CancelIn, ctx: Ctx, who: Sales) -> TicketOut:
    return TicketOut(**tickets.cancel(ctx, who, ticket_id, "void", body.reason))


@router.post("/checkins/online", tags=["checkins"])
async def online_check(body: OnlineCheckIn, ctx: Ctx, _who: Checker) -> OnlineCheckOut:
    # Runs on the event loop: one short SQLite write (well under a millisecond) costs less than the
    # thread-pool hop, and handhelds wait on this answer with a 500 ms budget.
    return OnlineCheckOut(**checkins.online_check(ctx, body.token, body.channel_id, body.device_id,
                                                  event_id=body.event_id))


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
