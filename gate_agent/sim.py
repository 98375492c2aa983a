"""Simulated hardware for ``--sim``: a turnstile on gpiozero's MockFactory and a patron who walks through.

    >>> turnstile = sim_turnstile(cfg)          # prints "[gate-1] ⟳ turnstile: released for 2", ...
    >>> turnstile.bind(checker.report)

The patron reacts to each release: after ``turnstile.sim_patron_delay`` seconds it turns the arms once
per admitted person, driving the entry sensor's mock pin from a worker thread as a real sensor
interrupt would. ``turnstile.sim_patron = false`` leaves the turnstile alone (every admission is then
annulled after ``passage_timeout``), and a test may drive the pins itself through ``pin_factory``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TextIO

from gpiozero.pins.mock import MockFactory

from gate_agent.config import EmergencyConfig, GateConfig, TurnstileConfig
from gate_agent.turnstile import GpioTurnstile

log = logging.getLogger(__name__)

STEP_GAP = 0.3  # seconds between two persons of a group


class SimPatron:
    """Turns the arms ``persons`` times after each release, ``delay`` seconds after it started."""

    def __init__(self, turnstile: GpioTurnstile, factory: MockFactory, cfg: TurnstileConfig, *,
                 delay: float | None = None) -> None:
        self.turnstile = turnstile
        self.factory = factory
        self.cfg = cfg
        self.delay = cfg.sim_patron_delay if delay is None else delay

    def __call__(self, persons: int) -> None:
        self.turnstile.spawn(self._walk(persons))

    async def _walk(self, persons: int) -> None:
        await asyncio.sleep(self.delay)
        for i in range(persons):
            if i:
                await asyncio.sleep(STEP_GAP)
            await asyncio.to_thread(self.pass_once)

    def pass_once(self, direction: str = "entry") -> None:
        """One passage: the sensor goes active and back (call from any thread)."""
        pin = self.factory.pin(self.cfg.entry_sensor_pin if direction == "entry" else self.cfg.exit_sensor_pin)
        if self.cfg.sensor_pull_up:  # a contact to GND: active while low
            pin.drive_low()
            pin.drive_high()
        else:
            pin.drive_high()
            pin.drive_low()


SIM_RFID_PATH = "udp:localhost:18888"
SIM_FIRE_PIN, SIM_BUTTON_PIN = 5, 6
FIRE_FILE, BUTTON_FILE = "sim-fire-alarm", "sim-emergency-button"


class SimEmergencyPanel:
    """The fire-alarm contact and emergency button of ``--sim``, on the MockFactory, driven by files.

    ``touch <data_dir>/sim-fire-alarm`` puts the fire input in alarm (the contact opens); removing the
    file puts it back to normal. ``touch <data_dir>/sim-emergency-button`` presses the button once (the
    file is then removed). An in-process test may drive ``factory.pin(pin)`` itself instead.
    """

    def __init__(self, factory: MockFactory, cfg: EmergencyConfig, data_dir: Path, *, poll: float = 0.1) -> None:
        self.factory = factory
        self.cfg = cfg
        self.fire_file, self.button_file = data_dir / FIRE_FILE, data_dir / BUTTON_FILE
        self.poll = poll

    def set_fire(self, alarm: bool) -> None:
        """Drive the fire contact: closed (to GND, low) when normal for ``nc``, the reverse for ``no``."""
        if self.cfg.fire_input_pin is None:
            return
        closed = not alarm if self.cfg.fire_contact == "nc" else alarm
        pin = self.factory.pin(self.cfg.fire_input_pin)
        pin.drive_low() if closed else pin.drive_high()

    def press(self) -> None:
        if self.cfg.button_pin is not None:
            pin = self.factory.pin(self.cfg.button_pin)
            pin.drive_low()
            pin.drive_high()

    def wire(self) -> None:
        """Before the inputs are read: the contact as the alarm file says (normal unless it exists)."""
        self.set_fire(self.fire_file.exists())

    async def run(self) -> None:
        alarm = self.fire_file.exists()
        while True:
            await asyncio.sleep(self.poll)
            now = self.fire_file.exists()
            if now != alarm:
                alarm = now
                await asyncio.to_thread(self.set_fire, alarm)  # an interrupt from another thread, as on a Pi
            if self.button_file.exists():
                self.button_file.unlink(missing_ok=True)
                await asyncio.to_thread(self.press)


def sim_config(cfg: GateConfig) -> GateConfig:
    """``cfg`` with every part on its hardware-free backend, for ``--sim``: only a config transformation;
    :func:`gate_agent.hardware.make_parts` then picks the drivers from ``hardware.backend = "sim"``.

    A gate's actuator becomes the MockFactory turnstile with a simulated patron; the camera reads the
    images dropped into ``<data_dir>/sim-camera`` (a phone held up to it: write a QR image there, remove
    it when the patron walks on); the RFID reader is nfcpy's ``udp`` driver, where an emulated card
    answers (``python -m tests.nfc_emulator``). The serial scanner stays as configured (a socat pty).
    The fire input and emergency button sit on mock pins (5 and 6 unless configured), driven by files in
    ``<data_dir>`` (:class:`SimEmergencyPanel`).
    """
    folder = cfg.data_dir / "sim-camera"
    folder.mkdir(parents=True, exist_ok=True)
    rfid_path = cfg.rfid.path if cfg.rfid.path.startswith("udp:") else SIM_RFID_PATH
    return cfg.model_copy(update={
        "hardware": cfg.hardware.model_copy(update={"backend": "sim"}),
        "actuator": cfg.actuator.model_copy(update={"kind": "turnstile" if cfg.kind == "gate" else "log"}),
        "camera": cfg.camera.model_copy(update={"enabled": True, "source": str(folder), "loop": True,
                                                "fps": min(cfg.camera.fps, 10.0)}),
        "rfid": cfg.rfid.model_copy(update={"enabled": True, "path": rfid_path, "targets": ("212F",)}),
        "emergency": cfg.emergency.model_copy(update={
            "fire_input_pin": SIM_FIRE_PIN if cfg.emergency.fire_input_pin is None else cfg.emergency.fire_input_pin,
            "button_pin": SIM_BUTTON_PIN if cfg.emergency.button_pin is None else cfg.emergency.button_pin}),
    })


def sim_turnstile(cfg: GateConfig, loop: asyncio.AbstractEventLoop | None = None, *,
                  out: TextIO | None = None, factory: MockFactory | None = None) -> GpioTurnstile:
    """A :class:`GpioTurnstile` on ``factory`` (default: a fresh ``MockFactory``; ``turnstile.pin_factory``),
    with a patron if ``cfg.turnstile.sim_patron``. Bind it to the checker and run it like the real one."""
    factory = factory if factory is not None else MockFactory()
    turnstile = GpioTurnstile(cfg.turnstile, device_id=cfg.device_id, pin_factory=factory, out=out, loop=loop)
    if cfg.turnstile.sim_patron:
        turnstile.add_listener(SimPatron(turnstile, factory, cfg.turnstile))
    return turnstile
