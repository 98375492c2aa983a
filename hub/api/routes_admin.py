"""Health, public keys, login, users and the audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hub.api.deps import Admin, Ctx, CurrentSession, LimitQuery
from hub.api.schemas import AuditOut, LoginIn, LoginOut, UserIn, UserOut
from hub.services import auth

router = APIRouter()


@router.get("/health", tags=["system"])
def health(request: Request) -> dict[str, Any]:
    """``{"status": "ok", "tasks": {"mqtt-bridge": "ok", "wal-checkpoint": "ok"}}``; ``"degraded"`` while a
    background task has ``"failed"`` (logged with its traceback and restarted with backoff; HTTP keeps serving)."""
    tasks = getattr(request.app.state, "tasks", None)  # confkit.supervise.Supervisor, set by the lifespan
    parts: dict[str, str] = tasks.health() if tasks is not None else {}
    return {"status": "degraded" if "failed" in parts.values() else "ok", "tasks": parts}


@router.get("/keys", tags=["system"])
def keys(ctx: Ctx) -> dict[str, dict[str, dict[str, Any]]]:
    """The hub keys file for devices: ``{"keys": {"1": {"key": "<b64>", "purposes": ["ticket"]}, ...}}``."""
    return {"keys": ctx.keyring.to_entries()}


@router.post("/auth/login", tags=["auth"],
             responses={401: {"description": "wrong user name or password"},
                        429: {"description": "too many wrong passwords for this user or from this address: "
                                             "wait Retry-After seconds (also retry_after in the body)"}})
def login(body: LoginIn, request: Request, ctx: Ctx) -> LoginOut:
    # The TCP peer, never a header the caller writes (X-Forwarded-For is not trusted).
    address = request.client.host if request.client is not None else None
    return LoginOut(**auth.login(ctx, body.username, body.password, address))


@router.post("/auth/logout", tags=["auth"], status_code=204)
def logout(ctx: Ctx, session: CurrentSession) -> None:
    """Revoke the login token of this request (any role): from now on it gets 401."""
    who, token = session
    auth.logout(ctx, who, token)


@router.post("/users", tags=["users"], status_code=201)
def create_user(body: UserIn, ctx: Ctx, who: Admin) -> UserOut:
    return UserOut(**auth.create_user(ctx, who, body.username, body.password, body.role, body.device_id))


@router.get("/users", tags=["users"])
def list_users(ctx: Ctx, _who: Admin) -> list[UserOut]:
    return [UserOut(**u) for u in auth.list_users(ctx)]


@router.get("/audit", tags=["audit"])
def list_audit(ctx: Ctx, _who: Admin, limit: LimitQuery = 200) -> list[AuditOut]:
    return [AuditOut(**a) for a in auth.list_audit(ctx, min(limit, 1000))]
