"""One strict, typed configuration model: a TOML file plus ``PRINTER__`` environment overrides.

    >>> cfg = load_config(None)          # defaults only
    >>> cfg.printer.kind
    'dummy'

Environment variables win over the file: ``PRINTER__PRINTER__HOST=10.0.0.9``. Unknown keys are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    SettingsConfigDict,
)

from confkit import MqttConfig, TomlEnvSettings, load
from confkit.metrics_config import PORT_DOC, MetricsConfig
from printer_agent import ConfigError
from printer_agent.template import TEMPLATE_DIR


class PrinterConfig(BaseModel):
    """The ESC/POS printer and how to reach it (python-escpos printer classes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["network", "serial", "usb", "file", "dummy"] = Field(
        "dummy", description="network (TCP 9100), serial, usb, file (a device node, write-only: no status), "
        "or dummy (prints nowhere; keeps the bytes: for trials)")
    host: str = Field("127.0.0.1", description="network: printer address")
    port: int = Field(9100, ge=1, le=65535, description="network: printer TCP port")
    timeout: float = Field(3.0, gt=0, le=60, description="network/serial: seconds to wait for the printer")
    devfile: str = Field("/dev/usb/lp0", description="serial/file: device path, e.g. /dev/ttyUSB0")
    baudrate: int = Field(9600, gt=0, description="serial: baud rate")
    usb_vendor: int = Field(0x04B8, ge=0, le=0xFFFF, description="usb: vendor id (0x04b8 = Epson)")
    usb_product: int = Field(0x0E15, ge=0, le=0xFFFF, description="usb: product id")
    profile: str = Field("TM-T20II", description="python-escpos capability profile (paper width, code pages)")
    cjk: Literal["gb18030", "raster"] = Field(
        "gb18030", description="Chinese text: gb18030 = printer's Chinese mode (FS &); raster = drawn as an image")
    status_query: bool = Field(True, description="ask the printer for online/paper/cover status before each job "
                               "(DLE EOT); off for printers that do not answer")


class PrinterMetricsConfig(MetricsConfig):
    port: int = Field(9103, ge=0, le=65535, description=PORT_DOC)


class PrinterAgentConfig(TomlEnvSettings):
    """Configuration of one ticket printer agent."""

    model_config = SettingsConfigDict(env_prefix="PRINTER__", env_nested_delimiter="__", extra="forbid", frozen=True)

    device_id: str = Field("printer-1", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="this printer's device id")
    data_dir: Path = Field(Path("var/printer-1"), description="directory of the job queue (SQLite)")
    hub_keys_file: Path = Field(Path("var/hub/keys.json"),
                                description='JSON {"kid": "<base64 Ed25519 public key>"} exported by the hub')
    template_dir: Path = Field(TEMPLATE_DIR, description="directory of the ticket templates (*.toml)")
    status_interval: float = Field(10.0, gt=0, description="seconds between heartbeat status messages")
    poll_interval: float = Field(5.0, gt=0, description="seconds between printer status polls while idle")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT connection")
    printer: PrinterConfig = Field(default_factory=PrinterConfig, description="the ESC/POS printer")
    metrics: PrinterMetricsConfig = Field(default_factory=PrinterMetricsConfig,
                                          description="Prometheus metrics endpoint (docs/operations.md)")


def load_config(path: Path | None, **overrides: Any) -> PrinterAgentConfig:
    """Read ``path`` (TOML; may be None) and the environment. Raise :class:`ConfigError`."""
    return load(PrinterAgentConfig, path, ConfigError, **overrides)
