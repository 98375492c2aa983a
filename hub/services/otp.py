"""Kiosk lookup guards: one-time SMS codes (stored salted and hashed, with a lock-out) and rate limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, delete, insert, select, update

from hub.tables import kiosk_otps

MAX_KEYS = 100_000


class RateLimiter:
    """Sliding one-minute windows per key, in memory (the hub is one process)."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, now: float) -> float | None:
        """Count one hit on ``key``; over ``limit`` return the seconds to wait instead (not counted)."""
        with self._lock:
            if len(self._hits) > MAX_KEYS:
                self._hits = {k: q for k, q in self._hits.items() if q and q[-1] > now - self.window}
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= limit:
                return max(hits[0] + self.window - now, 0.0)
            hits.append(now)
            return None


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
