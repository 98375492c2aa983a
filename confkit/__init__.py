"""How every device daemon reads its configuration: one typed model, a TOML file, env overrides.

    class GateConfig(TomlEnvSettings):
        model_config = SettingsConfigDict(env_prefix="GATE__", env_nested_delimiter="__", extra="forbid")
        ...

    cfg = load(GateConfig, Path("gate.toml"), ConfigError)

Environment variables win over the file. Unknown keys are refused by name, in the file (the model's
``extra="forbid"``) and in the environment (pydantic-settings would ignore an unknown variable).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

S = TypeVar("S", bound="TomlEnvSettings")


class Section(BaseModel):
    """A table of a daemon's config file: strict (unknown keys refused) and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(Section):
    """The broker connection every device daemon shares."""

    host: str = Field("127.0.0.1", description="MQTT broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker TCP port")
    prefix: str = Field("venue", min_length=1, description="topic prefix shared with the hub")
    username: str = Field("", description="MQTT user name; empty for anonymous")
    password: SecretStr = Field(SecretStr(""), description="MQTT password; never logged")
    keepalive: int = Field(10, ge=1, le=3600, description="MQTT keepalive in seconds (Last Will latency)")
    tls: bool = Field(False, description="connect with TLS")
    ca_file: Path | None = Field(None, description="CA certificate of the broker (TLS); None: the system's CAs")


class TomlEnvSettings(BaseSettings):
    """Base of a daemon's config model: init arguments, then environment, then the TOML file."""

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


def describe(exc: ValidationError) -> str:
    """``key.path: message; ...`` for every error, so the operator sees which key is wrong."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err.get("loc", ())) or "config"
        parts.append(f"{key}: {err.get('msg')}")
    return "; ".join(parts)


def unknown_env(cls: type[BaseSettings], environ: dict[str, str]) -> str | None:
    """The first variable with the model's prefix that names no field, or None."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    for name in environ:
        if not prefix or not name.upper().startswith(prefix):
            continue
        model: type[BaseModel] | None = cls
        for part in name[len(prefix):].lower().split("__"):
            fields = model.model_fields if model is not None else {}
            if part not in fields:
                return name
            annotation = fields[part].annotation
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return None


def load(cls: type[S], path: Path | None, error: type[Exception], **overrides: Any) -> S:
    """Read ``path`` (TOML, may be None) and the environment into ``cls``; raise ``error`` naming the key."""
    if (bad := unknown_env(cls, dict(os.environ))) is not None:
        raise error(f"invalid configuration: unknown environment variable {bad}")
    model: type[S] = cls
    if path is not None:
        if not path.is_file():
            raise error(f"config file {path} does not exist")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise error(f"config file {path} is not valid TOML: {exc}") from exc
        model = type(f"{cls.__name__}FromFile", (cls,), {"model_config": SettingsConfigDict(toml_file=path)})
    try:
        return model(**overrides)
    except ValidationError as exc:
        raise error(f"invalid configuration: {describe(exc)}") from exc
