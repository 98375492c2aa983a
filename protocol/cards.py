"""Member cards and annual passes: whitelist entries keyed by a hash of the card's UID.

Gates never store or log a raw UID: the hub and the gates both key a card by :func:`card_key`, a
SHA-256 over a domain tag and the UID bytes, hex, cut to 32 characters (128 bits). On the wire a
card entry is a compact list
``[key, card, kind, valid from, valid until, [channel ids], entries per day, revoked 0/1]``.

A UID alone proves little: see ``docs/rfid.md`` (UIDs can be cloned).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from protocol.errors import MalformedError

CardKind = Literal["member", "annual"]
CARD_KINDS: frozenset[str] = frozenset({"member", "annual"})
CARD_KEY_LENGTH = 32
_DOMAIN = b"venue-card-uid/v1\x00"
_KEY = re.compile(r"^[0-9a-f]{32}$")


def card_key(uid: bytes) -> str:
    """The key of the card with this UID (NFC-A UID or FeliCa IDm bytes, as read)."""
    if not 4 <= len(uid) <= 10:
        raise MalformedError(f"a card UID has 4 to 10 bytes, not {len(uid)}")
    return hashlib.sha256(_DOMAIN + uid).hexdigest()[:CARD_KEY_LENGTH]


def parse_uid(text: str) -> bytes:
    """UID bytes from hex as a reader shows it: ``04A1B2C3D4E5F6``, ``04:a1:b2 ...`` or ``04-A1-...``."""
    cleaned = re.sub(r"[\s:-]", "", text)
    try:
        uid = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise MalformedError("a card UID is written in hex, e.g. 04A1B2C3D4E5F6") from exc
    card_key(uid)  # length check
    return uid


@dataclass(frozen=True, slots=True)
class CardEntry:
    """What a gate needs to decide a card tap offline; no holder data."""

    key: str
    card_id: int
    kind: CardKind
    valid_from: int
    valid_until: int
    channel_ids: frozenset[int]
    entries_per_day: int = 1
    revoked: bool = False

    def to_wire(self) -> list[Any]:
        return [self.key, self.card_id, self.kind, self.valid_from, self.valid_until, sorted(self.channel_ids),
                self.entries_per_day, int(self.revoked)]

    @classmethod
    def from_wire(cls, row: Any) -> CardEntry:
        try:
            key, card_id, kind, vfrom, vuntil, chans, per_day, revoked = row
        except (TypeError, ValueError) as exc:
            raise MalformedError(f"card entry is not eight fields: {str(row)[:80]}") from exc
        ints = (card_id, vfrom, vuntil, per_day, revoked)
        if not isinstance(key, str) or not _KEY.match(key) or kind not in CARD_KINDS \
                or not all(type(v) is int for v in ints) or not isinstance(chans, list) \
                or not all(type(c) is int for c in chans):
            raise MalformedError(f"card entry is malformed: {str(row)[:80]}")
        return cls(key, card_id, kind, vfrom, vuntil, frozenset(chans), per_day, bool(revoked))
