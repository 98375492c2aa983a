"""The printer behind a small interface: ``condition()`` and ``send(data)``, blocking (run in a thread).

:class:`EscposDevice` opens the python-escpos printer of ``[printer] kind`` for each call and closes
it after, so a printer that was switched off or unplugged is found again without a restart.

Status (DLE EOT, when ``status_query`` is on and the connection can read): DLE EOT 1 (no answer: offline;
bit 3: offline),
``paper_status()`` (2 ok, 1 low, 0 out) and the cover bit of DLE EOT 2 (bit 2 set: cover open).
``file`` printers are write-only: online if the device opens, paper and cover ``unknown``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

from escpos.escpos import Escpos
from escpos.exceptions import Error as EscposError
from escpos.printer import Dummy, File, Network, Serial, Usb

from printer_agent import DeviceError
from printer_agent.config import PrinterConfig
from protocol.printing import PrinterCondition

log = logging.getLogger(__name__)

DLE_EOT_PRINTER = b"\x10\x04\x01"
DLE_EOT_OFFLINE = b"\x10\x04\x02"
_OFFLINE = 0x08
_COVER_OPEN = 0x04
_PAPER: dict[int, Literal["ok", "low", "out", "unknown"]] = {2: "ok", 1: "low", 0: "out"}


class Printer(Protocol):
    def condition(self) -> PrinterCondition: ...

    def send(self, data: bytes) -> None: ...


class EscposDevice:
    """A python-escpos printer from config. ``kind = "dummy"`` keeps what it printed in :attr:`printed`."""

    def __init__(self, cfg: PrinterConfig) -> None:
        self.cfg = cfg
        self.printed: list[bytes] = []

    def _make(self) -> Escpos:
        c = self.cfg
        with contextlib.redirect_stdout(io.StringIO()):
            if c.kind == "network":
                return Network(c.host, port=c.port, timeout=c.timeout, profile=c.profile)
            if c.kind == "serial":
                return Serial(devfile=c.devfile, baudrate=c.baudrate, timeout=c.timeout, profile=c.profile)
            if c.kind == "usb":
                return Usb(c.usb_vendor, c.usb_product, profile=c.profile)
            if c.kind == "file":
                return File(devfile=c.devfile, profile=c.profile)
            return Dummy(profile=c.profile)

    @contextlib.contextmanager
    def _opened(self) -> Iterator[Escpos]:
        p = self._make()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                p.open()
        except (OSError, EscposError, Exception) as exc:  # python-escpos raises many kinds when unreachable
            raise DeviceError(f"printer {self.cfg.kind} unreachable: {exc}", "offline") from exc
        try:
            yield p
        finally:
            with contextlib.suppress(Exception):
                p.close()

    def condition(self) -> PrinterCondition:
        if self.cfg.kind == "dummy":
            return PrinterCondition(online=True, paper="ok", cover="closed")
        if self.cfg.kind == "file":  # opening it would truncate it (python-escpos opens "wb"): look, don't touch
            target = Path(self.cfg.devfile)
            writable = os.access(target if target.exists() else target.parent, os.W_OK)
            return PrinterCondition(online=writable, error=None if writable else f"{target} is not writable")
        try:
            with self._opened() as p:
                if self.cfg.kind in ("file", "usb") or not self.cfg.status_query:
                    return PrinterCondition(online=True)
                answer = p.query_status(DLE_EOT_PRINTER)
                if not answer:
                    return PrinterCondition(online=False, error="no answer to the status query")
                paper: Literal["ok", "low", "out", "unknown"] = _PAPER.get(p.paper_status(), "unknown")
                offline = p.query_status(DLE_EOT_OFFLINE)
                cover: Literal["open", "closed", "unknown"] = (
                    "unknown" if not offline else ("open" if offline[0] & _COVER_OPEN else "closed"))
                return PrinterCondition(online=not answer[0] & _OFFLINE, paper=paper, cover=cover)
        except DeviceError as exc:
            return PrinterCondition(online=False, error=str(exc)[:200])
        except (OSError, EscposError) as exc:
            return PrinterCondition(online=False, error=f"status query failed: {exc}"[:200])

    def send(self, data: bytes) -> None:
        if self.cfg.kind == "dummy":
            self.printed.append(data)
            return
        with self._opened() as p:
            try:
                p._raw(data)
                if hasattr(p.device, "flush"):
                    p.device.flush()
            except (OSError, EscposError) as exc:
                raise DeviceError(f"sending to the printer failed: {exc}", "offline") from exc
