"""One strict, typed configuration model: a TOML file plus ``GATE__`` environment overrides.

    >>> cfg = load_config(None)          # defaults only
    >>> cfg.mqtt.port
    1883

Environment variables win over the file: ``GATE__MQTT__PORT=1884``. Unknown keys are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    SettingsConfigDict,
)

from confkit import MqttConfig, Section, TomlEnvSettings, load
from confkit.metrics_config import PORT_DOC, MetricsConfig
from gate_agent import ConfigError

__all__ = ["GateConfig", "MqttConfig", "load_config"]

class ScannerConfig(Section):
    url: str = Field("/dev/ttyACM0", description='serial device path or pyserial URL; "stdin" reads standard input')
    baudrate: int = Field(9600, gt=0, description="serial baud rate")


class CameraConfig(Section):
    """A camera reading QR tickets; see :mod:`gate_agent.camera`."""

    enabled: bool = Field(False, description="read QR codes from a camera as well as the serial scanner")
    source: int | str = Field("/dev/video0", description="V4L2 device path or index (0 = /dev/video0); "
                              "or, to simulate a camera, a video file, an image folder, or a pattern like f_%04d.png")
    fps: float = Field(15.0, gt=0, le=120, description="frames read per second, at most")
    debounce_s: float = Field(2.0, ge=0, le=60, description="a code held in view is reported once; "
                              "again only after it has been out of view this many seconds")
    width: int = Field(640, gt=0, le=4096, description="frame width requested from a camera device")
    height: int = Field(480, gt=0, le=4096, description="frame height requested from a camera device")
    loop: bool = Field(False, description="a video file or image folder starts over at its end instead of stopping")


class HardwareConfig(Section):
    """Which drivers the parts run on; see :mod:`gate_agent.hardware` (``--sim`` sets ``backend = "sim"``)."""

    backend: Literal["real", "sim"] = Field(
        "real", description="'real': gpiozero's default pin factory (the Pi's pins), the configured devices; "
        "'sim': every GPIO part on gpiozero's MockFactory, with a simulated patron and emergency panel")


class ActuatorConfig(Section):
    kind: Literal["log", "turnstile"] = Field(
        "log", description="actuator driver: 'log' (prints decisions) or 'turnstile' (gpiozero, see [turnstile])")


class TurnstileConfig(Section):
    """The tripod turnstile (三辊闸) on GPIO (BCM pin numbers); see :mod:`gate_agent.turnstile`."""

    entry_relay_pin: int = Field(17, ge=0, le=53, description="relay that releases the entry direction")
    exit_relay_pin: int = Field(18, ge=0, le=53, description="relay that frees the exit direction")
    entry_sensor_pin: int = Field(27, ge=0, le=53, description="passage sensor, entry direction (one edge a person)")
    exit_sensor_pin: int = Field(22, ge=0, le=53, description="passage sensor, exit direction")
    green_lamp_pin: int = Field(23, ge=0, le=53, description="green lamp: on while a release is in progress")
    red_lamp_pin: int = Field(24, ge=0, le=53, description="red lamp: lit for reject_lamp_ms on a rejection")
    buzzer_pin: int = Field(25, ge=0, le=53, description="buzzer: short beep on admit, long beep on reject")
    relay_active_high: bool = Field(False, description="relay board input polarity; most boards are active-low")
    lamp_active_high: bool = Field(True, description="lamp and buzzer driver polarity")
    sensor_pull_up: bool = Field(True, description="sensors are contacts to GND with the internal pull-up")
    sensor_bounce_ms: int = Field(20, ge=0, le=1000, description="sensor debounce in ms; 0 disables it")
    relay_mode: Literal["pulse", "hold"] = Field(
        "pulse", description="'pulse': one pulse_ms pulse per person; 'hold': relay on until all passed or timeout")
    pulse_ms: int = Field(200, ge=10, le=5000, description="length of one release pulse in 'pulse' mode")
    passage_timeout: float = Field(10.0, gt=0, le=600,
                                   description="seconds each person has to pass; then lock and annul the rest")
    exit_free: bool = Field(True, description="hold the exit relay released so people leave freely; "
                                              "every exit-sensor passage is reported as an 'exit' event")
    short_beep_ms: int = Field(100, ge=0, le=5000, description="admit beep length; 0 = silent")
    long_beep_ms: int = Field(600, ge=0, le=5000, description="reject beep length; 0 = silent")
    reject_lamp_ms: int = Field(1500, ge=0, le=10000, description="how long the red lamp stays lit on a rejection")
    sim_patron: bool = Field(True, description="--sim only: a simulated patron walks through after each release")
    sim_patron_delay: float = Field(1.0, ge=0, le=60, description="--sim only: seconds before the patron walks")

    @model_validator(mode="after")
    def _distinct_pins(self) -> TurnstileConfig:
        pins = [self.entry_relay_pin, self.exit_relay_pin, self.entry_sensor_pin, self.exit_sensor_pin,
                self.green_lamp_pin, self.red_lamp_pin, self.buzzer_pin]
        if len(set(pins)) != len(pins):
            raise ValueError(f"turnstile pins must be distinct, got {pins}")
        return self


class RfidConfig(Section):
    """An RFID/NFC reader (nfcpy) for member cards, annual passes and NFC tickets; see :mod:`gate_agent.rfid`."""

    enabled: bool = Field(False, description="read member cards / NFC tickets with an nfcpy reader")
    path: str = Field("usb", min_length=1, description="nfcpy device path: 'usb', 'usb:054c:06c1', "
                      "'tty:USB0:pn532', or 'udp:host:port' to read a simulated card")
    targets: tuple[Annotated[str, Field(pattern=r"^(106A|106B|212F|424F)$")], ...] = Field(
        ("106A", "212F"), min_length=1, description="technologies polled: 106A (MIFARE/NTAG/DESFire), "
        "106B, 212F/424F (FeliCa); each unanswered one costs a sense round")
    debounce_s: float = Field(1.5, ge=0, le=60, description="a card held on the reader is read once; "
                              "again only after it has been away this many seconds")
    retry_s: float = Field(3.0, gt=0, le=600, description="seconds between attempts to open a missing reader")


class OnlineConfig(Section):
    enabled: bool = Field(False, description="handheld online mode: ask the hub first, then decide offline")
    url: str = Field("http://127.0.0.1:8000", description="the hub's base URL (https://... when the hub serves TLS)")
    ca_file: Path | None = Field(None, description="venue CA (PEM): an https hub's certificate must chain to it "
                                 "(else the check fails and the handheld decides offline); unset: the system's CAs")
    username: str = Field("", description="hub user with the security or ops role, for online checks")
    password: SecretStr = Field(SecretStr(""), description="that user's password; never logged")
    timeout_s: float = Field(0.5, gt=0, le=0.5, description="budget of one online check (at most 500 ms)")


class OverrideConfig(Section):
    """Supervisor override on a handheld: force-admit a refused ticket with a supervisor PIN or card.

    After a refusal of a verified ticket the operator types or scans ``#<PIN>`` on the scanner, or taps
    a supervisor card on the RFID reader, within ``window_s``; the ticket is then admitted as forced,
    journalled with the supervisor's name and the original reason. PINs are never logged or journalled.
    """

    enabled: bool | None = Field(None, description="allow supervisor overrides; unset: on for kind 'handheld', "
                                 "off for a 'gate' (turnstile)")
    window_s: float = Field(60.0, gt=0, le=600, description="seconds after a refusal in which it can be overridden")
    max_failures: int = Field(5, ge=1, le=100, description="wrong PINs in a row before overrides are locked")
    lockout_s: float = Field(300.0, gt=0, le=86400, description="how long overrides stay locked after that")


class EmergencyConfig(Section):
    """Emergency release (紧急疏散): the hub's signed command and the local fire-alarm / button inputs.

    BCM pin numbers; an input left at ``None`` is not wired. See :mod:`gate_agent.emergency` and docs/emergency.md.
    """

    enabled: bool = Field(True, description="obey the hub's emergency command and the local inputs below; "
                          "fire codes require it on evacuation routes")
    fire_input_pin: int | None = Field(None, ge=0, le=53, description="fire-alarm panel dry contact (to GND, "
                                       "internal pull-up); None: not wired")
    fire_contact: Literal["nc", "no"] = Field(
        "nc", description="'nc': normally closed, opens on alarm (a cut wire also counts as alarm, fail-safe); "
        "'no': normally open, closes on alarm")
    fire_bounce_ms: int = Field(50, ge=0, le=1000, description="fire input debounce in ms; 0 disables it")
    button_pin: int | None = Field(None, ge=0, le=53, description="emergency push button (to GND, internal "
                                   "pull-up): a press opens the gate and latches; None: not wired")
    button_bounce_ms: int = Field(50, ge=0, le=1000, description="button debounce in ms; 0 disables it")
    beep_on_ms: int = Field(400, ge=0, le=5000, description="emergency buzzer pattern: on time; 0 = silent")
    beep_off_ms: int = Field(400, ge=10, le=5000, description="emergency buzzer pattern: off time")
    blink_ms: int = Field(500, ge=50, le=5000, description="emergency light: both lamps blink, this long on and off")

    @model_validator(mode="after")
    def _distinct_pins(self) -> EmergencyConfig:
        if self.fire_input_pin is not None and self.fire_input_pin == self.button_pin:
            raise ValueError(f"fire_input_pin and button_pin must differ, got {self.fire_input_pin} twice")
        return self


class GateMetricsConfig(MetricsConfig):
    port: int = Field(9101, ge=0, le=65535, description=PORT_DOC)


class GateConfig(TomlEnvSettings):
    """Configuration of one gate agent."""

    model_config = SettingsConfigDict(
        env_prefix="GATE__", env_nested_delimiter="__", extra="forbid", frozen=True,
    )

    device_id: str = Field("gate-1", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="this device's id")
    kind: Literal["gate", "handheld"] = Field("gate", description="device kind, reported in status")
    direction: Literal["entry", "exit"] = Field(
        "entry", description="what a scan here means: 'entry' (decide admission) or 'exit' (a handheld in exit "
        "mode or an exit-lane reader: every scan lets out and is reported as an exit tied to the ticket, which "
        "gives its entry back where re-entry is allowed)")
    group_id: int = Field(1, ge=0, description="check-in group this device belongs to")
    channel_id: int = Field(1, ge=0, description="check-in channel within the group")
    data_dir: Path = Field(Path("var/gate-1"), description="directory of the local SQLite store")
    hub_keys_file: Path = Field(Path("var/hub/keys.json"),
                                description='JSON {"kid": "<base64 Ed25519 public key>"} exported by the hub')
    device_key_file: Path | None = Field(
        None, description="this device's own Ed25519 key (a base64 seed, mode 0600) that signs its event batches "
        "and emergency states; created on first start if missing; None: <data_dir>/device.key. An enrolled "
        "device (--bootstrap) uses the key in its identity_dir instead, the one the hub registered")
    status_interval: float = Field(10.0, gt=0, description="seconds between heartbeat status messages")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT connection")
    scanner: ScannerConfig = Field(default_factory=ScannerConfig, description="barcode scanner")
    rfid: RfidConfig = Field(default_factory=RfidConfig, description="RFID/NFC card reader")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="camera QR reader")
    hardware: HardwareConfig = Field(default_factory=HardwareConfig, description="hardware backend")
    actuator: ActuatorConfig = Field(default_factory=ActuatorConfig, description="gate actuator")
    turnstile: TurnstileConfig = Field(default_factory=TurnstileConfig, description="tripod turnstile on GPIO")
    online: OnlineConfig = Field(default_factory=OnlineConfig, description="handheld online mode")
    emergency: EmergencyConfig = Field(default_factory=EmergencyConfig, description="emergency release")
    override: OverrideConfig = Field(default_factory=OverrideConfig, description="supervisor override (handhelds)")
    metrics: GateMetricsConfig = Field(default_factory=GateMetricsConfig,
                                       description="Prometheus metrics endpoint (docs/operations.md)")

    @property
    def device_key_path(self) -> Path:
        """Where this device's own key is: ``device_key_file``, else ``<data_dir>/device.key``."""
        return self.device_key_file if self.device_key_file is not None else self.data_dir / "device.key"

    @property
    def override_enabled(self) -> bool:
        return self.override.enabled if self.override.enabled is not None else self.kind == "handheld"


def load_config(path: Path | None, **overrides: Any) -> GateConfig:
    """Read ``path`` (TOML; may be None) and the environment. Raise :class:`ConfigError`."""
    return load(GateConfig, path, ConfigError, **overrides)
