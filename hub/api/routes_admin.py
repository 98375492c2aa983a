"""Health, public keys, login, users and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from hub.api.deps import Admin, Ctx, CurrentSession, IdPath, LimitQuery, OptIdQuery, OptUnixQuery
from hub.api.schemas import AuditOut, LoginIn, LoginOut, UserIn
from hub.api.schemas_users import PasswordIn, UserChangeIn, UserOut
from hub.services import auth

router = APIRouter()


@router.get("/health", tags=["system"])
def health(request: Request) -> dict[str, Any]:
    """``{"status": "ok", "tasks": {"mqtt-bridge": "ok", ...}, "cluster": {"hub_id": "hub", "leader": true, ...}}``;
    ``"degraded"`` while a
    background task has ``"failed"`` (logged with its traceback and restarted with backoff; HTTP keeps serving)."""
    tasks = getattr(request.app.state, "tasks", None)  # confkit.supervise.Supervisor, set by the lifespan
    parts: dict[str, str] = tasks.health() if tasks is not None else {}
    cluster = getattr(request.app.state, "cluster", None)  # hub.cluster.Cluster: elected or not, news
    found: dict[str, Any] = {"status": "degraded" if "failed" in parts.values() else "ok", "tasks": parts}
    if cluster is not None:
        found["cluster"] = cluster.status()
    return found


@router.get("/keys", tags=["system"])
def keys(ctx: Ctx) -> dict[str, dict[str, dict[str, Any]]]:
    """The hub keys file for devices: ``{"keys": {"1": {"key": "<b64>", "purposes": ["ticket"]}, ...}}``."""
    return {"keys": ctx.keyring.to_entries()}


@router.post("/auth/login", tags=["auth"],
             responses={401: {"description": "wrong user name or password"},
                        429: {"description": "too many wrong passwords for this user or from this address: "
                                             "wait Retry-After seconds (also retry_after in the body)"}})
def login(body: LoginIn, request: Request, ctx: Ctx) -> LoginOut:
    # The TCP peer, or (uvicorn's proxy headers) X-Forwarded-For when the peer is in [http] trusted_proxies.
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


_LAST_ADMIN: dict[int | str, dict[str, Any]] = {
    409: {"description": "the last enabled admin cannot be disabled or demoted (code last_admin)"}}


@router.patch("/users/{user_id}", tags=["users"], responses=_LAST_ADMIN)
def change_user(user_id: IdPath, body: UserChangeIn, ctx: Ctx, who: Admin) -> UserOut:
    """Set the role and/or the device login; the new role holds from the user's next request."""
    changes = body.model_dump(exclude_unset=True)
    return UserOut(**auth.change_user(ctx, who, user_id, role=changes.get("role"),
                                      **({"device_id": changes["device_id"]} if "device_id" in changes else {})))


@router.post("/users/{user_id}/password", tags=["users"])
def reset_password(user_id: IdPath, body: PasswordIn, ctx: Ctx, who: Admin) -> UserOut:
    """A new password: every session of the user ends (its next request gets 401)."""
    return UserOut(**auth.reset_password(ctx, who, user_id, body.password))


@router.post("/users/{user_id}/disable", tags=["users"], responses=_LAST_ADMIN)
def disable_user(user_id: IdPath, ctx: Ctx, who: Admin) -> UserOut:
    """Its sessions end now and its log-in is refused (403, code user_disabled) until it is enabled."""
    return UserOut(**auth.set_disabled(ctx, who, user_id, True))


@router.post("/users/{user_id}/enable", tags=["users"])
def enable_user(user_id: IdPath, ctx: Ctx, who: Admin) -> UserOut:
    return UserOut(**auth.set_disabled(ctx, who, user_id, False))


@router.get("/audit", tags=["audit"])
def list_audit(ctx: Ctx, _who: Admin, limit: LimitQuery = 200,
               username: Annotated[str | None, Query(max_length=64)] = None,
               action: Annotated[str | None, Query(max_length=64, description="a prefix: user. finds user.*")] = None,
               target: Annotated[str | None, Query(max_length=128)] = None,
               since: OptUnixQuery = None, until: OptUnixQuery = None,
               before_id: OptIdQuery = None,
               ) -> list[AuditOut]:
    """Newest first, at most 1000; filters combine (and). ``before_id``: older than that id (paging)."""
    return [AuditOut(**a) for a in auth.list_audit(ctx, min(limit, 1000), username=username, action=action,
                                                   target=target, since=since, until=until, before_id=before_id)]
