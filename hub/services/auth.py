"""Users, passwords (argon2), bearer tokens (stored only as SHA-256), login throttling and the audit log.

Wrong passwords are counted in the database (table ``login_throttle``) per user name and per source
address, so a lock-out holds across restarts and for every hub process on the same database. A locked
name or address is refused (429, ``Retry-After``) even with the right password until the wait ends. An
unknown user name costs one Argon2 verification like a wrong password, so the answer time does not tell
which names exist.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, func, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError

from hub.errors import Conflict, Forbidden, Invalid, KioskError, LoginLocked, NotFound, Unauthenticated
from hub.services.context import HubContext, Principal, row_dict
from hub.tables import audit_log, login_throttle, sessions, users
from protocol.topics import check_device_id

log = logging.getLogger(__name__)
# manager: the front-of-house manager (live check-in, reports); finance: reports and sales figures only.
ROLES = ("admin", "box_office", "security", "ops", "viewer", "manager", "finance", "kiosk")
_hasher = PasswordHasher()
MAX_PASSWORD = 256  # characters, at login and when a user is created (a longer one is a 422 / Invalid)
# Verified instead when the user name is unknown: the answer takes as long as for a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise Invalid("the password is too short; use at least 8 characters")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"the password is too long; use at most {MAX_PASSWORD} characters")


def _check_device(device_id: str | None) -> None:
    if device_id is not None:
        try:
            check_device_id(device_id)
        except ValueError as exc:
            raise Invalid(f"device id {device_id!r}: {exc}") from exc


def create_user(ctx: HubContext, who: Principal, username: str, password: str, role: str,
                device_id: str | None = None) -> dict[str, Any]:
    """``device_id``: this is a device's own login (a handheld, a kiosk); its online checks are recorded
    under that device id and it may name no other."""
    _check_role(role)
    _check_password(password)
    _check_device(device_id)
    hashed = _hasher.hash(password)
    now = ctx.clock()
    try:
        with ctx.db.write() as conn:
            user_id: int = conn.execute(insert(users).values(
                username=username, password_hash=hashed, role=role, device_id=device_id,
                created_at=now).returning(literal_column("id"))).scalar_one()
            ctx.audit(conn, who, "user.create", f"user:{user_id}",
                      f"username={username} role={role}" + (f" device={device_id}" if device_id else ""))
    except IntegrityError as exc:
        raise Conflict(f"user {username!r} already exists; choose another name" if device_id is None else
                       f"user {username!r} or a login of device {device_id!r} already exists; choose another "
                       "name, or clear the device login of the other user") from exc
    log.info("created user %s with role %s", username, role)
    return {"id": user_id, "username": username, "role": role, "device_id": device_id, "created_at": now,
            "disabled": False, "disabled_at": None}


_USER_COLUMNS = (users.c.id, users.c.username, users.c.role, users.c.device_id, users.c.created_at,
                 users.c.disabled_at)


def _user_view(row: Any) -> dict[str, Any]:
    return {**row_dict(row), "disabled": row.disabled_at is not None}


def list_users(ctx: HubContext) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(*_USER_COLUMNS).order_by(users.c.id)).all()
    return [_user_view(r) for r in rows]


# -- user admin: every change audited; a revoked session is refused at once by this hub process ---------
_UNSET: Any = object()


def _user(conn: Any, user_id: int) -> Any:
    row = conn.execute(select(*_USER_COLUMNS).where(users.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"no user {user_id}; see GET /api/v1/users")
    return row


def _keep_an_admin(conn: Any, row: Any, doing: str) -> None:
    """Refuse (409) to disable or demote the last enabled admin: nobody could manage users any more."""
    if row.role != "admin" or row.disabled_at is not None:
        return
    others = conn.execute(select(func.count()).select_from(users).where(
        users.c.role == "admin", users.c.disabled_at.is_(None), users.c.id != row.id)).scalar_one()
    if not others:
        raise KioskError(409, "last_admin",
                         f"cannot {doing} {row.username}: it is the last enabled admin; create or enable "
                         "another admin first",
                         f"无法{'停用' if doing == 'disable' else '降级'}{row.username}:这是最后一个启用的管理员,"
                         "请先创建或启用另一个管理员")


def _forget_sessions(ctx: HubContext, conn: Any, user_id: int) -> int:
    """Delete every session of ``user_id``; returns how many."""
    gone = conn.execute(delete(sessions).where(sessions.c.user_id == user_id)).rowcount
    _forget_cached(ctx, user_id, broadcast=False)  # the caller forgets again, and tells the others, after commit
    return int(gone or 0)


def _forget_cached(ctx: HubContext, user_id: int, *, broadcast: bool = True) -> None:
    """Drop the cached sessions of ``user_id`` in this process and (``broadcast``: call it after the commit) in every
    other hub process on the database: the next request reads the database again."""
    for key, (who, _until) in list(ctx.session_cache.items()):
        if who.user_id == user_id:
            ctx.session_cache.pop(key, None)
    if broadcast:
        ctx.broadcast("user", str(user_id))


def forget_user_sessions(ctx: HubContext, user_id: int) -> None:
    """Another hub changed ``user_id`` (role, password, disabled): drop what this process cached of it."""
    _forget_cached(ctx, user_id, broadcast=False)


def forget_session(ctx: HubContext, token_hash: str) -> None:
    """Another hub ended the session ``token_hash`` (log-out); "" drops every cached session."""
    if token_hash:
        ctx.session_cache.pop(token_hash, None)
    else:
        ctx.session_cache.clear()


def change_user(ctx: HubContext, who: Principal, user_id: int, role: str | None = None,
                device_id: Any = _UNSET) -> dict[str, Any]:
    """Set the role and/or the device login (``device_id=None`` clears it); unchanged if not given."""
    values: dict[str, Any] = {}
    if role is not None:
        _check_role(role)
        values["role"] = role
    if device_id is not _UNSET:
        _check_device(device_id)
        values["device_id"] = device_id
    try:
        with ctx.db.write() as conn:
            row = _user(conn, user_id)
            if role is not None and role != "admin":
                _keep_an_admin(conn, row, "demote")
            values = {k: v for k, v in values.items() if getattr(row, k) != v}  # audit only what changes
            if values:
                conn.execute(update(users).where(users.c.id == user_id).values(**values))
                ctx.audit(conn, who, "user.change", f"user:{user_id}", f"username={row.username} " + " ".join(
                    f"{k}={getattr(row, k)}->{v}" for k, v in values.items()))
            row = _user(conn, user_id)
    except IntegrityError as exc:
        raise Conflict(f"device {device_id!r} already has a login; clear that one first") from exc
    _forget_cached(ctx, user_id)  # the next request sees the new role
    return _user_view(row)


def reset_password(ctx: HubContext, who: Principal, user_id: int, password: str) -> dict[str, Any]:
    """A new password; every session of the user ends and its wrong-password lock-out is lifted."""
    _check_password(password)
    hashed = _hasher.hash(password)
    with ctx.db.write() as conn:
        row = _user(conn, user_id)
        conn.execute(update(users).where(users.c.id == user_id).values(password_hash=hashed))
        gone = _forget_sessions(ctx, conn, user_id)
        conn.execute(delete(login_throttle).where(login_throttle.c.key == f"user:{row.username.casefold()[:190]}"))
        ctx.audit(conn, who, "user.password", f"user:{user_id}", f"username={row.username}; {gone} session(s) ended")
    _forget_cached(ctx, user_id)
    log.info("password of user %s reset by %s", row.username, who.username)
    return _user_view(row)


def set_disabled(ctx: HubContext, who: Principal, user_id: int, disabled: bool) -> dict[str, Any]:
    """Disable (its login is refused, its sessions end now) or enable a user; repeating is harmless."""
    with ctx.db.write() as conn:
        row = _user(conn, user_id)
        if disabled and row.disabled_at is None:
            _keep_an_admin(conn, row, "disable")
            conn.execute(update(users).where(users.c.id == user_id).values(disabled_at=ctx.clock()))
            gone = _forget_sessions(ctx, conn, user_id)
            ctx.audit(conn, who, "user.disable", f"user:{user_id}", f"username={row.username}; {gone} session(s) ended")
        elif not disabled and row.disabled_at is not None:
            conn.execute(update(users).where(users.c.id == user_id).values(disabled_at=None))
            ctx.audit(conn, who, "user.enable", f"user:{user_id}", f"username={row.username}")
        row = _user(conn, user_id)
    _forget_cached(ctx, user_id)
    log.info("user %s %s by %s", row.username, "disabled" if disabled else "enabled", who.username)
    return _user_view(row)


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


def _throttle_keys(username: str, address: str | None) -> dict[str, int]:
    """Counter keys of one attempt, each with its limit filled in by the caller."""
    keys = {f"user:{username.casefold()[:190]}": 0}
    if address:
        keys[f"addr:{address[:190]}"] = 0
    return keys


def _limits(ctx: HubContext, keys: dict[str, int]) -> dict[str, int]:
    return {k: ctx.login.max_failures if k.startswith("user:") else ctx.login.address_max_failures for k in keys}


def locked_for(ctx: HubContext, username: str, address: str | None) -> float:
    """Seconds until ``username`` and ``address`` may try again (0: now)."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        until = conn.execute(select(func.max(login_throttle.c.locked_until))
                             .where(login_throttle.c.key.in_(list(_throttle_keys(username, address))))).scalar()
    return max(0.0, float(until) - now) if until is not None else 0.0


def _count_failure(ctx: HubContext, username: str, address: str | None) -> tuple[dict[str, int], float]:
    """Count one wrong password against the name and the address; lock any that reached its limit.

    Each counter is bumped by one UPDATE (the first statement of the write transaction), so hub
    processes sharing the database never lose a count. Returns the counts and the lock-out (0: none).
    """
    now, policy = ctx.clock(), ctx.login
    limits = _limits(ctx, _throttle_keys(username, address))
    t = login_throttle
    fresh = t.c.window_start < now - policy.window
    counts: dict[str, int] = {}
    locked = 0.0
    with ctx.db.write() as conn:
        for key, limit in limits.items():
            bumped = conn.execute(update(t).where(t.c.key == key).values(
                failures=case((fresh, 1), else_=t.c.failures + 1),
                window_start=case((fresh, now), else_=t.c.window_start))).rowcount
            if not bumped:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(t).values(key=key, failures=1, window_start=now, locked_until=None))
                except IntegrityError:  # another hub process inserted it just now
                    conn.execute(update(t).where(t.c.key == key).values(failures=t.c.failures + 1))
            failures = int(conn.execute(select(t.c.failures).where(t.c.key == key)).scalar_one())
            counts[key] = failures
            if failures >= limit:
                conn.execute(update(t).where(t.c.key == key).values(failures=0, window_start=now,
                                                                    locked_until=now + policy.lockout))
                locked = policy.lockout
        detail = f"from {address or '?'}; " + ", ".join(f"{k.split(':')[0]} {n}/{limits[k]}" for k, n in counts.items())
        ctx.audit(conn, Principal(None, username[:64], "none"), "auth.login_failed", f"user:{username[:120]}",
                  detail + (f"; locked for {locked:.0f} s" if locked else ""))
    return counts, locked


def login(ctx: HubContext, username: str, password: str, address: str | None = None) -> dict[str, Any]:
    """A session token, or Unauthenticated (wrong name or password) / LoginLocked (too many of those)."""
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"the password is too long; use at most {MAX_PASSWORD} characters")
    wait = locked_for(ctx, username, address)
    if wait > 0:
        with ctx.db.write() as conn:
            ctx.audit(conn, Principal(None, username[:64], "none"), "auth.login_locked", f"user:{username[:120]}",
                      f"from {address or '?'}; refused without checking the password, {wait:.0f} s left")
        log.warning("refused a login for user %s from %s: locked for %.0f s", username, address, wait)
        raise LoginLocked(wait)
    with ctx.db.read() as conn:
        user = conn.execute(select(users).where(users.c.username == username)).first()
    try:
        _hasher.verify(_DUMMY_HASH if user is None else user.password_hash, password)
        if user is None:
            raise VerificationError("no such user")
    except (VerificationError, InvalidHashError) as exc:
        log.info("failed login for user %s from %s", username, address)
        _counts, locked = _count_failure(ctx, username, address)
        if locked:
            raise LoginLocked(locked) from exc
        raise Unauthenticated("wrong user name or password; check both and try again") from exc
    if user.disabled_at is not None:
        with ctx.db.write() as conn:
            ctx.audit(conn, Principal(user.id, user.username, user.role), "auth.login_disabled", f"user:{user.id}",
                      f"from {address or '?'}; the user is disabled")
        raise KioskError(403, "user_disabled", f"user {user.username} is disabled; ask an admin to enable it",
                         f"用户 {user.username} 已被停用,请联系管理员启用")
    token = secrets.token_urlsafe(32)
    now = ctx.clock()
    ttl = min(ctx.token_ttl, ctx.login.security_token_ttl_hours * 3600) if user.role == "security" else ctx.token_ttl
    expires = now + ttl
    with ctx.db.write() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_at < now))
        conn.execute(delete(login_throttle).where(login_throttle.c.key == f"user:{username.casefold()[:190]}"))
        conn.execute(insert(sessions).values(token_hash=_token_hash(token), user_id=user.id, expires_at=expires))
        ctx.audit(conn, Principal(user.id, user.username, user.role), "auth.login", f"user:{user.id}",
                  f"from {address or '?'}")
    return {"token": token, "role": user.role, "expires_at": expires}


def logout(ctx: HubContext, who: Principal, token: str) -> None:
    """Revoke ``token``: this hub process refuses it at once, other hub processes on the database as soon as they
    hear of it (hub/cluster.py), and at the latest after SESSION_CACHE_SECONDS."""
    key = _token_hash(token)
    ctx.session_cache.pop(key, None)
    with ctx.db.write() as conn:
        conn.execute(delete(sessions).where(sessions.c.token_hash == key))
        ctx.audit(conn, who, "auth.logout", f"user:{who.user_id}")
    ctx.session_cache.pop(key, None)
    ctx.broadcast("session", key)


SESSION_CACHE_SECONDS = 30.0  # a looked-up login token is trusted this long without a database read


def authenticate(ctx: HubContext, token: str) -> Principal:
    key = _token_hash(token)
    now = ctx.clock()
    cached = ctx.session_cache.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    with ctx.db.read() as conn:
        row = conn.execute(select(users.c.id, users.c.username, users.c.role, users.c.device_id, sessions.c.expires_at,
                                  users.c.disabled_at)
                           .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
                           .where(sessions.c.token_hash == key)).first()
    if row is None or row.expires_at < now or row.disabled_at is not None:
        ctx.session_cache.pop(key, None)
        raise Unauthenticated("the login token is missing, unknown or expired; log in again at "
                              "POST /api/v1/auth/login")
    who = Principal(row.id, row.username, row.role, row.device_id)
    if len(ctx.session_cache) > 10_000:
        ctx.session_cache.clear()
    ctx.session_cache[key] = (who, min(now + SESSION_CACHE_SECONDS, row.expires_at))
    return who


def require(who: Principal, *roles: str) -> None:
    if who.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {who.username} ({who.role}). "
                        "Ask an admin for access.")


def list_audit(ctx: HubContext, limit: int = 200, *, username: str | None = None, action: str | None = None,
               target: str | None = None, since: float | None = None, until: float | None = None,
               before_id: int | None = None) -> list[dict[str, Any]]:
    """Newest first. ``action`` is a prefix ("user." finds user.create, user.disable...); the others are
    exact; ``before_id`` pages back (the id of the last row of the previous page)."""
    a = audit_log
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if username:
        query = query.where(a.c.username == username)
    if action:
        query = query.where(a.c.action.startswith(action, autoescape=True))
    if target:
        query = query.where(a.c.target == target)
    if since is not None:
        query = query.where(a.c.at >= since)
    if until is not None:
        query = query.where(a.c.at <= until)
    if before_id is not None:
        query = query.where(a.c.id < before_id)
    with ctx.db.read() as conn:
        rows = conn.execute(query).all()
    return [row_dict(r) for r in rows]
