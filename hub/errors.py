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


class LoginLocked(KioskError):
    """Too many wrong passwords for a user name or from an address: coded and bilingual like a kiosk refusal,
    with ``retry_after`` seconds (also the ``Retry-After`` header)."""

    def __init__(self, seconds: float) -> None:
        wait = max(1, int(seconds + 0.999))
        super().__init__(429, "login_locked", f"Too many wrong passwords; logins are locked, try again in {wait} s",
                         f"密码错误次数过多，登录已暂时锁定，请 {wait} 秒后再试", retry_after=wait)
