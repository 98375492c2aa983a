"""Users and the audit log (the console's Users and audit page, admin only): requests and answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from protocol.bounds import DEVICE_ID_PATTERN


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    device_id: str | None = None
    created_at: float | None = None
    disabled: bool = Field(False, description="its login is refused (403 user_disabled) until it is enabled")
    disabled_at: float | None = None


class UserChangeIn(_In):
    role: str | None = Field(None, max_length=40, description="one of the roles; unchanged if left out")
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN,
                                  description="a device's own login; null clears it, left out keeps it")


class PasswordIn(_In):
    password: str = Field(min_length=8, max_length=256, description="the new password: every session of the "
                                                                    "user ends")
