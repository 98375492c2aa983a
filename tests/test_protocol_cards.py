"""Member cards: the UID-hash key, the wire form, snapshots and deltas carrying cards, the pure decision."""

from __future__ import annotations

import pytest

from protocol.cards import CardEntry, card_key, parse_uid
from protocol.decision import validate_card
from protocol.errors import MalformedError
from protocol.reasons import Reason
from protocol.whitelist import Delta, GroupRules, Snapshot, WhitelistEntry

NOW = 1_790_005_000
UID = bytes.fromhex("04A1B2C3D4E5F6")
CARD = CardEntry(card_key(UID), 12, "annual", NOW - 86400, NOW + 86400, frozenset({1, 3}), entries_per_day=2)


def test_card_key_is_a_domain_separated_truncated_hash_never_the_uid() -> None:
    key = card_key(UID)
    assert len(key) == 32 and int(key, 16) >= 0
    assert UID.hex() not in key and UID.hex().upper() not in key
    assert key == card_key(parse_uid("04:a1:b2:c3:d4:e5:f6")) == card_key(parse_uid("04 A1 B2 C3 D4 E5 F6"))
    assert key != card_key(bytes.fromhex("04A1B2C3D4E5F7"))
    for bad in ("", "zz", "0102", "01" * 11):
        with pytest.raises(MalformedError):
            parse_uid(bad)


def test_card_entry_round_trips_and_refuses_garbage() -> None:
    assert CardEntry.from_wire(CARD.to_wire()) == CARD
    for bad in (None, [], CARD.to_wire()[:7], ["x" * 32, *CARD.to_wire()[1:]],
                [*CARD.to_wire()[:2], "vip", *CARD.to_wire()[3:]],
                [*CARD.to_wire()[:5], ["1"], *CARD.to_wire()[6:]], [*CARD.to_wire()[:7], "1"]):
        with pytest.raises(MalformedError):
            CardEntry.from_wire(bad)


def test_snapshot_carries_cards_and_old_snapshots_stay_valid() -> None:
    snap = Snapshot(1, 5, NOW, GroupRules(1), [WhitelistEntry(7, 42, 3)], [CARD])
    assert Snapshot.from_wire(snap.to_wire()) == snap
    old = snap.to_wire()
    del old["cards"]
    assert Snapshot.from_wire(old).cards == []


def test_card_delta_round_trips_and_must_carry_its_card() -> None:
    delta = Delta(1, 6, NOW, "card", card=CARD)
    assert Delta.from_wire(delta.to_wire()) == delta
    assert "card" not in Delta(1, 7, NOW, "sale", WhitelistEntry(7, 42, 3)).to_wire()  # old shape unchanged
    for bad in ({**delta.to_wire(), "card": None},
                {**delta.to_wire(), "entry": WhitelistEntry(7, 42, 3).to_wire()},
                {**Delta(1, 7, NOW, "sale", WhitelistEntry(7, 42, 3)).to_wire(), "card": CARD.to_wire()}):
        with pytest.raises(MalformedError):
            Delta.from_wire(bad)


@pytest.mark.parametrize(("card", "channel", "today", "now", "reason"), [
    (None, 1, 0, NOW, Reason.UNKNOWN),
    (CardEntry(CARD.key, 12, "member", NOW - 9, NOW + 9, frozenset({1}), revoked=True), 1, 0, NOW, Reason.REVOKED),
    (CARD, 2, 0, NOW, Reason.WRONG_CHANNEL),
    (CARD, 1, 0, NOW - 86401, Reason.TOO_EARLY),
    (CARD, 1, 0, NOW + 86401, Reason.TOO_LATE),
    (CARD, 1, 2, NOW, Reason.DAILY_LIMIT),
    (CARD, 3, 1, NOW, Reason.ADMITTED),
])
def test_validate_card_reasons_in_order(card: CardEntry | None, channel: int, today: int, now: float,
                                        reason: Reason) -> None:
    d = validate_card(card, channel, today, now)
    assert d.reason is reason
    assert d.ticket_id is None
    assert d.card_id == (None if card is None else 12)
    assert d.persons == (1 if reason is Reason.ADMITTED else 0)
