"""The venue's own clock face: local day, weekday, midnight and hh:mm in an IANA time zone.

Every "day" in check-in rules is the venue's, whatever time zone the machine or process runs in: the
gate, the hub and every report call these with the venue's zone name (from the check-in rules), never
``time.localtime``. Zones come from the system's tz database or the pinned ``tzdata`` package.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from protocol.errors import MalformedError

DEFAULT_TIMEZONE = "Asia/Shanghai"  # the first customer's; every venue names its own
# Names in the tz database that are not a place: "localtime" is each machine's own zone (exactly what a
# venue's day must not depend on), the others are build artefacts.
_NOT_A_PLACE = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The zone called ``name`` (``Asia/Shanghai``); MalformedError if there is none."""
    if (not isinstance(name, str) or not 1 <= len(name) <= 64 or name in _NOT_A_PLACE
            or name.startswith(("posix/", "right/")) or name not in _known()):
        raise MalformedError(f"{str(name)[:70]!r} is not an IANA time zone name such as Asia/Shanghai")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise MalformedError(f"{name!r} is not an IANA time zone name such as Asia/Shanghai") from exc


def check_zone(name: str) -> str:
    zone(name)
    return name


def local(ts: float, tz: str) -> datetime:
    return datetime.fromtimestamp(ts, zone(tz))


def local_day(ts: float, tz: str) -> str:
    """``YYYY-MM-DD``: the venue's calendar day at unix time ``ts``."""
    return local(ts, tz).date().isoformat()


def day_number(ts: float, tz: str) -> int:
    """The venue's day as an integer ``YYYYMMDD`` (compact on the wire); 0 for "never"."""
    if ts <= 0:
        return 0
    d = local(ts, tz).date()
    return d.year * 10000 + d.month * 100 + d.day


def day_of_number(n: int) -> str:
    return f"{n // 10000:04d}-{n // 100 % 100:02d}-{n % 100:02d}"


def weekday(ts: float, tz: str) -> int:
    """ISO weekday of the venue's day: Monday 1 .. Sunday 7."""
    return local(ts, tz).isoweekday()


def day_bounds(day: str, tz: str) -> tuple[float, float]:
    """Unix times of the venue's midnight starting ``day`` and the next one (DST-safe)."""
    first = date.fromisoformat(day)
    z = zone(tz)
    start = datetime(first.year, first.month, first.day, tzinfo=z)
    nxt = first + timedelta(days=1)
    return start.timestamp(), datetime(nxt.year, nxt.month, nxt.day, tzinfo=z).timestamp()


def next_midnight(ts: float, tz: str) -> float:
    """The venue's next midnight after ``ts``."""
    return day_bounds(local_day(ts, tz), tz)[1]


def clock_text(ts: float, tz: str, now: float | None = None) -> str:
    """``08:00`` on the same venue day as ``now``, else ``12-02 08:00``."""
    t = local(ts, tz)
    if now is not None and local_day(now, tz) == t.date().isoformat():
        return t.strftime("%H:%M")
    return t.strftime("%m-%d %H:%M")
