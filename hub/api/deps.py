"""Request dependencies: the hub context and role-checked principals.

They are ``async`` so FastAPI runs them on the event loop instead of a thread-pool hop each; the only
I/O among them is a session lookup, which is cached for a few seconds (see ``auth.authenticate``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.errors import Unauthenticated
from hub.services import auth
from hub.services.context import HubContext, Principal

_bearer = HTTPBearer(auto_error=False)


async def get_ctx(request: Request) -> HubContext:
    ctx: HubContext = request.app.state.ctx
    return ctx


Ctx = Annotated[HubContext, Depends(get_ctx)]


async def current_user(ctx: Ctx, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if creds is None:
        raise Unauthenticated("log in first: POST /api/v1/auth/login, then send 'Authorization: Bearer <token>'")
    return auth.authenticate(ctx, creds.credentials)


def roles(*names: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(who: Annotated[Principal, Depends(current_user)]) -> Principal:
        auth.require(who, *names)
        return who

    return check


Admin = Annotated[Principal, Depends(roles("admin"))]
Sales = Annotated[Principal, Depends(roles("admin", "box_office"))]
TicketReader = Annotated[Principal, Depends(roles("admin", "box_office", "security"))]
Checker = Annotated[Principal, Depends(roles("admin", "security", "ops"))]
Operator = Annotated[Principal, Depends(roles("admin", "ops"))]
Viewer = Annotated[Principal, Depends(roles(*(r for r in auth.ROLES if r != "kiosk")))]  # staff only
Kiosk = Annotated[Principal, Depends(roles("kiosk", "admin"))]
