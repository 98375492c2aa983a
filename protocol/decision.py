"""The check-in decision: a pure function, shared by the gate (offline) and the hub (online check).

No I/O and no clock read: the caller passes ``now``. Checks run in a fixed order so that the same
inputs always give the same reason on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.cards import CardEntry
from protocol.errors import MalformedError, SignatureError
from protocol.reasons import Reason
from protocol.token import TicketToken
from protocol.whitelist import ChannelRules, WhitelistEntry


@dataclass(frozen=True, slots=True)
class UsageHistory:
    """What this checker itself has recorded for the ticket (admissions not yet echoed by the hub)."""

    entries: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    reason: Reason
    ticket_id: int | None = None
    performance_id: int | None = None
    ticket_type_id: int | None = None
    persons: int = 0  # persons admitted; 0 unless admitted
    card_id: int | None = None  # a member card / annual pass decision (see validate_card)

    @property
    def admitted(self) -> bool:
        return self.reason is Reason.ADMITTED


def decision_for_error(error: Exception) -> Decision:
    """Map a token that failed to parse or verify to its decision."""
    if isinstance(error, SignatureError):
        return Decision(Reason.FORGED)
    if isinstance(error, MalformedError):
        return Decision(Reason.MALFORMED)
    raise TypeError(f"not a token error: {error!r}")


def validate(
    token: TicketToken,
    entry: WhitelistEntry | None,
    rules: ChannelRules,
    performance_ids: frozenset[int],
    history: UsageHistory,
    now: float,
) -> Decision:
    """Decide one verified ticket token at one check-in channel."""

    def deny(reason: Reason) -> Decision:
        return Decision(reason, token.ticket_id, token.performance_id, token.ticket_type_id)

    if token.performance_id not in performance_ids:
        return deny(Reason.WRONG_PERFORMANCE)
    if entry is None:
        return deny(Reason.UNKNOWN)
    if entry.revoked:
        return deny(Reason.REVOKED)
    if (entry.performance_id, entry.ticket_type_id) != (token.performance_id, token.ticket_type_id):
        return deny(Reason.REVOKED)  # the ticket was changed; this token is superseded
    if token.ticket_type_id not in rules.ticket_type_ids:
        return deny(Reason.WRONG_CHANNEL)
    if now < token.valid_from:
        return deny(Reason.TOO_EARLY)
    if now > token.valid_until:
        return deny(Reason.TOO_LATE)
    if max(entry.used, history.entries) >= rules.max_entries:
        return deny(Reason.ALREADY_USED)
    return Decision(Reason.ADMITTED, token.ticket_id, token.performance_id, token.ticket_type_id,
                    entry.persons)


def validate_card(card: CardEntry | None, channel_id: int, entries_today: int, now: float) -> Decision:
    """Decide one member card / annual pass tap at one channel; ``entries_today`` counts this day's admissions."""
    if card is None:
        return Decision(Reason.UNKNOWN)

    def deny(reason: Reason) -> Decision:
        return Decision(reason, card_id=card.card_id)

    if card.revoked:
        return deny(Reason.REVOKED)
    if channel_id not in card.channel_ids:
        return deny(Reason.WRONG_CHANNEL)
    if now < card.valid_from:
        return deny(Reason.TOO_EARLY)
    if now > card.valid_until:
        return deny(Reason.TOO_LATE)
    if entries_today >= card.entries_per_day:
        return deny(Reason.ALREADY_USED)
    return Decision(Reason.ADMITTED, persons=1, card_id=card.card_id)
