"""RFID/NFC readers: a card's UID and, where present, a signed ticket token in an NDEF record.

    >>> reader = NfcpyReader(NfcpyOptions("usb"), checker_handler(checker))
    >>> task = asyncio.create_task(reader.run())      # reader.health() -> "ok" | "missing" | "error"

nfcpy is blocking, so one worker thread per reader polls ``clf.connect(rdwr=...)`` and hands each
read to the event loop (``run_coroutine_threadsafe``), waiting for it to be decided before polling
again. A reader that is missing or unplugged is retried every ``retry_s`` seconds; it never stops
the other readers or the gate. A card held on the reader is read once per presentation: the same
UID seen again within ``debounce_s`` of its last sighting is ignored.

A token found in an NDEF text or URI record is decided exactly like a QR scan; otherwise the UID is
hashed (:func:`protocol.cards.card_key`) and decided as a member card. Raw UIDs are never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from confkit.reopen import Health, HealthCell, reopen_loop
from gate_agent.checkin import Checker
from gate_agent.config import RfidConfig
from protocol.cards import card_key
from protocol.errors import MalformedError
from protocol.token import TOKEN_LENGTH

log = logging.getLogger(__name__)

_TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}$")
_URI_PARTS = re.compile(r"[/#?=&]")


@dataclass(frozen=True, slots=True)
class RfidRead:
    uid: bytes  # as read; hash it with card_key() before storing or logging anything
    token: str | None = None  # a ticket token found in an NDEF text or URI record


ReadHandler = Callable[[RfidRead], Awaitable[object]]


class RfidReader(Protocol):
    async def run(self) -> None:
        """Read until cancelled; hand every presentation to the read handler."""

    def health(self) -> Health:
        """``"ok"`` (reader open), ``"missing"`` (not found or unplugged) or ``"error"``."""


def token_in(records: Iterable[Any]) -> str | None:
    """The first ticket-token-shaped text in NDEF text records or URI records (last path/query part)."""
    import ndef  # nfcpy and ndeflib are loaded only on gates with a reader: ~5 MB of RSS

    for record in records:
        if isinstance(record, ndef.TextRecord):
            candidates = [record.text]
        elif isinstance(record, ndef.UriRecord):
            candidates = _URI_PARTS.split(record.iri)
        else:
            continue
        for text in candidates:
            if _TOKEN.match(text.strip()):
                return text.strip()
    return None


def checker_handler(checker: Checker) -> ReadHandler:
    """Token → :meth:`Checker.scan` (source "nfc"); bare UID → :meth:`Checker.tap` by its hash."""

    async def handle(read: RfidRead) -> object:
        if read.token is not None:
            return await checker.scan(read.token, "nfc")
        try:
            key = card_key(read.uid)
        except MalformedError as exc:
            log.warning("card ignored: %s", exc)
            return None
        return await checker.tap(key)

    return handle


@dataclass(frozen=True, slots=True)
class NfcpyOptions:
    path: str  # 'usb', 'usb:054c:06c1', 'tty:USB0:pn532', or 'udp:host:port' for the simulator
    targets: tuple[str, ...] = ("106A", "212F")
    debounce_s: float = 1.5
    retry_s: float = 3.0
    interval_s: float = 0.1


class NfcpyReader:
    """An nfcpy ``ContactlessFrontend`` polled in a worker thread."""

    def __init__(self, options: NfcpyOptions, on_read: ReadHandler, *,
                 frontend: Callable[[str], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.on_read = on_read
        self._frontend = frontend or _nfcpy_frontend
        self._clock = clock
        self._health = HealthCell()
        self._last_seen: dict[bytes, float] = {}
        self.reads = 0  # presentations handed on (for tests and status)

    def health(self) -> Health:
        return self._health()

    async def run(self) -> None:
        """Read until cancelled; reopen every ``retry_s`` seconds while the reader is gone (:mod:`confkit.reopen`).
        nfcpy blocks: opening and polling run on one worker thread, which ``stop`` ends between sense rounds."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rfid {self.options.path}")
        last: list[concurrent.futures.Future[Any]] = []

        def on_worker(fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
            last[:] = [worker.submit(fn, *args)]
            return last[0]

        async def open_() -> Any:
            return await asyncio.wrap_future(on_worker(self._frontend, self.options.path))

        async def read(clf: Any) -> None:
            await asyncio.wrap_future(on_worker(self._poll, clf, loop, stop))

        try:
            await reopen_loop(f"rfid reader {self.options.path}", open_, read, self._health,
                              retry=self.options.retry_s, lost=(OSError,), faults=True,
                              close=lambda clf: on_worker(_close, clf), log=log)
        finally:
            stop.set()
            worker.shutdown(wait=False)
            # the worker notices between nfcpy sense rounds; never block the event loop on it
            await asyncio.shield(asyncio.to_thread(concurrent.futures.wait, last, 10.0))

    # ---- worker thread -----------------------------------------------------------------------

    def _poll(self, clf: Any, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        seen: list[RfidRead] = []

        def on_connect(tag: Any) -> bool:
            uid = bytes(tag.identifier)
            try:
                records = list(tag.ndef.records) if tag.ndef else []
            except Exception as exc:  # the card left mid-read: no decision, the next poll retries
                log.info("rfid: NDEF read failed (%s); card ignored this time", type(exc).__name__)
                return False
            seen.append(RfidRead(uid, token_in(records)))
            return False  # return at once; the debounce below makes one read per presentation

        rdwr = {"on-connect": on_connect, "targets": list(self.options.targets), "iterations": 1,
                "interval": self.options.interval_s, "beep-on-connect": False}
        while not stop.is_set():
            result = clf.connect(rdwr=rdwr, terminate=stop.is_set)
            if result is False:  # nfcpy swallowed an IOError: the reader is gone (or refused the targets)
                raise OSError("reader stopped answering")
            while seen:
                read = seen.pop(0)
                if self._fresh(read.uid):
                    self._hand_over(read, loop, stop)

    def _fresh(self, uid: bytes) -> bool:
        """True on a new presentation; a UID seen again within ``debounce_s`` is the same one."""
        now = self._clock()
        last = self._last_seen.get(uid)
        self._last_seen = {u: t for u, t in self._last_seen.items() if now - t < self.options.debounce_s}
        self._last_seen[uid] = now
        return last is None or now - last >= self.options.debounce_s

    def _hand_over(self, read: RfidRead, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        self.reads += 1
        future = asyncio.run_coroutine_threadsafe(self._decide(read), loop)
        while not stop.is_set():  # one patron at a time: poll again once this one is decided
            try:
                future.result(timeout=0.5)
                return
            except concurrent.futures.TimeoutError:
                continue
            except concurrent.futures.CancelledError:
                return

    async def _decide(self, read: RfidRead) -> None:
        try:
            await self.on_read(read)
        except Exception:
            log.exception("rfid read handler failed; reading on")


def _close(clf: Any) -> None:
    with contextlib.suppress(Exception):
        clf.close()


def _nfcpy_frontend(path: str) -> Any:
    import nfc

    return nfc.ContactlessFrontend(path)


def make_reader(cfg: RfidConfig, checker: Checker) -> NfcpyReader:
    options = NfcpyOptions(cfg.path, tuple(cfg.targets), cfg.debounce_s, cfg.retry_s)
    return NfcpyReader(options, checker_handler(checker))
