"""Check-in rules in the pure decision: each rule, its defaults, the venue's own day and midnight.

The venue is in Asia/Shanghai (UTC+8); these tests also run with the process on UTC, so a "day" taken
from the machine's clock would give wrong answers around 16:00 UTC.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from protocol.decision import Decision, UsageHistory, explain, usage_refusal, validate, validate_card, validate_exit
from protocol.errors import MalformedError
from protocol.reasons import Reason
from protocol.rules import EntryRules, merged
from protocol.token import TicketToken
from protocol.usage import Usage, UsageEvent, fold
from protocol.whitelist import ChannelRules, GroupRules, Schedule, WhitelistEntry

TZ = "Asia/Shanghai"
PERF, ADULT, VIP = 42, 3, 4


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


DOORS, START, END = int(utc("2026-12-01T11:00:00")), int(utc("2026-12-01T11:30:00")), int(utc("2026-12-01T14:00:00"))
DURING = utc("2026-12-01T11:10:00")  # 19:10 in Shanghai, after doors, before the start
TOKEN = TicketToken(7, PERF, ADULT, DOORS - 7200, END + 7200, persons=1, kid=1)
ENTRY = WhitelistEntry(7, PERF, ADULT)


@pytest.fixture(autouse=True, params=["UTC", "America/New_York"])
def machine_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The machine's own zone must not matter: run on UTC, and on a zone with daylight saving."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def group(rules: EntryRules = EntryRules(), *, vip: EntryRules | None = None, late_gate: bool = False,
          admit_unlisted: bool = True) -> GroupRules:
    main = ChannelRules(1, frozenset({ADULT, VIP}), rules.max_entries, "Gate A", rules,
                        {VIP: vip} if vip is not None else {})
    channels = {1: main}
    if late_gate:
        channels[2] = ChannelRules(2, frozenset({ADULT}), 1, "Gate C", EntryRules())
    return GroupRules(1, frozenset({PERF}), channels, TZ, {PERF: Schedule(DOORS, START, END)},
                      admit_unlisted=admit_unlisted)


def decide(g: GroupRules, now: float = DURING, *, token: TicketToken = TOKEN, entry: WhitelistEntry | None = ENTRY,
           events: tuple[UsageEvent, ...] = (), channel: int = 1, newest: int | None = None) -> Decision:
    return validate(token, entry, g.channels[channel], g, UsageHistory(events=events), now, newest_ticket_id=newest)


def entered(at: float, persons: int = 1) -> UsageEvent:
    return UsageEvent("entry", at, persons)


def left(at: float) -> UsageEvent:
    return UsageEvent("exit", at)


# ---- entries ---------------------------------------------------------------------------------

def test_defaults_admit_once_then_refuse() -> None:
    g = group()
    assert decide(g).admitted
    assert decide(g, events=(entered(DURING - 60),)).reason is Reason.ALREADY_USED


def test_reentry_after_exit_is_allowed_by_default_and_gives_the_entry_back() -> None:
    g = group()
    assert decide(g, events=(entered(DURING - 600), left(DURING - 300))).admitted


def test_reentry_refused_says_so() -> None:
    g = group(EntryRules(max_entries=3, reentry=False))
    d = decide(g, events=(entered(DURING - 600), left(DURING - 300)))
    assert d.reason is Reason.NO_REENTRY
    assert "Re-entry is not allowed after leaving" in d.text_en and "离场后不可再次入场" in d.text_zh


def test_exit_required_before_the_next_entry() -> None:
    g = group(EntryRules(max_entries=5, exit_required=True))
    assert decide(g, events=(entered(DURING - 600),)).reason is Reason.STILL_INSIDE
    assert decide(g, events=(entered(DURING - 600), left(DURING - 300))).admitted


def test_exits_not_required_lets_a_multi_entry_ticket_in_again() -> None:
    g = group(EntryRules(max_entries=2))
    assert decide(g, events=(entered(DURING - 600),)).admitted
    assert decide(g, events=(entered(DURING - 600), entered(DURING - 300))).reason is Reason.ALREADY_USED


def test_hub_count_plus_own_unechoed_entries() -> None:
    """A two-entry ticket used once at another gate (the hub says so) and once here: the third is refused."""
    g = group(EntryRules(max_entries=2))
    elsewhere = replace(ENTRY, used=1)
    assert decide(g, entry=elsewhere).admitted
    assert decide(g, entry=elsewhere, events=(entered(DURING - 60),)).reason is Reason.ALREADY_USED


def test_cooldown_names_the_next_entry_time_in_venue_time() -> None:
    g = group(EntryRules(max_entries=10, cooldown_minutes=30))
    d = decide(g, events=(entered(DURING - 600),))
    assert d.reason is Reason.COOLDOWN
    assert d.next_at == DURING - 600 + 1800
    assert "Next entry from 19:30" in explain(d, DURING)[0]  # 11:30 UTC is 19:30 in Shanghai
    assert decide(g, DURING + 1200, events=(entered(DURING - 600),)).admitted


def test_per_day_limit_follows_the_venue_midnight_not_the_machine(machine_zone: str) -> None:
    """23:59 and 00:01 in Shanghai are two days, although both are 15:59 / 16:01 on the UTC machine's same day."""
    g = group(EntryRules(max_entries=100, entries_per_day=1, after_end_minutes=600))
    before_midnight, after_midnight = utc("2026-12-01T15:59:00"), utc("2026-12-01T16:01:00")
    d = decide(g, before_midnight + 30, events=(entered(before_midnight),))
    assert d.reason is Reason.DAILY_LIMIT
    assert d.next_at == utc("2026-12-01T16:00:00")
    assert "Next entry from 12-02 00:00" in d.text_en and "下次入场时间" in d.text_zh
    assert decide(g, after_midnight, events=(entered(before_midnight),)).admitted
    # on the machine's day both times are 2026-12-01: a machine-day rule would refuse here
    assert time.strftime("%Y-%m-%d", time.localtime(before_midnight)) == \
        time.strftime("%Y-%m-%d", time.localtime(after_midnight))


def test_per_day_and_total_together() -> None:
    g = group(EntryRules(max_entries=2, entries_per_day=1, after_end_minutes=3 * 24 * 60))
    day1, day2, day3 = DURING, DURING + 86400, DURING + 2 * 86400
    assert decide(g, day2, events=(entered(day1),)).admitted
    assert decide(g, day3, events=(entered(day1), entered(day2))).reason is Reason.ALREADY_USED


# ---- the admission window follows the performance ---------------------------------------------

def test_window_from_doors_minus_n_to_end_plus_m() -> None:
    g = group(EntryRules(before_doors_minutes=30, after_end_minutes=15))
    assert decide(g, DOORS - 31 * 60).reason is Reason.TOO_EARLY
    assert decide(g, DOORS - 29 * 60).admitted
    assert decide(g, END + 14 * 60).admitted
    assert decide(g, END + 16 * 60).reason is Reason.TOO_LATE
    early = decide(g, DOORS - 40 * 60)
    assert early.next_at == DOORS - 30 * 60 and "Admission from 18:30" in explain(early, DOORS - 40 * 60)[0]


def test_a_moved_performance_moves_the_window_and_old_tokens_stay_valid() -> None:
    """The token was signed for the old times; the rules carry the new ones (a day later)."""
    moved = replace(group(), schedule={PERF: Schedule(DOORS + 86400, START + 86400, END + 86400)})
    assert decide(moved, DURING).reason is Reason.TOO_EARLY
    assert decide(moved, DURING + 86400).admitted  # beyond the token's own valid_until
    assert DURING + 86400 > TOKEN.valid_until


def test_without_a_schedule_the_token_window_applies() -> None:
    bare = replace(group(), schedule={})
    assert decide(bare, TOKEN.valid_until + 1).reason is Reason.TOO_LATE


def test_latecomers_are_sent_to_the_gate_that_admits_them() -> None:
    g = group(EntryRules(latecomers=False), late_gate=True)
    assert decide(g, START - 60).admitted
    d = decide(g, START + 60)
    assert d.reason is Reason.LATECOMER and d.hint == ("Gate C",)
    assert "Latecomers please use Gate C" in d.text_en and "迟到观众请走 Gate C" in d.text_zh
    assert decide(g, START + 60, channel=2).admitted


# ---- weekdays and dates ----------------------------------------------------------------------

def test_weekdays_are_the_venue_weekday() -> None:
    # 2026-12-05 is a Saturday; 2026-12-04T16:30Z is already Saturday 00:30 in Shanghai, Friday in UTC
    fri_utc_sat_local = utc("2026-12-04T16:30:00")
    weekends = EntryRules(weekdays=frozenset({6, 7}), max_entries=100, after_end_minutes=20 * 24 * 60)
    g = group(weekends)
    assert decide(g, fri_utc_sat_local).admitted
    assert decide(g, utc("2026-12-04T15:30:00")).reason is Reason.NOT_TODAY  # Friday 23:30 local


def test_dates_ranges_and_excluded_days() -> None:
    rules = EntryRules(max_entries=100, after_end_minutes=40 * 24 * 60, date_from="2026-12-02",
                       date_until="2026-12-20", excluded_dates=frozenset({"2026-12-10"}))
    g = group(rules)
    assert decide(g, utc("2026-12-01T17:00:00")).admitted  # 12-02 01:00 local
    assert decide(g, utc("2026-12-01T15:00:00")).reason is Reason.NOT_TODAY  # 12-01 23:00 local
    assert decide(g, utc("2026-12-10T04:00:00")).reason is Reason.NOT_TODAY
    assert decide(g, utc("2026-12-21T04:00:00")).reason is Reason.TOO_LATE


# ---- per ticket type, channels, unknown tickets ----------------------------------------------

def test_a_ticket_type_can_be_narrowed() -> None:
    g = group(EntryRules(max_entries=1), vip=EntryRules(max_entries=3))
    vip_token, vip_entry = replace(TOKEN, ticket_type_id=VIP), replace(ENTRY, ticket_type_id=VIP)
    two = (entered(DURING - 600), entered(DURING - 300))
    assert decide(g, token=vip_token, entry=vip_entry, events=two).admitted
    assert decide(g, events=two[:1]).reason is Reason.ALREADY_USED


def test_a_retired_channel_is_closed() -> None:
    g = group()
    g.channels[1] = replace(g.channels[1], retired=True)
    assert decide(g).reason is Reason.CHANNEL_CLOSED


def test_a_ticket_newer_than_the_whitelist_is_admitted_and_marked() -> None:
    g = group()
    d = decide(g, entry=None, newest=6)
    assert d.admitted and d.unlisted
    assert decide(g, entry=None, newest=7).reason is Reason.UNKNOWN  # not newer: unknown
    assert decide(group(admit_unlisted=False), entry=None, newest=6).reason is Reason.UNKNOWN


# ---- partial annulment, exits ----------------------------------------------------------------

def test_partial_annulment_gives_the_others_back() -> None:
    """4 admitted, 2 passed, 2 annulled: the next scan admits exactly those 2, on the same entry."""
    g = group()
    entry = replace(ENTRY, persons=4)
    token = replace(TOKEN, persons=4)
    events = (entered(DURING - 60, 4), UsageEvent("annul", DURING - 30, 2, of_persons=4))
    d = decide(g, token=token, entry=entry, events=events)
    assert d.admitted and d.persons == 2 and d.credit
    after = (*events, UsageEvent("entry", DURING, 2, credit=True))
    assert decide(g, DURING + 1, token=token, entry=entry, events=after).reason is Reason.ALREADY_USED


def test_full_annulment_takes_the_entry_back() -> None:
    g = group()
    events = (entered(DURING - 60), UsageEvent("annul", DURING - 30, 1, of_persons=1))
    assert decide(g, events=events).admitted


def test_exit_scan_is_tied_to_the_ticket() -> None:
    g = group()
    d = validate_exit(TOKEN, replace(ENTRY, persons=2), g)
    assert d.reason is Reason.EXIT and d.ticket_id == 7 and d.persons == 2
    assert validate_exit(TOKEN, None, g).ticket_id is None


def test_a_stray_exit_gives_nothing_back() -> None:
    state = fold(Usage(), [left(DURING - 900), entered(DURING - 600)], TZ)
    assert state.entries == 1 and state.exits == 0 and state.inside


def test_conflict_replay_order_is_scan_time() -> None:
    """The hub replays admissions in scan-time order: the later scan is the one refused."""
    rules = EntryRules()
    first, second = DURING - 100, DURING - 50
    state = fold(Usage(), [entered(first)], TZ)
    assert usage_refusal(rules, Usage(), first, TZ) is None
    refused = usage_refusal(rules, state, second, TZ)
    assert refused is not None and refused.reason is Reason.ALREADY_USED


# ---- cards -----------------------------------------------------------------------------------

def test_annual_pass_weekends_only_and_daily_limit() -> None:
    from protocol.cards import CardEntry

    card = CardEntry("0" * 32, 5, "annual", 0, 2**32 - 1, frozenset({1}), entries_per_day=1)
    weekends = EntryRules(weekdays=frozenset({6, 7}))
    sat = utc("2026-12-05T02:00:00")
    assert validate_card(card, 1, 0, sat, rules=weekends, tz=TZ).admitted
    assert validate_card(card, 1, 0, sat - 2 * 86400, rules=weekends, tz=TZ).reason is Reason.NOT_TODAY
    d = validate_card(card, 1, 1, sat, rules=weekends, tz=TZ)
    assert d.reason is Reason.DAILY_LIMIT and d.next_at == utc("2026-12-05T16:00:00")


# ---- the rule set itself ---------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"max_entries": 0}, "max_entries"), ({"entries_per_day": -1}, "entries_per_day"),
    ({"cooldown_minutes": 10**9}, "cooldown_minutes"), ({"weekdays": [0]}, "weekdays"),
    ({"date_from": "2026-02-30"}, "date_from"), ({"reentry": "yes"}, "reentry"), ({"colour": 1}, "colour"),
    ({"date_from": "2026-12-09", "date_until": "2026-12-01"}, "date_from"),
])
def test_bad_rules_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(MalformedError, match=field):
        merged(EntryRules(), change)


def test_rules_round_trip_the_wire() -> None:
    g = group(EntryRules(max_entries=2, entries_per_day=1, cooldown_minutes=5, reentry=False,
                         weekdays=frozenset({1, 2}), excluded_dates=frozenset({"2026-12-24"})),
              vip=EntryRules(max_entries=4), late_gate=True)
    again = GroupRules.from_wire(g.to_wire())
    assert again == g
    used = replace(ENTRY, used=2).with_usage(Usage(2, 1, 0, 100, 200, 20261201, 1))
    assert WhitelistEntry.from_wire(used.to_wire()) == used
    assert len(ENTRY.to_wire()) == 6  # an unused ticket stays compact


def test_unknown_time_zone_is_refused() -> None:
    wire = group().to_wire()
    wire["timezone"] = "Mars/Olympus"
    with pytest.raises(MalformedError):
        GroupRules.from_wire(wire)
