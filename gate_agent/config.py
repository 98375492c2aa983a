"""One strict, typed configuration model: a TOML file plus ``GATE__`` environment overrides.

    >>> cfg = load_config(None)          # defaults only
    >>> cfg.mqtt.port
    1883

Environment variables win over the file: ``GATE__MQTT__PORT=1884``. Unknown keys are refused.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gate_agent import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(_Section):
    host: str = Field("127.0.0.1", description="MQTT broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker TCP port")
    prefix: str = Field("venue", min_length=1, description="topic prefix shared with the hub")
    username: str = Field("", description="MQTT user name; empty for anonymous")
    password: SecretStr = Field(SecretStr(""), description="MQTT password; never logged")
    keepalive: int = Field(10, ge=1, le=3600, description="MQTT keepalive in seconds (Last Will latency)")


class ScannerConfig(_Section):
    url: str = Field("/dev/ttyACM0", description='serial device path or pyserial URL; "stdin" reads standard input')
    baudrate: int = Field(9600, gt=0, description="serial baud rate")


class ActuatorConfig(_Section):
    kind: Literal["log"] = Field("log", description="actuator driver; only the simulated 'log' actuator so far")


class OnlineConfig(_Section):
    enabled: bool = Field(False, description="handheld online mode: ask the hub first, then decide offline")
    url: str = Field("http://127.0.0.1:8000", description="the hub's base URL")
    username: str = Field("", description="hub user with the security or ops role, for online checks")
    password: SecretStr = Field(SecretStr(""), description="that user's password; never logged")
    timeout_s: float = Field(0.5, gt=0, le=0.5, description="budget of one online check (at most 500 ms)")


class GateConfig(BaseSettings):
    """Configuration of one gate agent."""

    model_config = SettingsConfigDict(
        env_prefix="GATE__", env_nested_delimiter="__", extra="forbid", frozen=True,
    )

    device_id: str = Field("gate-1", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="this device's id")
    kind: Literal["gate", "handheld"] = Field("gate", description="device kind, reported in status")
    group_id: int = Field(1, ge=0, description="check-in group this device belongs to")
    channel_id: int = Field(1, ge=0, description="check-in channel within the group")
    data_dir: Path = Field(Path("var/gate-1"), description="directory of the local SQLite store")
    hub_keys_file: Path = Field(Path("var/hub/keys.json"),
                                description='JSON {"kid": "<base64 Ed25519 public key>"} exported by the hub')
    status_interval: float = Field(10.0, gt=0, description="seconds between heartbeat status messages")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT connection")
    scanner: ScannerConfig = Field(default_factory=ScannerConfig, description="barcode scanner")
    actuator: ActuatorConfig = Field(default_factory=ActuatorConfig, description="gate actuator")
    online: OnlineConfig = Field(default_factory=OnlineConfig, description="handheld online mode")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err.get("loc", ())) or "config"
        parts.append(f"{key}: {err.get('msg')}")
    return "; ".join(parts)


def _check_env(environ: dict[str, str]) -> None:
    """pydantic-settings silently ignores unknown ``GATE__`` variables; refuse them by name."""
    prefix = GateConfig.model_config.get("env_prefix", "")
    for name in environ:
        if not name.upper().startswith(prefix):
            continue
        model: type[BaseModel] | None = GateConfig
        for part in name[len(prefix):].lower().split("__"):
            fields = model.model_fields if model is not None else {}
            if part not in fields:
                raise ConfigError(f"invalid configuration: unknown environment variable {name}")
            annotation = fields[part].annotation
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def load_config(path: Path | None, **overrides: Any) -> GateConfig:
    """Read ``path`` (TOML; may be None) and the environment. Raise :class:`ConfigError`."""
    _check_env(dict(os.environ))
    cls: type[GateConfig] = GateConfig
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc

        class _FromFile(GateConfig):
            model_config = SettingsConfigDict(toml_file=path)

        cls = _FromFile
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from exc
