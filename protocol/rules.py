"""Check-in rules an operator sets per channel (optionally per ticket type, and for member cards).

One :class:`EntryRules` is a complete rule set; the hub merges a channel's rules with a ticket type's
narrowing and sends the effective set per type, so a gate never merges anything. On the wire a rule
set is a small JSON object; absent keys take the defaults below (what a venue expects when it has not
said otherwise: one entry, re-entry after an exit allowed, admission from doors-open to the end).

Days, weekdays and dates are the venue's (see :mod:`protocol.localtime`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from protocol.bounds import MAX_ENTRIES, MAX_MINUTES
from protocol.errors import MalformedError

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")  # ASCII digits only
MAX_EXCLUDED_DATES = 366


@dataclass(frozen=True, slots=True)
class EntryRules:
    """What one channel allows one kind of ticket (or card)."""

    max_entries: int = 1  # entries in all; an exit gives one back when re-entry is allowed
    entries_per_day: int | None = None  # entries per venue day; None: no daily limit
    cooldown_minutes: int = 0  # at least this long between two entries
    reentry: bool = True  # after an exit scan the ticket may come back in
    exit_required: bool = False  # a ticket still inside (entered, no exit since) cannot enter again
    before_doors_minutes: int = 0  # admission opens this long before doors-open
    after_end_minutes: int = 0  # and closes this long after the end
    latecomers: bool = True  # after the start this channel still admits (False: latecomers go elsewhere)
    weekdays: frozenset[int] = frozenset()  # ISO weekdays 1 (Mon) .. 7 (Sun) allowed; empty: every day
    date_from: str | None = None  # first venue day allowed, YYYY-MM-DD
    date_until: str | None = None  # last venue day allowed
    excluded_dates: frozenset[str] = frozenset()  # venue days refused

    def __post_init__(self) -> None:
        problems = check_rules(self)
        if problems:
            raise MalformedError("check-in rules: " + "; ".join(problems))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        default = _DEFAULT
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                out[f.name] = sorted(value) if isinstance(value, frozenset) else value
        return out

    @classmethod
    def from_wire(cls, data: Any) -> EntryRules:
        if not isinstance(data, dict):
            raise MalformedError("check-in rules are not an object")
        return merged(_DEFAULT, data)


_FIELDS = {f.name for f in fields(EntryRules)}
_BOOLS = {"reentry", "exit_required", "latecomers"}
_INTS = {"max_entries": (1, MAX_ENTRIES), "cooldown_minutes": (0, MAX_MINUTES),
         "before_doors_minutes": (0, MAX_MINUTES), "after_end_minutes": (0, MAX_MINUTES)}


def check_rules(r: EntryRules) -> list[str]:
    """Every problem of a rule set, each naming its field (empty: valid)."""
    out: list[str] = []
    for name, (lo, hi) in _INTS.items():
        v = getattr(r, name)
        if type(v) is not int or not lo <= v <= hi:
            out.append(f"{name} must be a whole number from {lo} to {hi}")
    if r.entries_per_day is not None and (type(r.entries_per_day) is not int
                                          or not 1 <= r.entries_per_day <= MAX_ENTRIES):
        out.append(f"entries_per_day must be empty or a whole number from 1 to {MAX_ENTRIES}")
    for name in _BOOLS:
        if type(getattr(r, name)) is not bool:
            out.append(f"{name} must be true or false")
    if not isinstance(r.weekdays, frozenset) or not all(type(d) is int and 1 <= d <= 7 for d in r.weekdays):
        out.append("weekdays must be ISO weekday numbers 1 (Monday) to 7 (Sunday)")
    for name in ("date_from", "date_until"):
        v = getattr(r, name)
        if v is not None and not _valid_date(v):
            out.append(f"{name} must be a date YYYY-MM-DD")
    if (not isinstance(r.excluded_dates, frozenset) or len(r.excluded_dates) > MAX_EXCLUDED_DATES
            or not all(_valid_date(d) for d in r.excluded_dates)):
        out.append(f"excluded_dates must be at most {MAX_EXCLUDED_DATES} dates YYYY-MM-DD")
    if not out and r.date_from and r.date_until and r.date_from > r.date_until:
        out.append("date_from must not be after date_until")
    return out


def _valid_date(v: Any) -> bool:
    if not isinstance(v, str) or not _DATE.match(v):
        return False
    y, m, d = (int(x) for x in v.split("-"))
    if not (1 <= m <= 12 and 1 <= d <= 31 and 1970 <= y <= 2106):
        return False
    import datetime as _dt

    try:
        _dt.date(y, m, d)
    except ValueError:
        return False
    return True


def merged(base: EntryRules, changes: Any) -> EntryRules:
    """``base`` with the keys of ``changes`` (a wire/API dict) replaced; unknown keys are refused."""
    if not isinstance(changes, dict):
        raise MalformedError("check-in rules are not an object")
    unknown = sorted(set(changes) - _FIELDS)
    if unknown:
        raise MalformedError(f"check-in rules: unknown field(s) {', '.join(map(str, unknown))[:120]}")
    values = dict(changes)
    for name in ("weekdays", "excluded_dates"):
        if name in values:
            items = values[name]
            if not isinstance(items, list | tuple | set | frozenset) or not all(
                    isinstance(v, int | str) for v in items):
                raise MalformedError(f"check-in rules: {name} must be a list of "
                                     + ("weekday numbers" if name == "weekdays" else "dates YYYY-MM-DD"))
            values[name] = frozenset(items)
    return replace(base, **values)


def as_dict(r: EntryRules) -> dict[str, Any]:
    """Every field, lists sorted: for the API's responses."""
    out = asdict(r)
    out["weekdays"], out["excluded_dates"] = sorted(r.weekdays), sorted(r.excluded_dates)
    return out


_DEFAULT = EntryRules()
DEFAULT_RULES = _DEFAULT
