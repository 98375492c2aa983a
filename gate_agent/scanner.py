"""A serial barcode scanner: one code per line (``\\r\\n`` or ``\\n``), reopened when unplugged.

The reader never dies of its input: undecodable bytes are replaced, empty lines are skipped, and a
line longer than :data:`MAX_LINE` bytes is cut and handed on as garbage (it decides MALFORMED).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

import serial
import serial_asyncio_fast

from confkit.reopen import HealthCell, reopen_loop

log = logging.getLogger(__name__)

MAX_LINE = 512
REOPEN_DELAY = 1.0
_CHUNK = 4096

LineHandler = Callable[[str], Awaitable[object]]


class LineSplitter:
    """Turns a byte stream into lines; an overlong line is cut at :data:`MAX_LINE` bytes, once."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    if not self._discarding:
                        lines.append(bytes(self._buf[:MAX_LINE + 1]))
                        self._discarding = True
                    self._buf.clear()
                break
            line = bytes(self._buf[:nl])
            del self._buf[:nl + 1]
            if self._discarding:
                self._discarding = False  # the tail of an overlong line, already reported
                continue
            lines.append(line[:MAX_LINE + 1])
        return lines


def decode_line(raw: bytes) -> str | None:
    """The text of one line, or None for an empty line."""
    raw = raw.rstrip(b"\r")
    if not raw.strip():
        return None
    return raw.decode("utf-8", errors="replace")


class Scanner:
    """Reads ``url`` (a device path, a pyserial URL, or ``stdin``) and calls ``on_line`` per code."""

    def __init__(self, url: str, on_line: LineHandler, *, baudrate: int = 9600,
                 reopen_delay: float = REOPEN_DELAY) -> None:
        self.url = url
        self.baudrate = baudrate
        self.on_line = on_line
        self.reopen_delay = reopen_delay
        self._health = HealthCell()
        self.connected = self._health.connected  # set while the port is open

    def health(self) -> str:
        """"ok" while the port is open and being read, "missing" while it is being reopened."""
        return self._health()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter | None]:
        if self.url == "stdin":
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            return reader, None
        return await serial_asyncio_fast.open_serial_connection(url=self.url, baudrate=self.baudrate)

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        splitter = LineSplitter()
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                raise EOFError("scanner closed the stream")
            for raw in splitter.feed(data):
                text = decode_line(raw)
                if text is None:
                    continue
                if len(raw) > MAX_LINE:
                    log.warning("scanner line longer than %d bytes: treated as garbage", MAX_LINE)
                try:
                    await self.on_line(text)
                except Exception:
                    log.exception("scan handler failed; reading on")

    async def _read(self, session: tuple[asyncio.StreamReader, asyncio.StreamWriter | None]) -> None:
        await self._pump(session[0])

    async def run(self) -> None:
        """Read forever; reopen every ``reopen_delay`` seconds while the port is gone (:mod:`confkit.reopen`)."""
        try:
            await reopen_loop(f"scanner {self.url}", self._open, self._read, self._health, retry=self.reopen_delay,
                              lost=(OSError, EOFError, serial.SerialException), close=_close,
                              once=self.url == "stdin", log=log)
        finally:
            self._health.set("missing")  # stopped: not reading
        log.info("standard input closed; no more scans")


def _close(session: tuple[asyncio.StreamReader, asyncio.StreamWriter | None]) -> None:
    if session[1] is not None:
        session[1].close()
