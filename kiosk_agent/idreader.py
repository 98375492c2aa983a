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
        self.connected = asyncio.Event()

    def health(self) -> str:
        """"ok" while the port is open and being read, "missing" while it is being reopened."""
        return "ok" if self.connected.is_set() else "missing"

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

    async def run(self) -> None:
        """Read forever; reopen every ``reopen_delay`` seconds while the port is gone."""
        failing = False
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(url=self.url,
                                                                                  baudrate=self.baudrate)
            except (OSError, serial.SerialException) as exc:
                if not failing:
                    log.warning("id reader %s cannot be opened (%s); retrying every %.1f s",
                                self.url, exc, self.reopen_delay)
                failing = True
                await asyncio.sleep(self.reopen_delay)
                continue
            failing = False
            log.info("id reader %s open", self.url)
            self.connected.set()
            try:
                await self._pump(reader)
            except (OSError, EOFError, serial.SerialException) as exc:
                log.warning("id reader %s lost (%s)", self.url, exc)
            finally:
                self.connected.clear()
                writer.close()
            await asyncio.sleep(self.reopen_delay)
