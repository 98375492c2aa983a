"""What opens the gate. Hardware sits behind the small :class:`Actuator` interface."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO, runtime_checkable

from protocol.decision import Decision, explain
from protocol.messages import CheckinEvent
from protocol.reasons import Reason

log = logging.getLogger(__name__)


class Actuator(Protocol):
    async def admit(self, decision: Decision) -> None:
        """Release ``decision.persons`` passages and show the welcome."""

    async def reject(self, decision: Decision) -> None:
        """Keep the gate shut and show the reason."""


@runtime_checkable
class PassageActuator(Actuator, Protocol):
    """An actuator that counts passages (a turnstile): after :meth:`admit` it also gets the journalled
    admission, so it can confirm it or annul what was not used (see :mod:`gate_agent.turnstile`)."""

    async def release(self, event: CheckinEvent) -> None:
        """Release ``event.persons`` passages for this admission; must not wait for them."""


@dataclass(frozen=True, slots=True)
class Forced(Decision):
    """A supervisor's override of a refusal: admitted, with who forced it and the reason it had been refused."""

    forced_by: str = ""
    denied: Reason | None = None


def describe(device_id: str, decision: Decision, now: float | None = None) -> str:
    """One human line, e.g. ``[gate-1] ✔ ADMITTED ticket 7 ×2 — 验票通过，请通行 / Welcome. Please pass.``

    Refusals carry the rule's detail (``✘ DAILY_LIMIT ticket 7 — 今日已入场，下次入场时间 12-02 00:00 / ...``),
    times on the venue's clock; a forced admission reads ``✔ ADMITTED (forced by Wang) ticket 7 ×1 — ...``,
    an exit ``↩ EXIT ticket 7 ×2 — ...``.
    """
    reason = decision.reason
    mark = "✔" if decision.admitted else "↩" if reason is Reason.EXIT else "✘"
    forced = f" (forced by {decision.forced_by})" if isinstance(decision, Forced) else ""
    ticket = f" ticket {decision.ticket_id}" if decision.ticket_id is not None else ""
    if decision.card_id is not None:
        ticket = f" card {decision.card_id}"
    persons = f" ×{decision.persons}" if decision.admitted or (reason is Reason.EXIT and decision.ticket_id) else ""
    marks = "".join(f" ({m})" for m, on in (("given back", decision.credit), ("unlisted", decision.unlisted)) if on)
    en, zh = explain(decision, time.time() if now is None else now)
    if isinstance(decision, Forced) and decision.denied is not None:
        en, zh = f"{en} Supervisor override of {decision.denied.name}.", f"{zh}（主管放行：{decision.denied.text_zh}）"
    return f"[{device_id}] {mark} {reason.name}{forced}{ticket}{persons}{marks} — {zh} / {en}"


def notice_line(device_id: str, name: str, en: str, zh: str) -> str:
    """An operator notice that is not a decision, e.g. ``[hh-1] ⚠ WRONG_PIN — 主管密码错误 / Wrong supervisor PIN.``"""
    return f"[{device_id}] ⚠ {name} — {zh} / {en}"


class LoggingActuator:
    """The simulated actuator, and a handheld's screen: logs the decision and prints one human line
    to stdout; with ``sound`` it rings the terminal bell, once to admit and three times to refuse."""

    def __init__(self, device_id: str, *, out: TextIO | None = None, sound: bool = False) -> None:
        self.device_id = device_id
        self._out = out
        self.sound = sound

    def _show(self, decision: Decision) -> None:
        line = describe(self.device_id, decision)
        if self.sound:
            line += "\a" if decision.admitted or decision.reason is Reason.EXIT else "\a\a\a"
        out = self._out or sys.stdout
        print(line, file=out, flush=True)
        log.info("actuator %s", "open" if decision.admitted else "closed",
                 extra={"ticket_id": decision.ticket_id, "reason": str(decision.reason)})

    async def admit(self, decision: Decision) -> None:
        self._show(decision)

    async def reject(self, decision: Decision) -> None:
        self._show(decision)

    def notice(self, name: str, en: str, zh: str) -> None:
        """An operator notice (a supervisor override refused): one line, three bells on a handheld."""
        self._line(notice_line(self.device_id, name, en, zh), bells="\a\a\a")

    async def emergency_open(self) -> None:
        """Evacuation (紧急疏散): checking stops; every scan is shown as ``EMERGENCY`` until normal."""
        self._line(f"[{self.device_id}] ⚠ 紧急疏散：停止检票，请引导观众有序离场 / "
                   "EMERGENCY: checking stopped, guide everyone out calmly", bells="\a\a\a")

    async def emergency_normal(self) -> None:
        self._line(f"[{self.device_id}] ⚠ 紧急状态解除，恢复检票 / emergency cleared: checking resumes", bells="\a")

    def _line(self, line: str, bells: str) -> None:
        print(line + (bells if self.sound else ""), file=self._out or sys.stdout, flush=True)
        log.warning("%s", line)
