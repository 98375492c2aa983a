"""Per-device broker logins and ACLs, changed at run time through Mosquitto's dynamic-security plugin.

    >>> async with BrokerAdmin("127.0.0.1", 1883, "admin", admin_password) as admin:
    ...     await admin.ensure_roles()
    ...     await admin.add_device("gate-a", password, "gate", group_id=1)
    ...     await admin.set_group("gate-a", 2)       # now reads group 2's whitelist, no longer group 1's
    ...     await admin.remove_device("gate-a")   # its session is kicked, its login refused

One MQTT v5 connection as the dynsec admin; each command goes to ``$CONTROL/dynamic-security/v1``
with a ``correlationData`` the plugin echoes on ``.../v1/response``. Passwords travel only inside
those command payloads (use the TLS or loopback listener) and are never logged or put in errors.
Roles and ACLs: :mod:`provisioning.broker_acl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from types import TracebackType
from typing import Any

import aiomqtt

from protocol.topics import check_device_id
from provisioning.broker_acl import (
    DEFAULT_ACL_ACCESS,
    DEVICE_KINDS,
    ROLE_CLAIM,
    ROLE_DEVICES,
    ROLE_HUB,
    Acl,
    device_acls,
    device_role,
    shared_roles,
    venue_bridge_acls,
    venue_bridge_role,
)
from provisioning.tls import TlsClient
from provisioning.venue_bridge import VENUE_NAME

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
SERVICE_ROLES = frozenset({ROLE_HUB, ROLE_CLAIM})


class BrokerAdminError(RuntimeError):
    """A dynsec command failed (``detail`` is the plugin's own error text) or the broker is unreachable."""

    def __init__(self, message: str, *, command: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.detail = detail


class AlreadyExistsError(BrokerAdminError, ValueError):
    """The client (device) or role already exists."""


class NotFoundError(BrokerAdminError, LookupError):
    """The client (device) or role does not exist."""


def _error_for(command: dict[str, Any], detail: str) -> BrokerAdminError:
    name = str(command.get("command", "?"))
    target = command.get("username") or command.get("rolename") or ""
    message = f"dynsec {name} {target}: {detail}".replace("  ", " ")   # never the password
    lowered = detail.lower()
    if "already exists" in lowered:
        return AlreadyExistsError(message, command=name, detail=detail)
    if "not found" in lowered:
        return NotFoundError(message, command=name, detail=detail)
    return BrokerAdminError(message, command=name, detail=detail)


def _is_device(client: dict[str, Any]) -> bool:
    """A getClient/listClients entry of a device login (one holding the shared ``devices`` role)."""
    return any(r.get("rolename") == ROLE_DEVICES for r in client.get("roles", []))


class BrokerAdmin:
    """Administers the broker's logins and ACLs; an async context manager holding one MQTT connection."""

    def __init__(self, host: str, port: int, username: str, password: str, *, prefix: str = "venue",
                 tls: TlsClient | None = None, timeout: float = 5.0) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self._username = username
        self._client = aiomqtt.Client(
            host, port, username=username, password=password, protocol=aiomqtt.ProtocolVersion.V5,
            identifier=f"broker-admin-{secrets.token_hex(4)}", timeout=timeout,
            tls_context=tls.context() if tls else None)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0
        self._token = secrets.token_hex(4)

    async def __aenter__(self) -> BrokerAdmin:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise BrokerAdminError(f"cannot connect to the broker as dynsec admin: {exc}") from exc
        try:
            await self._client.subscribe(RESPONSE_TOPIC, qos=1)
        except aiomqtt.MqttError as exc:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)
            raise BrokerAdminError(f"cannot subscribe to {RESPONSE_TOPIC}: {exc}") from exc
        self._reader = asyncio.create_task(self._read(), name="broker-admin-reader")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._fail_pending(BrokerAdminError("broker admin connection closed"))
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(exc_type, exc, tb)

    # -- the API the hub codes against -------------------------------------------------------------

    async def ensure_roles(self) -> None:
        """Create the shared roles (hub, claim, devices) or bring their ACLs to what this code says,
        and deny whatever no role allows. Idempotent."""
        for rolename, acls in shared_roles(self.prefix).items():
            await self._ensure_role(rolename, acls)
        await self._run({"command": "setDefaultACLAccess",
                         "acls": [{"acltype": k, "allow": v} for k, v in DEFAULT_ACL_ACCESS.items()]})

    async def add_device(self, device_id: str, password: str, kind: str, group_id: int | None = None) -> None:
        """Create the device's login (username = device id) with the shared ``devices`` role and its own
        ``device-<id>`` role, which also lets it read its check-in group's whitelist (``group_id``; none
        if None). Raises AlreadyExistsError if the device already has a login."""
        check_device_id(device_id)
        if kind not in DEVICE_KINDS:
            raise ValueError(f"unknown device kind {kind!r}; one of {sorted(DEVICE_KINDS)}")
        role = device_role(device_id)
        created_role = await self._ensure_role(role, device_acls(self.prefix, device_id, group_id))
        try:
            await self._run({"command": "createClient", "username": device_id, "password": password,
                             "textname": f"{kind} {device_id}",
                             "roles": [{"rolename": ROLE_DEVICES}, {"rolename": role}]})
        except BrokerAdminError:
            if created_role:
                with contextlib.suppress(BrokerAdminError):
                    await self._run({"command": "deleteRole", "rolename": role})
            raise
        log.info("broker: added %s %s", kind, device_id)

    async def set_group(self, device_id: str, group_id: int | None) -> None:
        """Let the device read only ``group_id``'s whitelist downlink (none if None) from now on: its own
        role is reconciled. Takes effect at once, also for a live session: the plugin checks
        ``publishClientReceive`` at each delivery, so an existing subscription to the old group's topic
        gets nothing more (2.0.11 does not disconnect the device; it subscribes to the new topic itself).
        An unchanged group changes nothing. Raises NotFoundError if the device has no login (or the
        login is not a device's)."""
        check_device_id(device_id)
        acls = device_acls(self.prefix, device_id, group_id)   # TypeError before any broker change
        client = (await self._run({"command": "getClient", "username": device_id})).get("client", {})
        if not _is_device(client):
            raise NotFoundError(f"dynsec getClient {device_id}: not a device login", command="getClient",
                                detail="not a device login")
        await self._ensure_device_role(device_id, acls, client)
        log.info("broker: %s reads group %s", device_id, group_id)

    async def ensure_device_roles(self, groups: dict[str, int | None]) -> None:
        """Reconcile the own role of every device in ``groups`` (device id -> its group, or None) to what
        this code says, e.g. after an upgrade moved the group whitelist out of the shared ``devices``
        role. Idempotent; devices whose role already fits are not touched (nor disconnected). A device
        without a (device) login is skipped with a warning (no role is created for it)."""
        wanted: dict[str, list[Acl]] = {}
        for device_id, group_id in groups.items():
            check_device_id(device_id)
            wanted[device_id] = device_acls(self.prefix, device_id, group_id)
        data = await self._run({"command": "listClients", "verbose": True, "count": -1, "offset": 0})
        clients = {c.get("username"): c for c in data.get("clients", []) if _is_device(c)}
        missing = sorted(d for d in wanted if d not in clients)
        for device_id, acls in wanted.items():
            if device_id in clients:
                await self._ensure_device_role(device_id, acls, clients[device_id])
        if missing:
            log.warning("broker: no login for %d device(s), role not reconciled: %s", len(missing),
                        ", ".join(missing))

    async def set_password(self, device_id: str, password: str) -> None:
        """Replace the login's password; the old one is refused from the next CONNECT on."""
        await self._run({"command": "setClientPassword", "username": device_id, "password": password})
        log.info("broker: password of %s replaced", device_id)

    async def remove_device(self, device_id: str) -> None:
        """Delete the login and its own role. A connected session is disconnected at once (the plugin
        kicks clients of a deleted login). Removing an unknown device does nothing."""
        if device_id == self._username:
            raise ValueError("refusing to remove the admin's own login")
        with contextlib.suppress(NotFoundError):
            await self._run({"command": "disableClient", "username": device_id})
        with contextlib.suppress(NotFoundError):
            await self._run({"command": "deleteClient", "username": device_id})
        with contextlib.suppress(NotFoundError):
            await self._run({"command": "deleteRole", "rolename": device_role(device_id)})
        log.info("broker: removed %s", device_id)

    async def list_devices(self) -> list[str]:
        """Device ids with a login (clients holding the ``devices`` role), sorted."""
        data = await self._run({"command": "listClients", "verbose": True, "count": -1, "offset": 0})
        clients = data.get("clients", [])
        return sorted(c["username"] for c in clients if _is_device(c))

    # -- beyond the hub's needs: service logins ----------------------------------------------------

    async def add_service_client(self, username: str, password: str, role: str) -> None:
        """A non-device login: ``claim`` (the shared bootstrap credential) or ``hub``."""
        if role not in SERVICE_ROLES:
            raise ValueError(f"role must be one of {sorted(SERVICE_ROLES)}")
        await self._run({"command": "createClient", "username": username, "password": password,
                         "textname": role, "roles": [{"rolename": role}]})
        log.info("broker: added %s login %s", role, username)

    async def add_venue_bridge(self, venue: str, username: str, password: str, notification_topic: str) -> None:
        """The login a venue broker's bridge uses here (:mod:`provisioning.venue_bridge`), with its own role
        ``bridge-<venue>`` (:func:`provisioning.broker_acl.venue_bridge_acls`): it may publish only the
        device uplinks of this prefix (and ``notification_topic``, its connection state) and subscribe only
        the downlink filters. The role is created or brought to shape; raises AlreadyExistsError if the
        login exists (its password is then left alone: :meth:`set_password`)."""
        if not VENUE_NAME.match(venue):
            raise ValueError(f"venue name {venue[:80]!r} must be 1-32 of a-z 0-9 and '-'")
        role = venue_bridge_role(venue)
        await self._ensure_role(role, venue_bridge_acls(self.prefix, notification_topic))
        await self._run({"command": "createClient", "username": username, "password": password,
                         "textname": f"venue bridge {venue}", "roles": [{"rolename": role}]})
        log.info("broker: added the bridge login %s of venue %s", username, venue)

    # -- plumbing ----------------------------------------------------------------------------------

    async def _ensure_device_role(self, device_id: str, acls: list[Acl], client: dict[str, Any]) -> None:
        """Reconcile ``device-<id>`` for an existing login (``client``: its getClient/listClients entry),
        and give the login the role again if it has lost it."""
        role = device_role(device_id)
        await self._ensure_role(role, acls)
        if not any(r.get("rolename") == role for r in client.get("roles", [])):
            await self._run({"command": "addClientRole", "username": device_id, "rolename": role})

    async def _ensure_role(self, rolename: str, wanted: list[Acl]) -> bool:
        """Create the role with ``wanted`` ACLs, or reconcile its ACLs. True if it was created."""
        try:
            await self._run({"command": "createRole", "rolename": rolename,
                             "acls": [a.to_json() for a in wanted]})
            return True
        except AlreadyExistsError:
            pass
        data = await self._run({"command": "getRole", "rolename": rolename})
        have = {Acl.from_json(a) for a in data.get("role", {}).get("acls", [])}
        for acl in have - set(wanted):
            await self._run({"command": "removeRoleACL", "rolename": rolename, "acltype": acl.acltype,
                             "topic": acl.topic})
        have = {a for a in have if a in wanted}
        for acl in wanted:
            if acl not in have:
                await self._run({"command": "addRoleACL", "rolename": rolename, **acl.to_json()})
        return False

    async def _run(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command and wait for its response; return its ``data`` or raise BrokerAdminError."""
        if self._reader is None or self._reader.done():
            raise BrokerAdminError("broker admin is not connected", command=str(command.get("command", "")))
        self._seq += 1
        correlation = f"{self._token}-{self._seq}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = future
        payload = json.dumps({"commands": [{**command, "correlationData": correlation}]})
        try:
            await self._client.publish(CONTROL_TOPIC, payload, qos=1)
            response = await asyncio.wait_for(future, self.timeout)
        except aiomqtt.MqttError as exc:
            raise BrokerAdminError(f"dynsec {command.get('command')}: {exc}") from exc
        except TimeoutError as exc:
            raise BrokerAdminError(f"dynsec {command.get('command')}: no response within {self.timeout}s "
                                   "(is the dynamic-security plugin loaded, and this login its admin?)",
                                   command=str(command.get("command", ""))) from exc
        finally:
            self._pending.pop(correlation, None)
        if response.get("error"):
            raise _error_for(command, str(response["error"]))
        data = response.get("data")
        return data if isinstance(data, dict) else {}

    async def _read(self) -> None:
        try:
            async for message in self._client.messages:
                self._dispatch(message.payload)
        except aiomqtt.MqttError as exc:
            log.warning("broker admin connection lost: %s", exc)
            self._fail_pending(BrokerAdminError(f"broker admin connection lost: {exc}"))

    def _dispatch(self, payload: Any) -> None:
        try:
            responses = json.loads(payload)["responses"]
        except (TypeError, ValueError, KeyError):
            log.warning("dynsec: unreadable response %.200r", payload)
            return
        for response in responses:
            future = self._pending.get(str(response.get("correlationData")))
            if future is not None and not future.done():
                future.set_result(response)

    def _fail_pending(self, error: BrokerAdminError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
