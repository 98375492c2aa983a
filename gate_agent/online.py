"""Online mode for handhelds: ask the hub first, within a short budget, else decide offline.

The hub decides with the same :func:`protocol.decision.validate` and records the event under the
device's own event id, so a retried question returns the first answer and the same event arriving
later over MQTT is stored once. Any failure (timeout, hub down, refused login, a reply that does not
parse) returns ``None``: the caller falls back to its offline decision and marks the event offline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from protocol.decision import Decision
from protocol.reasons import Reason
from protocol.token import TicketToken

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineOptions:
    url: str  # the hub's base URL, e.g. http://hub.local:8000
    username: str
    password: str = field(repr=False)
    device_id: str = "handheld"
    channel_id: int = 1
    timeout: float = 0.5  # the whole budget of one online check, login included


class OnlineChecker:
    """``await checker.check(token_text, token, event_id)`` -> the hub's Decision, or None."""

    def __init__(self, options: OnlineOptions, client: httpx.AsyncClient | None = None) -> None:
        self.opt = options
        self._client = client or httpx.AsyncClient(base_url=options.url.rstrip("/") + "/api/v1")
        self._bearer: str | None = None
        self.last_ok: bool | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    def health(self) -> str:
        return {None: "ok", True: "ok", False: "error"}[self.last_ok]

    async def _login(self) -> str:
        r = await self._client.post("/auth/login", json={"username": self.opt.username,
                                                         "password": self.opt.password})
        if r.status_code != 200:
            raise PermissionError(f"hub refused the handheld's login ({r.status_code}); check online.username")
        self._bearer = str(r.json()["token"])
        return self._bearer

    async def _ask(self, text: str, event_id: str) -> httpx.Response:
        bearer = self._bearer or await self._login()
        body = {"token": text, "channel_id": self.opt.channel_id, "device_id": self.opt.device_id,
                "event_id": event_id}
        r = await self._client.post("/checkins/online", json=body, headers={"Authorization": f"Bearer {bearer}"})
        if r.status_code == 401:  # the login expired: log in again once, within the same budget
            self._bearer = None
            bearer = await self._login()
            r = await self._client.post("/checkins/online", json=body,
                                        headers={"Authorization": f"Bearer {bearer}"})
        return r

    async def check(self, text: str, token: TicketToken, event_id: str) -> Decision | None:
        try:
            async with asyncio.timeout(self.opt.timeout):
                r = await self._ask(text, event_id)
            r.raise_for_status()
            body = r.json()
            reason = Reason(body["reason"])
            persons = int(body["persons"]) if reason is Reason.ADMITTED else 0
        except (TimeoutError, httpx.HTTPError, PermissionError, ValueError, KeyError, TypeError) as exc:
            self.last_ok = False
            log.warning("online check failed (%s); deciding offline", type(exc).__name__,
                        extra={"ticket_id": token.ticket_id, "event_id": event_id})
            return None
        self.last_ok = True
        return Decision(reason, token.ticket_id, token.performance_id, token.ticket_type_id, persons)
