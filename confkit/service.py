"""Running under systemd (``Type=notify``): readiness, status, the event-loop watchdog, stopping.

    notifier = service_notifier()              # one per process; reads NOTIFY_SOCKET / WATCHDOG_USEC
    return asyncio.run(notifier.serving(run_gate(cfg)))   # the watchdog runs on the daemon's own loop
    ...
    notifier.ready_when({"whitelist": lambda: store.whitelist_seq >= 0,
                         "broker": lambda: link.connected.is_set() or link.tried.is_set()},
                        describe=lambda: f"whitelist seq {store.whitelist_seq}")
    ...
    notifier.stopping()

The messages go over the notification socket with the maintained ``systemd-watchdog`` package
(pure Python, no libsystemd build). Without ``NOTIFY_SOCKET`` (not started by systemd, tests)
every call is a no-op and :meth:`ServiceNotifier.ready_when` starts nothing.

**Watchdog.** :meth:`ServiceNotifier.watchdog` is a coroutine on the daemon's event loop that sends
``WATCHDOG=1`` every ``WATCHDOG_USEC / 2``; a loop that hangs (a blocking call, a busy loop) stops
feeding it and systemd kills and restarts the service after ``WatchdogSec``. Before ``READY=1`` the
same ticks send ``EXTEND_TIMEOUT_USEC`` (systemd >= 236) so that a daemon that is alive but cannot
decide yet (no whitelist, broker unreachable) stays "activating" instead of being killed by
``TimeoutStartSec``; a hang during start-up is still killed one watchdog window after the last tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from systemd_watchdog import WatchDog

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Socket(WatchDog):
    """``systemd_watchdog.WatchDog`` plus the messages it has no method for (STOPPING, EXTEND_TIMEOUT_USEC)."""

    def send(self, message: str) -> None:
        self._send(message if message.endswith("\n") else message + "\n")


class ServiceNotifier:
    """The sd_notify side of one daemon process. Never raises: a lost notification is logged at debug."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        self._socket = _Socket(addr=address) if address else None
        self.watchdog_usec = 0
        usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if self._socket is not None and usec.isdigit() and (not owner or owner == str(pid or os.getpid())):
            self.watchdog_usec = int(usec)
        self.is_ready = False
        self.is_stopping = False
        self._waiters: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        """Started by systemd with a notification socket (``Type=notify``)."""
        return self._socket is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two ``WATCHDOG=1``: half of ``WATCHDOG_USEC``; None without a watchdog."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; False if not enabled or it could not be sent."""
        if self._socket is None or not assignments:
            return False
        try:
            self._socket.send("\n".join(assignments))
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", assignments[0].split("=", 1)[0], exc)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """``READY=1``: the daemon can do its job now (systemd finishes the start job)."""
        if self.is_ready:
            return
        self.is_ready = True
        self.notify("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> None:
        """``STATUS=...``: one line shown by ``systemctl status``."""
        self.notify(_status(text))

    def stopping(self, status: str | None = None) -> None:
        """``STOPPING=1``: the daemon is shutting down; stops any :meth:`ready_when` still waiting."""
        for task in list(self._waiters):
            task.cancel()
        if self.is_stopping:
            return
        self.is_stopping = True
        self.notify("STOPPING=1", *([_status(status)] if status else []))

    def extend_timeout(self, seconds: float) -> None:
        """``EXTEND_TIMEOUT_USEC``: the start (or stop) may take ``seconds`` more from now."""
        self.notify(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1e6))}")

    async def watchdog(self) -> None:
        """Feed systemd's watchdog from this event loop until cancelled (returns at once without one)."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            if self.is_ready or self.is_stopping:
                self.notify("WATCHDOG=1")
            else:
                self.notify("WATCHDOG=1", f"EXTEND_TIMEOUT_USEC={self.watchdog_usec}")
            await asyncio.sleep(interval)

    async def serving(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` (a daemon's top coroutine) with :meth:`watchdog` beside it on the same loop;
        ``STOPPING=1`` when it ends, if the daemon did not say so itself."""
        feeder = asyncio.create_task(self.watchdog(), name="sd-watchdog")
        try:
            return await main
        finally:
            self.stopping()
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    def ready_when(self, checks: Mapping[str, Callable[[], bool]], describe: Callable[[], str] | None = None,
                   *, every: float = 0.1, stopping: Callable[[], bool] | None = None) -> asyncio.Task[None] | None:
        """Send ``READY=1`` once every check holds (polled each ``every`` s, ``STATUS`` naming what is still
        missing meanwhile); then, with ``stopping``, ``STOPPING=1`` once that holds. Logs ``service ready``.
        Not enabled: starts nothing and returns None. :meth:`stopping` cancels the task."""
        if not self.enabled:
            return None
        task = asyncio.get_running_loop().create_task(self._ready_when(checks, describe, every, stopping),
                                                      name="sd-ready")
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)
        return task

    async def _ready_when(self, checks: Mapping[str, Callable[[], bool]], describe: Callable[[], str] | None,
                          every: float, stopping: Callable[[], bool] | None) -> None:
        shown = None
        while missing := [name for name, check in checks.items() if not check()]:
            text = "starting: waiting for " + ", ".join(missing)
            if text != shown:
                self.status(text)
                shown = text
            await asyncio.sleep(every)
        summary = describe() if describe is not None else "ready"
        log.info("service ready (READY=1): %s", summary)
        self.ready(summary)
        if stopping is not None:
            while not stopping():  # noqa: ASYNC110 - e.g. uvicorn exposes a flag only
                await asyncio.sleep(every)
            self.stopping()

    @contextlib.contextmanager
    def extending_start(self, status: str) -> Iterator[None]:
        """Around a blocking phase before the event loop runs (enrolment waiting for the hub's approval):
        ``STATUS`` and, from a thread, ``EXTEND_TIMEOUT_USEC`` each watchdog interval so that systemd
        waits for it. A thread cannot tell a hung phase from a slow one: keep such phases few."""
        self.status(status)
        interval = self.watchdog_interval
        if interval is None:
            yield
            return
        done = threading.Event()

        def extend() -> None:
            while not done.wait(interval):
                self.extend_timeout(self.watchdog_usec / 1e6)

        self.extend_timeout(self.watchdog_usec / 1e6)
        thread = threading.Thread(target=extend, name="sd-extend", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())[:200]


_process_notifier: ServiceNotifier | None = None


def service_notifier() -> ServiceNotifier:
    """The process's notifier (made from the environment on first use)."""
    global _process_notifier
    if _process_notifier is None:
        _process_notifier = ServiceNotifier()
    return _process_notifier
