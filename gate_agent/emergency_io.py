"""The local emergency triggers on GPIO: the fire-alarm panel's dry contact and the emergency button.

    >>> triggers = LocalTriggers(cfg.emergency, release.fire, release.button, pin_factory=factory)
    >>> triggers.start()                      # reads the fire input now: an alarm at start opens at once
    >>> factory.pin(5).drive_high()           # NC contact opens (alarm or cut wire): the gate opens

Both are contacts to GND on an input with the internal pull-up. A normally-closed (``nc``) fire contact
reads low while all is well; open circuit (alarm, or a cut wire) reads high and counts as alarm: the
fail-safe wiring fire codes expect. ``no`` is the reverse. No network is involved: the gate opens
locally and reports its state to the hub when the link is up.

gpiozero calls these callbacks in its own thread; they only hop onto the loop with
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from gpiozero import Button, DigitalInputDevice, GPIOZeroError

from gate_agent import GateError
from gate_agent.config import EmergencyConfig, GateConfig
from gate_agent.emergency import EmergencyRelease
from gate_agent.store import Store
from gate_agent.turnstile import GpioTurnstile
from protocol.keys import Keyring

log = logging.getLogger(__name__)


class EmergencyInputError(GateError, RuntimeError):
    """The fire input or emergency button could not be set up (pin in use, no pin factory, ...)."""


class LocalTriggers:
    """The fire input and the emergency button of one gate (either may be absent: pin ``None``)."""

    def __init__(self, cfg: EmergencyConfig, on_fire: Callable[[bool], None], on_button: Callable[[], None], *,
                 pin_factory: Any = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.cfg = cfg
        self._on_fire = on_fire
        self._on_button = on_button
        self._loop = loop
        self.fire_input: Any = None
        self.button: Any = None
        try:
            if cfg.fire_input_pin is not None:
                bounce = cfg.fire_bounce_ms / 1000 if cfg.fire_bounce_ms else None
                self.fire_input = DigitalInputDevice(cfg.fire_input_pin, pull_up=True, bounce_time=bounce,
                                                     pin_factory=pin_factory)
            if cfg.button_pin is not None:
                bounce = cfg.button_bounce_ms / 1000 if cfg.button_bounce_ms else None
                self.button = Button(cfg.button_pin, pull_up=True, bounce_time=bounce, pin_factory=pin_factory)
        except (GPIOZeroError, OSError) as exc:
            self.close()
            raise EmergencyInputError(f"emergency input GPIO setup failed: {exc}") from exc

    def alarm(self) -> bool:
        """Is the fire input in alarm now (or cut, for ``nc``)? False when not wired."""
        if self.fire_input is None:
            return False
        closed = bool(self.fire_input.is_active)  # pulled to GND through the contact
        return not closed if self.cfg.fire_contact == "nc" else closed

    def start(self) -> None:
        """Report the fire input's present state, then follow its edges and the button (on the loop)."""
        self._loop = self._loop or asyncio.get_running_loop()
        if self.fire_input is not None:
            alarm = self.alarm()
            log.info("fire input on GPIO%s (%s): %s", self.cfg.fire_input_pin, self.cfg.fire_contact,
                     "ALARM" if alarm else "normal")
            if alarm:
                self._on_fire(True)
            self.fire_input.when_activated = functools.partial(self._hop, self._fire_edge)
            self.fire_input.when_deactivated = functools.partial(self._hop, self._fire_edge)
        if self.button is not None:
            self.button.when_pressed = functools.partial(self._hop, self._on_button)

    def _hop(self, callback: Callable[[], None]) -> None:
        """Runs in gpiozero's thread: only hop onto the loop from here."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(callback)

    def _fire_edge(self) -> None:
        self._on_fire(self.alarm())

    def health(self) -> str:
        """``"ok"`` (``"disabled"`` when nothing is wired); an alarm is reported as the emergency state."""
        return "ok" if self.fire_input is not None or self.button is not None else "disabled"

    def close(self) -> None:
        for device in (self.button, self.fire_input):
            if device is not None:
                with contextlib.suppress(GPIOZeroError, OSError):
                    device.close()
        self.button = self.fire_input = None


# ---- wiring (used by gate_agent.app.run_gate; the inputs: gate_agent.hardware) -----------------------


def make_release(cfg: GateConfig, store: Store, keyring: Keyring, actuator: object) -> EmergencyRelease | None:
    """The gate's :class:`EmergencyRelease` (None if ``[emergency] enabled = false``)."""
    if not cfg.emergency.enabled:
        return None
    em = cfg.emergency
    if isinstance(actuator, GpioTurnstile):
        actuator.set_alarm_pattern(em.beep_on_ms, em.beep_off_ms, em.blink_ms)
    return EmergencyRelease(cfg.device_id, cfg.group_id, cfg.channel_id, store, keyring, actuator)
