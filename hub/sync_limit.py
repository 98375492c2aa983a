"""Per-device rate limits on whitelist sync requests (issue 10 item 8).

Two token buckets per device: one for every sync request (catch-up deltas are cheap, but not free), and
one for whole snapshots (a database scan, compression and a signature over the whole group). A request
over either limit is dropped; the device asks again when it next sees a gap. Drops are logged once per
device per ``log_interval`` with the count since the last line, so a flood cannot flood the log either.
The state is per hub process, in memory, and bounded (idle devices are forgotten first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from hub.config import SyncSettings
from hub.services.context import HubContext
from hub.services.whitelist import MAX_CATCH_UP
from hub.tables import checkin_groups

log = logging.getLogger(__name__)
MAX_TRACKED_DEVICES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float

    def take(self, now: float, rate: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class _Device:
    requests: _Bucket
    snapshots: _Bucket
    dropped: int = 0
    logged_at: float = field(default=-1e18)


class SyncLimiter:
    """``limiter.allow(device_id, snapshot=...)`` -> whether to answer this sync request."""

    def __init__(self, settings: SyncSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.s = settings or SyncSettings()
        self.clock = clock
        self._devices: dict[str, _Device] = {}
        self.dropped_total = 0

    def _device(self, device_id: str, now: float) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None:
            if len(self._devices) >= MAX_TRACKED_DEVICES:  # forget the longest idle (their buckets are full again)
                for key in sorted(self._devices, key=lambda k: self._devices[k].requests.at)[:len(self._devices) // 10]:
                    del self._devices[key]
            dev = _Device(_Bucket(float(self.s.request_burst), now), _Bucket(float(self.s.snapshot_burst), now))
            self._devices[device_id] = dev
        return dev

    def allow(self, device_id: str, *, snapshot: bool = False) -> bool:
        """Take one request token (and a snapshot token when ``snapshot``), or count and maybe log a drop."""
        now = self.clock()
        dev = self._device(device_id, now)
        ok = dev.requests.take(now, self.s.requests_per_second, self.s.request_burst)
        return self._settle(device_id, dev, now, ok and (not snapshot or self._snapshot(dev, now)))

    def allow_snapshot(self, device_id: str) -> bool:
        """Take a snapshot token for a request already let through :meth:`allow` (it turned out to need one)."""
        now = self.clock()
        dev = self._device(device_id, now)
        return self._settle(device_id, dev, now, self._snapshot(dev, now))

    def _snapshot(self, dev: _Device, now: float) -> bool:
        return dev.snapshots.take(now, 1.0 / self.s.snapshot_interval, self.s.snapshot_burst)

    def _settle(self, device_id: str, dev: _Device, now: float, ok: bool) -> bool:
        if ok:
            return True
        dev.dropped += 1
        self.dropped_total += 1
        if now - dev.logged_at >= self.s.log_interval:
            log.warning("rate limited whitelist sync requests of device %s: dropped %s request(s) since the last "
                        "notice (limits: a snapshot per %.1f s after %s, %.1f requests/s after %s); it gets its "
                        "whitelist when it asks again within them", device_id, dev.dropped,
                        self.s.snapshot_interval, self.s.snapshot_burst, self.s.requests_per_second,
                        self.s.request_burst)
            dev.logged_at, dev.dropped = now, 0
        return False


def needs_snapshot(ctx: HubContext, group_id: int, have_seq: int) -> bool:
    """Whether a device at ``have_seq`` gets a whole snapshot (mirrors ``whitelist.catch_up``, one cheap read).
    An unknown group counts as a snapshot request (catch_up refuses it after the limiter)."""
    if have_seq < 0:
        return True
    with ctx.db.read() as conn:
        seq = conn.execute(select(checkin_groups.c.seq).where(checkin_groups.c.id == group_id)).scalar()
    return seq is None or have_seq > int(seq) or int(seq) - have_seq > MAX_CATCH_UP
