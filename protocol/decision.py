"""The check-in decision: a pure function, shared by the gate (offline) and the hub (online check).

No I/O and no clock read: the caller passes ``now``. Checks run in a fixed order so that the same
inputs always give the same reason on every device:

    performance -> known (or newer than the whitelist) -> revoked -> channel open -> ticket type ->
    admission window -> latecomers -> weekday / dates -> given-back persons -> re-entry ->
    entries -> exit first -> entries per day -> cool-down

Days, weekdays and clock times are the venue's (``GroupRules.timezone``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.cards import CardEntry
from protocol.errors import MalformedError, SignatureError
from protocol.localtime import clock_text, day_number, local_day, next_midnight, weekday
from protocol.reasons import Reason
from protocol.rules import EntryRules
from protocol.token import TicketToken
from protocol.usage import Usage, UsageEvent, fold
from protocol.whitelist import ChannelRules, GroupRules, Schedule, WhitelistEntry


@dataclass(frozen=True, slots=True)
class UsageHistory:
    """What this checker itself has recorded for the ticket and the hub has not yet echoed back.

    ``events``: those check-ins (entries, exits, annulments), folded on top of the hub's usage in
    scan-time order. ``entries``: a bare count of such admissions, for callers that keep no more.
    """

    entries: int = 0
    events: tuple[UsageEvent, ...] = ()

    def effective(self, hub: Usage, tz: str) -> Usage:
        state = fold(hub, self.events, tz)
        if self.entries:
            state = Usage(state.entries + self.entries, state.exits, state.credit, state.last_entry,
                          state.last_exit, state.day, state.day_entries)
        return state


@dataclass(frozen=True, slots=True)
class Decision:
    reason: Reason
    ticket_id: int | None = None
    performance_id: int | None = None
    ticket_type_id: int | None = None
    persons: int = 0  # persons admitted; 0 unless admitted
    card_id: int | None = None  # a member card / annual pass decision (see validate_card)
    next_at: float | None = None  # a refusal that ends: when (admission opens, next day, cool-down over)
    hint: tuple[str, ...] = ()  # latecomer: the channels that still admit
    credit: bool = False  # admitted on persons given back by a partial annulment (not a new entry)
    unlisted: bool = False  # admitted on its signature alone: newer than the whitelist
    timezone: str = field(default="UTC", compare=False)

    @property
    def admitted(self) -> bool:
        return self.reason is Reason.ADMITTED

    @property
    def text_en(self) -> str:
        return explain(self)[0]

    @property
    def text_zh(self) -> str:
        return explain(self)[1]


def explain(d: Decision, now: float | None = None) -> tuple[str, str]:
    """(English, Chinese) for the patron and the operator, with the rule's detail where there is one."""
    en, zh = d.reason.text_en, d.reason.text_zh
    when = clock_text(d.next_at, d.timezone, now) if d.next_at is not None else None
    if d.reason is Reason.DAILY_LIMIT and when:
        return f"Already entered today. Next entry from {when}.", f"今日已入场，下次入场时间 {when}"
    if d.reason is Reason.COOLDOWN and when:
        return f"Entered a moment ago. Next entry from {when}.", f"刚刚已入场，{when} 后可再次入场"
    if d.reason is Reason.TOO_EARLY and when:
        return f"Doors are not open yet. Admission from {when}.", f"尚未开始检票，{when} 起可入场"
    if d.reason is Reason.LATECOMER and d.hint:
        names = ", ".join(d.hint)
        return (f"The performance has started. Latecomers please use {names}.",
                f"演出已开始，迟到观众请走 {names}")
    if d.reason is Reason.NOT_TODAY and when:
        return f"Not valid today. Valid again from {when}.", f"今日不可使用，{when} 起可用"
    return en, zh


def decision_for_error(error: Exception) -> Decision:
    """Map a token that failed to parse or verify to its decision."""
    if isinstance(error, SignatureError):
        return Decision(Reason.FORGED)
    if isinstance(error, MalformedError):
        return Decision(Reason.MALFORMED)
    raise TypeError(f"not a token error: {error!r}")


def day_refusal(rules: EntryRules, now: float, tz: str) -> Decision | None:
    """Weekdays and date ranges, on the venue's day."""
    day = local_day(now, tz)
    if ((rules.weekdays and weekday(now, tz) not in rules.weekdays) or day in rules.excluded_dates
            or (rules.date_from is not None and day < rules.date_from)):
        return Decision(Reason.NOT_TODAY, timezone=tz)
    if rules.date_until is not None and day > rules.date_until:
        return Decision(Reason.TOO_LATE, timezone=tz)
    return None


def usage_refusal(rules: EntryRules, u: Usage, now: float, tz: str) -> Decision | None:
    """The counting rules: re-entry, entries, exit first, entries per day, cool-down (None: allowed).

    The hub replays stored admissions through this, in scan-time order, to flag the later of two
    offline admissions as the conflict.
    """
    if not rules.reentry and u.exits > 0:
        return Decision(Reason.NO_REENTRY, timezone=tz)
    consumed = u.entries - (min(u.exits, u.entries) if rules.reentry else 0)
    if consumed >= rules.max_entries:
        return Decision(Reason.ALREADY_USED, timezone=tz)
    if rules.exit_required and u.inside:
        return Decision(Reason.STILL_INSIDE, timezone=tz)
    if rules.entries_per_day is not None and u.entries_on(day_number(now, tz)) >= rules.entries_per_day:
        return Decision(Reason.DAILY_LIMIT, next_at=next_midnight(now, tz), timezone=tz)
    if rules.cooldown_minutes and u.last_entry and now < u.last_entry + rules.cooldown_minutes * 60:
        return Decision(Reason.COOLDOWN, next_at=float(u.last_entry + rules.cooldown_minutes * 60), timezone=tz)
    return None


def _window(rules: EntryRules, token: TicketToken, schedule: Schedule | None) -> tuple[float, float]:
    """When admission opens and closes: the performance's current times with the channel's tolerances;
    a token's own window only when the rules do not carry the performance's times."""
    if schedule is None:
        return float(token.valid_from), float(token.valid_until)
    return (float(schedule.doors_open - rules.before_doors_minutes * 60),
            float(schedule.ends_at + rules.after_end_minutes * 60))


def _latecomer_channels(group: GroupRules, ticket_type_id: int) -> tuple[str, ...]:
    return tuple(c.name or f"#{c.channel_id}" for _, c in sorted(group.channels.items())
                 if not c.retired and ticket_type_id in c.ticket_type_ids and c.rules_for(ticket_type_id).latecomers)


def validate(
    token: TicketToken,
    entry: WhitelistEntry | None,
    rules: ChannelRules,
    group: GroupRules | frozenset[int],
    history: UsageHistory = UsageHistory(),
    now: float = 0.0,
    *,
    newest_ticket_id: int | None = None,
) -> Decision:
    """Decide one verified ticket token at one check-in channel.

    ``group``: the group's rules (or, for a bare check, only its performance ids: no schedules, UTC).
    ``newest_ticket_id``: the highest ticket id in the caller's whitelist; a validly signed ticket above
    it is admitted on its signature alone when the group allows it (``GroupRules.admit_unlisted``).
    """
    if isinstance(group, GroupRules):
        perf_ids, tz, schedule = group.performance_ids, group.timezone, group.schedule.get(token.performance_id)
        allow_unlisted = group.admit_unlisted
    else:
        perf_ids, tz, schedule, allow_unlisted = group, "UTC", None, False

    def deny(reason: Reason, next_at: float | None = None, hint: tuple[str, ...] = ()) -> Decision:
        return Decision(reason, token.ticket_id, token.performance_id, token.ticket_type_id,
                        next_at=next_at, hint=hint, timezone=tz)

    if token.performance_id not in perf_ids:
        return deny(Reason.WRONG_PERFORMANCE)
    unlisted = False
    if entry is None:
        if not (allow_unlisted and newest_ticket_id is not None and token.ticket_id > newest_ticket_id):
            return deny(Reason.UNKNOWN)
        entry, unlisted = WhitelistEntry(token.ticket_id, token.performance_id, token.ticket_type_id,
                                         token.persons), True
    if entry.revoked:
        return deny(Reason.REVOKED)
    if (entry.performance_id, entry.ticket_type_id) != (token.performance_id, token.ticket_type_id):
        return deny(Reason.REVOKED)  # the ticket was changed; this token is superseded
    if rules.retired:
        return deny(Reason.CHANNEL_CLOSED)
    if token.ticket_type_id not in rules.ticket_type_ids:
        return deny(Reason.WRONG_CHANNEL)
    r = rules.rules_for(token.ticket_type_id)
    opens, closes = _window(r, token, schedule)
    if now < opens:
        return deny(Reason.TOO_EARLY, next_at=opens)
    if now > closes:
        return deny(Reason.TOO_LATE)
    if schedule is not None and now > schedule.starts_at and not r.latecomers:
        others = _latecomer_channels(group, token.ticket_type_id) if isinstance(group, GroupRules) else ()
        return deny(Reason.LATECOMER, hint=others)
    if (refused := day_refusal(r, now, tz)) is not None:
        return deny(refused.reason)
    u = history.effective(entry.state, tz)
    if u.credit > 0:  # persons of a partly annulled admission come in on that same entry
        return Decision(Reason.ADMITTED, token.ticket_id, token.performance_id, token.ticket_type_id,
                        min(u.credit, entry.persons), credit=True, unlisted=unlisted, timezone=tz)
    if (refused := usage_refusal(r, u, now, tz)) is not None:
        return deny(refused.reason, refused.next_at)
    return Decision(Reason.ADMITTED, token.ticket_id, token.performance_id, token.ticket_type_id,
                    entry.persons, unlisted=unlisted, timezone=tz)


def validate_exit(token: TicketToken, entry: WhitelistEntry | None, group: GroupRules | frozenset[int],
                  tz: str = "UTC") -> Decision:
    """An exit scan: always let out; tied to the ticket when it is one of the group's (it then gives its
    entry back where re-entry is allowed). ``persons``: the ticket's persons, for the head-count."""
    perf_ids = group.performance_ids if isinstance(group, GroupRules) else group
    if isinstance(group, GroupRules):
        tz = group.timezone
    if token.performance_id not in perf_ids or entry is None or entry.revoked:
        return Decision(Reason.EXIT, persons=1, timezone=tz)
    return Decision(Reason.EXIT, token.ticket_id, token.performance_id, token.ticket_type_id,
                    persons=entry.persons, timezone=tz)


def validate_card(card: CardEntry | None, channel_id: int, entries_today: int, now: float, *,
                  rules: EntryRules | None = None, tz: str = "UTC", last_entry: float = 0.0) -> Decision:
    """Decide one member card / annual pass tap at one channel.

    ``entries_today``: the card's admissions on the venue's day of ``now`` (the hub's count over every
    gate, or this gate's own if larger); ``rules``: the channel's rules for cards (weekdays, dates,
    entries per day, cool-down); ``last_entry``: the card's newest admission.
    """
    if card is None:
        return Decision(Reason.UNKNOWN, timezone=tz)

    def deny(reason: Reason, next_at: float | None = None) -> Decision:
        return Decision(reason, card_id=card.card_id, next_at=next_at, timezone=tz)

    if card.revoked:
        return deny(Reason.REVOKED)
    if channel_id not in card.channel_ids:
        return deny(Reason.WRONG_CHANNEL)
    if now < card.valid_from:
        return deny(Reason.TOO_EARLY, float(card.valid_from))
    if now > card.valid_until:
        return deny(Reason.TOO_LATE)
    if rules is not None and (refused := day_refusal(rules, now, tz)) is not None:
        return deny(refused.reason)
    per_day = card.entries_per_day
    if rules is not None and rules.entries_per_day is not None:
        per_day = min(per_day, rules.entries_per_day)
    if entries_today >= per_day:
        return deny(Reason.DAILY_LIMIT, next_midnight(now, tz))
    if rules is not None and rules.cooldown_minutes and last_entry and now < last_entry + rules.cooldown_minutes * 60:
        return deny(Reason.COOLDOWN, last_entry + rules.cooldown_minutes * 60)
    return Decision(Reason.ADMITTED, persons=1, card_id=card.card_id, timezone=tz)
