"""Health, public keys, login, users and the audit log."""

from __future__ import annotations

from fastapi import APIRouter

from hub.api.deps import Admin, Ctx, LimitQuery
from hub.api.schemas import AuditOut, LoginIn, LoginOut, UserIn, UserOut
from hub.services import auth

router = APIRouter()


@router.get("/health", tags=["system"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/keys", tags=["system"])
def keys(ctx: Ctx) -> dict[str, dict[str, str]]:
    return {"keys": {str(k): v for k, v in ctx.keyring.to_b64().items()}}


@router.post("/auth/login", tags=["auth"])
def login(body: LoginIn, ctx: Ctx) -> LoginOut:
    return LoginOut(**auth.login(ctx, body.username, body.password))


@router.post("/users", tags=["users"], status_code=201)
def create_user(body: UserIn, ctx: Ctx, who: Admin) -> UserOut:
    return UserOut(**auth.create_user(ctx, who, body.username, body.password, body.role))


@router.get("/users", tags=["users"])
def list_users(ctx: Ctx, _who: Admin) -> list[UserOut]:
    return [UserOut(**u) for u in auth.list_users(ctx)]


@router.get("/audit", tags=["audit"])
def list_audit(ctx: Ctx, _who: Admin, limit: LimitQuery = 200) -> list[AuditOut]:
    return [AuditOut(**a) for a in auth.list_audit(ctx, min(limit, 1000))]
