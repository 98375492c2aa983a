"""MQTT topics, all built here under one configurable prefix.

    {prefix}/device/{device_id}/status     retained, device -> hub (Last Will: offline)
    {prefix}/device/{device_id}/events     device -> hub, batches of check-in events (QoS 1)
    {prefix}/device/{device_id}/ack        hub -> device, signed end-to-end acknowledgements
    {prefix}/device/{device_id}/sync       device -> hub, "send me the whitelist since seq N"
    {prefix}/device/{device_id}/whitelist  hub -> device, signed snapshot or catch-up deltas
    {prefix}/group/{group_id}/whitelist    hub -> every device of a group, live signed deltas
    {prefix}/emergency/command             hub -> every device, retained signed emergency state
    {prefix}/device/{device_id}/emergency  retained, device -> hub: open/normal, and why
    {prefix}/hub/presence/{hub_id}         retained, hub -> anyone watching: online/offline (its Last Will)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol.errors import MalformedError

DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEVICE_LEAVES = frozenset({"status", "events", "ack", "sync", "whitelist", "emergency", "print", "print_result"})


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID.fullmatch(device_id):  # not .match: "$" also matches before a trailing "\n"
        raise MalformedError(f"device id {device_id[:70]!r} must be 1-64 of A-Z a-z 0-9 _ -")
    return device_id


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "venue"

    def device(self, device_id: str, leaf: str) -> str:
        if leaf not in DEVICE_LEAVES:
            raise ValueError(f"unknown device topic leaf {leaf!r}")
        return f"{self.prefix}/device/{check_device_id(device_id)}/{leaf}"

    def status(self, device_id: str) -> str:
        return self.device(device_id, "status")

    def events(self, device_id: str) -> str:
        return self.device(device_id, "events")

    def ack(self, device_id: str) -> str:
        return self.device(device_id, "ack")

    def sync(self, device_id: str) -> str:
        return self.device(device_id, "sync")

    def device_whitelist(self, device_id: str) -> str:
        return self.device(device_id, "whitelist")

    def print_job(self, printer_id: str) -> str:
        return self.device(printer_id, "print")

    def print_result(self, printer_id: str) -> str:
        return self.device(printer_id, "print_result")

    def emergency_command(self) -> str:
        return f"{self.prefix}/emergency/command"

    def emergency_state(self, device_id: str) -> str:
        return self.device(device_id, "emergency")

    def hub_presence(self, hub_id: str) -> str:
        """A hub's retained presence (:class:`protocol.messages.HubPresence`); its Last Will says offline."""
        return f"{self.prefix}/hub/presence/{check_device_id(hub_id)}"

    def group_whitelist(self, group_id: int) -> str:
        return f"{self.prefix}/group/{int(group_id)}/whitelist"

    def all_devices(self, leaf: str) -> str:
        """Wildcard subscription for the hub, e.g. ``venue/device/+/events``."""
        if leaf not in DEVICE_LEAVES:
            raise ValueError(f"unknown device topic leaf {leaf!r}")
        return f"{self.prefix}/device/+/{leaf}"

    def parse_device_topic(self, topic: str) -> tuple[str, str]:
        """Split ``{prefix}/device/{id}/{leaf}`` into (device id, leaf); raise MalformedError."""
        head = f"{self.prefix}/device/"
        if not topic.startswith(head):
            raise MalformedError(f"not a device topic: {topic[:120]!r}")
        parts = topic[len(head):].split("/")
        if len(parts) != 2 or parts[1] not in DEVICE_LEAVES:
            raise MalformedError(f"not a device topic: {topic[:120]!r}")
        return check_device_id(parts[0]), parts[1]
