"""One typed configuration model: a TOML file, overridden by ``HUB__SECTION__KEY`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from hub.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of the HTTP API")
    tls_cert_file: Path | None = Field(None, description="server certificate (PEM, e.g. from 'provision ca "
                                                         "server-cert'): when set, the API is served over HTTPS only")
    tls_key_file: Path | None = Field(None, description="private key of tls_cert_file (PEM, 0600)")
    trusted_proxies: list[Annotated[str, StringConstraints(max_length=64, pattern=r"^[0-9A-Fa-f:./]+$")]] = Field(
        default_factory=list, max_length=32,
        description="addresses (or CIDR networks) of the load balancers in front of the hub, e.g. [\"127.0.0.1\"] "
                    "for a local HAProxy: only from these is X-Forwarded-For believed as the client's address (login "
                    "throttling, audit). Empty: the TCP peer is the client, the header is ignored")

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("HTTPS needs both http.tls_cert_file and http.tls_key_file")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_file is not None else "http"


class MqttSettings(_Section):
    host: str = Field("127.0.0.1", description="MQTT broker host")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port")
    prefix: str = Field("venue", description="topic prefix shared with every device")
    client_id: str = Field("hub", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                           description="MQTT client identifier of the hub, also its id on the presence topic "
                                       "{prefix}/hub/presence/<client_id> (retained online/offline, its Last Will)")
    username: str = Field("", description="broker user name; empty for anonymous")
    password: SecretStr = Field(SecretStr(""), description="broker password; never logged")
    session_expiry: int = Field(3600, ge=0, le=7 * 86400,
                                description="seconds the broker keeps the hub's session after it goes away: what "
                                            "devices send meanwhile reaches the hub when it is back (0: clean "
                                            "session on every connect)")
    tls: bool = Field(False, description="connect to the broker's TLS listener (e.g. port 8883)")
    ca_file: Path | None = Field(None, description="venue CA (PEM) the broker's certificate must chain to; "
                                                   "unset with tls = true: the system's CAs")
    shared_group: str = Field("hub", pattern=r"^[A-Za-z0-9_-]{0,32}$",
                              description="MQTT v5 shared subscription group of the device uplinks (events, "
                                          "heartbeats, emergency reports, sync requests, print results, enrolment "
                                          "requests: $share/<group>/...): the hubs of one database with the same "
                                          "group each get a share, so one hub handles each message. Empty: plain "
                                          "subscriptions (every hub gets every message)")


class IngestSettings(_Section):
    """Where event batches from the gates are stored (hub/ingest_worker.py)."""

    process: bool = Field(True, description="store event batches in a child process of the hub (its own "
                                            "interpreter, so a burst of events never slows the HTTP API); false: in "
                                            "a worker thread of the hub's process")
    max_events_per_transaction: int = Field(5000, ge=1, le=100_000,
                                            description="event batches waiting are stored together in one "
                                                        "transaction up to this many events")


class SyncSettings(_Section):
    """Per-device limits on whitelist sync requests (MQTT ``device/<id>/sync``), so one device asking
    for hundreds of snapshots cannot slow the hub for everyone. Excess requests are dropped (the device
    asks again when it next sees a gap) and logged once per device per ``log_interval``."""

    snapshot_interval: float = Field(5.0, gt=0, le=3600, description="seconds per device between whole "
                                                                     "snapshots, once its burst is used up")
    snapshot_burst: int = Field(3, ge=1, le=100, description="snapshots a device may get back to back")
    requests_per_second: float = Field(5.0, gt=0, le=1000, description="sync requests (deltas included) per "
                                                                       "device per second, once its burst is used up")
    request_burst: int = Field(20, ge=1, le=10000, description="sync requests a device may send back to back")
    log_interval: float = Field(10.0, gt=0, le=3600, description="seconds between log lines about one "
                                                                 "device's dropped sync requests")


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
    command_resend: float = Field(2.0, gt=0, description="a command not answered yet is sent again when its "
                                                         "device's heartbeat comes at least this many seconds "
                                                         "after the last send (the device runs each id once)")


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


class LoginSettings(_Section):
    max_failures: int = Field(5, ge=1, le=1000, description="wrong passwords for one user name within 'window' "
                                                          "before its logins are locked for 'lockout' seconds")
    address_max_failures: int = Field(5, ge=1, le=10000, description="wrong passwords from one source address "
                                                                   "within 'window' before that address is locked")
    window: float = Field(900.0, gt=0, le=86400, description="seconds over which wrong passwords are counted")
    lockout: float = Field(300.0, gt=0, le=86400, description="seconds a user name or address stays locked; a "
                                                            "correct password is refused too until it ends")
    security_token_ttl_hours: float = Field(8.0, gt=0, le=24, description="lifetime of a login token of the "
                                                                        "security role (it can open every gate); "
                                                                        "other roles: token_ttl_hours")


class DeviceSettings(_Section):
    accept_unregistered: bool = Field(
        False, description="believe devices that are not in the registry (enrolled or registered through POST "
                           "/api/v1/provisioning/devices): their unsigned batches, the group and channel their "
                           "messages name. For a bench or a throwaway demo only; never at a venue")
    accept_unsigned_until: float | None = Field(
        None, ge=0, le=4102444800, allow_inf_nan=False,
        description="a rolling upgrade: until this unix time, a REGISTERED device's unsigned event batches and "
                    "emergency states (sent by the previous release, which did not sign) are accepted, still "
                    "in its registered group and channel, each logged as a security event; an unsigned fire "
                    "report never opens other gates. Unset (the default): unsigned is refused")
    registry_refresh: float = Field(2.0, gt=0, le=300, description="seconds the bridge keeps its copy of the "
                                                                    "registry before reading it again")
    security_log_interval: float = Field(60.0, ge=0, le=86400,
                                         description="the same security event of one device (say, a gate that "
                                                     "keeps re-sending a refused batch) is stored and logged at "
                                                     "most once per this many seconds")


class MetricsSettings(_Section):
    """``GET /metrics`` (Prometheus text format, docs/operations.md): counts and states, no personal data, but
    they show how the venue runs. Open by default on the API's address (keep it on the loopback or the LAN);
    set ``token`` for Prometheus to send as ``Authorization: Bearer <token>``."""

    enabled: bool = Field(True, description="serve GET /metrics on the HTTP API")
    token: SecretStr = Field(SecretStr(""), description="bearer token a scrape must send; empty: no token asked "
                                                        "(use HUB__METRICS__TOKEN rather than the file)")


class SmsSettings(_Section):
    gateway: Literal["file"] = Field("file", description="file: development gateway appending 'phone<TAB>code' lines")
    path: Path = Field(Path("var/hub/sms.txt"), description="file of the development gateway")


class ClusterSettings(_Section):
    """Several hub processes on one PostgreSQL database (docs/scaling.md): the elected hub (a PostgreSQL advisory
    lock) runs the work that must run once; caches are dropped across processes by LISTEN/NOTIFY. On SQLite the one
    hub is always the elected one."""

    lease_check: float = Field(1.0, gt=0, le=60, description="seconds between tries for the leader lock (and "
                                                               "checks that the elected hub still holds it)")
    db_timeout: float = Field(3.0, gt=0, le=60, description="seconds the elected hub waits on its lock connection "
                                                              "before it stops acting as leader")
    election_key: int = Field(0x7665_6E75_6568, ge=1, le=2**62,
                              description="PostgreSQL advisory lock key of the leader (the same for every hub of one "
                                          "database)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB__", env_nested_delimiter="__", extra="forbid")

    database_url: str = Field("sqlite:///var/hub/hub.db", description="SQLAlchemy URL of the hub database")
    key_file: Path = Field(Path("var/hub/signing.key"),
                           description="the TICKET key (signs ticket tokens only): Ed25519 seed file, created 0600 "
                                       "if missing (atomically, never overwritten)")
    key_id: int = Field(1, ge=0, le=255, description="key id of the ticket key, written into every token")
    control_key_file: Path | None = Field(None,
                                          description="the CONTROL key (signs every envelope: emergency, device "
                                                      "commands and configs, whitelists, acks, print jobs, key "
                                                      "lists): Ed25519 seed file, created 0600 if missing; "
                                                      "default: control.key next to key_file")
    control_key_id: int | None = Field(None, ge=0, le=255,
                                       description="key id of the control key (not key_id); default key_id + 1")
    token_ttl_hours: float = Field(12.0, gt=0, description="lifetime of an API login token (security role: "
                                                           "login.security_token_ttl_hours)")
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
    login: LoginSettings = Field(default_factory=LoginSettings,
                                 description="login throttling, lock-out and security-role sessions")
    sync: SyncSettings = Field(default_factory=SyncSettings, description="per-device whitelist sync rate limits")
    devices: DeviceSettings = Field(default_factory=DeviceSettings,
                                    description="what the hub believes of devices: the registry, security events")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus metrics (GET /metrics)")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings,
                                     description="several hubs on one PostgreSQL database: elected work, cache news")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="storing the gates' event batches")

    @model_validator(mode="after")
    def _distinct_key_ids(self) -> Settings:
        if self.control_kid == self.key_id:
            raise ValueError(f"control_key_id and key_id are both {self.key_id}: the control key and the ticket "
                             "key are separate keys with separate ids")
        return self

    @property
    def control_kid(self) -> int:
        """``control_key_id``, or the id after ``key_id``."""
        if self.control_key_id is not None:
            return self.control_key_id
        return self.key_id + 1 if self.key_id < 255 else 0

    @property
    def control_key_path(self) -> Path:
        """The control key's file: ``control_key_file``, or ``control.key`` next to ``key_file``."""
        return self.control_key_file if self.control_key_file is not None else self.key_file.with_name("control.key")


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
