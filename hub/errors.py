"""One error root for the hub; every subclass also inherits the matching builtin."""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose. ``status`` is the HTTP status it maps to."""

    status = 500


class ConfigError(HubError, ValueError):
    """The configuration file or environment has a bad key or value."""


class NotFound(HubError, LookupError):
    status = 404


class Conflict(HubError, ValueError):
    status = 409


class Invalid(HubError, ValueError):
    status = 422


class Unauthenticated(HubError, PermissionError):
    status = 401


class Forbidden(HubError, PermissionError):
    status = 403


class KioskError(HubError):
    """A refusal shown at a kiosk: a stable ``code`` the kiosk UI maps, the text in English and Chinese."""

    def __init__(self, status: int, code: str, detail: str, detail_zh: str, **extra: object) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail_zh = detail_zh
        self.extra = extra  # e.g. retry_after, attempts_left

    def body(self) -> dict[str, object]:
        return {"detail": str(self), "detail_zh": self.detail_zh, "code": self.code, **self.extra}
