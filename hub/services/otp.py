"""Kiosk lookup guards: one-time SMS codes (stored salted and hashed, with a lock-out) and rate limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.tables import kiosk_otps, rate_hits


class RateLimiter:
    """Hits per key per minute, counted in the database (table ``rate_hits``), so every hub process behind the load
    balancer sees the same count. The window slides: the previous fixed window's hits count for the part of it
    still inside the last minute (their share falls linearly), plus the current window's hits. A hit is counted by
    one upsert (its row lock orders hubs hitting the same key at once) and given back when it is over the limit."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window

    def hit(self, conn: Connection, key: str, limit: int, now: float) -> float | None:
        """Count one hit on ``key`` in ``conn``'s transaction; over ``limit`` return the seconds to wait instead
        (then it is not counted)."""
        key = key[:200]
        slot = int(now // self.window)
        into = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(rate_hits)
        t = rate_hits
        cur = int(conn.execute(into.values(key=key, slot=slot, hits=1)
                               .on_conflict_do_update(index_elements=[t.c.key, t.c.slot], set_={"hits": t.c.hits + 1})
                               .returning(t.c.hits)).scalar_one())
        prev = int(conn.execute(select(t.c.hits).where(t.c.key == key, t.c.slot == slot - 1)).scalar() or 0)
        elapsed = now - slot * self.window
        share = 1.0 - elapsed / self.window  # of the previous window, still inside the last minute
        if prev * share + cur <= limit:
            if cur == 1:
                conn.execute(delete(t).where(t.c.key == key, t.c.slot < slot - 1))
            return None
        conn.execute(update(t).where(t.c.key == key, t.c.slot == slot).values(hits=t.c.hits - 1))
        if cur > limit or prev == 0:
            return self.window - elapsed  # this window is full: the next one
        # the previous window's share must fall to limit - (cur - 1) - 1 hits
        return max((1.0 - (limit - cur) / prev) * self.window - elapsed, 0.0)


def prune_rate_hits(conn: Connection, now: float, window: float = 60.0) -> int:
    """Drop the windows no limit looks at any more; return how many rows went."""
    return int(conn.execute(delete(rate_hits).where(rate_hits.c.slot < int(now // window) - 1)).rowcount or 0)


def _hash(salt: str, phone: str, code: str) -> str:
    return hmac.new(salt.encode(), f"{phone}\x00{code}".encode(), hashlib.sha256).hexdigest()


def locked_for(conn: Connection, phone: str, now: float) -> float | None:
    """Seconds the phone stays locked after too many wrong codes, or None."""
    until = conn.execute(select(kiosk_otps.c.locked_until).where(kiosk_otps.c.phone == phone)).scalar()
    return until - now if until is not None and until > now else None


def issue(conn: Connection, phone: str, now: float, ttl: float) -> str:
    """A new 6-digit code for ``phone`` (replacing any older one; the wrong-code count is kept)."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    salt = secrets.token_hex(16)
    values = {"code_hash": _hash(salt, phone, code), "salt": salt, "expires_at": now + ttl}
    if conn.execute(update(kiosk_otps).where(kiosk_otps.c.phone == phone).values(**values)).rowcount == 0:
        conn.execute(insert(kiosk_otps).values(phone=phone, failures=0, **values))
    return code


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Literal["ok", "wrong", "expired", "locked"]
    attempts_left: int = 0
    retry_after: float = 0.0


def verify(conn: Connection, phone: str, code: str, now: float, max_failures: int, lockout: float) -> Verdict:
    """Check ``code``; a right one is used up, a wrong one counts towards the lock-out (in this transaction)."""
    row = conn.execute(select(kiosk_otps).where(kiosk_otps.c.phone == phone).with_for_update()).first()
    if row is None or row.code_hash is None or row.expires_at < now:
        return Verdict("expired")
    if hmac.compare_digest(row.code_hash, _hash(row.salt, phone, code)):
        conn.execute(delete(kiosk_otps).where(kiosk_otps.c.phone == phone))
        return Verdict("ok")
    failures = row.failures + 1
    if failures >= max_failures:
        conn.execute(update(kiosk_otps).where(kiosk_otps.c.phone == phone)
                     .values(failures=0, code_hash=None, locked_until=now + lockout))
        return Verdict("locked", retry_after=lockout)
    conn.execute(update(kiosk_otps).where(kiosk_otps.c.phone == phone).values(failures=failures))
    return Verdict("wrong", attempts_left=max_failures - failures)
