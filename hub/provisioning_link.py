"""The MQTT and broker side of provisioning, run by the bridge and called by the API.

* Enrollment requests (``{p}/provision/request/+``), config acks and command results are handled here;
  the bridge hands over every topic :meth:`ProvisioningLink.owns`.
* Broker logins go through ``provisioning.broker.BrokerAdmin`` (Mosquitto dynamic security) when
  ``[broker_admin] enabled``; one short admin connection per operation.
* Events from revoked devices are refused (:meth:`refuses`), from an in-memory set kept with the table.
* A liveness sweep marks devices offline after ``offline_after`` silent heartbeat intervals.

Credential rotation order (no lock-out): the new password goes to the device first, sealed in a
signed ``rotate_credentials`` command, while the old one stays valid at the broker. Only when the
device answers ``ok`` (it has stored the new password) is the broker password changed; a failed,
lost or late (past ``expires_at``) answer leaves the old password in force and the rotation is
dropped (retry it). The new password lives only in memory until then; a hub restart drops it too.

Commands are not lost to a device that is away: a command is published at QoS 1, but the device's session is
not persistent (clean start), so one sent while the device is offline or reconnecting (after a credential
rotation, say) reaches no one. Every command not answered and not expired is kept here (and read back from
the database at start, except ``rotate_credentials``, whose password is gone) and sent again, same id and
expiry, when an "online" heartbeat of its device comes at least ``command_resend`` seconds after the last send
(a device subscribes its command topic before its first heartbeat of a connection). The device runs each
command id once (ids persisted) and never after ``expires_at``, so a re-send runs nothing twice; a replay is
refused as before. Until it is answered the command stays ``pending``; past ``expires_at`` it is ``timed_out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from hub.config import Settings
from hub.errors import HubError
from hub.services import device_admin, emergency, enrollment, registry, signing_keys
from hub.services.context import SYSTEM, HubContext, Outgoing, Principal
from protocol.errors import MalformedError
from protocol.provisioning import BrokerAccess, CommandResult, ConfigAck, EnrollmentRequest, seal_secret
from protocol.topics import check_device_id

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)


def parse_message(model: type[M], data: bytes) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise MalformedError(f"{model.__name__}: {where}: {first.get('msg')}") from exc


class BrokerAdminError(HubError, ConnectionError):
    """The broker's dynamic-security admin could not do what was asked; nothing was changed at the hub."""

    status = 502


class DeviceAccounts(Protocol):
    """What the hub needs of ``provisioning.broker.BrokerAdmin``."""

    async def ensure_roles(self) -> None: ...
    async def add_device(self, device_id: str, password: str, kind: str, group_id: int | None = None) -> None: ...
    async def set_group(self, device_id: str, group_id: int | None) -> None: ...
    async def ensure_device_roles(self, groups: dict[str, int | None]) -> None: ...
    async def set_password(self, device_id: str, password: str) -> None: ...
    async def remove_device(self, device_id: str) -> None: ...


AccountsFactory = Callable[[], AbstractAsyncContextManager[DeviceAccounts]]


def broker_admin_factory(settings: Settings) -> AccountsFactory | None:
    s = settings.broker_admin
    if not s.enabled:
        return None
    from provisioning.broker import BrokerAdmin  # the broker-side package; needed only when enabled
    from provisioning.tls import TlsClient

    def make() -> AbstractAsyncContextManager[DeviceAccounts]:
        tls = TlsClient(ca_file=s.ca_file) if s.ca_file is not None else None
        admin: AbstractAsyncContextManager[DeviceAccounts] = BrokerAdmin(
            s.host, s.port, s.username, s.password.get_secret_value(), prefix=settings.mqtt.prefix, tls=tls)
        return admin

    return make


@dataclass
class _Rotation:
    device_id: str
    password: str
    expires_at: float


@dataclass
class _Pending:
    """A command sent and not answered yet: sent again when its device is heard from."""

    device_id: str
    payload: dict[str, Any]  # the CommandPayload, signed again at each send
    sent_at: float  # hub clock of the newest send; 0: not since this hub started
    sends: int = 1


class ProvisioningLink:
    def __init__(self, ctx: HubContext, settings: Settings, accounts: AccountsFactory | None = None) -> None:
        self.ctx = ctx
        self.settings = settings
        self.options = settings.provisioning
        self.accounts = accounts if accounts is not None else broker_admin_factory(settings)
        self.topics = device_admin.ptopics(ctx)
        self._revoked = device_admin.revoked_ids(ctx)
        self.on_registry_change: Callable[[], None] = lambda: None  # the bridge re-reads its registry copy
        self.elected: Callable[[], bool] = lambda: True  # several hubs (hub/cluster.py): only one sweeps
        self._roles_checked = False  # device roles reconciled with the registry once per hub start
        self._rotations: dict[str, _Rotation] = {}  # command id -> pending credential rotation
        self._pending: dict[str, _Pending] = {  # command id -> command not answered yet (re-sent)
            str(payload["command_id"]): _Pending(device_id, payload, sent_at=0.0, sends=0)
            for device_id, payload in device_admin.pending_commands(ctx)}
        p = ctx.topics.prefix
        self._request_head, self._device_head = f"{p}/provision/request/", f"{p}/device/"
        self._handlers = {"config_ack": self._on_config_ack, "command_result": self._on_command_result}

    # -- for the bridge -------------------------------------------------------------------------
    def subscriptions(self) -> list[str]:
        return [self.topics.all_requests(), *(f"{self._device_head}+/{leaf}" for leaf in self._handlers)]

    def owns(self, topic: str) -> bool:
        return topic.startswith(self._request_head) or (
            topic.startswith(self._device_head) and topic.rsplit("/", 1)[-1] in self._handlers)

    def is_retained(self, topic: str) -> bool:
        return topic == self.topics.hub_keys() or (topic.startswith(self._device_head) and topic.endswith("/config"))

    def refuses(self, device_id: str) -> bool:
        """True for a revoked device: its events are dropped, not stored, not acked."""
        return device_id in self._revoked

    async def dispatch(self, topic: str, data: bytes) -> None:
        if topic.startswith(self._request_head):
            await self._on_request(topic[len(self._request_head):], data)
            return
        device_id, leaf = topic[len(self._device_head):].split("/", 1)
        await self._handlers[leaf](check_device_id(device_id), data)

    async def announce(self) -> None:
        """On every connect: re-publish (retained) the key list and every active device's config; once per
        hub start, bring every device's broker role to its registered group (after an upgrade)."""
        if not self._roles_checked and self.accounts is not None:
            try:
                groups = await asyncio.to_thread(registry.active_groups, self.ctx)
                async with self._admin() as admin:
                    if admin is not None:
                        await admin.ensure_device_roles(groups)  # first: the shared role loses group/+ next
                        await admin.ensure_roles()
                self._roles_checked = True
            except BrokerAdminError:
                log.exception("could not bring the broker's device roles to their registered groups; will retry "
                              "on the next connect")
        out = await asyncio.to_thread(device_admin.config_envelopes, self.ctx)
        keys = await asyncio.to_thread(signing_keys.current_envelope, self.ctx)
        self._send(([(self.topics.hub_keys(), keys)] if keys is not None else []) + out)

    async def run(self, connected: asyncio.Event) -> None:
        """The liveness sweep (on the elected hub only) and the expiry of unconfirmed credential rotations."""
        while True:
            await asyncio.sleep(self.options.liveness_check)
            try:
                if self.elected():
                    silent = await asyncio.to_thread(device_admin.sweep_offline, self.ctx,
                                                     self.options.default_interval, self.options.offline_after)
                    for device_id in silent:
                        log.warning("device %s silent for %.1f heartbeat intervals: marked offline", device_id,
                                    self.options.offline_after)
                    await asyncio.to_thread(device_admin.prune_rate_limits, self.ctx)
                self._expire_rotations()
                self._expire_pending()
            except Exception:
                log.exception("liveness sweep failed; will retry")

    def _send(self, outgoing: list[Outgoing]) -> None:
        self.ctx.publish_all(outgoing)

    def device_online(self, device_id: str) -> None:
        """An "online" heartbeat of ``device_id`` was stored (it is subscribed to its command topic): send again
        its commands not answered yet, here and on every other hub on the database (each holds those it issued)."""
        self.resend_pending(device_id)
        self.ctx.broadcast("online", device_id)

    async def reload_registry(self, _device_id: str = "") -> None:
        """Another hub changed the registry (approved, revoked, registered, moved a device): re-read it."""
        self._revoked = await asyncio.to_thread(device_admin.revoked_ids, self.ctx)
        self.on_registry_change()

    def _registry_changed(self, device_id: str) -> None:
        self.on_registry_change()
        self.ctx.broadcast("registry", device_id)

    def resend_pending(self, device_id: str) -> None:
        """Send again each command of ``device_id`` this hub issued, not answered yet, not expired, last sent
        ``command_resend`` s ago or more."""
        if not device_id:
            return
        now = self.ctx.clock()
        again: list[Outgoing] = []
        for command_id, p in list(self._pending.items()):
            if p.device_id != device_id or now - p.sent_at < self.options.command_resend:
                continue
            if p.payload["name"] == "rotate_credentials" and (
                    command_id not in self._rotations
                    or now > float(p.payload["expires_at"]) - max(2 * self.options.command_resend, 5.0)):
                continue  # its password gone, or near its end: a device whose clock is behind the hub's
                # must not store a password the hub drops (the old one stays at the broker)
            if now >= float(p.payload["expires_at"]):
                del self._pending[command_id]
                continue
            p.sent_at, p.sends = now, p.sends + 1
            log.info("command %s %s to %s not answered yet: sent again (send %d); the device runs it once",
                     p.payload["name"], command_id, device_id, p.sends)
            again.append(device_admin.command_envelope(self.ctx, p.payload))
        if again:
            self._send(again)

    def _expire_pending(self) -> None:
        now = self.ctx.clock()
        for command_id, p in list(self._pending.items()):
            if now >= float(p.payload["expires_at"]):
                del self._pending[command_id]
                log.warning("command %s %s to %s expired unanswered (sent %d time(s)); it will not run",
                            p.payload["name"], command_id, p.device_id, p.sends)

    def _issued(self, command_id: str, device_id: str, payload: dict[str, Any]) -> None:
        self._pending[command_id] = _Pending(device_id, payload, sent_at=self.ctx.clock())
        self._send([device_admin.command_envelope(self.ctx, payload)])

    # -- incoming -------------------------------------------------------------------------------
    async def _on_request(self, serial: str, data: bytes) -> None:
        req = parse_message(EnrollmentRequest, data)
        refusal = await asyncio.to_thread(enrollment.receive, self.ctx, serial, req, self.options.request_max_age)
        if refusal is not None:
            log.warning("enrollment request on serial %s refused: %s", serial[:64], refusal)

    async def _on_config_ack(self, device_id: str, data: bytes) -> None:
        ack = parse_message(ConfigAck, data)
        if ack.device_id != device_id:
            raise MalformedError(f"payload device id {ack.device_id!r} differs from the topic's {device_id!r}")
        await asyncio.to_thread(device_admin.record_ack, self.ctx, ack)

    async def _on_command_result(self, device_id: str, data: bytes) -> None:
        res = parse_message(CommandResult, data)
        if res.device_id != device_id:
            raise MalformedError(f"payload device id {res.device_id!r} differs from the topic's {device_id!r}")
        await asyncio.to_thread(device_admin.record_result, self.ctx, res)
        pending = self._pending.get(res.command_id)
        if pending is not None and pending.device_id == device_id:
            del self._pending[res.command_id]  # answered: stored here, or by another hub that heard it too
        # every hub hears each command result; the one that issued a rotation holds its password and finishes it
        rotation = self._rotations.get(res.command_id)
        if rotation is None or rotation.device_id != device_id:
            return
        del self._rotations[res.command_id]
        if not res.ok or self.ctx.clock() > rotation.expires_at:
            log.warning("device %s did not confirm credential rotation %s in time (%s); its old password stays",
                        device_id, res.command_id, res.error or "late")
            return
        try:
            async with self._admin() as admin:
                if admin is not None:
                    await admin.set_password(device_id, rotation.password)
        except BrokerAdminError:
            log.exception("device %s has a new password but the broker kept the old one; rotate again", device_id)
            return
        log.info("broker password of %s rotated (command %s)", device_id, res.command_id)
        await asyncio.to_thread(device_admin.audit, self.ctx, SYSTEM, "provisioning.rotated", device_id,
                                f"command {res.command_id}")

    def _expire_rotations(self) -> None:
        now = self.ctx.clock()
        for command_id, r in list(self._rotations.items()):
            if now > r.expires_at:
                del self._rotations[command_id]
                log.warning("credential rotation %s of %s timed out; the old password stays", command_id, r.device_id)

    # -- the broker ------------------------------------------------------------------------------
    @asynccontextmanager
    async def _admin(self) -> AsyncIterator[DeviceAccounts | None]:
        if self.accounts is None:
            yield None
            return
        try:
            async with self.accounts() as admin:
                yield admin
        except HubError:
            raise
        except Exception as exc:  # the admin library's errors, connection refused, timeouts
            raise BrokerAdminError(f"broker dynamic-security admin failed: {type(exc).__name__}: {exc}") from exc

    def _access(self, device_id: str) -> BrokerAccess:
        s, m = self.settings.broker_admin, self.settings.mqtt
        return BrokerAccess(host=s.device_host or m.host, port=s.device_port or m.port, tls=s.device_tls,
                            username=device_id)

    # -- operations (called by the API) ----------------------------------------------------------
    async def approve(self, who: Principal, serial: str, fingerprint: str | None, a: enrollment.Approval) -> None:
        ctx = self.ctx
        req = await asyncio.to_thread(enrollment.pending_request, ctx, serial, fingerprint)
        await asyncio.to_thread(enrollment.check_device_id_free, ctx, a.device_id)
        password = secrets.token_urlsafe(24)
        async with self._admin() as admin:
            if admin is not None:
                await admin.ensure_roles()
                await admin.add_device(a.device_id, password, a.kind or req["kind"], group_id=a.group_id)
        try:
            out = await asyncio.to_thread(enrollment.approve, ctx, who, serial, fingerprint, a, password,
                                          self._access(a.device_id))
        except Exception:
            with contextlib.suppress(BrokerAdminError):
                async with self._admin() as admin:
                    if admin is not None:
                        await admin.remove_device(a.device_id)
            raise
        self._revoked.discard(a.device_id)
        self._registry_changed(a.device_id)
        self._send(out)

    async def reject(self, who: Principal, serial: str, fingerprint: str | None, reason: str) -> None:
        self._send(await asyncio.to_thread(enrollment.reject, self.ctx, who, serial, fingerprint, reason))

    async def set_config(self, who: Principal, device_id: str, config: dict[str, Any]) -> int:
        version, out = await asyncio.to_thread(device_admin.set_config, self.ctx, who, device_id, config)
        self._send([out])
        return version

    async def revoke(self, who: Principal, device_id: str, reason: str) -> None:
        await asyncio.to_thread(device_admin.device, self.ctx, device_id)
        async with self._admin() as admin:
            if admin is not None:
                await admin.remove_device(device_id)
        out = await asyncio.to_thread(device_admin.revoke, self.ctx, who, device_id, reason)
        self._revoked.add(device_id)
        for command_id in [c for c, p in self._pending.items() if p.device_id == device_id]:
            del self._pending[command_id]
        self._registry_changed(device_id)
        self._send([out])

    async def register(self, who: Principal, **device: Any) -> None:
        """Register a config-file device by its public key (no broker login is made: it uses its config's)."""
        out = await asyncio.to_thread(lambda: registry.register(self.ctx, who, **device))
        self._revoked.discard(device["device_id"])
        self._registry_changed(device["device_id"])
        self._send([out])

    async def change(self, who: Principal, device_id: str, changes: dict[str, Any]) -> None:
        """Change a device's site, group, channel or fire input; its broker role follows its group, and an
        enrolled device gets its new group and channel in a new config version."""
        before = await asyncio.to_thread(registry.change, self.ctx, who, device_id, changes)
        self._registry_changed(device_id)
        after = await asyncio.to_thread(device_admin.device, self.ctx, device_id)
        if (before["group_id"], before["channel_id"]) == (after["group_id"], after["channel_id"]):
            return
        if after["group_id"] != before["group_id"]:
            async with self._admin() as admin:
                if admin is not None:
                    await admin.set_group(device_id, after["group_id"])
        place = {k: after[k] for k in ("group_id", "channel_id") if after[k] is not None}
        await self.set_config(who, device_id, {**after["config"], **place})

    async def command(self, who: Principal, device_id: str, name: str, timeout_s: float) -> str:
        command_id, payload = await asyncio.to_thread(device_admin.issue_command, self.ctx, who, device_id, name,
                                                      timeout_s)
        self._issued(command_id, device_id, payload)
        return command_id

    async def rotate_credentials(self, who: Principal, device_id: str, timeout_s: float | None = None) -> str:
        timeout = timeout_s or self.options.rotate_timeout
        d = await asyncio.to_thread(device_admin.device, self.ctx, device_id)
        password = secrets.token_urlsafe(24)
        command_id, payload = await asyncio.to_thread(
            device_admin.issue_command, self.ctx, who, device_id, "rotate_credentials", timeout,
            {"sealed": seal_secret({"password": password}, d["public_key"])})
        self._rotations[command_id] = _Rotation(device_id, password, self.ctx.clock() + timeout)
        self._issued(command_id, device_id, payload)
        return command_id

    async def rotate_keys(self, who: Principal, purpose: str = "control") -> int:
        kid, out = await asyncio.to_thread(signing_keys.rotate, self.ctx, who, purpose,
                                           signing_keys.key_paths(self.settings))
        self._send([out, *await self._resigned()])
        return kid

    async def retire_key(self, who: Principal, kid: int) -> None:
        out = await asyncio.to_thread(signing_keys.retire, self.ctx, who, kid)
        self._send([out, *await self._resigned()])

    async def _resigned(self) -> list[Outgoing]:
        """After the key list: every retained config and the emergency state again, signed with the active
        control key, so a device that comes back after the old key is retired can still verify them."""
        out = await asyncio.to_thread(device_admin.config_envelopes, self.ctx)
        state = await asyncio.to_thread(emergency.current_envelope, self.ctx)
        return out + ([(self.ctx.topics.emergency_command(), state)] if state is not None else [])
