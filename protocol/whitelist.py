"""Whitelists: per check-in group, a versioned snapshot plus ordered deltas, each hub-signed.

An entry is what a gate needs to decide without the network; it holds no personal data. On the
wire an entry is a compact list ``[ticket, performance, type, persons, revoked 0/1, used]``.
Sequence numbers are per group: a snapshot at ``seq`` includes every delta up to ``seq``; the next
delta is ``seq + 1``. A receiver applies ``seq == have + 1``, ignores ``seq <= have`` (duplicate or
replay) and treats ``seq > have + 1`` as a gap that needs a re-sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from protocol.cards import CardEntry
from protocol.errors import MalformedError

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
    used: int = 0  # admissions the hub knows of (from every gate of the group)

    def to_wire(self) -> list[int]:
        return [self.ticket_id, self.performance_id, self.ticket_type_id, self.persons,
                int(self.revoked), self.used]

    @classmethod
    def from_wire(cls, row: Any) -> WhitelistEntry:
        if not isinstance(row, list) or len(row) != 6 or not all(type(v) is int for v in row):
            raise MalformedError(f"whitelist entry is not six integers: {str(row)[:80]}")
        t, p, y, n, r, u = row
        return cls(t, p, y, n, bool(r), u)

    def with_used(self, used: int) -> WhitelistEntry:
        return replace(self, used=used)


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """What one check-in channel accepts."""

    channel_id: int
    ticket_type_ids: frozenset[int]
    max_entries: int = 1


@dataclass(frozen=True)
class GroupRules:
    """Check-in rules of one group: its performances and each channel's accepted ticket types."""

    group_id: int
    performance_ids: frozenset[int] = frozenset()
    channels: dict[int, ChannelRules] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "performances": sorted(self.performance_ids),
            "channels": {str(c.channel_id): {"types": sorted(c.ticket_type_ids),
                                             "max_entries": c.max_entries}
                         for c in self.channels.values()},
        }

    @classmethod
    def from_wire(cls, data: Any) -> GroupRules:
        try:
            channels = {
                int(cid): ChannelRules(int(cid), frozenset(int(t) for t in c["types"]),
                                       int(c.get("max_entries", 1)))
                for cid, c in data["channels"].items()
            }
            return cls(int(data["group_id"]), frozenset(int(p) for p in data["performances"]),
                       channels)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedError("check-in rules are malformed") from exc


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
