"""What opens the gate. Hardware sits behind the small :class:`Actuator` interface."""

from __future__ import annotations

import logging
import sys
from typing import Protocol, TextIO, runtime_checkable

from protocol.decision import Decision
from protocol.messages import CheckinEvent

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


def describe(device_id: str, decision: Decision) -> str:
    """One human line, e.g. ``[gate-1] ✔ ADMITTED ticket 7 ×2 — 验票通过，请通行 / Welcome. Please pass.``"""
    reason = decision.reason
    mark = "✔" if decision.admitted else "✘"
    ticket = f" ticket {decision.ticket_id}" if decision.ticket_id is not None else ""
    if decision.card_id is not None:
        ticket = f" card {decision.card_id}"
    persons = f" ×{decision.persons}" if decision.admitted else ""
    return f"[{device_id}] {mark} {reason.name}{ticket}{persons} — {reason.text_zh} / {reason.text_en}"


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
            line += "\a" if decision.admitted else "\a\a\a"
        out = self._out or sys.stdout
        print(line, file=out, flush=True)
        log.info("actuator %s", "open" if decision.admitted else "closed",
                 extra={"ticket_id": decision.ticket_id, "reason": str(decision.reason)})

    async def admit(self, decision: Decision) -> None:
        self._show(decision)

    async def reject(self, decision: Decision) -> None:
        self._show(decision)

    async def emergency_open(self) -> None:
        """Evacuation (紧急疏散): checking stops; every scan is shown as ``EMERGENCY`` until normal."""
        self._line(f"[{self.device_id}] ⚠ 紧急疏散：停止检票，请引导观众有序离场 / "
                   "EMERGENCY: checking stopped, guide everyone out calmly", bells="\a\a\a")

    async def emergency_normal(self) -> None:
        self._line(f"[{self.device_id}] ⚠ 紧急状态解除，恢复检票 / emergency cleared: checking resumes", bells="\a")

    def _line(self, line: str, bells: str) -> None:
        print(line + (bells if self.sound else ""), file=self._out or sys.stdout, flush=True)
        log.warning("%s", line)
