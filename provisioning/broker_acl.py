"""The broker's roles and ACLs for Mosquitto's dynamic-security plugin: pure data, no I/O.

Everything not allowed here is denied (:data:`DEFAULT_ACL_ACCESS`). Mosquitto 2.0.11's dynsec does
not substitute ``%u``/``%c`` in ACL topics, so each device gets its own role ``device-<id>`` with its
own topics, beside the shared ``devices`` role (tested in tests/test_broker_security.py). The
device's check-in group is part of its own role too: a device reads only its own group's live
whitelist deltas, never another group's (``BrokerAdmin.set_group`` moves it).

    role      publish (client -> broker)                  subscribe and receive
    hub       {p}/#                                       {p}/# and $share/+/{p}/# (shared subscriptions)
    claim     {p}/provision/request/+                     exactly {p}/provision/reply/<reply_to>
                                                          (no wildcard there, nothing else)
    devices   -                                           {p}/emergency/command, {p}/hub/keys
    device-X  {p}/device/X/{status,events,sync,           {p}/device/X/{ack,whitelist,config,command,
              emergency,config_ack,command_result,        print}, and exactly {p}/group/<G>/whitelist
              print_result}                               for X's group G (none while it has no group)
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
    """Everything under the prefix, and the same as MQTT v5 shared subscriptions (``$share/<group>/{p}/...``:
    several hubs each get one share of the device uplinks; 2.0.11 checks the filter with its ``$share`` part)."""
    return [Acl("publishClientSend", f"{prefix}/#"), *_read(f"{prefix}/#", pattern=True),
            Acl("subscribePattern", f"$share/+/{prefix}/#")]


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
    """What every enrolled device reads: emergency commands and the hub's key list. (Group whitelists
    are per device: :func:`device_acls`.)"""
    return [*_read(f"{prefix}/emergency/command"), *_read(f"{prefix}/hub/keys")]


def device_role(device_id: str) -> str:
    return f"{DEVICE_ROLE_PREFIX}{device_id}"


def group_whitelist_topic(prefix: str, group_id: int) -> str:
    """``{p}/group/<group_id>/whitelist``, as :meth:`protocol.topics.Topics.group_whitelist` spells it."""
    if isinstance(group_id, bool) or not isinstance(group_id, int):
        raise TypeError(f"group id must be an int, not {type(group_id).__name__}")
    return f"{prefix}/group/{group_id}/whitelist"


def device_acls(prefix: str, device_id: str, group_id: int | None = None) -> list[Acl]:
    """One device's own topics (``%u`` is not available in Mosquitto 2.0's dynsec), and reading exactly
    its own group's whitelist downlink when it has a group (a literal filter: no ``+``, no other group)."""
    base = f"{prefix}/device/{device_id}"
    acls = [Acl("publishClientSend", f"{base}/{leaf}") for leaf in DEVICE_PUBLISHES]
    for leaf in DEVICE_RECEIVES:
        acls += _read(f"{base}/{leaf}")
    if group_id is not None:
        acls += _read(group_whitelist_topic(prefix, group_id))
    return acls


def shared_roles(prefix: str) -> dict[str, list[Acl]]:
    """The roles :meth:`BrokerAdmin.ensure_roles` keeps in shape."""
    return {ROLE_HUB: hub_acls(prefix), ROLE_CLAIM: claim_acls(prefix), ROLE_DEVICES: devices_acls(prefix)}


# -- a venue broker's bridge login on the central broker (provisioning.venue_bridge) ---------------------

VENUE_BRIDGE_ROLE_PREFIX = "bridge-"


def bridge_uplink_topics(prefix: str) -> list[str]:
    """Filters of what devices publish and hubs read, every device: a venue bridge sends them out."""
    return [*(f"{prefix}/device/+/{leaf}" for leaf in DEVICE_PUBLISHES), f"{prefix}/provision/request/+"]


def bridge_downlink_topics(prefix: str) -> list[str]:
    """Filters of what hubs publish and devices read (the device downlinks, group whitelists, emergency
    command, hub presence and keys, enrolment replies): a venue bridge subscribes to them centrally."""
    return [*(f"{prefix}/device/+/{leaf}" for leaf in DEVICE_RECEIVES), f"{prefix}/group/+/whitelist",
            f"{prefix}/emergency/command", f"{prefix}/hub/presence/+", f"{prefix}/hub/keys",
            f"{prefix}/provision/reply/+"]


def venue_bridge_role(venue: str) -> str:
    return f"{VENUE_BRIDGE_ROLE_PREFIX}{venue}"


def venue_bridge_acls(prefix: str, notification_topic: str) -> list[Acl]:
    """A venue broker's login on the central broker: publish the uplinks (and its own connection state,
    ``notification_topic``, which is also its Last Will), subscribe exactly the downlink filters (literal:
    no other filter, not ``{p}/#``) and receive what is published on them. Nothing else: no downlink
    publish, no other prefix, no ``$CONTROL``."""
    acls = [Acl("publishClientSend", topic) for topic in bridge_uplink_topics(prefix)]
    acls.append(Acl("publishClientSend", notification_topic))
    for topic in bridge_downlink_topics(prefix):
        acls += [Acl("subscribeLiteral", topic), Acl("publishClientReceive", topic)]
    return acls
