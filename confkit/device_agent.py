"""The device side of provisioning for an enrolled device of any kind: hub config, remote commands, hub keys.

:class:`DeviceAgent` serves three topics through its daemon's :class:`DeviceHost` (the daemon's broker
session, store and config, behind a small interface; the gate's is :class:`gate_agent.enrolled.GateHost`):

- ``device/<id>/config`` (retained): a signed :class:`ConfigPayload`; a newer version is validated by
  the host (:meth:`DeviceHost.validate_config`; :data:`HUB_OWNED` keys are always refused), persisted
  in the host's meta values and acked (:class:`ConfigAck`). It is in force from the next start of the
  daemon (send ``restart``); ``config_version`` in the status is the version persisted.
- ``device/<id>/command``: a signed :class:`CommandPayload`; each command id runs once (ids persisted),
  never after ``expires_at``; the result goes to ``command_result``. ``restart`` replies, then sets the
  daemon's stop event; the daemon exits with :data:`EXIT_RESTART` (75) so its supervisor (systemd
  ``Restart=always``) starts it again.
- ``hub/keys`` (retained): a signed :class:`KeysPayload` with a newer version replaces the trusted
  hub keys, in memory (the shared :class:`~protocol.keys.Keyring`) and in ``identity.json``.

Forged, malformed, misaddressed or replayed messages are logged and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import nacl.signing
from pydantic import BaseModel, SecretStr, ValidationError

from confkit import MqttConfig
from confkit.enrolment import Identity, device_key
from protocol.envelope import open_envelope, peek_version
from protocol.errors import SignatureError
from protocol.keys import Keyring
from protocol.provisioning import (
    KIND_COMMAND,
    KIND_CONFIG,
    KIND_KEYS,
    CommandPayload,
    CommandResult,
    ConfigAck,
    ConfigPayload,
    KeysPayload,
    ProvisioningTopics,
    open_secret,
)

log = logging.getLogger(__name__)

EXIT_RESTART = 75  # EX_TEMPFAIL: "restart me", after a hub `restart` command
HUB_OWNED = frozenset({"device_id", "mqtt", "data_dir", "hub_keys_file", "kind"})  # never set by hub config
_SEEN_MAX = 500
META_BIRTH, META_CONFIG, META_CONFIG_VERSION, META_COMMANDS = (
    "prov_birth", "prov_config", "prov_config_version", "prov_commands")

Handler = Callable[[bytes], Awaitable[None]]
C = TypeVar("C", bound=BaseModel)


class DeviceHost(Protocol):
    """What :class:`DeviceAgent` needs from a daemon, whatever its kind. The device id, broker prefix and
    hub keys come from the identity; everything else from here."""

    @property
    def software_version(self) -> str:
        """The daemon's release, reported by ``diagnostics``."""

    @property
    def data_dir(self) -> Path:
        """Where the daemon keeps its data: its disk usage is reported by ``diagnostics``."""

    birth: int | None  # set by the agent at start; the daemon sends it in every status
    config_version: int | None  # the hub config version persisted; set by the agent, sent in every status

    def validate_config(self, settings: dict[str, Any]) -> None:
        """Raise a ValueError (the daemon's ConfigError) naming the bad key if ``settings`` over the
        daemon's config is invalid."""

    def get_meta(self, key: str) -> str | None:
        """A value persisted with :meth:`set_meta` (the daemon's store), or None."""

    def set_meta(self, **values: str) -> None:
        """Persist ``key=value`` pairs durably, in one transaction."""

    def serve(self, topic: str, handler: Handler) -> None:
        """Subscribe ``topic`` on the broker session (from the next connect on) and pass its messages to
        ``handler``; an exception of the handler is logged as a refused message."""

    def serve_keys(self, topic: str, handler: Handler) -> None:
        """Like :meth:`serve`, for the hub key list: subscribed before every other topic."""

    async def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1; False if not connected or it failed."""

    def relogin(self, username: str, password: str) -> None:
        """Use these broker credentials from now on (reconnect with them)."""

    async def resync(self) -> dict[str, Any]:
        """The ``resync_whitelist`` command: ask the hub for its data again; the result for the hub."""

    async def keys_changed(self) -> None:
        """The trusted hub keys changed: get the retained messages again (they may verify now)."""

    def keys_unverified(self, reason: str, resolved: Callable[[], bool]) -> None:
        """A hub key list did not verify with the trusted keys (a missed rotation?): report it (as stale,
        say) unless ``resolved()`` turns true soon."""

    def diagnostics(self) -> dict[str, Any]:
        """The daemon's own part of the ``diagnostics`` result (queue depths, sequence numbers...)."""


class HubConfigError(ValueError):
    """A hub config refused before the daemon saw it: it sets a :data:`HUB_OWNED` key."""


def refuse_hub_owned(settings: dict[str, Any], error: type[Exception] = HubConfigError) -> None:
    """Raise ``error`` naming the keys of ``settings`` the hub may not set (:data:`HUB_OWNED`)."""
    owned = sorted(HUB_OWNED & settings.keys())
    if owned:
        raise error(f"not settable by the hub: {', '.join(owned)}")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``, tables merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def with_hub_config(model: type[C], cfg: BaseModel, settings: dict[str, Any], error: type[Exception]) -> C:
    """``cfg`` with the hub's settings over it, validated as ``model``; raises ``error`` naming a bad or
    hub-owned key."""
    refuse_hub_owned(settings, error)
    try:
        return model.model_validate(merge(cfg.model_dump(), settings))
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise error(f"invalid hub config: {bad}") from exc


def identity_mqtt(mqtt: MqttConfig, identity: Identity) -> MqttConfig:
    """``mqtt`` with the enrolled device's broker address, prefix and login."""
    return mqtt.model_copy(update={
        "host": identity.broker_host, "port": identity.broker_port, "prefix": identity.prefix,
        "username": identity.username, "password": identity.password, "tls": identity.broker_tls,
        "ca_file": Path(identity.broker_ca_file) if identity.broker_ca_file else None})


class RecentErrors(logging.Handler):
    """The last warnings and errors logged, for the ``diagnostics`` command."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
                            f"{record.levelname} {record.name}: {record.getMessage()[:200]}")


class DeviceAgent:
    """Serves config, commands and hub keys for an enrolled device; :meth:`start` before the session runs.

    ``keyring``: the daemon's trusted hub keys (replaced in place on a key update); ``stop``: set after
    the ``restart`` command, the daemon then exits with :attr:`exit_code` (:data:`EXIT_RESTART`)."""

    def __init__(self, identity_dir: Path, host: DeviceHost, keyring: Keyring, stop: asyncio.Event, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.identity_dir = identity_dir
        self.identity = Identity.load(identity_dir)
        self.key: nacl.signing.SigningKey = device_key(identity_dir)
        self.host, self.keyring, self.stop = host, keyring, stop
        self.clock = clock
        self.exit_code = 0
        self.recent = RecentErrors()
        self.topics = ProvisioningTopics(self.identity.prefix)
        self._commands: dict[str, Callable[[CommandPayload], Awaitable[dict[str, Any]]]] = {
            "resync_whitelist": self._resync, "diagnostics": self._diagnostics,
            "restart": self._restart, "rotate_credentials": self._rotate,
        }

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    def start(self) -> int:
        """Count this start (birth), show it and the config version in the status, serve the topics."""
        birth = int(self.host.get_meta(META_BIRTH) or 0) + 1
        self.host.set_meta(**{META_BIRTH: str(birth)})
        version = self.host.get_meta(META_CONFIG_VERSION)
        self.host.birth = birth
        self.host.config_version = int(version) if version is not None else None
        me = self.device_id
        self.host.serve(self.topics.config(me), self.on_config)
        self.host.serve(self.topics.command(me), self.on_command)
        self.host.serve_keys(self.topics.hub_keys(), self.on_keys)
        logging.getLogger().addHandler(self.recent)
        log.info("provisioned device %s, birth %d, config version %s", me, birth, version)
        return birth

    def close(self) -> None:
        logging.getLogger().removeHandler(self.recent)

    # ---- config ------------------------------------------------------------------------------

    async def on_config(self, data: bytes) -> None:
        if not data:
            return  # a retained config cleared by the hub
        _kind, body = open_envelope(data, self.keyring, kinds={KIND_CONFIG})
        payload = ConfigPayload.model_validate(body)
        if payload.device_id != self.device_id:
            log.warning("ignoring a config addressed to %s", payload.device_id)
            return
        current = self.host.config_version or 0
        if payload.version < current:
            log.info("ignoring config version %d: version %d is applied", payload.version, current)
            return
        error = None
        if payload.version > current:
            try:
                refuse_hub_owned(payload.config)  # whatever the host checks
                self.host.validate_config(payload.config)
            except ValueError as exc:  # the daemon's ConfigError
                error = str(exc)[:500]
                log.warning("config version %d refused: %s", payload.version, error)
            else:
                self.host.set_meta(**{META_CONFIG: json.dumps(payload.config, separators=(",", ":")),
                                      META_CONFIG_VERSION: str(payload.version)})
                self.host.config_version = payload.version
                log.info("config version %d applied (in force from the next start)", payload.version)
        ack = ConfigAck(device_id=self.device_id, version=payload.version, applied=error is None, error=error,
                        at=self.clock())
        await self.host.publish(self.topics.config_ack(self.device_id), ack.model_dump_json().encode())

    # ---- commands ----------------------------------------------------------------------------

    def _seen(self) -> list[str]:
        raw = self.host.get_meta(META_COMMANDS)
        return list(json.loads(raw)) if raw else []

    async def on_command(self, data: bytes) -> None:
        _kind, body = open_envelope(data, self.keyring, kinds={KIND_COMMAND})
        cmd = CommandPayload.model_validate(body)
        if cmd.device_id != self.device_id:
            log.warning("ignoring a command addressed to %s", cmd.device_id)
            return
        seen = self._seen()
        if cmd.command_id in seen:
            log.info("command %s (%s) already run: ignored", cmd.command_id, cmd.name)
            return
        self.host.set_meta(**{META_COMMANDS: json.dumps([*seen, cmd.command_id][-_SEEN_MAX:])})
        result: dict[str, Any] = {}
        error = None
        if self.clock() > cmd.expires_at:
            error = "expired"
            log.warning("command %s (%s) expired: refused", cmd.command_id, cmd.name)
        else:
            log.info("running command %s (%s)", cmd.command_id, cmd.name)
            try:
                result = await self._commands[cmd.name](cmd)
            except Exception as exc:  # the hub gets the error; the agent goes on
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("command %s (%s) failed: %s", cmd.command_id, cmd.name, error)
        reply = CommandResult(device_id=self.device_id, command_id=cmd.command_id, ok=error is None,
                              result=result, error=error, at=self.clock())
        await self.host.publish(self.topics.command_result(self.device_id), reply.model_dump_json().encode())
        if error is None and cmd.name == "restart":
            log.warning("restarting on the hub's command (exit code %d)", EXIT_RESTART)
            self.exit_code = EXIT_RESTART
            self.stop.set()
        elif error is None and cmd.name == "rotate_credentials":
            self.host.relogin(self.identity.username, self.identity.password.get_secret_value())

    async def _resync(self, cmd: CommandPayload) -> dict[str, Any]:
        return await self.host.resync()

    async def _diagnostics(self, cmd: CommandPayload) -> dict[str, Any]:
        disk = shutil.disk_usage(self.host.data_dir)
        return {
            "software_version": self.host.software_version, "python": platform.python_version(),
            "platform": platform.platform(), "disk_free": disk.free, "disk_total": disk.total,
            **self.host.diagnostics(),
            "birth": self.host.birth, "config_version": self.host.config_version,
            "hub_keys_version": self.identity.hub_keys_version, "recent_errors": list(self.recent.records),
        }

    async def _restart(self, cmd: CommandPayload) -> dict[str, Any]:
        return {"exit_code": EXIT_RESTART}

    async def _rotate(self, cmd: CommandPayload) -> dict[str, Any]:
        sealed = cmd.args.get("sealed")
        if not isinstance(sealed, str):
            raise ValueError("rotate_credentials carries no sealed password")
        password = open_secret(sealed, self.key).get("password")
        if not isinstance(password, str) or not password:
            raise ValueError("the sealed secret holds no password")
        self.identity = self.identity.model_copy(update={"password": SecretStr(password)})
        self.identity.save(self.identity_dir)
        log.info("broker password rotated and stored; reconnecting with it")
        return {"stored": True}

    # ---- hub keys ----------------------------------------------------------------------------

    async def on_keys(self, data: bytes) -> None:
        if not data:
            return
        try:
            _kind, body = open_envelope(data, self.keyring, kinds={KIND_KEYS})
        except SignatureError as exc:
            version = peek_version(data)
            if version is not None and version <= self.identity.hub_keys_version:
                log.debug("an older hub key list (version %s) does not verify: ignored", version)
                return
            self.host.keys_unverified(
                f"hub key list version {version} does not verify with the keys this device trusts ({exc}): "
                f"it missed a key rotation; re-enrol it or put the hub's current keys in its identity",
                resolved=lambda: version is not None and self.identity.hub_keys_version >= version)
            return
        payload = KeysPayload.model_validate(body)
        if payload.version <= self.identity.hub_keys_version:
            log.debug("hub keys version %d already applied", payload.version)
            return
        if not payload.keys:
            raise ValueError("hub keys update holds no key")
        new = payload.keyring()
        self.identity = self.identity.model_copy(update={"hub_keys": payload.model_dump()["keys"],
                                                         "hub_keys_version": payload.version})
        self.identity.save(self.identity_dir)
        self.keyring.replace(new)
        log.info("hub keys version %d trusted: %s", payload.version, new.to_purposes())
        await self.host.keys_changed()


def stored_hub_config(model: type[C], cfg: C, host_meta: Callable[[str], str | None],
                      error: type[Exception]) -> C:
    """``cfg`` with the last hub config applied on this device over it (``host_meta``: the host's
    :meth:`DeviceHost.get_meta`); a bad one is logged and skipped."""
    raw = host_meta(META_CONFIG)
    if raw is None:
        return cfg
    try:
        return with_hub_config(model, cfg, json.loads(raw), error)
    except (error, ValueError) as exc:
        log.error("stored hub config %s not used: %s", host_meta(META_CONFIG_VERSION), exc)
        return cfg
