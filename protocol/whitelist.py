"""Whitelists: per check-in group, a versioned snapshot plus ordered deltas, each hub-signed.

An entry is what a gate needs to decide without the network; it holds no personal data. On the
wire an entry is a compact list ``[ticket, performance, type, persons, revoked 0/1, used]``, followed,
once the ticket has been used, by the rest of its usage (:class:`protocol.usage.Usage`):
``[..., exits, credit, last entry, last exit, day YYYYMMDD, entries that day]``.
Sequence numbers are per group: a snapshot at ``seq`` includes every delta up to ``seq``; the next
delta is ``seq + 1``. A receiver applies ``seq == have + 1``, ignores ``seq <= have`` (duplicate or
replay) and treats ``seq > have + 1`` as a gap that needs a re-sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from protocol.cards import CardEntry
from protocol.errors import MalformedError
from protocol.localtime import check_zone
from protocol.rules import DEFAULT_RULES, EntryRules
from protocol.supervisor import Supervisor
from protocol.usage import Usage

KIND_SNAPSHOT = "whitelist.snapshot"
KIND_DELTA = "whitelist.delta"
WHITELIST_KINDS = {KIND_SNAPSHOT, KIND_DELTA}

DeltaOp = Literal["sale", "refund", "void", "change", "used", "rules", "card", "card_used"]
DELTA_OPS: frozenset[str] = frozenset({"sale", "refund", "void", "change", "used", "rules", "card", "card_used"})


@dataclass(frozen=True, slots=True)
class CardUsage:
    """Op "card_used": admissions of one card on one local day, counted at the hub over every gate."""

    card_id: int
    day: str  # YYYY-MM-DD, the venue's local day
    entries: int

    def to_wire(self) -> list[Any]:
        return [self.card_id, self.day, self.entries]

    @classmethod
    def from_wire(cls, row: Any) -> CardUsage:
        if (not isinstance(row, list) or len(row) != 3 or type(row[0]) is not int or type(row[2]) is not int
                or not isinstance(row[1], str) or len(row[1]) != 10):
            raise MalformedError(f"card usage is not [card id, day, entries]: {str(row)[:80]}")
        return cls(row[0], row[1], row[2])


@dataclass(frozen=True, slots=True)
class WhitelistEntry:
    ticket_id: int
    performance_id: int
    ticket_type_id: int
    persons: int = 1
    revoked: bool = False
    used: int = 0  # entries the hub knows of (from every gate of the counting scope)
    usage: Usage | None = None  # the rest of what the hub knows; None: only ``used`` entries, nothing else

    @property
    def state(self) -> Usage:
        """The hub's usage of the ticket (``used`` is its ``entries``)."""
        return replace(self.usage, entries=self.used) if self.usage is not None else Usage(entries=self.used)

    def to_wire(self) -> list[int]:
        head = [self.ticket_id, self.performance_id, self.ticket_type_id, self.persons, int(self.revoked), self.used]
        u = self.usage
        if u is None or u == Usage(entries=u.entries):
            return head
        return head + u.to_wire()[1:]

    @classmethod
    def from_wire(cls, row: Any) -> WhitelistEntry:
        if not isinstance(row, list) or len(row) not in (6, 12) or not all(type(v) is int for v in row):
            raise MalformedError(f"whitelist entry is not six or twelve integers: {str(row)[:80]}")
        if any(v < 0 for v in row):
            raise MalformedError(f"whitelist entry has a negative number: {str(row)[:80]}")
        t, p, y, n, r, u = row[:6]
        usage = Usage(u, *row[6:]) if len(row) == 12 else None
        return cls(t, p, y, n, bool(r), u, usage)

    def with_used(self, used: int) -> WhitelistEntry:
        return replace(self, used=used)

    def with_usage(self, usage: Usage) -> WhitelistEntry:
        return replace(self, used=usage.entries, usage=usage)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A performance's times (unix seconds): the admission window follows them when it is moved."""

    doors_open: int
    starts_at: int
    ends_at: int

    def to_wire(self) -> list[int]:
        return [self.doors_open, self.starts_at, self.ends_at]

    @classmethod
    def from_wire(cls, row: Any) -> Schedule:
        if (not isinstance(row, list) or len(row) != 3 or not all(type(v) is int for v in row)
                or not row[0] <= row[1] < row[2]):
            raise MalformedError(f"performance times are not [doors, start, end]: {str(row)[:80]}")
        return cls(*row)


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """What one check-in channel accepts, and on which rules.

    ``entry``: the channel's rules (None: the defaults with ``max_entries``); ``by_type``: the effective
    rules of ticket types the operator narrowed; ``cards``: the rules for member cards / annual passes.
    """

    channel_id: int
    ticket_type_ids: frozenset[int]
    max_entries: int = 1
    name: str = ""
    entry: EntryRules | None = None
    by_type: Mapping[int, EntryRules] = field(default_factory=dict)
    cards: EntryRules | None = None
    retired: bool = False

    def rules_for(self, ticket_type_id: int) -> EntryRules:
        found = self.by_type.get(ticket_type_id)
        if found is not None:
            return found
        return self.entry if self.entry is not None else replace(DEFAULT_RULES, max_entries=self.max_entries)

    def card_rules(self) -> EntryRules:
        """Rules for cards; by default a card's own entries per day apply and nothing else limits it."""
        return self.cards if self.cards is not None else replace(DEFAULT_RULES, max_entries=10_000)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"types": sorted(self.ticket_type_ids), "max_entries": self.max_entries}
        if self.name:
            out["name"] = self.name
        if self.entry is not None:
            out["rules"] = self.entry.to_wire()
        if self.by_type:
            out["by_type"] = {str(t): r.to_wire() for t, r in sorted(self.by_type.items())}
        if self.cards is not None:
            out["cards"] = self.cards.to_wire()
        if self.retired:
            out["retired"] = True
        return out

    @classmethod
    def from_wire(cls, channel_id: int, c: Any) -> ChannelRules:
        entry = EntryRules.from_wire(c["rules"]) if c.get("rules") is not None else None
        cards = EntryRules.from_wire(c["cards"]) if c.get("cards") is not None else None
        by_type = {int(t): EntryRules.from_wire(r) for t, r in (c.get("by_type") or {}).items()}
        name = c.get("name", "")
        if not isinstance(name, str) or len(name) > 200:
            raise MalformedError("channel name is not a short text")
        return cls(channel_id, frozenset(int(t) for t in c["types"]), int(c.get("max_entries", 1)), name,
                   entry, by_type, cards, bool(c.get("retired", False)))


@dataclass(frozen=True)
class GroupRules:
    """Check-in rules of one group: its performances (with their times), each channel's rules, the
    venue's time zone, whether tickets newer than the whitelist are admitted offline, and supervisors."""

    group_id: int
    performance_ids: frozenset[int] = frozenset()
    channels: dict[int, ChannelRules] = field(default_factory=dict)
    timezone: str = "UTC"
    schedule: dict[int, Schedule] = field(default_factory=dict)  # performance id -> times
    admit_unlisted: bool = True  # offline: a validly signed ticket newer than the whitelist is admitted
    supervisors: tuple[Supervisor, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "performances": sorted(self.performance_ids),
            "channels": {str(c.channel_id): c.to_wire() for c in self.channels.values()},
            "timezone": self.timezone,
            "schedule": {str(p): s.to_wire() for p, s in sorted(self.schedule.items())},
            "admit_unlisted": self.admit_unlisted,
            "supervisors": [s.to_wire() for s in self.supervisors],
        }

    @classmethod
    def from_wire(cls, data: Any) -> GroupRules:
        try:
            channels = {int(cid): ChannelRules.from_wire(int(cid), c) for cid, c in data["channels"].items()}
            schedule = {int(p): Schedule.from_wire(t) for p, t in (data.get("schedule") or {}).items()}
            supervisors = tuple(Supervisor.from_wire(s) for s in data.get("supervisors") or [])
            return cls(int(data["group_id"]), frozenset(int(p) for p in data["performances"]),
                       channels, check_zone(data.get("timezone", "UTC")), schedule,
                       bool(data.get("admit_unlisted", True)), supervisors)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedError(f"check-in rules are malformed: {str(exc)[:120]}") from exc

    def channel_names(self, ids: set[int]) -> list[str]:
        return [c.name or f"#{c.channel_id}" for cid, c in sorted(self.channels.items()) if cid in ids]


@dataclass(frozen=True)
class Snapshot:
    group_id: int
    seq: int
    generated_at: float
    rules: GroupRules
    entries: list[WhitelistEntry]
    cards: list[CardEntry] = field(default_factory=list)  # member cards / annual passes; absent in old snapshots

    def to_wire(self) -> dict[str, Any]:
        return {"group_id": self.group_id, "seq": self.seq, "generated_at": self.generated_at,
                "rules": self.rules.to_wire(), "entries": [e.to_wire() for e in self.entries],
                "cards": [c.to_wire() for c in self.cards]}

    @classmethod
    def from_wire(cls, data: Any) -> Snapshot:
        try:
            rules = GroupRules.from_wire(data["rules"])
            entries = [WhitelistEntry.from_wire(r) for r in data["entries"]]
            cards = [CardEntry.from_wire(r) for r in data.get("cards") or []]
            snap = cls(int(data["group_id"]), int(data["seq"]), float(data["generated_at"]),
                       rules, entries, cards)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError("whitelist snapshot is malformed") from exc
        if rules.group_id != snap.group_id:
            raise MalformedError("whitelist snapshot's rules name another group")
        return snap


@dataclass(frozen=True)
class Delta:
    group_id: int
    seq: int
    at: float
    op: DeltaOp
    entry: WhitelistEntry | None = None
    rules: GroupRules | None = None
    card: CardEntry | None = None  # op "card": a member card / annual pass added or changed
    card_used: CardUsage | None = None  # op "card_used": the card's admissions today, from every gate

    def to_wire(self) -> dict[str, Any]:
        wire = {"group_id": self.group_id, "seq": self.seq, "at": self.at, "op": self.op,
                "entry": self.entry.to_wire() if self.entry else None,
                "rules": self.rules.to_wire() if self.rules else None}
        if self.card is not None:
            wire["card"] = self.card.to_wire()
        if self.card_used is not None:
            wire["card_used"] = self.card_used.to_wire()
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> Delta:
        try:
            op = data["op"]
            if op not in DELTA_OPS:
                raise MalformedError(f"unknown whitelist delta op {op!r}")
            entry = WhitelistEntry.from_wire(data["entry"]) if data.get("entry") is not None else None
            rules = GroupRules.from_wire(data["rules"]) if data.get("rules") is not None else None
            card = CardEntry.from_wire(data["card"]) if data.get("card") is not None else None
            used = CardUsage.from_wire(data["card_used"]) if data.get("card_used") is not None else None
            delta = cls(int(data["group_id"]), int(data["seq"]), float(data["at"]), op, entry, rules, card, used)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedError("whitelist delta is malformed") from exc
        if ((op == "rules") != (rules is not None) or (op == "card") != (card is not None)
                or (op == "card_used") != (used is not None)
                or (op not in ("rules", "card", "card_used")) != (entry is not None)):
            raise MalformedError(f"whitelist delta {op!r} lacks its entry, rules, card or card usage")
        return delta
