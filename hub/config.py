"""One typed configuration model: a TOML file, overridden by ``HUB__SECTION__KEY`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from hub.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of the HTTP API")


class MqttSettings(_Section):
    host: str = Field("127.0.0.1", description="MQTT broker host")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port")
    prefix: str = Field("venue", description="topic prefix shared with every device")
    client_id: str = Field("hub", description="MQTT client identifier of the hub")
    username: str = Field("", description="broker user name; empty for anonymous")
    password: SecretStr = Field(SecretStr(""), description="broker password; never logged")


class AdminSettings(_Section):
    username: str = Field("admin", description="admin created at start when there are no users")
    password: SecretStr = Field(SecretStr(""), description="bootstrap admin password (use HUB__ADMIN__PASSWORD)")


class EmergencySettings(_Section):
    spread_local_fire: bool = Field(
        False, description="when a device reports its local fire alarm (state open, cause fire), open every "
                            "gate of the venue too (an open-all command issued by 'fire-alarm:<device id>')")
    resend_interval: float = Field(
        1.0, gt=0, le=60, description="seconds between re-publishing the current emergency command while an "
                                      "online gate has not confirmed it")


class BrokerAdminSettings(_Section):
    enabled: bool = Field(False, description="manage per-device broker logins through Mosquitto's dynamic-security "
                                             "plugin; off: devices keep the broker's existing (e.g. anonymous) access")
    host: str = Field("127.0.0.1", description="broker host of the dynsec admin connection")
    port: int = Field(1883, ge=1, le=65535, description="broker port of the dynsec admin connection")
    username: str = Field("", description="dynsec admin user")
    password: SecretStr = Field(SecretStr(""), description="dynsec admin password; never logged")
    ca_file: Path | None = Field(None, description="venue CA: when set, the admin connection uses TLS")
    device_host: str = Field("", description="broker host devices are told to use; empty: mqtt.host")
    device_port: int = Field(0, ge=0, le=65535, description="broker port devices are told to use; 0: mqtt.port")
    device_tls: bool = Field(False, description="whether devices must use TLS")


class ProvisioningSettings(_Section):
    request_max_age: float = Field(600.0, gt=0, description="seconds an enrollment request stays acceptable")
    rotate_timeout: float = Field(60.0, gt=0, description="seconds a device has to confirm a credential rotation; "
                                                          "until then (and if it never does) the old password stays")
    default_interval: float = Field(30.0, gt=0, description="heartbeat interval assumed for a device that gives none")
    offline_after: float = Field(2.5, gt=1, description="a device is offline after this many intervals of silence")
    liveness_check: float = Field(1.0, gt=0, description="seconds between liveness sweeps")


class KioskSettings(_Section):
    template: str = Field("ticket", pattern=r"^[a-z0-9_-]{1,40}$", description="printer template of a collected ticket")
    timezone: str = Field("Asia/Shanghai", description="time zone of the date and time printed on tickets")
    lookup_ttl: float = Field(180.0, gt=0, description="seconds a lookup token stays good for collecting")
    otp_ttl: float = Field(300.0, gt=0, description="seconds a one-time SMS code stays valid")
    otp_max_failures: int = Field(5, ge=1, description="wrong one-time codes in a row before the phone is locked")
    otp_lockout: float = Field(900.0, gt=0, description="seconds a phone stays locked after too many wrong codes")
    lookups_per_minute: int = Field(5, ge=1, description="lookups (and code requests) per phone, code or ID number")
    user_lookups_per_minute: int = Field(30, ge=1, description="lookups per kiosk user")
    job_ttl: float = Field(600.0, gt=0, description="seconds a printer may still print a job after it was sent")


class SmsSettings(_Section):
    gateway: Literal["file"] = Field("file", description="file: development gateway appending 'phone<TAB>code' lines")
    path: Path = Field(Path("var/hub/sms.txt"), description="file of the development gateway")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB__", env_nested_delimiter="__", extra="forbid")

    database_url: str = Field("sqlite:///var/hub/hub.db", description="SQLAlchemy URL of the hub database")
    key_file: Path = Field(Path("var/hub/signing.key"), description="Ed25519 seed file, created 0600 if missing")
    key_id: int = Field(1, ge=0, le=255, description="key id written into tokens and envelopes")
    token_ttl_hours: float = Field(12.0, gt=0, description="lifetime of an API login token")
    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP API")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="MQTT bridge")
    admin: AdminSettings = Field(default_factory=AdminSettings, description="bootstrap admin")
    emergency: EmergencySettings = Field(default_factory=EmergencySettings, description="emergency release")
    broker_admin: BrokerAdminSettings = Field(default_factory=BrokerAdminSettings,
                                              description="per-device broker credentials (dynamic security)")
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings,
                                               description="device enrollment, commands and liveness")
    kiosk: KioskSettings = Field(default_factory=KioskSettings, description="self-service collection kiosks")
    sms: SmsSettings = Field(default_factory=SmsSettings, description="SMS gateway for one-time codes")


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (TOML, optional) with env overrides; raise ConfigError naming the bad key."""
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist; create it or omit --config")

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
        raise ConfigError(f"bad config key {key!r}: {first.get('msg')}") from exc
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"config file {path} does not parse: {exc}") from exc
    return loaded
