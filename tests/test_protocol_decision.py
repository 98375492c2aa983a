"""The pure check-in decision: one reason per situation, in a fixed order."""

from __future__ import annotations

import pytest

from protocol.decision import UsageHistory, decision_for_error, validate
from protocol.errors import MalformedError, SignatureError
from protocol.reasons import Reason
from protocol.token import TicketToken
from protocol.whitelist import ChannelRules, WhitelistEntry

NOW = 1_790_005_000
TOKEN = TicketToken(7, performance_id=42, ticket_type_id=3, valid_from=NOW - 3600,
                    valid_until=NOW + 3600, persons=2, kid=1)
ENTRY = WhitelistEntry(7, 42, 3, persons=2)
RULES = ChannelRules(channel_id=1, ticket_type_ids=frozenset({3, 4}))
PERFS = frozenset({42})


def decide(token: TicketToken = TOKEN, entry: WhitelistEntry | None = ENTRY,
           rules: ChannelRules = RULES, history: UsageHistory = UsageHistory(),
           now: float = NOW) -> Reason:
    return validate(token, entry, rules, PERFS, history, now).reason


def test_valid_ticket_is_admitted_for_all_its_persons() -> None:
    d = validate(TOKEN, ENTRY, RULES, PERFS, UsageHistory(), NOW)
    assert d.admitted and d.persons == 2 and d.ticket_id == 7


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"entry": None}, Reason.UNKNOWN),
        ({"entry": WhitelistEntry(7, 42, 3, revoked=True)}, Reason.REVOKED),
        ({"entry": WhitelistEntry(7, 42, 4)}, Reason.REVOKED),
        ({"token": TicketToken(7, 41, 3, NOW - 1, NOW + 1, 1, 1), "entry": None}, Reason.WRONG_PERFORMANCE),
        ({"rules": ChannelRules(1, frozenset({9}))}, Reason.WRONG_CHANNEL),
        ({"now": NOW - 3601}, Reason.TOO_EARLY),
        ({"now": NOW + 3601}, Reason.TOO_LATE),
        ({"history": UsageHistory(entries=1)}, Reason.ALREADY_USED),
        ({"entry": WhitelistEntry(7, 42, 3, persons=2, used=1)}, Reason.ALREADY_USED),
    ],
)
def test_each_denial_has_its_reason(kwargs: dict[str, object], reason: Reason) -> None:
    assert decide(**kwargs) is reason  # type: ignore[arg-type]


def test_a_channel_allowing_two_entries_admits_twice() -> None:
    rules = ChannelRules(1, frozenset({3}), max_entries=2)
    assert decide(rules=rules, history=UsageHistory(1)) is Reason.ADMITTED
    assert decide(rules=rules, history=UsageHistory(2)) is Reason.ALREADY_USED


def test_token_errors_map_to_reasons() -> None:
    assert decision_for_error(SignatureError("x")).reason is Reason.FORGED
    assert decision_for_error(MalformedError("x")).reason is Reason.MALFORMED


def test_every_reason_speaks_both_languages() -> None:
    for reason in Reason:
        assert reason.text_en and reason.text_zh and reason.text_en != reason.text_zh
