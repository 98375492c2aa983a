"""The core glue: one scanned line in, one journalled decision and one actuator call out.

Nothing here awaits the network: the decision uses only the local store and the keyring.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gate_agent.actuator import Actuator, PassageActuator
from gate_agent.online import OnlineChecker
from gate_agent.store import Store
from protocol.decision import Decision, decision_for_error, validate, validate_card
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring
from protocol.messages import CheckinEvent
from protocol.reasons import Reason
from protocol.token import decode_token
from protocol.whitelist import ChannelRules

log = logging.getLogger(__name__)

Source = Literal["serial", "qr", "nfc", "online", "keyboard"]
EXCERPT_LEN = 40


@dataclass(frozen=True, slots=True)
class Station:
    """Where this checker stands."""

    device_id: str
    group_id: int
    channel_id: int


class EmergencyFlag(Protocol):
    """:class:`gate_agent.emergency.EmergencyRelease`: while open, nothing is admitted."""

    @property
    def is_open(self) -> bool: ...


def excerpt(text: str) -> str:
    """The printable start of unreadable input, for the journal (never the whole thing)."""
    return "".join(c if c.isprintable() else "?" for c in text[:EXCERPT_LEN])


class Checker:
    """Decides scans at one station.

        >>> event = await checker.scan(line, "serial")
        >>> event.reason
        <Reason.ADMITTED: 'admitted'>
    """

    def __init__(self, station: Station, store: Store, keyring: Keyring, actuator: Actuator, *,
                 on_event: Callable[[CheckinEvent], None] | None = None,
                 online: OnlineChecker | None = None,
                 emergency: EmergencyFlag | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.station = station
        self.emergency = emergency  # while open: every scan is journalled as "emergency", nothing admitted
        self.online = online  # handheld online mode: ask the hub first, fall back to deciding offline
        self.store = store
        self.keyring = keyring
        self.actuator = actuator
        self.on_event = on_event
        self.clock = clock

    def decide(self, text: str, now: float) -> Decision:
        """The pure-ish part: token, entry, rules and history from the store, then :func:`validate`."""
        try:
            token = decode_token(text, self.keyring)
        except (MalformedError, SignatureError) as exc:
            return decision_for_error(exc)
        rules = self.store.rules
        if rules is None:
            log.warning("no whitelist installed yet: ticket decided unknown", extra={"ticket_id": token.ticket_id})
            return Decision(Reason.UNKNOWN, token.ticket_id, token.performance_id, token.ticket_type_id)
        channel = rules.channels.get(self.station.channel_id) or ChannelRules(self.station.channel_id, frozenset())
        entry = self.store.entry(token.ticket_id)
        history = self.store.usage(token.ticket_id)
        return validate(token, entry, channel, rules.performance_ids, history, now)

    def emergency_decision(self, text: str) -> Decision:
        """Checking is stopped: reason ``emergency``, with the ticket if the token verifies."""
        try:
            token = decode_token(text, self.keyring)
        except (MalformedError, SignatureError):
            return Decision(Reason.EMERGENCY)
        return Decision(Reason.EMERGENCY, token.ticket_id, token.performance_id, token.ticket_type_id)

    async def decide_online_first(self, text: str, now: float, event_id: str) -> tuple[Decision, bool]:
        """(decision, decided offline?). Only a well-signed token is worth the hub's time."""
        if self.online is not None:
            try:
                token = decode_token(text, self.keyring)
            except (MalformedError, SignatureError):
                pass
            else:
                answer = await self.online.check(text, token, event_id)
                if answer is not None:
                    return answer, False
        return self.decide(text, now), True

    def record(self, decision: Decision, text: str, source: Source, now: float, *,
               event_id: str | None = None, offline: bool = True) -> CheckinEvent:
        event = CheckinEvent(
            event_id=event_id or uuid.uuid4().hex, device_id=self.station.device_id,
            group_id=self.station.group_id,
            channel_id=self.station.channel_id, seq=self.store.next_seq(), reason=decision.reason,
            ticket_id=decision.ticket_id, performance_id=decision.performance_id,
            ticket_type_id=decision.ticket_type_id, persons=decision.persons, offline=offline, source=source,
            scanned_at=now, excerpt=excerpt(text) if decision.reason is Reason.MALFORMED else None,
            card_id=decision.card_id,
        )
        self.store.record(event)
        return event

    async def _actuate(self, decision: Decision, event: CheckinEvent) -> None:
        if decision.admitted:
            await self.actuator.admit(decision)
            if isinstance(self.actuator, PassageActuator):  # a turnstile: confirm or annul the admission
                await self.actuator.release(event)
        else:
            await self.actuator.reject(decision)

    def report(self, reason: Reason, *, persons: int = 0, direction: Literal["entry", "exit"] = "entry",
               about: CheckinEvent | None = None) -> CheckinEvent:
        """Journal an event the gate observed itself (an annulment, an exit passage) and wake the sender.

        ``about`` is the admission an annulment takes back: its ticket, card, type and source are kept.
        """
        now = self.clock()
        fields = {"event_id": uuid.uuid4().hex, "seq": self.store.next_seq(), "reason": reason,
                  "persons": persons, "direction": direction, "offline": True, "scanned_at": now,
                  "excerpt": None, "annuls": about.event_id if about is not None and reason is Reason.ANNULLED
                  else None}
        base = about.model_dump() if about is not None else {
            "device_id": self.station.device_id, "group_id": self.station.group_id,
            "channel_id": self.station.channel_id}
        event = CheckinEvent.model_validate({**base, **fields})
        self.store.record(event)
        log.info("report %s", reason, extra={"ticket_id": event.ticket_id, "event_id": event.event_id,
                                              "seq": event.seq, "reason": str(reason)})
        if self.on_event is not None:
            self.on_event(event)
        return event

    async def scan(self, text: str, source: Source = "serial", now: float | None = None) -> CheckinEvent:
        """Decide ``text``, journal it durably, then drive the actuator and wake the sender."""
        now = self.clock() if now is None else now
        event_id = uuid.uuid4().hex
        if self.emergency is not None and self.emergency.is_open:
            decision, offline = self.emergency_decision(text), True
        elif self.online is None:
            decision, offline = self.decide(text, now), True
        else:
            decision, offline = await self.decide_online_first(text, now, event_id)
        event = self.record(decision, text, source, now, event_id=event_id, offline=offline)
        log.info("scan %s", decision.reason,
                 extra={"ticket_id": decision.ticket_id, "event_id": event.event_id, "seq": event.seq,
                        "reason": str(decision.reason)})
        await self._actuate(decision, event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    async def tap(self, key: str, now: float | None = None) -> CheckinEvent:
        """Decide a member card / annual pass by its UID hash (:func:`protocol.cards.card_key`), offline.

        Today's entries are counted locally; the admission is counted in the journalling transaction.
        """
        now = self.clock() if now is None else now
        card = self.store.card(key)
        used = self.store.card_entries(card.card_id, now) if card is not None else 0
        decision = validate_card(card, self.station.channel_id, used, now)
        if self.emergency is not None and self.emergency.is_open:
            decision = Decision(Reason.EMERGENCY, card_id=card.card_id if card is not None else None)
        event = self.record(decision, "", "nfc", now)
        log.info("card tap %s (card %s)", decision.reason, decision.card_id,
                 extra={"event_id": event.event_id, "seq": event.seq,
                        "reason": str(decision.reason)})
        await self._actuate(decision, event)
        if self.on_event is not None:
            self.on_event(event)
        return event
