"""Emergency release: the hub's signed command, and what a device reports back.

The command is **state, not a delta**: each one carries the whole current emergency state (what is
open) with a sequence number that only grows. It is published retained, so a device that connects
later gets the current truth at once, and a device that missed commands loses nothing. A device
acts on ``seq > last seen``, ignores ``seq <= last seen`` (replay or duplicate; it may re-confirm),
and refuses anything whose signature does not verify under the hub's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.bounds import MAX_COUNT, UnixTime
from protocol.errors import MalformedError
from protocol.messages import DeviceId

KIND_EMERGENCY = "emergency.command"


@dataclass(frozen=True)
class EmergencyCommand:
    """The venue's emergency state as of ``seq``: which gates must stand open."""

    seq: int
    issued_at: float
    issued_by: str
    reason: str
    open_all: bool = False
    open_group_ids: frozenset[int] = field(default_factory=frozenset)
    open_channel_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def active(self) -> bool:
        return self.open_all or bool(self.open_group_ids) or bool(self.open_channel_ids)

    def opens(self, group_id: int, channel_id: int) -> bool:
        """Must a device of this check-in group and channel stand open?"""
        return self.open_all or group_id in self.open_group_ids or channel_id in self.open_channel_ids

    def to_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "issued_at": self.issued_at, "issued_by": self.issued_by,
                "reason": self.reason, "open_all": self.open_all,
                "open_group_ids": sorted(self.open_group_ids), "open_channel_ids": sorted(self.open_channel_ids)}

    @classmethod
    def from_wire(cls, data: Any) -> EmergencyCommand:
        try:
            return cls(int(data["seq"]), float(data["issued_at"]), str(data["issued_by"]), str(data["reason"]),
                       bool(data["open_all"]), frozenset(int(g) for g in data["open_group_ids"]),
                       frozenset(int(c) for c in data["open_channel_ids"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError("emergency command is malformed") from exc


class EmergencyState(BaseModel):
    """Device -> hub, retained on ``{prefix}/device/{id}/emergency``: the state the device is in.

    ``seq`` is the newest hub command the device has applied (its confirmation of that command);
    ``cause`` says why it is open: the hub's ``command``, the local ``fire`` alarm input, or the local
    emergency ``button`` (a local cause opens without the network and is reported when it returns).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    device_id: DeviceId
    state: Literal["open", "normal"]
    seq: int = Field(ge=0, le=MAX_COUNT, description="newest hub emergency command applied (0: none yet)")
    cause: Literal["command", "fire", "button"] | None = None
    at: UnixTime
