"""The ID-card reader on a serial port (pyserial-asyncio-fast), reopened when unplugged.

The reader never dies of its input: every frame goes through :class:`~kiosk_agent.idcard.FrameParser`;
refused frames are logged and handed to ``on_read`` as :class:`~kiosk_agent.idcard.BadRead` so the UI
can ask for the card again. ID numbers are logged masked, names never.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import serial
import serial_asyncio_fast

from confkit.reopen import HealthCell, reopen_loop
from kiosk_agent.idcard import BadRead, FrameParser, IdCard

log = logging.getLogger(__name__)

_CHUNK = 1024

ReadHandler = Callable[[IdCard | BadRead], Awaitable[object]]


class IdReader:
    """Reads ``url`` (a device path or pyserial URL) and calls ``on_read`` for every card or bad read."""

    def __init__(self, url: str, on_read: ReadHandler, *, baudrate: int = 115200,
                 reopen_delay: float = 1.0) -> None:
        self.url = url
        self.baudrate = baudrate
        self.on_read = on_read
        self.reopen_delay = reopen_delay
        self._health = HealthCell()
        self.connected = self._health.connected  # set while the port is open

    def health(self) -> str:
        """"ok" while the port is open and being read, "missing" while it is being reopened."""
        return self._health()

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        parser = FrameParser()
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                raise EOFError("the reader closed the stream")
            for read in parser.feed(data):
                if isinstance(read, BadRead):
                    log.warning("id reader: refused a read: %s", read.reason)
                else:
                    log.info("id reader: card %s", read.masked())
                try:
                    await self.on_read(read)
                except Exception:
                    log.exception("id-card handler failed; reading on")

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await serial_asyncio_fast.open_serial_connection(url=self.url, baudrate=self.baudrate)

    async def _read(self, session: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        await self._pump(session[0])

    async def run(self) -> None:
        """Read forever; reopen every ``reopen_delay`` seconds while the port is gone (:mod:`confkit.reopen`)."""
        try:
            await reopen_loop(f"id reader {self.url}", self._open, self._read, self._health,
                              retry=self.reopen_delay, lost=(OSError, EOFError, serial.SerialException),
                              close=lambda session: session[1].close(), log=log)
        finally:
            self._health.set("missing")  # stopped: not reading
