"""The core glue: one scanned line in, one journalled decision and one actuator call out.

Nothing here awaits the network (except a handheld's bounded online check): the decision uses only
the local store and the keyring. Days are the venue's (``GroupRules.timezone``), never the machine's.

* **Entry** (``Station.direction == "entry"``): :func:`protocol.decision.validate` on the hub's usage of
  the ticket folded with this gate's own unechoed events (:meth:`Store.history`); a ticket newer than
  the whitelist is admitted when the group allows it, marked ``unlisted``.
* **Exit** (a handheld in exit mode, an exit-lane reader): :func:`protocol.decision.validate_exit`; the
  event is tied to the ticket when it is one of the group's, else an exit without ticket.
* **Supervisor override** (handhelds): after a refusal of a verified ticket, ``#<PIN>`` on the scanner
  line or a supervisor card on the reader within the window force-admits it (reason admitted,
  ``forced_by``, ``denied``). Wrong PINs count toward a lock-out; a PIN is never logged or journalled.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gate_agent.actuator import Actuator, Forced, PassageActuator, notice_line
from gate_agent.online import OnlineChecker
from gate_agent.store import Store
from protocol.decision import Decision, decision_for_error, validate, validate_card, validate_exit
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring
from protocol.messages import CheckinEvent
from protocol.reasons import Reason
from protocol.supervisor import Supervisor, pin_matches
from protocol.token import TicketToken, decode_token
from protocol.whitelist import ChannelRules, WhitelistEntry

log = logging.getLogger(__name__)

Source = Literal["serial", "qr", "nfc", "online", "keyboard"]
EXCERPT_LEN = 40


@dataclass(frozen=True, slots=True)
class Station:
    """Where this checker stands, and what a scan here means."""

    device_id: str
    group_id: int
    channel_id: int
    direction: Literal["entry", "exit"] = "entry"


@dataclass(frozen=True, slots=True)
class OverridePolicy:
    """Supervisor override (see :class:`gate_agent.config.OverrideConfig`)."""

    enabled: bool = False
    window_s: float = 60.0
    max_failures: int = 5
    lockout_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Notice:
    """A line shown to the operator that is not a decision (an override attempt): never journalled."""

    name: str  # WRONG_PIN, OVERRIDE_LOCKED, NOTHING_TO_OVERRIDE, NO_SUPERVISOR, OVERRIDE_DISABLED
    text_en: str
    text_zh: str


# Refusals a supervisor may override: the ticket verified and was refused by a rule.
_NOT_OVERRIDABLE = frozenset({Reason.ADMITTED, Reason.MALFORMED, Reason.FORGED, Reason.EMERGENCY, Reason.EXIT,
                              Reason.ANNULLED})


@dataclass(frozen=True, slots=True)
class _Refusal:
    token: TicketToken
    decision: Decision
    source: Source
    at: float
    persons: int


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
                 override: OverridePolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.station = station
        self.emergency = emergency  # while open: every scan is journalled as "emergency", nothing admitted
        self.online = online  # handheld online mode: ask the hub first, fall back to deciding offline
        self.store = store
        self.keyring = keyring
        self.actuator = actuator
        self.on_event = on_event
        self.clock = clock
        self.override = override or OverridePolicy()
        self._refusal: _Refusal | None = None  # the last overridable refusal
        self._failures = 0  # wrong supervisor PINs in a row
        self._locked_until = 0.0
        self.last_notice: Notice | None = None
        # called with each journalled decision and the seconds from the scan to it (gate_agent.metrics)
        self.on_decided: Callable[[CheckinEvent, float], None] | None = None

    def _channel(self) -> ChannelRules:
        rules = self.store.rules
        found = rules.channels.get(self.station.channel_id) if rules is not None else None
        return found or ChannelRules(self.station.channel_id, frozenset())

    def decide(self, text: str, now: float) -> Decision:
        """The pure-ish part: token, entry, rules and history from the store, then :func:`validate`
        (or :func:`validate_exit` at an exit station)."""
        try:
            token = decode_token(text, self.keyring)
        except (MalformedError, SignatureError) as exc:
            if self.station.direction == "exit":  # let out; the head-count still gets an exit
                return Decision(Reason.EXIT, persons=1)
            return decision_for_error(exc)
        return self.decide_token(token, now)

    def decide_token(self, token: TicketToken, now: float) -> Decision:
        rules = self.store.rules
        if rules is None:
            log.warning("no whitelist installed yet: ticket decided unknown", extra={"ticket_id": token.ticket_id})
            if self.station.direction == "exit":
                return Decision(Reason.EXIT, persons=1)
            return Decision(Reason.UNKNOWN, token.ticket_id, token.performance_id, token.ticket_type_id)
        entry = self.store.entry(token.ticket_id)
        history = self.store.history(token.ticket_id)
        if self.station.direction == "exit":
            if entry is None and history.events and rules.admit_unlisted:  # admitted here before the hub knew it
                entry = WhitelistEntry(token.ticket_id, token.performance_id, token.ticket_type_id, token.persons)
            return validate_exit(token, entry, rules)
        return validate(token, entry, self._channel(), rules, history, now,
                        newest_ticket_id=self.store.newest_ticket_id())

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
                answer = await self.online.check(text, token, event_id, self.keyring)
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
            card_id=decision.card_id, credit=decision.credit, unlisted=decision.unlisted,
            direction="exit" if decision.reason is Reason.EXIT else "entry",
            forced_by=decision.forced_by if isinstance(decision, Forced) else None,
            denied=decision.denied if isinstance(decision, Forced) else None,
        )
        self.store.record(event)
        return event

    async def _actuate(self, decision: Decision, event: CheckinEvent) -> None:
        if decision.reason is Reason.EXIT:  # shown; nothing to release (exits turn freely)
            await self.actuator.admit(decision)
        elif decision.admitted:
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
                  else None, "forced_by": None, "denied": None}
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

    async def scan(self, text: str, source: Source = "serial", now: float | None = None) -> CheckinEvent | None:
        """Decide ``text``, journal it durably, then drive the actuator and wake the sender.

        A line starting with ``#`` is a supervisor PIN (:meth:`override_pin`): it is never journalled;
        the result is the forced admission, or None when nothing was admitted.
        """
        started = time.perf_counter()
        now = self.clock() if now is None else now
        if text.strip().startswith("#"):
            return await self.override_pin(text.strip()[1:], now)
        event_id = uuid.uuid4().hex
        token: TicketToken | None = None
        if self.emergency is not None and self.emergency.is_open:
            decision, offline = self.emergency_decision(text), True
        elif self.online is None or self.station.direction == "exit":
            decision, offline = self.decide(text, now), True
        else:
            decision, offline = await self.decide_online_first(text, now, event_id)
        event = self.record(decision, text, source, now, event_id=event_id, offline=offline)
        if self.on_decided is not None:
            self.on_decided(event, time.perf_counter() - started)
        log.info("scan %s", decision.reason,
                 extra={"ticket_id": decision.ticket_id, "event_id": event.event_id, "seq": event.seq,
                        "reason": str(decision.reason)})
        self._refusal = None
        if decision.reason not in _NOT_OVERRIDABLE and decision.ticket_id is not None and self.override.enabled:
            token = self._token(text)
            if token is not None:
                entry = self.store.entry(token.ticket_id)
                self._refusal = _Refusal(token, decision, source, now, entry.persons if entry else token.persons)
        await self._actuate(decision, event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _token(self, text: str) -> TicketToken | None:
        try:
            return decode_token(text, self.keyring)
        except (MalformedError, SignatureError):
            return None

    # ---- supervisor override -----------------------------------------------------------------

    def _notice(self, name: str, en: str, zh: str) -> None:
        self.last_notice = Notice(name, en, zh)
        show = getattr(self.actuator, "notice", None)
        if callable(show):
            show(name, en, zh)  # the actuator's screen line (and log)
        else:
            print(notice_line(self.station.device_id, name, en, zh), file=sys.stdout, flush=True)
            log.warning("supervisor override: %s", en)  # never the PIN itself

    def _supervisors(self) -> tuple[Supervisor, ...]:
        rules = self.store.rules
        return rules.supervisors if rules is not None else ()

    def _pending(self, now: float) -> _Refusal | None:
        """The refusal an override may still apply to, or None after a notice saying why not."""
        if not self.override.enabled:
            self._notice("OVERRIDE_DISABLED", "Supervisor override is not enabled on this device.",
                         "本设备未启用主管放行")
            return None
        if self.emergency is not None and self.emergency.is_open:
            self._notice("NOTHING_TO_OVERRIDE", "Emergency: checking is stopped, nothing can be admitted.",
                         "紧急疏散中，停止检票，不能放行")
            return None
        if now < self._locked_until:
            wait = int(self._locked_until - now + 0.999)
            self._notice("OVERRIDE_LOCKED", f"Override locked after too many wrong PINs; try again in {wait} s.",
                         f"主管密码错误次数过多，已锁定，请 {wait} 秒后再试")
            return None
        refusal = self._refusal
        if refusal is None or now - refusal.at > self.override.window_s:
            window = int(self.override.window_s)
            self._notice("NOTHING_TO_OVERRIDE",
                         f"No refused ticket to override: scan the ticket, then override within {window} s.",
                         f"没有可放行的拒票：请先扫票，并在 {window} 秒内授权")
            return None
        return refusal

    async def override_pin(self, pin: str, now: float | None = None) -> CheckinEvent | None:
        """A supervisor's PIN typed or scanned after a refusal: force-admit that ticket, or say why not."""
        now = self.clock() if now is None else now
        refusal = self._pending(now)
        if refusal is None:
            return None
        candidates = [s for s in self._supervisors() if s.pin_hash]
        if not candidates:
            self._notice("NO_SUPERVISOR", "No supervisor PIN is set up for this check-in group.",
                         "本检票分组未设置主管密码")
            return None
        hashes = [s.pin_hash for s in candidates]
        matched = await asyncio.to_thread(lambda: [pin_matches(h, pin) for h in hashes if h])
        who = next((s for s, ok in zip(candidates, matched, strict=True) if ok), None)
        if who is None:
            self._failures += 1
            left = self.override.max_failures - self._failures
            if left <= 0:
                self._failures, self._locked_until = 0, now + self.override.lockout_s
                lock = int(self.override.lockout_s)
                self._notice("WRONG_PIN", f"Wrong supervisor PIN. Override locked for {lock} s.",
                             f"主管密码错误，已锁定 {lock} 秒")
            else:
                self._notice("WRONG_PIN", f"Wrong supervisor PIN ({left} tries left).",
                             f"主管密码错误（还可尝试 {left} 次）")
            return None
        return await self._force(refusal, who, now)

    async def override_card(self, key: str, now: float | None = None) -> CheckinEvent | None:
        """A supervisor card tapped after a refusal (see :meth:`tap`)."""
        now = self.clock() if now is None else now
        refusal = self._pending(now)
        if refusal is None:
            return None
        who = next((s for s in self._supervisors() if s.card_key == key), None)
        if who is None:  # tap() only comes here for a supervisor's card
            return None
        return await self._force(refusal, who, now)

    async def _force(self, refusal: _Refusal, who: Supervisor, now: float) -> CheckinEvent:
        self._failures, self._refusal = 0, None
        t, denied = refusal.token, refusal.decision
        tz = self.store.rules.timezone if self.store.rules is not None else "UTC"
        decision = Forced(Reason.ADMITTED, t.ticket_id, t.performance_id, t.ticket_type_id, refusal.persons,
                          timezone=tz, forced_by=who.name, denied=denied.reason)
        event = self.record(decision, "", refusal.source, now)
        log.warning("supervisor override: ticket force-admitted", extra={
            "ticket_id": t.ticket_id, "event_id": event.event_id, "seq": event.seq, "reason": str(denied.reason)})
        await self._actuate(decision, event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    async def tap(self, key: str, now: float | None = None) -> CheckinEvent | None:
        """Decide a member card / annual pass by its UID hash (:func:`protocol.cards.card_key`), offline.

        Entries per day are counted on the venue's day: the hub's count (``card_used`` deltas) plus this
        gate's own admissions it has not yet echoed. A supervisor's card (not also a member card, or
        while a refusal can be overridden) is an override (:meth:`override_card`).
        """
        started = time.perf_counter()
        now = self.clock() if now is None else now
        card = self.store.card(key)
        if self.override.enabled and any(s.card_key == key for s in self._supervisors()) and (
                card is None or (self._refusal is not None and now - self._refusal.at <= self.override.window_s)):
            return await self.override_card(key, now)
        rules = self.store.rules
        tz = rules.timezone if rules is not None else "UTC"
        used, last = self.store.card_usage(card.card_id, now, tz) if card is not None else (0, 0.0)
        decision = validate_card(card, self.station.channel_id, used, now, rules=self._channel().card_rules(),
                                 tz=tz, last_entry=last)
        if self.emergency is not None and self.emergency.is_open:
            decision = Decision(Reason.EMERGENCY, card_id=card.card_id if card is not None else None)
        event = self.record(decision, "", "nfc", now)
        if self.on_decided is not None:
            self.on_decided(event, time.perf_counter() - started)
        log.info("card tap %s (card %s)", decision.reason, decision.card_id,
                 extra={"event_id": event.event_id, "seq": event.seq,
                        "reason": str(decision.reason)})
        await self._actuate(decision, event)
        if self.on_event is not None:
            self.on_event(event)
        return event
