"""The reopen-on-unplug loop every device reader runs: open, read until it fails, mark it missing, wait, reopen.

    >>> health = HealthCell()                       # "missing" until the device is open
    >>> await reopen_loop("scanner /dev/ttyACM0", open_port, read_lines, health, retry=1.0,
    ...                   lost=(OSError, serial.SerialException), close=close_port, log=log)

Used by the gate's serial scanner, camera and RFID reader and the kiosk's ID-card reader. A device that
cannot be opened is logged once (``<what> cannot be opened (<why>); retrying every <retry> s``) and
retried quietly every ``retry`` seconds; one that goes away while read is logged ``<what> lost (<why>)``
and reopened. Health: ``"ok"`` while open (or, with ``ok_on_open=False``, once the reader says so),
``"missing"`` while it is gone, ``"error"`` after an unexpected failure (only with ``faults=True``;
otherwise such a failure ends the loop, for the task supervisor to log and restart).
Cancelled, the loop closes the session and leaves the health as it was.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

__all__ = ["Health", "HealthCell", "Next", "reopen_loop"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
Health = Literal["ok", "missing", "error"]


class Next(enum.Enum):
    """What a reader's ``read`` returns when its session ended without an error (None: wait, reopen)."""

    REOPEN_NOW = "reopen now"  # e.g. a looping video file at its end: start over at once
    STOP = "stop"  # a finite source ended: the loop returns


class HealthCell:
    """One reader's health, and an event set while it is ``"ok"`` (what "ready" waits for)."""

    def __init__(self, initial: Health = "missing") -> None:
        self._state: Health = initial
        self.connected = asyncio.Event()
        if initial == "ok":
            self.connected.set()

    def __call__(self) -> Health:
        return self._state

    def set(self, state: Health) -> None:
        self._state = state
        if state == "ok":
            self.connected.set()
        else:
            self.connected.clear()


async def reopen_loop(what: str, open_: Callable[[], Awaitable[T]], read: Callable[[T], Awaitable[Next | None]],
                      health: HealthCell, *, retry: float,
                      lost: tuple[type[BaseException], ...] = (OSError,),
                      close: Callable[[T], object] | None = None, faults: bool = False, ok_on_open: bool = True,
                      once: bool = False, log: logging.Logger = _log) -> None:
    """Open ``what`` with ``open_()`` and ``read`` it; reopen every ``retry`` seconds while it is gone.

    ``lost``: the exceptions meaning "not there (any more)": health ``"missing"``. ``faults``: any other
    exception is logged with its traceback, health ``"error"``, and retried too (else it propagates).
    ``close(session)`` runs after every session, however it ended. ``once``: the first session that ends
    ends the loop (standard input cannot come back). Runs until cancelled or ``read`` returns
    :attr:`Next.STOP`.
    """
    failing = False
    while True:
        try:
            session = await open_()
        except lost as exc:
            if not failing:
                log.warning("%s cannot be opened (%s); retrying every %g s", what, exc, retry)
            failing = True
            health.set("missing")
            await asyncio.sleep(retry)
            continue
        except Exception:
            if not faults:
                health.set("missing")
                raise
            if not failing:
                log.exception("%s cannot be opened; retrying every %g s", what, retry)
            failing = True
            health.set("error")
            await asyncio.sleep(retry)
            continue
        failing = False
        log.info("%s open", what)
        if ok_on_open:
            health.set("ok")
        after: Next | None = None
        try:
            after = await read(session)
        except lost as exc:
            log.warning("%s lost (%s)", what, exc)
            health.set("missing")
        except Exception:
            if not faults:
                health.set("missing")
                raise
            log.exception("%s failed; reopening", what)
            health.set("error")
        finally:
            if close is not None:
                close(session)
        if once or after is Next.STOP:
            health.set("missing")
            return
        if after is not Next.REOPEN_NOW:
            await asyncio.sleep(retry)
