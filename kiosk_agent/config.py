"""One strict, typed configuration model: a TOML file plus ``KIOSK__`` environment overrides.

    >>> cfg = load_config(None)          # defaults only
    >>> cfg.ui.port
    8080

Environment variables win over the file: ``KIOSK__HUB__PASSWORD=...``. Unknown keys are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    SettingsConfigDict,
)

from confkit import MqttConfig, TomlEnvSettings, load
from confkit.metrics_config import PORT_DOC, MetricsConfig
from kiosk_agent import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubConfig(_Section):
    url: str = Field("http://127.0.0.1:8000", description="the hub's base URL (without /api/v1)")
    username: str = Field("kiosk-1", description="hub user with the 'kiosk' role")
    password: SecretStr = Field(SecretStr(""), description="that user's password; never logged")
    timeout_s: float = Field(5.0, gt=0, le=60, description="budget of one hub request")


class IdReaderConfig(_Section):
    """The ID-card (身份证) reader on a serial port; frame format in docs/kiosk.md."""

    enabled: bool = Field(True, description="read ID cards from the serial reader")
    url: str = Field("/dev/ttyUSB0", description="serial device path or pyserial URL")
    baudrate: int = Field(115200, gt=0, description="serial baud rate")
    reopen_s: float = Field(1.0, gt=0, le=600, description="seconds between attempts to open a missing reader")


class UiConfig(_Section):
    host: str = Field("127.0.0.1", description="address the touchscreen UI listens on (keep it local)")
    port: int = Field(8080, ge=0, le=65535, description="TCP port of the touchscreen UI")
    idle_timeout_s: float = Field(60.0, gt=0, le=3600,
                                  description="seconds without a touch before the UI returns to the start screen")


class KioskMetricsConfig(MetricsConfig):
    port: int = Field(9102, ge=0, le=65535, description=PORT_DOC)


class KioskConfig(TomlEnvSettings):
    """Configuration of one kiosk agent."""

    model_config = SettingsConfigDict(
        env_prefix="KIOSK__", env_nested_delimiter="__", extra="forbid", frozen=True,
    )

    device_id: str = Field("kiosk-1", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="this kiosk's id")
    printer_id: str = Field("printer-1", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                            description="device id of the ticket printer attached to this kiosk")
    printer_poll_s: float = Field(3.0, gt=0, le=600, description="seconds between printer status checks at the hub")
    data_dir: Path = Field(Path("var/kiosk-1"), description="directory of the kiosk's small store (kiosk.db: "
                           "an enrolled kiosk's provisioning state; no tickets or personal data)")
    hub: HubConfig = Field(default_factory=HubConfig, description="the hub and the kiosk's login")
    id_reader: IdReaderConfig = Field(default_factory=IdReaderConfig, description="ID-card reader")
    ui: UiConfig = Field(default_factory=UiConfig, description="touchscreen web UI")
    heartbeat: bool = Field(False, description="report the kiosk's status and health over MQTT ([mqtt])")
    status_interval: float = Field(10.0, gt=0, description="seconds between heartbeat status messages")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT connection for the heartbeat")
    metrics: KioskMetricsConfig = Field(default_factory=KioskMetricsConfig,
                                        description="Prometheus metrics endpoint (docs/operations.md)")


def load_config(path: Path | None, **overrides: Any) -> KioskConfig:
    """Read ``path`` (TOML; may be None) and the environment. Raise :class:`ConfigError`."""
    return load(KioskConfig, path, ConfigError, **overrides)
