"""Users, passwords (argon2), bearer tokens (stored only as SHA-256) and the audit log."""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, literal_column, select
from sqlalchemy.exc import IntegrityError

from hub.errors import Conflict, Forbidden, Invalid, Unauthenticated
from hub.services.context import HubContext, Principal, row_dict
from hub.tables import audit_log, sessions, users

log = logging.getLogger(__name__)
ROLES = ("admin", "box_office", "security", "ops", "viewer", "kiosk")
_hasher = PasswordHasher()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(ctx: HubContext, who: Principal, username: str, password: str, role: str) -> dict[str, Any]:
    if role not in ROLES:
        raise Invalid(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise Invalid("the password is too short; use at least 8 characters")
    hashed = _hasher.hash(password)
    try:
        with ctx.db.write() as conn:
            user_id: int = conn.execute(insert(users).values(username=username, password_hash=hashed, role=role,
                                                        created_at=ctx.clock()).returning(literal_column("id"))).scalar_one()
            ctx.audit(conn, who, "user.create", f"user:{user_id}", f"username={username} role={role}")
    except IntegrityError as exc:
        raise Conflict(f"user {username!r} already exists; choose another name") from exc
    log.info("created user %s with role %s", username, role)
    return {"id": user_id, "username": username, "role": role}


def list_users(ctx: HubContext) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(users.c.id, users.c.username, users.c.role, users.c.created_at)
                            .order_by(users.c.id)).all()
    return [row_dict(r) for r in rows]


def bootstrap_admin(ctx: HubContext, username: str, password: str) -> None:
    """Create the configured admin if there are no users at all."""
    with ctx.db.read() as conn:
        count = conn.execute(select(func.count()).select_from(users)).scalar_one()
    if count:
        return
    if not password:
        log.warning("there are no users and no admin password is configured: set HUB__ADMIN__PASSWORD "
                    "and restart, or run 'python -m hub create-user NAME --role admin'")
        return
    create_user(ctx, Principal(None, "bootstrap", "admin"), username, password, "admin")


def login(ctx: HubContext, username: str, password: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        user = conn.execute(select(users).where(users.c.username == username)).first()
    try:
        if user is None:
            raise VerificationError("no such user")
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError) as exc:
        log.info("failed login for user %s", username)
        raise Unauthenticated("wrong user name or password; check both and try again") from exc
    token = secrets.token_urlsafe(32)
    now = ctx.clock()
    expires = now + ctx.token_ttl
    with ctx.db.write() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_at < now))
        conn.execute(insert(sessions).values(token_hash=_token_hash(token), user_id=user.id, expires_at=expires))
        ctx.audit(conn, Principal(user.id, user.username, user.role), "auth.login", f"user:{user.id}")
    return {"token": token, "role": user.role, "expires_at": expires}


SESSION_CACHE_SECONDS = 30.0  # a looked-up login token is trusted this long without a database read


def authenticate(ctx: HubContext, token: str) -> Principal:
    key = _token_hash(token)
    now = ctx.clock()
    cached = ctx.session_cache.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    with ctx.db.read() as conn:
        row = conn.execute(select(users.c.id, users.c.username, users.c.role, sessions.c.expires_at)
                           .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
                           .where(sessions.c.token_hash == key)).first()
    if row is None or row.expires_at < now:
        ctx.session_cache.pop(key, None)
        raise Unauthenticated("the login token is missing, unknown or expired; log in again at "
                              "POST /api/v1/auth/login")
    who = Principal(row.id, row.username, row.role)
    if len(ctx.session_cache) > 10_000:
        ctx.session_cache.clear()
    ctx.session_cache[key] = (who, min(now + SESSION_CACHE_SECONDS, row.expires_at))
    return who


def require(who: Principal, *roles: str) -> None:
    if who.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {who.username} ({who.role}). "
                        "Ask an admin for access.")


def list_audit(ctx: HubContext, limit: int = 200) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)).all()
    return [row_dict(r) for r in rows]
