"""Online mode for handhelds: ask the hub first, within a short budget, else decide offline.

The hub decides with the same :func:`protocol.decision.validate` and records the event under the
device's own event id, so a retried question returns the first answer and the same event arriving
later over MQTT is stored once. Any failure (timeout, hub down, refused login, a reply that does not
parse) returns ``None``: the caller falls back to its offline decision and marks the event offline.

Trust: with ``ca_file`` an ``https`` hub's certificate must chain to the venue CA (else the TLS
handshake fails: offline). And whatever answers, only its ``signed`` envelope counts
(:mod:`protocol.online`): it must verify with the hub keys the handheld already holds and name this
device and the event id just sent; the unsigned JSON fields are ignored. An answer that fails this is
logged as a security warning, health says ``online: error``, and the scan is decided offline.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field

import httpx

from protocol.decision import Decision
from protocol.errors import MalformedError, SignatureError
from protocol.keys import Keyring
from protocol.online import open_answer
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
    ca_file: str | None = None  # venue CA an https hub's certificate must chain to; None: the system's CAs


class OnlineChecker:
    """``await checker.check(token_text, token, event_id, keyring)`` -> the hub's Decision, or None."""

    def __init__(self, options: OnlineOptions, client: httpx.AsyncClient | None = None) -> None:
        self.opt = options
        verify: ssl.SSLContext | bool = True
        if options.ca_file is not None:
            verify = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.ca_file)
            verify.minimum_version = ssl.TLSVersion.TLSv1_2
        self._client = client or httpx.AsyncClient(base_url=options.url.rstrip("/") + "/api/v1", verify=verify)
        self._bearer: str | None = None
        self.last_ok: bool | None = None
        self.last_problem: str | None = None  # why the last check fell back offline (for logs and tests)
        self.refused_answers = 0  # answers that were not the hub's own for this scan (spoofed, replayed)
        self._login_task: asyncio.Task[str] | None = None

    def warm_up(self) -> None:
        """Log in now, in the background (call from a running loop): the first scan need not pay for the
        login (an Argon2 check at the hub, ~300 ms, plus the TLS handshake) inside its 500 ms budget."""
        self._start_login()

    def _start_login(self) -> asyncio.Task[str]:
        if self._login_task is None or (self._login_task.done() and (
                self._login_task.cancelled() or self._login_task.exception() is not None)):
            self._login_task = asyncio.get_running_loop().create_task(self._login(), name="online-login")
            self._login_task.add_done_callback(self._login_done)
        return self._login_task

    @staticmethod
    def _login_done(task: asyncio.Task[str]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("online login to the hub failed (%s: %s); the next scan tries again", type(exc).__name__, exc)

    async def aclose(self) -> None:
        if self._login_task is not None and not self._login_task.done():
            self._login_task.cancel()
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

    async def _bearer_token(self) -> str:
        # shielded: a scan whose budget runs out does not cancel the login; it finishes for the next scan
        if self._bearer is not None:
            return self._bearer
        return await asyncio.shield(self._start_login())

    async def _ask(self, text: str, event_id: str) -> httpx.Response:
        bearer = await self._bearer_token()
        body = {"token": text, "channel_id": self.opt.channel_id, "device_id": self.opt.device_id,
                "event_id": event_id}
        r = await self._client.post("/checkins/online", json=body, headers={"Authorization": f"Bearer {bearer}"})
        if r.status_code == 401:  # the login expired: log in again once, within the same budget
            if self._bearer == bearer:
                self._bearer, self._login_task = None, None
            bearer = await self._bearer_token()
            r = await self._client.post("/checkins/online", json=body,
                                        headers={"Authorization": f"Bearer {bearer}"})
        return r

    async def check(self, text: str, token: TicketToken, event_id: str, keyring: Keyring) -> Decision | None:
        extra = {"ticket_id": token.ticket_id, "event_id": event_id}
        try:
            async with asyncio.timeout(self.opt.timeout):
                r = await self._ask(text, event_id)
            r.raise_for_status()
            body = r.json()
            signed = body.get("signed") if isinstance(body, dict) else None
        except (TimeoutError, httpx.HTTPError, PermissionError, ValueError, KeyError, TypeError) as exc:
            self.last_ok, self.last_problem = False, type(exc).__name__
            log.warning("online check failed (%s: %s); deciding offline", type(exc).__name__, exc, extra=extra)
            return None
        try:  # only the hub's signature counts; the plain JSON fields beside it are not trusted
            answer = open_answer(signed, keyring, device_id=self.opt.device_id, event_id=event_id)
            if answer.ticket_id is not None and answer.ticket_id != token.ticket_id:
                raise MalformedError(f"the signed online answer is for ticket {answer.ticket_id}, "
                                     f"not {token.ticket_id}")
        except (MalformedError, SignatureError) as exc:
            self.last_ok, self.last_problem = False, f"unsigned answer: {exc}"
            self.refused_answers += 1
            log.warning("SECURITY: refused an online answer from %s that is not the hub's signed answer for this "
                        "scan (%s); deciding offline", self.opt.url, exc, extra=extra)
            return None
        self.last_ok, self.last_problem = True, None
        persons = answer.persons if answer.reason is Reason.ADMITTED else 0
        return Decision(answer.reason, token.ticket_id, token.performance_id, token.ticket_type_id, persons)
