"""Supervised background tasks: nothing a daemon runs in the background dies silently.

    async with Supervisor("gate-1", on_change=link.status_changed) as tasks:
        tasks.spawn("scanner", scanner.run)               # restarted with backoff when it fails
        tasks.spawn("link", link.run, critical=True)      # its failure ends the process (exit 70)
        await stop.wait()
        await tasks.cancel("scanner")     # an ordered shutdown; leaving the block cancels (and awaits) the rest

A task that raises (not a cancellation), or returns though it should run until cancelled (unless
``forever=False``), is logged (with its traceback) naming the owner (device) and task, is ``"failed"`` in
:meth:`Supervisor.health`, ``on_change`` is called (a device heartbeats at once), and it is restarted after a
backoff doubling from ``backoff_min`` to ``backoff_max``; ``"ok"`` again once the restart has run
``healthy_after`` s (10 by default; it resets the backoff too). ``critical=True`` or ``restart=False``: no
restart in-process (a task not restarted must not linger dead): the block is cancelled, the ``async with``
raises :class:`TaskFailed`, main exits with :data:`EXIT_SOFTWARE` (70), systemd (``Restart=always``) restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

EXIT_SOFTWARE = 70  # sysexits.h EX_SOFTWARE: a supervised task failed and is not restarted in-process


class TaskFailed(Exception):
    """A task spawned with ``critical=True`` or ``restart=False`` failed: exit with :data:`EXIT_SOFTWARE`."""

    def __init__(self, owner: str, name: str) -> None:
        super().__init__(f"{owner}: task {name} failed and is not restarted")
        self.owner, self.name = owner, name


def watch(task: asyncio.Task[Any], owner: str) -> asyncio.Task[Any]:
    """Log the failure of a one-shot helper ``task`` with its traceback when it ends; returns ``task``."""
    def done(t: asyncio.Task[Any]) -> None:
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("%s: task %s failed", owner, t.get_name(), exc_info=exc)

    task.add_done_callback(done)
    return task


@dataclass
class _Child:
    name: str
    factory: Callable[[], Awaitable[None]]
    restart: bool
    forever: bool
    backoff: tuple[float, float]
    task: asyncio.Task[None] | None = None
    started: float = 0.0  # time.monotonic() of the last (re)start...
    failed: float | None = None  # ...and of the last failure
    stopped: bool = False  # cancelled by the supervisor


class Supervisor:
    """Runs named background tasks inside ``async with``; see the module docstring."""

    def __init__(self, owner: str, *, healthy_after: float = 10.0, on_change: Callable[[], None] | None = None) -> None:
        self.owner, self.healthy_after, self.on_change = owner, healthy_after, on_change
        self._children: dict[str, _Child] = {}
        self._host: asyncio.Task[Any] | None = None
        self._failure: TaskFailed | None = None  # of a task that is not restarted
        self._cancelled_host = self._exiting = False

    async def __aenter__(self) -> Supervisor:
        self._host = asyncio.current_task()  # cancelled when a task that is not restarted fails
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._exiting = True
        await self._stop(list(self._children.values()))
        others = self._host.uncancel() if self._cancelled_host and self._host is not None else 0
        ours = et is None or (self._cancelled_host and et is asyncio.CancelledError)
        if self._failure is not None and ours and not others:
            raise self._failure from None  # its traceback is logged already

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]], *, restart: bool = True, critical: bool = False,
              forever: bool = True, backoff_min: float = 0.5, backoff_max: float = 30.0) -> None:
        """Run ``factory()`` as task ``name`` (unique) and keep it running; ``factory`` makes a fresh
        awaitable for every restart (``scanner.run``, ``lambda: self._heartbeat(client)``)."""
        if self._host is None or self._exiting or name in self._children:
            raise RuntimeError(f"{self.owner}: cannot spawn {name}: outside the async with, or a duplicate name")
        child = self._children[name] = _Child(name, factory, restart and not critical, forever,
                                              (backoff_min, backoff_max))
        child.task = asyncio.get_running_loop().create_task(self._keep(child), name=f"{self.owner}:{name}")

    async def cancel(self, name: str) -> None:
        """Cancel task ``name`` and wait for it to end (nothing if there is none)."""
        await self._stop([c] if (c := self._children.pop(name, None)) is not None else [])

    def health(self) -> dict[str, str]:
        """Per running task ``"ok"``, or ``"failed"`` until its restart has run ``healthy_after`` s; any thread."""
        now, fresh = time.monotonic(), self.healthy_after
        return {c.name: "failed" if c.failed is not None and (c.failed >= c.started or now - c.started < fresh)
                else "ok" for c in list(self._children.values())}

    def failed(self) -> dict[str, str]:
        """Only the failed tasks of :meth:`health`: what a device adds to its heartbeat's health."""
        return {name: state for name, state in self.health().items() if state != "ok"}

    async def _stop(self, children: list[_Child]) -> None:
        for c in children:
            c.stopped = True
        pending = {c.task for c in children if c.task is not None and c.task.cancel()}
        while pending:  # never raises (_keep logs every failure); cancels again a task that swallowed it (on
            _, pending = await asyncio.wait(pending, timeout=1.0)  # 3.11, asyncio.wait_for can: aiomqtt's publish)
            for task in pending:
                task.cancel()

    async def _keep(self, c: _Child) -> None:
        delay = c.backoff[0]
        while True:
            c.started = time.monotonic()
            try:
                await c.factory()
                if not c.forever:
                    log.info("%s: task %s ended", self.owner, c.name)
                    self._children.pop(c.name, None)
                    return
                log.error("%s: task %s returned, but it should run until stopped", self.owner, c.name)
            except Exception:
                log.exception("%s: task %s failed", self.owner, c.name)
            if c.stopped:
                return  # the task swallowed our cancellation: stop all the same
            while c.task is not None and c.task.uncancel():  # Python 3.11: a TaskGroup failing inside the task
                pass  # leaves its cancel count raised (a stale count, not a pending cancellation)
            c.failed = time.monotonic()
            delay = c.backoff[0] if c.failed - c.started >= self.healthy_after else delay  # not a crash loop
            if not c.restart and self._failure is None:
                self._failure = TaskFailed(self.owner, c.name)
                self._cancelled_host = not self._exiting and self._host is not None and self._host.cancel()
            try:
                (self.on_change or (lambda: None))()
            except Exception:
                log.exception("%s: the supervisor's on_change callback failed", self.owner)
            if not c.restart:
                log.error("%s: task %s is not restarted: stopping (exit code %d)", self.owner, c.name, EXIT_SOFTWARE)
                return
            log.warning("%s: restarting task %s in %.1f s", self.owner, c.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, c.backoff[1])
