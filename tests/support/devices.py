"""A registered device for hub tests: its own Ed25519 key, registered at the hub as an operator would
(``POST /api/v1/provisioning/devices``), and the signed messages it sends."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nacl.signing

from protocol.device_signed import KIND_EMERGENCY_STATE, KIND_EVENTS, seal_device
from protocol.emergency import EmergencyState
from protocol.messages import EventBatch

Post = Callable[[str, dict[str, Any]], Any]  # (path under /api/v1, JSON body) -> the response JSON


@dataclass
class TestDevice:
    device_id: str
    key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)

    __test__ = False  # not a pytest class

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.key.verify_key)).decode()

    def batch(self, batch: EventBatch) -> bytes:
        return seal_device(KIND_EVENTS, batch.model_dump(mode="json"), self.device_id, self.key)

    def emergency(self, state: EmergencyState) -> bytes:
        return seal_device(KIND_EMERGENCY_STATE, state.model_dump(mode="json"), self.device_id, self.key)


def registration(device_id: str, public_key: str, group_id: int | None, channel_id: int | None = None, *,
                 kind: str = "gate", fire_input: bool = False, site: str = "test hall") -> dict[str, Any]:
    return {"device_id": device_id, "kind": kind, "site": site, "public_key": public_key, "group_id": group_id,
            "channel_id": channel_id, "fire_input": fire_input}


def register(post: Post, device_id: str, group_id: int | None, channel_id: int | None = None, *,
             kind: str = "gate", fire_input: bool = False, key: nacl.signing.SigningKey | None = None) -> TestDevice:
    """Make a key and register the device with it; return the device."""
    device = TestDevice(device_id, key) if key is not None else TestDevice(device_id)
    post("/provisioning/devices", registration(device_id, device.public_key, group_id, channel_id, kind=kind,
                                               fire_input=fire_input))
    return device
