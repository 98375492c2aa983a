"""The kiosk's side of the hub's kiosk API (``/api/v1/kiosk/...``) over httpx.

The agent logs in with the kiosk user (role ``kiosk``) on first use and again when the hub says the token
is no longer valid; the password is never logged. Every refusal becomes a :class:`HubFailure` whose
``code`` the UI maps to a screen: ``not_found``, ``wrong_code``, ``rate_limited``, ``locked``,
``already_collected``, ``network`` (hub unreachable or broken), ...
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from pydantic import SecretStr

from kiosk_agent import KioskError

log = logging.getLogger(__name__)

_BY_STATUS = {404: "not_found", 401: "wrong_code", 409: "already_collected", 423: "locked", 429: "rate_limited"}
_DETAIL_KEYS = ("attempts_left", "retry_after", "reason")


class HubFailure(KioskError):
    """The hub refused a request (``code`` says why) or could not be reached (``code == "network"``)."""

    def __init__(self, code: str, message: str = "", status: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.status = status
        self.details = details or {}


def _failure(response: httpx.Response) -> HubFailure:
    """Read the hub's error body: ``{"error": code, ...}``, ``{"detail": {...}}`` or ``{"detail": "text"}``."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = body.get("detail")
    fields = {**body, **detail} if isinstance(detail, dict) else body
    code = fields.get("error") or fields.get("code")
    if not isinstance(code, str):
        code = _BY_STATUS.get(response.status_code, "hub_error")
    message = fields.get("message") or (detail if isinstance(detail, str) else "")
    details = {k: fields[k] for k in _DETAIL_KEYS if fields.get(k) is not None}
    if "retry_after" not in details and response.headers.get("retry-after", "").isdigit():
        details["retry_after"] = int(response.headers["retry-after"])
    return HubFailure(code, str(message), response.status_code, details)


def _coded(response: httpx.Response) -> bool:
    """Whether the hub's refusal is a coded kiosk refusal (``{"code": ...}``), e.g. a 401 ``wrong_code``."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("code") or body.get("error"), str)


class HubClient:
    """An authenticated client of the hub; use as an async context manager."""

    def __init__(self, base_url: str, username: str, password: SecretStr, *, timeout: float = 5.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/api/v1", timeout=timeout)
        self._username = username
        self._password = password
        self._token: str | None = None
        self._login_lock = asyncio.Lock()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _login(self) -> None:
        async with self._login_lock:
            response = await self._send("POST", "/auth/login", {"username": self._username,
                                                               "password": self._password.get_secret_value()})
            if response.status_code != 200:
                log.error("hub refused the kiosk login of %r (HTTP %d)", self._username, response.status_code)
                raise HubFailure("network", "kiosk login refused", response.status_code)
            self._token = response.json()["token"]
            log.info("logged in to the hub as %r", self._username)

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            return await self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("hub unreachable: %s %s: %s", method, path, type(exc).__name__)
            raise HubFailure("network", type(exc).__name__) from exc

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call the hub; log in first if needed and once more when the token is refused."""
        if self._token is None:
            await self._login()
        response = await self._send(method, path, body)
        if response.status_code in (401, 403) and not _coded(response):  # the login, not a kiosk refusal
            self._token = None
            await self._login()
            response = await self._send(method, path, body)
        if response.status_code >= 500:
            raise HubFailure("network", f"hub error {response.status_code}", response.status_code)
        if response.status_code >= 400:
            failure = _failure(response)
            log.info("hub refused %s %s: %s %s", method, path, failure.code, failure.details)
            raise failure
        result = response.json()
        return result if isinstance(result, dict) else {"items": result}

    async def lookup_code(self, code: str) -> dict[str, Any]:
        return await self.request("POST", "/kiosk/lookup/code", {"code": code})

    async def lookup_id_card(self, id_number: str) -> dict[str, Any]:
        return await self.request("POST", "/kiosk/lookup/id-card", {"id_number": id_number})

    async def request_otp(self, phone: str) -> dict[str, Any]:
        return await self.request("POST", "/kiosk/otp/request", {"phone": phone})

    async def lookup_phone(self, phone: str, otp: str) -> dict[str, Any]:
        return await self.request("POST", "/kiosk/lookup/phone", {"phone": phone, "otp": otp})

    async def collect(self, lookup_token: str, ticket_ids: list[int], printer_id: str) -> dict[str, Any]:
        return await self.request("POST", "/kiosk/collect", {"lookup_token": lookup_token,
                                                             "ticket_ids": ticket_ids, "printer_id": printer_id})

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/kiosk/jobs/{job_id}")

    async def printer(self, printer_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/kiosk/printers/{printer_id}")
