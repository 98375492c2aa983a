"""The tripod turnstile (三辊闸) on GPIO, through gpiozero.

    >>> factory = MockFactory()                      # the real pin factory on a Pi (pin_factory=None)
    >>> turnstile = GpioTurnstile(TurnstileConfig(), device_id="gate-1", pin_factory=factory)
    >>> turnstile.bind(checker.report)               # annulments and exits go through the journal
    >>> async with turnstile:
    ...     await checker.scan(line)                 # admitted x1: entry relay pulsed, green lamp, beep
    ...     factory.pin(27).drive_low()              # the patron turns the arms: passage 1/1, locked

Behaviour:

* **Queued, never dropped.** A scan made while a release is in progress is decided, journalled and
  shown at once; its release waits in a FIFO queue and starts when the current one has locked.
* **Release.** Green lamp and a short beep; relay mode ``pulse`` pulses the entry relay once per person
  and waits for that person's passage, ``hold`` keeps it on until all N have passed. Each person has
  ``passage_timeout`` seconds (the clock restarts after every passage).
* **Annulment.** If not all N pass in time, the turnstile locks and reports reason ``annulled`` with
  ``persons`` = those who did not pass and ``annuls`` = the admission's event id. A relay that cannot
  be written annuls at once (nobody can pass) and turns :meth:`GpioTurnstile.health` to ``"error"``.
  Stopping the agent mid-release annuls the rest, and queued releases in full.
* **Exit.** With ``exit_free`` the exit relay is held released while the agent runs (people leave
  without asking); every exit-sensor passage is reported as reason ``exit``, direction ``exit``,
  persons 1, no ticket. Entry passages while nothing is released (a forced arm) are only logged.
* **Reject.** Red lamp for ``reject_lamp_ms`` and a long beep; the gate stays locked.
* **Emergency.** :meth:`GpioTurnstile.emergency_open` annuls unfinished and queued releases, holds both
  relays released (arms turn freely both ways), blinks both lamps and beeps until
  :meth:`GpioTurnstile.emergency_normal`; rejections then only show their text (see :mod:`gate_agent.emergency`).
* **Threads.** gpiozero calls sensor callbacks in its own thread (with ``MockFactory``: in whichever
  thread drives the pin). They only hop onto the event loop with ``loop.call_soon_threadsafe``; all
  state lives on the loop, and no GPIO call waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol, TextIO

from gpiozero import DigitalInputDevice, DigitalOutputDevice, GPIOZeroError

from confkit.aio import within
from confkit.supervise import watch
from gate_agent import GateError
from gate_agent.actuator import LoggingActuator
from gate_agent.config import TurnstileConfig
from protocol.decision import Decision
from protocol.messages import CheckinEvent
from protocol.reasons import Reason

log = logging.getLogger(__name__)

Health = Literal["ok", "error", "failed"]
Direction = Literal["entry", "exit"]


class TurnstileError(GateError, RuntimeError):
    """The turnstile's GPIO devices could not be set up (pin in use, no pin factory, ...)."""


class Reporter(Protocol):
    """:meth:`gate_agent.checkin.Checker.report`: journal an event the gate observed and wake the sender."""

    def __call__(self, reason: Reason, *, persons: int = ..., direction: Direction = ...,
                 about: CheckinEvent | None = ...) -> CheckinEvent: ...


class Turnstile(Protocol):
    """A gate that counts passages: an :class:`~gate_agent.actuator.PassageActuator` with a health state."""

    async def admit(self, decision: Decision) -> None: ...

    async def reject(self, decision: Decision) -> None: ...

    async def release(self, event: CheckinEvent) -> None: ...

    def health(self) -> Health: ...


class GpioTurnstile:
    """Relays, passage sensors, lamps and buzzer of one tripod turnstile, each on its own GPIO pin.

    Every gpiozero device gets ``pin_factory`` (None: gpiozero's default, the real pins on a Pi).
    Use as an async context manager (or :meth:`start` / :meth:`aclose`) inside the running loop.
    """

    def __init__(self, cfg: TurnstileConfig, *, device_id: str, pin_factory: Any = None,
                 out: TextIO | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.pin_factory = pin_factory
        self._out = out
        self._display = LoggingActuator(device_id, out=out)
        self._loop = loop
        self._report: Reporter | None = None
        self._queue: asyncio.Queue[CheckinEvent] = asyncio.Queue()
        self._passages: asyncio.Queue[float] = asyncio.Queue()
        self._releasing = False
        self._failed: set[str] = set()
        self._flashes: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[int], None]] = []
        self.forced = 0  # entry passages while locked
        self.emergency = False  # held open for an evacuation (see emergency_open)
        self._alarm_pattern = (400, 400, 500)  # beep on ms, beep off ms, lamp blink ms: set_alarm_pattern
        self._devices: list[Any] = []
        try:
            self._open_devices()
        except (GPIOZeroError, OSError) as exc:
            self._close_devices()
            raise TurnstileError(f"turnstile GPIO setup failed: {exc}") from exc

    def _open_devices(self) -> None:
        cfg, pf = self.cfg, self.pin_factory

        def output(pin: int, active_high: bool) -> Any:
            device = DigitalOutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=pf)
            self._devices.append(device)
            return device

        def sensor(pin: int) -> Any:
            bounce = cfg.sensor_bounce_ms / 1000 if cfg.sensor_bounce_ms else None
            device = DigitalInputDevice(pin, pull_up=cfg.sensor_pull_up, bounce_time=bounce, pin_factory=pf)
            self._devices.append(device)
            return device

        self.entry_relay = output(cfg.entry_relay_pin, cfg.relay_active_high)
        self.exit_relay = output(cfg.exit_relay_pin, cfg.relay_active_high)
        self.green_lamp = output(cfg.green_lamp_pin, cfg.lamp_active_high)
        self.red_lamp = output(cfg.red_lamp_pin, cfg.lamp_active_high)
        self.buzzer = output(cfg.buzzer_pin, cfg.lamp_active_high)
        self.entry_sensor = sensor(cfg.entry_sensor_pin)
        self.exit_sensor = sensor(cfg.exit_sensor_pin)

    def _close_devices(self) -> None:
        for device in reversed(self._devices):
            with contextlib.suppress(GPIOZeroError, OSError):
                device.close()
        self._devices.clear()

    # ---- lifecycle ---------------------------------------------------------------------------

    def bind(self, report: Reporter) -> None:
        """Where annulments and exits are journalled: normally ``checker.report``."""
        self._report = report

    def add_listener(self, on_release: Callable[[int], None]) -> None:
        """Call ``on_release(persons)`` on the loop whenever a release starts (the simulated patron)."""
        self._listeners.append(on_release)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a helper task that :meth:`aclose` cancels."""
        task = watch(asyncio.get_running_loop().create_task(coro), self.device_id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self._loop = self._loop or asyncio.get_running_loop()
        self.entry_sensor.when_activated = functools.partial(self._edge, "entry")
        self.exit_sensor.when_activated = functools.partial(self._edge, "exit")
        if self.cfg.exit_free:
            self._set(self.exit_relay, True, "exit relay")
        self._worker = watch(asyncio.create_task(self._serve(), name="turnstile"), self.device_id)
        log.info("turnstile ready (%s mode, %.1f s per passage)", self.cfg.relay_mode, self.cfg.passage_timeout)

    async def aclose(self) -> None:
        """Lock, annul what was not released, turn everything off and free the pins."""
        if self.emergency:
            log.warning("turnstile stops during an emergency release: its pins are freed (the mechanism's "
                        "own fail-safe and the fire panel's direct wiring must keep it free)")
        self.entry_sensor.when_activated = None
        self.exit_sensor.when_activated = None
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait([self._worker])  # one that died (logged) must not stop the locking below
            self._worker = None
        while not self._queue.empty():
            event = self._queue.get_nowait()
            self._settle(event, max(1, event.persons), 0)
            self._queue.task_done()
        helpers = [*self._tasks, *self._flashes.values()]
        for task in helpers:
            task.cancel()
        if helpers:
            await asyncio.wait(helpers)  # watched: a failure is logged with its traceback, never swallowed
        for name, device in (("entry relay", self.entry_relay), ("exit relay", self.exit_relay),
                             ("green lamp", self.green_lamp), ("red lamp", self.red_lamp), ("buzzer", self.buzzer)):
            self._set(device, False, name)
        self._close_devices()

    async def __aenter__(self) -> GpioTurnstile:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def health(self) -> Health:
        """``"failed"`` if the release worker died (logged with its traceback), ``"error"`` while the last write
        to any relay, lamp or buzzer failed, else ``"ok"``."""
        worker = self._worker
        if worker is not None and worker.done() and not worker.cancelled():
            return "failed"
        return "error" if self._failed else "ok"

    async def idle(self) -> None:
        """Wait until every queued release has locked again (for tests and orderly shutdown)."""
        await self._queue.join()

    # ---- the actuator interface --------------------------------------------------------------

    async def admit(self, decision: Decision) -> None:
        await self._display.admit(decision)

    async def release(self, event: CheckinEvent) -> None:
        """Queue the release of ``event.persons`` passages; returns at once."""
        if self._releasing or not self._queue.empty():
            self._say(f"busy: release for {max(1, event.persons)} queued")
        self._queue.put_nowait(event)

    async def reject(self, decision: Decision) -> None:
        await self._display.reject(decision)
        if self.emergency:
            return  # the lamps and buzzer keep the emergency pattern
        self._flash(self.red_lamp, self.cfg.reject_lamp_ms, "red lamp")
        self._flash(self.buzzer, self.cfg.long_beep_ms, "buzzer")

    # ---- releases (on the loop) --------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._release(event)
            except Exception:
                log.exception("turnstile release failed", extra={"event_id": event.event_id})
            finally:
                self._queue.task_done()

    async def _release(self, event: CheckinEvent) -> None:
        n, passed = max(1, event.persons), 0
        while not self._passages.empty():  # passages before this release are not this patron's
            self._passages.get_nowait()
        self._releasing = True
        self._set(self.green_lamp, True, "green lamp")
        self._flash(self.buzzer, self.cfg.short_beep_ms, "buzzer")
        self._say(f"released for {n}")
        for listener in self._listeners:
            listener(n)
        hold = self.cfg.relay_mode == "hold"
        released = not hold or self._set(self.entry_relay, True, "entry relay")
        try:
            while released and passed < n:
                if not hold and not await self._pulse():
                    break
                if not await self._wait_passage():
                    break
                passed += 1
                self._say(f"passage {passed}/{n}")
        finally:
            if hold:
                self._set(self.entry_relay, False, "entry relay")
            self._releasing = False
            self._set(self.green_lamp, False, "green lamp")
            self._say("locked")
            self._settle(event, n, passed)

    async def _pulse(self) -> bool:
        if not self._set(self.entry_relay, True, "entry relay"):
            return False
        try:
            await asyncio.sleep(self.cfg.pulse_ms / 1000)
        finally:
            ok = self._set(self.entry_relay, False, "entry relay")
        return ok

    async def _wait_passage(self) -> bool:
        try:
            await within(self._passages.get(), self.cfg.passage_timeout)
        except TimeoutError:
            return False
        return True

    def _settle(self, event: CheckinEvent, n: int, passed: int) -> None:
        """Annul the persons of ``event`` who did not pass (all of them: the ticket may be scanned again)."""
        if passed >= n:
            return
        missing = n - passed
        ticket = f" ticket {event.ticket_id}" if event.ticket_id is not None else ""
        self._say(f"{missing} of {n} did not pass: annulled{ticket}")
        self._emit(Reason.ANNULLED, missing, "entry", event)

    # ---- sensors (any thread -> loop) --------------------------------------------------------

    def _edge(self, direction: Direction) -> None:
        """A sensor became active. Runs in gpiozero's thread: only hop onto the loop from here."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self._on_passage, direction)

    def _on_passage(self, direction: Direction) -> None:
        if direction == "exit":
            self._say("exit passage")
            self._emit(Reason.EXIT, 1, "exit", None)
        elif self._releasing:
            self._passages.put_nowait(asyncio.get_running_loop().time())
        elif self.emergency:
            log.debug("entry passage during the emergency release")
        else:
            self.forced += 1
            log.warning("entry passage while the turnstile is locked (forced arm or tailgating)")

    def _emit(self, reason: Reason, persons: int, direction: Direction, about: CheckinEvent | None) -> None:
        if self._report is None:
            log.warning("turnstile not bound to a checker: %s event not journalled", reason)
            return
        try:
            self._report(reason, persons=persons, direction=direction, about=about)
        except Exception:
            log.exception("could not journal the turnstile's %s event", reason)

    # ---- emergency release -------------------------------------------------------------------

    async def emergency_open(self) -> None:
        """Evacuation: stop releasing (unfinished and queued releases are annulled), hold both relays
        released so the arms turn freely both ways, blink both lamps and beep until :meth:`emergency_normal`."""
        self.emergency = True
        if self._worker is not None:
            self._worker.cancel()  # its release locks and annuls what was not passed...
            await asyncio.wait([self._worker])
        while not self._queue.empty():
            event = self._queue.get_nowait()
            self._settle(event, max(1, event.persons), 0)
            self._queue.task_done()
        for task in self._flashes.values():
            task.cancel()
        self._flashes.clear()
        self._set(self.entry_relay, True, "entry relay")  # ...then both relays are held released
        self._set(self.exit_relay, True, "exit relay")
        beep_on, beep_off, blink = self._alarm_pattern
        self._blink(self.green_lamp, blink, blink, "green lamp")
        self._blink(self.red_lamp, blink, blink, "red lamp")
        if beep_on > 0:
            self._blink(self.buzzer, beep_on, beep_off, "buzzer")
        self._say("紧急疏散：闸机常开，停止检票 / EMERGENCY: arms free both ways, checking stopped")

    async def emergency_normal(self) -> None:
        """Back to normal checking: lock, lamps and buzzer off, exit relay as configured, releases resume."""
        self.emergency = False
        for name, device in (("green lamp", self.green_lamp), ("red lamp", self.red_lamp), ("buzzer", self.buzzer),
                             ("entry relay", self.entry_relay)):
            self._set(device, False, name)  # off() also stops a blink
        self._set(self.exit_relay, self.cfg.exit_free, "exit relay")
        if self._loop is not None and (self._worker is None or self._worker.done()):
            self._worker = watch(asyncio.create_task(self._serve(), name="turnstile"), self.device_id)
        self._say("紧急状态解除，恢复检票 / emergency cleared: locked, checking resumes")

    def set_alarm_pattern(self, beep_on_ms: int, beep_off_ms: int, blink_ms: int) -> None:
        """The sound and light pattern while held open (from ``[emergency]``); beep_on_ms 0 is silent."""
        self._alarm_pattern = (beep_on_ms, beep_off_ms, blink_ms)

    def _blink(self, device: Any, on_ms: int, off_ms: int, name: str) -> None:
        """Blink in gpiozero's background thread until the device is switched off."""
        try:
            device.blink(on_time=on_ms / 1000, off_time=off_ms / 1000, background=True)
        except (GPIOZeroError, OSError) as exc:
            if name not in self._failed:
                log.error("turnstile %s: write failed: %s", name, exc)
            self._failed.add(name)

    # ---- outputs -----------------------------------------------------------------------------

    def _set(self, device: Any, on: bool, name: str) -> bool:
        """Write one output; a failure is logged once and turns the health to "error"."""
        try:
            if on:
                device.on()
            else:
                device.off()
        except (GPIOZeroError, OSError) as exc:
            if name not in self._failed:
                log.error("turnstile %s: write failed: %s", name, exc)
            self._failed.add(name)
            return False
        self._failed.discard(name)
        return True

    def _flash(self, device: Any, ms: int, name: str) -> None:
        """Turn ``device`` on for ``ms`` milliseconds (a beep, the red lamp); a new flash replaces the last."""
        previous = self._flashes.pop(name, None)
        if previous is not None:
            previous.cancel()
        if ms > 0 and self._set(device, True, name):
            off = asyncio.get_running_loop().create_task(self._off_after(device, ms / 1000, name))
            self._flashes[name] = watch(off, self.device_id)

    async def _off_after(self, device: Any, seconds: float, name: str) -> None:
        await asyncio.sleep(seconds)
        self._set(device, False, name)

    def _say(self, text: str) -> None:
        print(f"[{self.device_id}] ⟳ turnstile: {text}", file=self._out or sys.stdout, flush=True)
        log.info("turnstile: %s", text)
