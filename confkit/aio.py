"""Waiting with a deadline without losing a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` returns normally when the event is set at the
moment the waiting task is cancelled: the cancellation is swallowed and a daemon loop that should stop
runs on, so shutting it down hangs (seen as a rare 120 s hang of the printer test under load).
``asyncio.timeout`` does not have that flaw; every daemon waits through these helpers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_set(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def within(awaitable: Awaitable[T], timeout: float) -> T:  # noqa: ASYNC109
    """``await awaitable`` with a deadline (TimeoutError after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        return await awaitable
