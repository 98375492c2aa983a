"""The broker's roles and ACLs for Mosquitto's dynamic-security plugin: pure data, no I/O.

Everything not allowed here is denied (:data:`DEFAULT_ACL_ACCESS`). Mosquitto 2.0.11's dynsec does
not substitute ``%u``/``%c`` in ACL topics, so each device gets its own role ``device-<id>`` with its
own topics, beside the shared ``devices`` role (tested in tests/test_broker_security.py).

    role      publish (client -> broker)                  subscribe and receive
    hub       {p}/#                                       {p}/#
    claim     {p}/provision/request/+                     exactly {p}/provision/reply/<reply_to>
                                                          (no wildcard there, nothing else)
    devices   -                                           {p}/group/<gid>/whitelist, {p}/emergency/command,
                                                          {p}/hub/keys
    device-X  {p}/device/X/{status,events,sync,           {p}/device/X/{ack,whitelist,config,command,
              emergency,config_ack,command_result,        print}
              print_result}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

AclType = Literal["publishClientSend", "publishClientReceive", "subscribeLiteral", "subscribePattern",
                  "unsubscribeLiteral", "unsubscribePattern"]

ROLE_HUB = "hub"
ROLE_CLAIM = "claim"
ROLE_DEVICES = "devices"
DEVICE_ROLE_PREFIX = "device-"
DEVICE_KINDS = frozenset({"gate", "handheld", "kiosk", "printer"})

DEVICE_PUBLISHES = ("status", "events", "sync", "emergency", "config_ack", "command_result", "print_result")
DEVICE_RECEIVES = ("ack", "whitelist", "config", "command", "print")

# Deny by default. Unsubscribing is harmless and stays allowed.
DEFAULT_ACL_ACCESS: dict[str, bool] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


@dataclass(frozen=True, slots=True)
class Acl:
    acltype: AclType
    topic: str
    allow: bool = True
    priority: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "allow": self.allow, "priority": self.priority}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Acl:
        return cls(data["acltype"], data["topic"], bool(data.get("allow", False)), int(data.get("priority", 0)))


def _read(topic: str, *, pattern: bool = False) -> list[Acl]:
    """Subscribe to ``topic`` and receive what is published on it."""
    return [Acl("subscribePattern" if pattern else "subscribeLiteral", topic), Acl("publishClientReceive", topic)]


def hub_acls(prefix: str) -> list[Acl]:
    return [Acl("publishClientSend", f"{prefix}/#"), *_read(f"{prefix}/#", pattern=True)]


def claim_acls(prefix: str) -> list[Acl]:
    """The shared bootstrap credential: send requests, read only a reply topic it already knows.

    ``subscribePattern {p}/provision/reply/+`` allows any exact reply topic; the literal wildcard
    filters are denied at a higher priority, and every other filter is denied by default."""
    reply = f"{prefix}/provision/reply"
    return [
        Acl("publishClientSend", f"{prefix}/provision/request/+"),
        Acl("subscribeLiteral", f"{reply}/+", allow=False, priority=10),
        Acl("subscribeLiteral", f"{reply}/#", allow=False, priority=10),
        Acl("subscribePattern", f"{reply}/+"),
        Acl("publishClientReceive", f"{reply}/+"),
    ]


def devices_acls(prefix: str) -> list[Acl]:
    """What every enrolled device reads: its group's whitelist (one exact group), emergency, hub keys."""
    group = f"{prefix}/group/+/whitelist"
    return [
        Acl("subscribeLiteral", group, allow=False, priority=10),   # not every group at once
        *_read(group, pattern=True),
        *_read(f"{prefix}/emergency/command"),
        *_read(f"{prefix}/hub/keys"),
    ]


def device_role(device_id: str) -> str:
    return f"{DEVICE_ROLE_PREFIX}{device_id}"


def device_acls(prefix: str, device_id: str) -> list[Acl]:
    """One device's own topics (``%u`` is not available in Mosquitto 2.0's dynsec)."""
    base = f"{prefix}/device/{device_id}"
    acls = [Acl("publishClientSend", f"{base}/{leaf}") for leaf in DEVICE_PUBLISHES]
    for leaf in DEVICE_RECEIVES:
        acls += _read(f"{base}/{leaf}")
    return acls


def shared_roles(prefix: str) -> dict[str, list[Acl]]:
    """The roles :meth:`BrokerAdmin.ensure_roles` keeps in shape."""
    return {ROLE_HUB: hub_acls(prefix), ROLE_CLAIM: claim_acls(prefix), ROLE_DEVICES: devices_acls(prefix)}
