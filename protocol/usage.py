"""How often a ticket has been used: one small state, folded from check-in events in scan-time order.

The hub folds every stored event of a ticket (per counting scope: its check-in group, or groups the
operator linked) and sends the result in the ticket's whitelist entry. A gate decides on the hub's
state folded further with its own events the hub has not yet echoed back, so, offline or not, an
entry is counted exactly once: a two-entry ticket used once elsewhere and once here is refused the
third time.

* ``entries``: admissions (a full annulment, nobody passed, takes one back);
* ``exits``: exits tied to the ticket while it was inside (each gives an entry back if re-entry is allowed);
* ``credit``: persons of a partly annulled admission who may still come in on that same entry;
* ``last_entry`` / ``last_exit``: unix seconds of the newest ones; ``day`` / ``day_entries``: the venue
  day (``YYYYMMDD``) of the newest entry and how many entries it had.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from protocol.localtime import day_number


@dataclass(frozen=True, slots=True)
class Usage:
    entries: int = 0
    exits: int = 0
    credit: int = 0
    last_entry: int = 0
    last_exit: int = 0
    day: int = 0
    day_entries: int = 0

    @property
    def inside(self) -> bool:
        """Entered and not left since."""
        return self.entries > self.exits and self.last_entry >= self.last_exit

    def entries_on(self, day: int) -> int:
        return self.day_entries if day == self.day else 0

    def admitted(self, at: float, tz: str, *, persons: int = 1, credit: bool = False) -> Usage:
        """One admission at ``at``: a new entry, or (``credit``) persons coming in on a given-back entry."""
        if credit:
            return replace(self, credit=max(0, self.credit - persons), last_entry=max(self.last_entry, int(at)))
        day = day_number(at, tz)
        if day > self.day:
            day_entries = 1
        elif day == self.day:
            day_entries = self.day_entries + 1
        else:  # an older day arriving late: it does not change today's count
            day, day_entries = self.day, self.day_entries
        return replace(self, entries=self.entries + 1, last_entry=max(self.last_entry, int(at)),
                       day=day, day_entries=day_entries)

    def exited(self, at: float) -> Usage:
        """An exit tied to the ticket; counted only while the ticket is inside (a stray exit gives nothing)."""
        exits = self.exits + 1 if self.entries > self.exits else self.exits
        return replace(self, exits=exits, last_exit=max(self.last_exit, int(at)))

    def annulled(self, persons: int, of_persons: int, at: float, tz: str, *, credit: bool = False) -> Usage:
        """``persons`` of an admission of ``of_persons`` did not pass: a full annulment takes the entry back,
        a partial one (or one of a credit admission) gives those persons back as credit."""
        if persons <= 0:
            return self
        if persons >= of_persons and not credit:
            day_entries = self.day_entries - 1 if day_number(at, tz) == self.day else self.day_entries
            return replace(self, entries=max(0, self.entries - 1), day_entries=max(0, day_entries))
        return replace(self, credit=self.credit + persons)

    def to_wire(self) -> list[int]:
        return [self.entries, self.exits, self.credit, self.last_entry, self.last_exit, self.day, self.day_entries]


NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """What a check-in event does to a ticket's usage (see :func:`fold`)."""

    kind: Literal["entry", "exit", "annul"]
    at: float
    persons: int = 1
    of_persons: int = 1  # annul: the persons of the admission it takes back
    credit: bool = False  # entry / annul: on persons given back by a partial annulment


def fold(state: Usage, events: Iterable[UsageEvent], tz: str) -> Usage:
    """``state`` after ``events``, applied in scan-time order."""
    for e in sorted(events, key=lambda e: e.at):
        state = step(state, e, tz)
    return state


def step(state: Usage, e: UsageEvent, tz: str) -> Usage:
    if e.kind == "entry":
        return state.admitted(e.at, tz, persons=e.persons, credit=e.credit)
    if e.kind == "exit":
        return state.exited(e.at)
    return state.annulled(e.persons, e.of_persons, e.at, tz, credit=e.credit)
