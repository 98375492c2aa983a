"""Check-in rules at the gate, offline, with a real Store: the machine on UTC, the venue on Asia/Shanghai.

Every scenario runs through :class:`gate_agent.checkin.Checker` with its clock injected, across the
venue's midnight (2026-12-01T16:00:00Z is 2026-12-02 00:00 in Shanghai) where it matters: the gate must
count days on the venue's clock, never the machine's. Exact counts: the hub's usage (whitelist) folded
with the gate's own events until the hub echoes them; partial annulments; tickets sold after the sync;
exits; supervisor overrides (PIN and card), their lock-out, and that a PIN is never stored or logged.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gate_agent.actuator import Forced, describe
from gate_agent.checkin import Checker, OverridePolicy, Station
from gate_agent.store import Store
from protocol.cards import CardEntry, card_key
from protocol.decision import Decision
from protocol.keys import Keyring, Signer
from protocol.messages import CheckinEvent
from protocol.reasons import Reason
from protocol.rules import EntryRules
from protocol.supervisor import Supervisor, hash_pin
from protocol.usage import Usage
from protocol.whitelist import CardUsage, ChannelRules, Delta, GroupRules, Schedule, WhitelistEntry
from tests.gate_helpers import ADULT, CHILD, GROUP, PERF, token
from tests.support.processes import _DECISION

VENUE = "Asia/Shanghai"
MIDNIGHT = 1_796_140_800  # 2026-12-02 00:00 in Shanghai = 2026-12-01T16:00:00Z (machine: still Dec 1)
DAY = 86_400
FRIDAY_END = MIDNIGHT + 3 * DAY  # 2026-12-05 00:00 Shanghai, Saturday; UTC: Friday 16:00
ENTRY, LATE, EXIT_LANE = 1, 2, 3
PIN, WRONG = "80417253", "11112222"
UID = bytes.fromhex("04a1b2c3d4e5f6")
SUPERVISOR_UID = bytes.fromhex("04ffeeddccbbaa")
LONG = Schedule(MIDNIGHT - 5 * DAY, MIDNIGHT - 5 * DAY + 1800, MIDNIGHT + 5 * DAY)  # a festival pass: many days


class Screen:
    def __init__(self) -> None:
        self.shown: list[Decision] = []
        self.notices: list[str] = []

    async def admit(self, decision: Decision) -> None:
        self.shown.append(decision)

    async def reject(self, decision: Decision) -> None:
        self.shown.append(decision)

    def notice(self, name: str, en: str, zh: str) -> None:
        self.notices.append(f"{name}: {zh} / {en}")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = float(t)

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True, params=["UTC", "America/New_York"])
def machine_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The process runs on another zone than the venue: UTC (and New York, whose midnight is elsewhere)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate") as s:
        yield s


def group(rules: EntryRules = EntryRules(), *, schedule: Schedule = LONG, cards: EntryRules | None = None,
          supervisors: tuple[Supervisor, ...] = (), admit_unlisted: bool = True,
          late: EntryRules | None = None) -> GroupRules:
    channels = {ENTRY: ChannelRules(ENTRY, frozenset({ADULT, CHILD}), name="Gate A", entry=rules, cards=cards),
                EXIT_LANE: ChannelRules(EXIT_LANE, frozenset({ADULT, CHILD}), name="Exit B", entry=rules)}
    if late is not None:
        channels[LATE] = ChannelRules(LATE, frozenset({ADULT}), name="Gate C", entry=late)
    return GroupRules(GROUP, frozenset({PERF}), channels, VENUE, {PERF: schedule}, admit_unlisted, supervisors)


def install(store: Store, rules: GroupRules, entries: list[WhitelistEntry], cards: list[CardEntry] = (),  # type: ignore[assignment]
            seq: int = 10) -> None:
    store.install_snapshot(GROUP, seq, rules, entries, cards)


def checker(store: Store, keyring: Keyring, clock: Clock, *, channel: int = ENTRY, direction: str = "entry",
            override: OverridePolicy | None = None) -> tuple[Checker, Screen]:
    screen = Screen()
    station = Station("hh-1", GROUP, channel, direction)  # type: ignore[arg-type]
    return Checker(station, store, keyring, screen, clock=clock, override=override), screen


def tok(signer: Signer, ticket_id: int, persons: int = 1, perf: int = PERF) -> str:
    return token(signer, ticket_id, persons=persons, perf=perf, now=MIDNIGHT)  # the window comes from the schedule


async def scan(c: Checker, text: str) -> CheckinEvent:
    event = await c.scan(text)
    assert event is not None
    return event


# ---- per day, across the venue's midnight ----------------------------------------------------------


async def test_entries_per_day_count_on_the_venue_day_not_the_machine_day(store: Store, signer: Signer,
                                                                          keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=10, entries_per_day=1)), [WhitelistEntry(7, PERF, ADULT)])
    clock = Clock(MIDNIGHT - 30)  # 23:59:30 in Shanghai
    c, screen = checker(store, keyring, clock)
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED
    clock.t = MIDNIGHT - 10
    refused = await scan(c, tok(signer, 7))
    assert refused.reason is Reason.DAILY_LIMIT
    assert screen.shown[-1].next_at == MIDNIGHT  # the venue's midnight
    line = describe("hh-1", screen.shown[-1], now=clock.t)
    assert ("DAILY_LIMIT ticket 7 — 今日已入场，下次入场时间 12-02 00:00 / "
            "Already entered today. Next entry from 12-02 00:00.") in line
    clock.t = MIDNIGHT + 5  # 00:00:05 on Dec 2 in Shanghai; the machine (UTC) is still on Dec 1
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED
    clock.t = MIDNIGHT + 8 * 3600 + 10  # the machine's (UTC) midnight: not a new venue day
    assert (await scan(c, tok(signer, 7))).reason is Reason.DAILY_LIMIT
    assert [e["reason"] for e in store.journal()] == ["admitted", "daily_limit", "admitted", "daily_limit"]


async def test_the_hubs_day_count_from_other_gates_counts_on_its_day_only(store: Store, signer: Signer,
                                                                         keyring: Keyring) -> None:
    # used once today (venue day 2026-12-01) at another gate: the hub's usage says so
    today = Usage(entries=1, last_entry=MIDNIGHT - 3600, day=20261201, day_entries=1)
    install(store, group(EntryRules(max_entries=10, entries_per_day=1)),
            [WhitelistEntry(7, PERF, ADULT, used=1, usage=today)])
    clock = Clock(MIDNIGHT - 60)
    c, _ = checker(store, keyring, clock)
    assert (await scan(c, tok(signer, 7))).reason is Reason.DAILY_LIMIT
    clock.t = MIDNIGHT + 60
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED


async def test_cooldown_between_two_entries(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=10, cooldown_minutes=30)), [WhitelistEntry(7, PERF, ADULT)])
    clock = Clock(MIDNIGHT - 600)
    c, screen = checker(store, keyring, clock)
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED
    clock.t += 20 * 60  # across the venue's midnight, still within the cool-down
    assert (await scan(c, tok(signer, 7))).reason is Reason.COOLDOWN
    assert screen.shown[-1].next_at == MIDNIGHT - 600 + 1800
    assert "Next entry from 00:20" in describe("hh-1", screen.shown[-1], now=clock.t)
    clock.t += 10 * 60 + 1
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED


# ---- exits, re-entry, exit first -------------------------------------------------------------------


async def test_an_exit_gives_the_entry_back_where_reentry_is_allowed(store: Store, signer: Signer,
                                                                     keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=1)), [WhitelistEntry(7, PERF, ADULT, persons=2)])
    clock = Clock(MIDNIGHT)
    entry, _ = checker(store, keyring, clock)
    out, screen = checker(store, keyring, clock, channel=EXIT_LANE, direction="exit")
    assert (await scan(entry, tok(signer, 7, 2))).reason is Reason.ADMITTED
    assert (await scan(entry, tok(signer, 7, 2))).reason is Reason.ALREADY_USED
    clock.t += 60
    left = await scan(out, tok(signer, 7, 2))
    assert (left.reason, left.direction, left.ticket_id, left.persons) == (Reason.EXIT, "exit", 7, 2)
    assert describe("hh-1", screen.shown[-1]).startswith("[hh-1] ↩ EXIT ticket 7 ×2 — ")
    clock.t += 60
    assert (await scan(entry, tok(signer, 7, 2))).reason is Reason.ADMITTED


async def test_no_reentry_after_an_exit(store: Store, signer: Signer, keyring: Keyring) -> None:
    # ticket 8 left through another gate: the hub says so; ticket 7 leaves here
    gone = Usage(entries=1, exits=1, last_entry=MIDNIGHT - 7200, last_exit=MIDNIGHT - 3600)
    install(store, group(EntryRules(max_entries=3, reentry=False)),
            [WhitelistEntry(7, PERF, ADULT), WhitelistEntry(8, PERF, ADULT, used=1, usage=gone)])
    clock = Clock(MIDNIGHT)
    entry, screen = checker(store, keyring, clock)
    out, _ = checker(store, keyring, clock, channel=EXIT_LANE, direction="exit")
    assert (await scan(entry, tok(signer, 8))).reason is Reason.NO_REENTRY
    assert screen.shown[-1].text_en == "Re-entry is not allowed after leaving."
    assert (await scan(entry, tok(signer, 7))).reason is Reason.ADMITTED
    assert (await scan(out, tok(signer, 7))).reason is Reason.EXIT
    assert (await scan(entry, tok(signer, 7))).reason is Reason.NO_REENTRY


async def test_exit_required_before_the_next_entry(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=5, exit_required=True)), [WhitelistEntry(7, PERF, ADULT)])
    clock = Clock(MIDNIGHT)
    entry, _ = checker(store, keyring, clock)
    out, _ = checker(store, keyring, clock, channel=EXIT_LANE, direction="exit")
    assert (await scan(entry, tok(signer, 7))).reason is Reason.ADMITTED
    clock.t += 10
    assert (await scan(entry, tok(signer, 7))).reason is Reason.STILL_INSIDE  # passed back from inside
    clock.t += 10
    assert (await scan(out, tok(signer, 7))).reason is Reason.EXIT
    clock.t += 10
    assert (await scan(entry, tok(signer, 7))).reason is Reason.ADMITTED


async def test_an_exit_station_lets_everyone_out_and_counts_unreadable_as_an_exit_without_ticket(
        store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, group(), [WhitelistEntry(7, PERF, ADULT, persons=3)])
    out, _ = checker(store, keyring, Clock(MIDNIGHT), channel=EXIT_LANE, direction="exit")
    texts = (tok(signer, 7, 3), "garbage\x00 line", tok(Signer.generate(1), 7), tok(signer, 3), tok(signer, 7, perf=41))
    events = [await scan(out, text) for text in texts]
    assert [(e.reason, e.direction, e.ticket_id, e.persons) for e in events] == [
        (Reason.EXIT, "exit", 7, 3)] + [(Reason.EXIT, "exit", None, 1)] * 4
    assert all(e.excerpt is None for e in events)


# ---- the admission window, latecomers, weekdays and dates ------------------------------------------


async def test_window_follows_the_performance_with_tolerances(store: Store, signer: Signer,
                                                              keyring: Keyring) -> None:
    doors, start, end = MIDNIGHT - 3600, MIDNIGHT - 1800, MIDNIGHT + 7200
    install(store, group(EntryRules(before_doors_minutes=30, after_end_minutes=15),
                         schedule=Schedule(doors, start, end)), [WhitelistEntry(i, PERF, ADULT) for i in range(1, 5)])
    clock = Clock(doors - 31 * 60)
    c, screen = checker(store, keyring, clock)
    assert (await scan(c, tok(signer, 1))).reason is Reason.TOO_EARLY
    assert screen.shown[-1].next_at == doors - 30 * 60
    assert "Admission from 22:30" in describe("hh-1", screen.shown[-1], now=clock.t)  # Shanghai's clock face
    clock.t = doors - 29 * 60
    assert (await scan(c, tok(signer, 1))).reason is Reason.ADMITTED
    clock.t = end + 14 * 60
    assert (await scan(c, tok(signer, 2))).reason is Reason.ADMITTED
    clock.t = end + 16 * 60
    assert (await scan(c, tok(signer, 3))).reason is Reason.TOO_LATE


async def test_latecomers_are_sent_to_the_channel_that_still_admits(store: Store, signer: Signer,
                                                                   keyring: Keyring) -> None:
    doors, start = MIDNIGHT - 3600, MIDNIGHT - 1800
    install(store, group(EntryRules(latecomers=False), schedule=Schedule(doors, start, MIDNIGHT + 7200),
                         late=EntryRules()), [WhitelistEntry(i, PERF, ADULT) for i in range(1, 4)])
    clock = Clock(start - 60)
    a, screen = checker(store, keyring, clock)
    assert (await scan(a, tok(signer, 1))).reason is Reason.ADMITTED
    clock.t = start + 60
    assert (await scan(a, tok(signer, 2))).reason is Reason.LATECOMER
    assert screen.shown[-1].hint == ("Gate C",)
    line = describe("hh-1", screen.shown[-1])
    assert "LATECOMER ticket 2 — 演出已开始，迟到观众请走 Gate C / The performance has started. " \
           "Latecomers please use Gate C." in line
    c, _ = checker(store, keyring, clock, channel=LATE)
    assert (await scan(c, tok(signer, 2))).reason is Reason.ADMITTED


async def test_excluded_dates_are_venue_days(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=5, excluded_dates=frozenset({"2026-12-02"}))),
            [WhitelistEntry(7, PERF, ADULT)])
    clock = Clock(MIDNIGHT - 30)  # Dec 1 in Shanghai
    c, _ = checker(store, keyring, clock)
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED
    clock.t = MIDNIGHT + 30  # Dec 2 in Shanghai, Dec 1 on the machine
    assert (await scan(c, tok(signer, 7))).reason is Reason.NOT_TODAY
    clock.t = MIDNIGHT + DAY + 30
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED


def annual(card_id: int = 5, per_day: int = 1) -> CardEntry:
    return CardEntry(card_key(UID), card_id, "annual", MIDNIGHT - 30 * DAY, MIDNIGHT + 300 * DAY,
                     frozenset({ENTRY}), per_day)


async def test_an_annual_pass_on_weekends_only_by_the_venues_weekday(store: Store, signer: Signer,
                                                                    keyring: Keyring) -> None:
    install(store, group(cards=EntryRules(max_entries=10_000, weekdays=frozenset({6, 7}))), [], [annual()])
    clock = Clock(FRIDAY_END - 30)  # Friday 23:59:30 in Shanghai
    c, _ = checker(store, keyring, clock)
    refused = await c.tap(card_key(UID))
    assert refused is not None and refused.reason is Reason.NOT_TODAY and refused.card_id == 5
    clock.t = FRIDAY_END + 30  # Saturday 00:00:30 in Shanghai: still Friday on a UTC machine
    admitted = await c.tap(card_key(UID))
    assert admitted is not None and admitted.reason is Reason.ADMITTED and admitted.persons == 1


async def test_card_entries_per_day_on_the_venue_day_with_the_hubs_count_and_echo(store: Store, signer: Signer,
                                                                                 keyring: Keyring) -> None:
    install(store, group(cards=EntryRules(max_entries=10_000, cooldown_minutes=5)), [], [annual(per_day=2)])
    clock = Clock(MIDNIGHT - 60 * 10)
    c, screen = checker(store, keyring, clock)
    key = card_key(UID)
    first = await c.tap(key)
    assert first is not None and first.reason is Reason.ADMITTED
    clock.t += 60
    assert (await c.tap(key)).reason is Reason.COOLDOWN  # type: ignore[union-attr]
    assert screen.shown[-1].next_at == first.scanned_at + 300
    clock.t = MIDNIGHT - 60  # 23:59: second entry of Dec 1
    assert (await c.tap(key)).reason is Reason.ADMITTED  # type: ignore[union-attr]
    clock.t = MIDNIGHT + 5 * 60 + 1  # Dec 2 in Shanghai: a new day
    assert store.card_entries(5, clock.t, VENUE) == 0 and store.card_entries(5, MIDNIGHT - 1, VENUE) == 2
    today = await c.tap(key)
    assert today is not None and today.reason is Reason.ADMITTED
    # the hub acks it (echo at seq 11), then says: 1 admission today over every gate (ours): counted once
    store.acknowledge([today.event_id], echo_seq=11)
    assert store.card_entries(5, clock.t, VENUE) == 1
    store.apply_delta(Delta(GROUP, 11, clock.t, "card_used", card_used=CardUsage(5, "2026-12-02", 1)))
    assert store.card_entries(5, clock.t, VENUE) == 1
    # another gate admits it too: the hub's count says 2; the limit is reached
    store.apply_delta(Delta(GROUP, 12, clock.t, "card_used", card_used=CardUsage(5, "2026-12-02", 2)))
    clock.t += 3600
    assert (await c.tap(key)).reason is Reason.DAILY_LIMIT  # type: ignore[union-attr]


# ---- exact counts: the hub's usage plus our own unechoed events ------------------------------------


async def test_a_two_entry_ticket_used_elsewhere_and_here_is_refused_the_third_time(store: Store, signer: Signer,
                                                                                   keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=2)), [WhitelistEntry(7, PERF, ADULT)])
    store.apply_delta(Delta(GROUP, 11, MIDNIGHT, "used", WhitelistEntry(7, PERF, ADULT, used=1)))  # elsewhere
    c, _ = checker(store, keyring, Clock(MIDNIGHT + 60))
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED  # here, offline
    assert (await scan(c, tok(signer, 7))).reason is Reason.ALREADY_USED


@pytest.mark.parametrize("ack_first", [True, False], ids=["ack-then-delta", "delta-then-ack"])
async def test_an_event_is_counted_exactly_once_whichever_of_ack_and_used_delta_comes_first(
        store: Store, signer: Signer, keyring: Keyring, ack_first: bool) -> None:
    install(store, group(EntryRules(max_entries=3)), [WhitelistEntry(7, PERF, ADULT, used=1)])  # 1 elsewhere
    c, _ = checker(store, keyring, Clock(MIDNIGHT))
    mine = await scan(c, tok(signer, 7))
    assert mine.reason is Reason.ADMITTED and len(store.history(7).events) == 1
    counted = Delta(GROUP, 11, MIDNIGHT + 1, "used", WhitelistEntry(7, PERF, ADULT, used=2))  # the hub: 1 + ours
    if ack_first:
        store.acknowledge([mine.event_id], echo_seq=11)
        assert len(store.history(7).events) == 1  # acked, but the whitelist does not count it yet: we do
        store.apply_delta(counted)
    else:
        store.apply_delta(counted)
        store.acknowledge([mine.event_id], echo_seq=11)
    assert store.history(7).events == () and store.entry(7).used == 2  # type: ignore[union-attr]
    assert store.usage_events() == []  # pruned
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED  # the third of three
    assert (await scan(c, tok(signer, 7))).reason is Reason.ALREADY_USED


async def test_an_ack_without_echo_seq_means_the_hub_already_counts_it(store: Store, signer: Signer,
                                                                      keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=2)), [WhitelistEntry(7, PERF, ADULT)])
    c, _ = checker(store, keyring, Clock(MIDNIGHT))
    mine = await scan(c, tok(signer, 7))
    store.apply_delta(Delta(GROUP, 11, MIDNIGHT, "used", WhitelistEntry(7, PERF, ADULT, used=1)))
    store.acknowledge([mine.event_id], None)
    assert store.history(7).events == ()
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED
    assert (await scan(c, tok(signer, 7))).reason is Reason.ALREADY_USED


async def test_unechoed_events_survive_a_restart_and_a_new_snapshot(tmp_path: Path, signer: Signer,
                                                                    keyring: Keyring) -> None:
    with Store.open(tmp_path / "g") as store:
        install(store, group(EntryRules(max_entries=2)), [WhitelistEntry(7, PERF, ADULT)])
        c, _ = checker(store, keyring, Clock(MIDNIGHT))
        mine = await scan(c, tok(signer, 7))
        store.acknowledge([mine.event_id], echo_seq=20)
    with Store.open(tmp_path / "g") as store:
        install(store, group(EntryRules(max_entries=2)), [WhitelistEntry(7, PERF, ADULT, used=1)], seq=15)
        assert len(store.history(7).events) == 1  # seq 15 < 20: not yet in the hub's numbers (another gate's)
        c, _ = checker(store, keyring, Clock(MIDNIGHT + 60))
        assert (await scan(c, tok(signer, 7))).reason is Reason.ALREADY_USED
        install(store, group(EntryRules(max_entries=2)), [WhitelistEntry(7, PERF, ADULT, used=2)], seq=20)
        assert store.history(7).events == ()


# ---- partial annulment: the persons who did not pass are given back ---------------------------------


async def test_a_partial_annulment_gives_the_persons_back_as_credit(store: Store, signer: Signer,
                                                                    keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=1)), [WhitelistEntry(7, PERF, ADULT, persons=4)])
    clock = Clock(MIDNIGHT)
    c, _ = checker(store, keyring, clock)
    admission = await scan(c, tok(signer, 7, 4))
    assert admission.persons == 4
    clock.t += 20
    c.report(Reason.ANNULLED, persons=2, about=admission)  # the turnstile: 2 of 4 passed, then timed out
    clock.t += 60
    late = await scan(c, tok(signer, 7, 4))
    assert (late.reason, late.persons, late.credit) == (Reason.ADMITTED, 2, True)
    assert (await scan(c, tok(signer, 7, 4))).reason is Reason.ALREADY_USED
    # the two late ones time out as well: they may come back again; a full annulment of a 4 would free the ticket
    c.report(Reason.ANNULLED, persons=2, about=late)
    again = await scan(c, tok(signer, 7, 4))
    assert (again.reason, again.persons, again.credit) == (Reason.ADMITTED, 2, True)
    journal = store.journal()
    assert [(e["reason"], e["persons"], e.get("credit", False)) for e in journal] == [
        ("admitted", 4, False), ("annulled", 2, False), ("admitted", 2, True), ("already_used", 0, False),
        ("annulled", 2, True), ("admitted", 2, True)]


async def test_a_full_annulment_gives_the_entry_back(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=1)), [WhitelistEntry(7, PERF, ADULT, persons=2)])
    c, _ = checker(store, keyring, Clock(MIDNIGHT))
    admission = await scan(c, tok(signer, 7, 2))
    c.report(Reason.ANNULLED, persons=2, about=admission)
    again = await scan(c, tok(signer, 7, 2))
    assert (again.reason, again.persons, again.credit) == (Reason.ADMITTED, 2, False)


# ---- tickets sold after the gate's last sync ----------------------------------------------------------


async def test_a_ticket_newer_than_the_whitelist_is_admitted_offline_and_marked(store: Store, signer: Signer,
                                                                               keyring: Keyring) -> None:
    install(store, group(), [WhitelistEntry(i, PERF, ADULT) for i in (3, 7)])
    c, screen = checker(store, keyring, Clock(MIDNIGHT))
    new = await scan(c, tok(signer, 9, 2))
    assert (new.reason, new.unlisted, new.persons, new.ticket_id) == (Reason.ADMITTED, True, 2, 9)
    assert store.journal()[-1]["unlisted"] is True
    assert "(unlisted)" in describe("hh-1", screen.shown[-1])
    assert (await scan(c, tok(signer, 9, 2))).reason is Reason.ALREADY_USED  # our own admission counts
    assert (await scan(c, tok(signer, 5))).reason is Reason.UNKNOWN  # below the newest: not a new sale
    assert (await scan(c, tok(signer, 10, perf=41))).reason is Reason.WRONG_PERFORMANCE
    assert (await scan(c, tok(Signer.generate(1), 11))).reason is Reason.FORGED
    listed = await scan(c, tok(signer, 3))
    assert listed.reason is Reason.ADMITTED and not listed.unlisted


async def test_admit_unlisted_off_refuses_them(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, group(admit_unlisted=False), [WhitelistEntry(7, PERF, ADULT)])
    c, _ = checker(store, keyring, Clock(MIDNIGHT))
    assert (await scan(c, tok(signer, 9))).reason is Reason.UNKNOWN


async def test_a_rules_delta_applies_on_the_very_next_scan(store: Store, signer: Signer, keyring: Keyring) -> None:
    doors = MIDNIGHT + 3600
    install(store, group(schedule=Schedule(doors, doors + 1800, doors + 9000)), [WhitelistEntry(7, PERF, ADULT)])
    c, _ = checker(store, keyring, Clock(MIDNIGHT))
    assert (await scan(c, tok(signer, 7))).reason is Reason.TOO_EARLY
    moved = group(schedule=Schedule(MIDNIGHT - 600, MIDNIGHT + 1200, MIDNIGHT + 9000))  # doors moved earlier
    store.apply_delta(Delta(GROUP, 11, MIDNIGHT, "rules", rules=moved))
    assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED  # same token, new times


# ---- supervisor override ---------------------------------------------------------------------------


def supervisors() -> tuple[Supervisor, ...]:
    return (Supervisor(1, "Wang", hash_pin(PIN, iterations=2000), None),
            Supervisor(2, "Li", None, card_key(SUPERVISOR_UID)))


POLICY = OverridePolicy(True, window_s=60, max_failures=3, lockout_s=300)


async def test_a_supervisor_pin_force_admits_the_refused_ticket(store: Store, signer: Signer, keyring: Keyring,
                                                               caplog: pytest.LogCaptureFixture,
                                                               tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    install(store, group(EntryRules(max_entries=1), supervisors=supervisors()),
            [WhitelistEntry(7, PERF, ADULT, persons=3, used=1)])
    clock = Clock(MIDNIGHT)
    c, screen = checker(store, keyring, clock, override=POLICY)
    assert (await scan(c, tok(signer, 7, 3))).reason is Reason.ALREADY_USED
    clock.t += 20
    forced = await c.scan(f"#{PIN}")
    assert forced is not None
    assert (forced.reason, forced.forced_by, forced.denied, forced.persons, forced.ticket_id) == (
        Reason.ADMITTED, "Wang", Reason.ALREADY_USED, 3, 7)
    assert isinstance(screen.shown[-1], Forced)
    line = describe("hh-1", screen.shown[-1])
    assert line.startswith("[hh-1] ✔ ADMITTED (forced by Wang) ticket 7 ×3 — ")
    m = _DECISION.match(line)
    assert m is not None and (m["reason"], m["ticket"], m["forced"]) == ("ADMITTED", "7", "Wang")
    assert store.journal()[-1]["forced_by"] == "Wang" and store.journal()[-1]["denied"] == "already_used"
    assert [e["kind"] for e in store.usage_events()] == ["entry"]  # counted like an entry
    assert await c.scan(f"#{PIN}") is None  # used up: one override per refusal
    assert screen.notices[-1].startswith("NOTHING_TO_OVERRIDE")
    # the PIN is nowhere: not in the journal, the outbox, the database files, or any log record
    assert len(store.journal()) == 2
    for path in (tmp_path / "gate").iterdir():
        assert PIN.encode() not in path.read_bytes(), path
    assert all(PIN not in r.getMessage() and PIN not in str(r.__dict__) for r in caplog.records)


async def test_a_wrong_pin_says_so_and_locks_out_after_too_many(store: Store, signer: Signer, keyring: Keyring,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    install(store, group(EntryRules(max_entries=1), supervisors=supervisors()),
            [WhitelistEntry(7, PERF, ADULT, used=1)])
    clock = Clock(MIDNIGHT)
    c, screen = checker(store, keyring, clock, override=POLICY)
    await scan(c, tok(signer, 7))
    assert await c.scan(f"#{WRONG}") is None
    assert screen.notices[-1] == "WRONG_PIN: 主管密码错误（还可尝试 2 次） / Wrong supervisor PIN (2 tries left)."
    assert await c.scan("#12ab") is None and screen.notices[-1].startswith("WRONG_PIN")
    assert await c.scan(f"#{WRONG}") is None and "locked" in screen.notices[-1]
    assert await c.scan(f"#{PIN}") is None  # locked: even the right PIN
    assert screen.notices[-1].startswith("OVERRIDE_LOCKED")
    assert len(store.journal()) == 1  # attempts are not journalled
    clock.t += 301
    await scan(c, tok(signer, 7))  # the window had passed: scan it again
    forced = await c.scan(f"#{PIN}")
    assert forced is not None and forced.forced_by == "Wang"
    assert all(WRONG not in str(r.__dict__) and PIN not in str(r.__dict__) for r in caplog.records)


async def test_no_override_outside_the_window_without_a_supervisor_or_on_a_gate(store: Store, signer: Signer,
                                                                               keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=1), supervisors=supervisors()),
            [WhitelistEntry(7, PERF, ADULT, used=1)])
    clock = Clock(MIDNIGHT)
    c, screen = checker(store, keyring, clock, override=POLICY)
    await scan(c, tok(signer, 7))
    clock.t += 61
    assert await c.scan(f"#{PIN}") is None and screen.notices[-1].startswith("NOTHING_TO_OVERRIDE")
    await scan(c, "garbage")  # not a verified ticket: nothing to override
    assert await c.scan(f"#{PIN}") is None and screen.notices[-1].startswith("NOTHING_TO_OVERRIDE")
    await scan(c, tok(signer, 7))
    assert (await scan(c, tok(signer, 8, perf=41))).reason is Reason.WRONG_PERFORMANCE  # the last refusal counts
    forced = await c.scan(f"#{PIN}")
    assert forced is not None and forced.ticket_id == 8 and forced.denied is Reason.WRONG_PERFORMANCE
    # a gate (turnstile) has no override: the line is refused and never journalled
    gate, _ = checker(store, keyring, clock)
    await scan(gate, tok(signer, 7))
    n = len(store.journal())
    assert await gate.scan(f"#{PIN}") is None and len(store.journal()) == n
    # a group without supervisors
    store.apply_delta(Delta(GROUP, 11, MIDNIGHT, "rules", rules=group(EntryRules(max_entries=1))))
    await scan(c, tok(signer, 7))
    assert await c.scan(f"#{PIN}") is None and screen.notices[-1].startswith("NO_SUPERVISOR")


async def test_a_supervisor_card_force_admits(store: Store, signer: Signer, keyring: Keyring) -> None:
    install(store, group(EntryRules(max_entries=1), supervisors=supervisors()),
            [WhitelistEntry(7, PERF, ADULT, persons=2, used=1)], [annual()])
    clock = Clock(MIDNIGHT)
    c, screen = checker(store, keyring, clock, override=POLICY)
    assert await c.tap(card_key(SUPERVISOR_UID)) is None  # nothing refused yet
    assert screen.notices[-1].startswith("NOTHING_TO_OVERRIDE")
    await scan(c, tok(signer, 7, 2))
    member = await c.tap(card_key(UID))  # a patron's card during the window is just a card
    assert member is not None and member.card_id == 5 and member.forced_by is None
    await scan(c, tok(signer, 7, 2))
    forced = await c.tap(card_key(SUPERVISOR_UID))
    assert forced is not None and (forced.forced_by, forced.persons, forced.ticket_id) == ("Li", 2, 7)


# ---- display and an old gate.db ----------------------------------------------------------------------


def test_describe_keeps_the_parsed_line_format() -> None:
    d = Decision(Reason.STILL_INSIDE, 7, PERF, ADULT, timezone=VENUE)
    line = describe("gate-1", d)
    assert line == ("[gate-1] ✘ STILL_INSIDE ticket 7 — 此票尚未离场，请先出场 / "
                    "Ticket is still inside. Please exit first.")
    m = _DECISION.match(line)
    assert m is not None and (m["reason"], m["ticket"], m["forced"]) == ("STILL_INSIDE", "7", None)
    line = describe("gate-1", replace(d, reason=Reason.ADMITTED, persons=2, credit=True))
    assert line.startswith("[gate-1] ✔ ADMITTED ticket 7 ×2 (given back) — ")


async def test_an_existing_gate_db_opens_and_its_old_usage_table_is_left_alone(tmp_path: Path, signer: Signer,
                                                                              keyring: Keyring) -> None:
    data = tmp_path / "old"
    data.mkdir()
    with sqlite3.connect(data / "gate.db") as db:  # the schema of the previous release
        db.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE entries (ticket_id INTEGER PRIMARY KEY, performance_id INTEGER NOT NULL,
                ticket_type_id INTEGER NOT NULL, persons INTEGER NOT NULL, revoked INTEGER NOT NULL,
                used INTEGER NOT NULL);
            CREATE TABLE usage (ticket_id INTEGER PRIMARY KEY, entries INTEGER NOT NULL);
            CREATE TABLE journal (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL);
            CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL);
            CREATE TABLE cards (key TEXT PRIMARY KEY, card_id INTEGER NOT NULL, wire TEXT NOT NULL);
            CREATE TABLE card_usage (card_id INTEGER NOT NULL, day TEXT NOT NULL, entries INTEGER NOT NULL,
                PRIMARY KEY (card_id, day));
            INSERT INTO usage VALUES (7, 1);
        """)
        db.execute("INSERT INTO entries VALUES (7, ?, ?, 1, 0, 0)", (PERF, ADULT))
        db.execute("INSERT INTO entries VALUES (8, ?, ?, 1, 0, 0)", (PERF, ADULT))
        waiting = CheckinEvent(event_id="ab" * 16, device_id="hh-1", group_id=GROUP, channel_id=ENTRY, seq=0,
                               reason=Reason.ADMITTED, ticket_id=8, performance_id=PERF, ticket_type_id=ADULT,
                               persons=1, scanned_at=MIDNIGHT - 60)  # admitted offline, not yet acknowledged
        body = waiting.model_dump_json(exclude_none=True)
        db.execute("INSERT INTO journal VALUES (0, ?, ?)", (waiting.event_id, body))
        db.execute("INSERT INTO outbox VALUES (0, ?, ?)", (waiting.event_id, body))
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("group_id", "1"), ("seq", "10"),
                                                          ("rules", __import__("json").dumps(group().to_wire()))])
    with Store.open(data) as store:
        assert store.entry(7) == WhitelistEntry(7, PERF, ADULT) and store.whitelist_seq == 10
        assert len(store.history(8).events) == 1  # the admission waiting in the outbox still counts
        c, _ = checker(store, keyring, Clock(MIDNIGHT))
        assert (await scan(c, tok(signer, 8))).reason is Reason.ALREADY_USED
        assert (await scan(c, tok(signer, 7))).reason is Reason.ADMITTED
        assert (await scan(c, tok(signer, 7))).reason is Reason.ALREADY_USED
        store.apply_delta(Delta(GROUP, 11, MIDNIGHT, "used",
                                WhitelistEntry(7, PERF, ADULT, used=1, usage=Usage(1, last_entry=int(MIDNIGHT)))))
        assert store.entry(7).usage == Usage(1, last_entry=int(MIDNIGHT))  # type: ignore[union-attr]
