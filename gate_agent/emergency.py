"""Emergency release (紧急疏散) at the gate: the state machine, its latch on disk, and its actions.

    >>> controller = EmergencyController(group_id=1, channel_id=1)
    >>> controller.command(EmergencyCommand(seq=1, issued_at=now, issued_by="sec", reason="fire", open_all=True))
    <Outcome.APPLIED: 'applied'>
    >>> controller.status.state, controller.status.cause
    ('open', 'command')

Rules (:class:`EmergencyController`, pure: no I/O, no clock read):

* A hub command is the whole emergency state with a growing ``seq``. ``seq <= last applied`` is a
  replay or a duplicate: ignored (the caller re-publishes its confirmation). A newer one is applied:
  the gate stands open while it :meth:`~protocol.emergency.EmergencyCommand.opens` the gate's group or
  channel.
* A local cause (the fire-alarm input going to alarm, or the emergency button) opens at once and
  **latches**: it is cleared only by a hub command issued after it (``issued_at`` later than the latch)
  that is applied while the fire input is back to normal. A command applied while the fire input is
  still in alarm advances ``seq`` but leaves the gate open (cause ``fire``).
* Nothing else closes an open gate: not losing the hub or the broker, not a restart (the state is
  latched in the store before the gate acts on it).

:class:`EmergencyRelease` runs the controller in the agent: verifies commands (signature, kind), saves
the state, drives the actuator (:meth:`GpioTurnstile.emergency_open` / ``emergency_normal``) and
publishes :class:`~protocol.emergency.EmergencyState` retained through the link, which signs it with the
device's own key (:data:`protocol.device_signed.KIND_EMERGENCY_STATE`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from confkit.supervise import watch
from gate_agent.logs import truncate
from gate_agent.store import Store
from protocol.emergency import KIND_EMERGENCY, EmergencyCommand, EmergencyState
from protocol.envelope import open_envelope
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring

log = logging.getLogger(__name__)

State = Literal["open", "normal"]
Cause = Literal["command", "fire", "button"]
LocalCause = Literal["fire", "button"]


class Outcome(StrEnum):
    APPLIED = "applied"  # a newer command: applied (the state may or may not have changed)
    DUPLICATE = "duplicate"  # seq <= last applied: ignored, confirm again


@dataclass(frozen=True, slots=True)
class Latched:
    """The emergency state as saved in the store: what a restarted gate resumes."""

    state: State = "normal"
    cause: Cause | None = None
    seq: int = 0  # newest hub command applied
    at: float = 0.0  # when state or cause last changed
    hub_open: bool = False  # the newest applied command opens this gate
    local: LocalCause | None = None  # a latched local cause
    local_at: float = 0.0  # when the local cause was last triggered (gate clock)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Latched:
        try:
            return cls(state=data["state"], cause=data.get("cause"), seq=int(data["seq"]), at=float(data["at"]),
                       hub_open=bool(data.get("hub_open")), local=data.get("local"),
                       local_at=float(data.get("local_at", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError(f"saved emergency state is malformed: {data!r:.120}") from exc


class EmergencyController:
    """The gate's emergency state machine. Inputs are verified commands and local triggers; each returns
    whether the latched state changed (save it, then act on it)."""

    def __init__(self, group_id: int, channel_id: int, saved: Latched | None = None) -> None:
        self.group_id = group_id
        self.channel_id = channel_id
        self.status = saved or Latched()
        self.fire_active = False  # the live fire input (not saved: read again at start)

    @property
    def is_open(self) -> bool:
        return self.status.state == "open"

    def command(self, cmd: EmergencyCommand, now: float) -> Outcome:
        """Apply a verified hub command unless it is not newer than the last one applied."""
        s = self.status
        if cmd.seq <= s.seq:
            return Outcome.DUPLICATE
        local, local_at = s.local, s.local_at
        if local is not None and not self.fire_active and cmd.issued_at > local_at:
            local = None  # a command issued after the local trigger, with the fire input back to normal
        self._settle(replace(s, seq=cmd.seq, hub_open=cmd.opens(self.group_id, self.channel_id),
                             local=local, local_at=local_at), now)
        return Outcome.APPLIED

    def fire(self, active: bool, now: float) -> bool:
        """The fire input changed (``active``: alarm or cut wire). Going back to normal closes nothing."""
        self.fire_active = active
        if not active:
            return False
        return self._settle(replace(self.status, local="fire", local_at=now), now)

    def button(self, now: float) -> bool:
        """The emergency button was pressed: open and latch (a latched fire stays the cause)."""
        s = self.status
        return self._settle(replace(s, local="fire" if s.local == "fire" else "button", local_at=now), now)

    def _settle(self, new: Latched, now: float) -> bool:
        cause: Cause | None = new.local or ("command" if new.hub_open else None)
        state: State = "open" if cause is not None else "normal"
        at = now if (state, cause) != (self.status.state, self.status.cause) else self.status.at
        new = replace(new, state=state, cause=cause, at=at)
        changed = new != self.status
        self.status = new
        return changed


@runtime_checkable
class EmergencyActuator(Protocol):
    """An actuator that can stand open for an evacuation (the turnstile; a handheld shows it)."""

    async def emergency_open(self) -> None: ...

    async def emergency_normal(self) -> None: ...


Publisher = Callable[[], Awaitable[bool]]


class EmergencyRelease:
    """The controller at work in the agent: verify, save, act, publish.

        >>> release = EmergencyRelease("gate-1", 1, 1, store, keyring, turnstile)
        >>> await release.restore()                    # open again at once if the store says so
        >>> link.serve_emergency(release.on_command, release.state)  # the link signs it with the device key
        >>> release.bind(link.publish_emergency)
    """

    def __init__(self, device_id: str, group_id: int, channel_id: int, store: Store, keyring: Keyring,
                 actuator: object, *, clock: Callable[[], float] = time.time) -> None:
        self.device_id = device_id
        self.store = store
        self.keyring = keyring
        self.actuator = actuator if isinstance(actuator, EmergencyActuator) else None
        self.clock = clock
        saved = store.emergency()
        self.controller = EmergencyController(group_id, channel_id, Latched.from_dict(saved) if saved else None)
        self._publish: Publisher | None = None
        self._actuated = False  # what the actuator was last told
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_open(self) -> bool:
        return self.controller.is_open

    def state(self) -> EmergencyState:
        s = self.controller.status
        return EmergencyState(device_id=self.device_id, state=s.state, seq=s.seq, cause=s.cause,
                              at=s.at or self.clock())

    def bind(self, publish: Publisher) -> None:
        """How the state reaches the hub: normally ``link.publish_emergency`` (False while disconnected)."""
        self._publish = publish

    async def restore(self) -> None:
        """At start, before anything else: stand open again if the saved state is open."""
        s = self.controller.status
        if s.state == "open":
            log.warning("emergency: restored OPEN from the store (cause %s, seq %s)", s.cause, s.seq)
            await self._actuate()

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # watched: a failure is logged with its traceback, never swallowed

    # ---- inputs ------------------------------------------------------------------------------

    async def on_command(self, data: bytes) -> None:
        """The link's handler for ``{prefix}/emergency/command``: verify, apply, confirm."""
        if not data:
            return  # the hub cleared its retained command
        try:
            _kind, body = open_envelope(data, self.keyring, kinds={KIND_EMERGENCY})
            cmd = EmergencyCommand.from_wire(body)
        except (MalformedError, SignatureError) as exc:
            log.warning("emergency command refused: %s", exc, extra={"payload": truncate(data)})
            return
        started = time.perf_counter()
        before = self.controller.status
        outcome = self.controller.command(cmd, self.clock())
        if outcome is Outcome.DUPLICATE:
            log.info("emergency command %s ignored (applied up to %s): confirming again", cmd.seq, before.seq)
            await self._confirm()
            return
        self._save()
        log.warning("emergency command %s from %s (%s): gate %s", cmd.seq, cmd.issued_by, cmd.reason,
                    self.controller.status.state, extra={"seq": cmd.seq})
        await self._act_and_confirm()
        log.info("emergency command %s confirmed in %.1f ms", cmd.seq, (time.perf_counter() - started) * 1000)

    def fire(self, active: bool) -> None:
        """The fire input (call on the loop). Alarm opens and latches at once; normal closes nothing."""
        log.warning("emergency: fire input %s", "ALARM (or cut wire)" if active else "back to normal")
        if self.controller.fire(active, self.clock()):
            self._local_change()

    def button(self) -> None:
        """The emergency button was pressed (call on the loop)."""
        log.warning("emergency: button pressed")
        if self.controller.button(self.clock()):
            self._local_change()

    def _local_change(self) -> None:
        self._save()
        task = watch(asyncio.get_running_loop().create_task(self._act_and_confirm(), name="emergency-act"),
                     self.device_id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- actions -----------------------------------------------------------------------------

    def _save(self) -> None:
        self.store.save_emergency(self.controller.status.to_dict())

    async def _act_and_confirm(self) -> None:
        await self._actuate()
        await self._confirm()

    async def _actuate(self) -> None:
        """Bring the actuator to the controller's current state (in order, whatever raced)."""
        async with self._lock:
            want = self.controller.is_open
            if want == self._actuated:
                return
            self._actuated = want
            if self.actuator is None:
                log.warning("emergency: the actuator cannot stand open (gate %s)", "open" if want else "normal")
                return
            try:
                await (self.actuator.emergency_open() if want else self.actuator.emergency_normal())
            except Exception:
                log.exception("emergency: the actuator failed to go %s", "open" if want else "normal")

    async def _confirm(self) -> None:
        if self._publish is None:
            return
        if not await self._publish():
            log.info("emergency state %s not published now (no link): it goes out on reconnect",
                     self.controller.status.state)
