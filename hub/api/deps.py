"""Request dependencies: the hub context and role-checked principals.

They are ``async`` so FastAPI runs them on the event loop instead of a thread-pool hop each; the only
I/O among them is a session lookup, which is cached for a few seconds (see ``auth.authenticate``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.errors import Unauthenticated
from hub.services import auth
from hub.services.context import HubContext, Principal
from protocol.bounds import DEVICE_ID_PATTERN, EVENT_ID_PATTERN, MAX_COUNT, MAX_ID, MAX_UNIX

# Path and query parameters, bounded like the bodies (protocol.bounds): out of range is a 422 naming it.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ -")]
EventIdPath = Annotated[str, Path(pattern=EVENT_ID_PATTERN, description="32 lowercase hex digits")]
OptIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
OptDeviceIdQuery = Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_COUNT, description="at most 1000 rows are returned")]
OptUnixQuery = Annotated[float | None, Query(ge=0, le=MAX_UNIX, allow_inf_nan=False, description="unix seconds")]

_bearer = HTTPBearer(auto_error=False)


async def get_ctx(request: Request) -> HubContext:
    ctx: HubContext = request.app.state.ctx
    return ctx


Ctx = Annotated[HubContext, Depends(get_ctx)]


async def current_user(ctx: Ctx, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if creds is None:
        raise Unauthenticated("log in first: POST /api/v1/auth/login, then send 'Authorization: Bearer <token>'")
    if len(creds.credentials) > 512:
        raise Unauthenticated("this bearer token is not one the hub issued; log in again")
    return auth.authenticate(ctx, creds.credentials)


async def current_session(ctx: Ctx, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                          ) -> tuple[Principal, str]:
    """The principal and its bearer token (logout revokes the token)."""
    who = await current_user(ctx, creds)
    assert creds is not None
    return who, creds.credentials


CurrentSession = Annotated[tuple[Principal, str], Depends(current_session)]


def roles(*names: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(who: Annotated[Principal, Depends(current_user)]) -> Principal:
        auth.require(who, *names)
        return who

    return check


Admin = Annotated[Principal, Depends(roles("admin"))]
Sales = Annotated[Principal, Depends(roles("admin", "box_office"))]
# Reading a ticket by id (holder, phone, ID number, token, QR) is for the roles that sell and refund: ids are
# sequential, so any role that may read one may read them all (docs/security.md, "People").
TicketReader = Annotated[Principal, Depends(roles("admin", "box_office"))]
Checker = Annotated[Principal, Depends(roles("admin", "security", "ops"))]
Operator = Annotated[Principal, Depends(roles("admin", "ops"))]
Viewer = Annotated[Principal, Depends(roles(*(r for r in auth.ROLES if r != "kiosk")))]  # staff only
# The staff console's pages (hub/static, docs/console.md): who may read the live check-in and the reports.
LiveViewer = Annotated[Principal, Depends(roles("admin", "manager", "security", "ops", "viewer"))]
ReportReader = Annotated[Principal, Depends(roles("admin", "manager", "finance", "viewer"))]
Kiosk = Annotated[Principal, Depends(roles("kiosk", "admin"))]
