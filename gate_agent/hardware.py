"""The one place that picks a gate's drivers, from the config alone (issue 11).

    >>> parts = make_parts(cfg)                        # cfg.hardware.backend: "real" or "sim" (--sim)
    >>> checker = Checker(..., parts.actuator, ...)
    >>> parts.start_emergency_inputs(release)          # fire input and button (None, None: not wired)
    >>> scanner, camera, rfid = parts.readers(checker)

``backend = "real"``: gpiozero's default pin factory (the Pi's pins) for the turnstile and the emergency
inputs, the configured scanner, camera and RFID reader. ``backend = "sim"``: every GPIO part on one
gpiozero ``MockFactory``, with the simulated patron (:class:`gate_agent.sim.SimPatron`) and the
file-driven :class:`~gate_agent.sim.SimEmergencyPanel`; :func:`gate_agent.sim.sim_config` sets it and
points the camera and RFID reader at their simulated sources, so ``--sim`` is a config transformation
only. A test that plays the patron injects its own pin factory (``make_parts(cfg, pin_factory=f)``).

The parts are built in the order the gate wires them: the actuator first (the emergency release and the
checker need it), then the emergency inputs (they need the release), then the readers (they need the
checker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gate_agent.actuator import Actuator, LoggingActuator
from gate_agent.checkin import Checker
from gate_agent.config import GateConfig
from gate_agent.emergency import EmergencyRelease
from gate_agent.emergency_io import LocalTriggers
from gate_agent.rfid import NfcpyReader, make_reader
from gate_agent.scanner import Scanner
from gate_agent.turnstile import GpioTurnstile

if TYPE_CHECKING:
    from gate_agent.camera import QrCamera
    from gate_agent.sim import SimEmergencyPanel

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """A gate's hardware: what :func:`make_parts` chose, and what it builds as the gate is wired."""

    cfg: GateConfig
    pin_factory: Any  # gpiozero's; None: its default (the real pins on a Pi)
    actuator: Actuator
    triggers: LocalTriggers | None = None
    panel: SimEmergencyPanel | None = None

    @property
    def simulated(self) -> bool:
        return self.cfg.hardware.backend == "sim"

    @property
    def turnstile(self) -> GpioTurnstile | None:
        return self.actuator if isinstance(self.actuator, GpioTurnstile) else None

    def start_emergency_inputs(self, release: EmergencyRelease,
                               ) -> tuple[LocalTriggers | None, SimEmergencyPanel | None]:
        """Set up and start the fire input and button on the pin factory (``sim``: driven by the
        file-driven :class:`~gate_agent.sim.SimEmergencyPanel`). The fire input is read at once."""
        em = self.cfg.emergency
        if em.fire_input_pin is None and em.button_pin is None:
            return None, None
        if self.simulated:
            from gate_agent.sim import SimEmergencyPanel

            self.panel = SimEmergencyPanel(self.pin_factory, em, self.cfg.data_dir)
        self.triggers = LocalTriggers(em, release.fire, release.button, pin_factory=self.pin_factory)
        if self.panel is not None:
            self.panel.wire()
        self.triggers.start()
        return self.triggers, self.panel

    def readers(self, checker: Checker) -> tuple[Scanner, QrCamera | None, NfcpyReader | None]:
        """The serial scanner, the camera (None: ``camera.enabled = false``) and the RFID reader (None:
        ``rfid.enabled = false``), each handing what it reads to ``checker``."""
        cfg = self.cfg
        scanner = Scanner(cfg.scanner.url, checker.scan, baudrate=cfg.scanner.baudrate)
        rfid = make_reader(cfg.rfid, checker) if cfg.rfid.enabled else None
        return scanner, make_camera(cfg, checker), rfid


def make_parts(cfg: GateConfig, *, pin_factory: Any = None) -> Parts:
    """The actuator on the drivers ``cfg.hardware.backend`` names (see the module docstring).

    ``pin_factory``: a gpiozero pin factory to use instead (a test's ``MockFactory`` whose pins it drives).
    """
    simulated = cfg.hardware.backend == "sim"
    if pin_factory is None and simulated:
        from gpiozero.pins.mock import MockFactory

        pin_factory = MockFactory()
    if simulated:
        log.info("simulation: GPIO on gpiozero MockFactory, camera reads images in %s, RFID reader at %s",
                 cfg.camera.source, cfg.rfid.path)
    actuator: Actuator
    if cfg.actuator.kind == "turnstile" and simulated:
        from gate_agent.sim import sim_turnstile

        actuator = sim_turnstile(cfg, factory=pin_factory)  # with the simulated patron
    elif cfg.actuator.kind == "turnstile":
        actuator = GpioTurnstile(cfg.turnstile, device_id=cfg.device_id, pin_factory=pin_factory)
    else:
        actuator = LoggingActuator(cfg.device_id, sound=cfg.kind == "handheld")
    return Parts(cfg, pin_factory, actuator)


def make_camera(cfg: GateConfig, checker: Checker) -> QrCamera | None:
    if not cfg.camera.enabled:
        return None
    from gate_agent.camera import CameraOptions, MultipleCodes, QrCamera  # OpenCV, numpy: ~40 MB, when used

    cam = cfg.camera

    async def on_code(text: str) -> object:
        return await checker.scan(text, "qr")

    async def on_multiple(outcome: MultipleCodes) -> None:  # shown to the patron; nothing is decided
        print(f"[{cfg.device_id}] ✘ ONE_TICKET_AT_A_TIME — {outcome.text_zh} / {outcome.text_en}", flush=True)

    return QrCamera(CameraOptions(cam.source, cam.fps, cam.debounce_s, cam.width, cam.height, cam.loop), on_code,
                    on_multiple=on_multiple)
