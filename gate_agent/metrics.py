"""The gate's Prometheus metrics (docs/operations.md, "Metrics and alerts"), on ``[metrics] host:port``.

    metrics = GateMetrics.start(cfg, store, link, checker)   # None: [metrics] port = 0
    ...
    await metrics.aclose()

Decisions are counted and timed as they are made (:attr:`gate_agent.checkin.Checker.on_decided`); the
outbox, the whitelist and the link are read at scrape time on the event loop (the store's SQLite
connection belongs to the loop's thread), see :class:`confkit.metrics.LoopCollector`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import suppress

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

from confkit.metrics import LoopCollector, MetricsServer, device_registry, gauge, health_gauge, info, link_metrics
from gate_agent import __version__
from gate_agent.checkin import Checker
from gate_agent.config import GateConfig
from gate_agent.link import Link
from gate_agent.store import Store
from protocol.messages import CheckinEvent

PREFIX = "venue_gate"
# a decision is local (well under 10 ms) unless a handheld asks the hub first (at most 500 ms)
DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GateMetrics:
    """One gate's registry: decision counters and latency, and its state read at scrape time."""

    def __init__(self, cfg: GateConfig, store: Store, link: Link, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg, self.store, self.link = cfg, store, link
        self.registry = device_registry()
        self.decision_seconds = Histogram(
            f"{PREFIX}_decision_seconds", "seconds from a scan (or card tap) to its journalled decision, online "
            "checks included", buckets=DECISION_BUCKETS, registry=self.registry)
        self.scans = Counter(f"{PREFIX}_scans", "decisions journalled, by reason", ["reason"], registry=self.registry)
        self._current_at = time.time()  # when the whitelist was last known to be current (see whitelist_age)
        self.registry.register(LoopCollector(loop, self.read, PREFIX))
        self.server = MetricsServer(self.registry, cfg.metrics)

    @classmethod
    def start(cls, cfg: GateConfig, store: Store, link: Link, checker: Checker) -> GateMetrics | None:
        """Serve this gate's metrics and count ``checker``'s decisions; None if ``[metrics] port = 0``. The
        endpoint also closes when the calling task ends, however it ends."""
        if cfg.metrics.port == 0:
            return None
        metrics = cls(cfg, store, link, asyncio.get_running_loop())
        checker.on_decided = metrics.decided
        if metrics.server.start():
            metrics.server.close_with(asyncio.current_task())
        return metrics

    def decided(self, event: CheckinEvent, seconds: float) -> None:
        self.decision_seconds.observe(seconds)
        self.scans.labels(event.reason.value).inc()

    def whitelist_age(self, now: float) -> float:
        """Seconds the installed whitelist may be behind the hub: 0 while the link is connected and the
        whitelist is not stale (every delta then arrives as it is made, and what was missed was asked for on
        connect); else since it last was (since the agent started, if never); +Inf with no whitelist."""
        if not self.store.installed:
            return math.inf
        stale = "whitelist" in self.link.stale
        if self.link.connected.is_set() and not stale:
            self._current_at = now
            return 0.0
        if not stale:
            self._current_at = max(self._current_at, self.link.stats.last_connected)
        return max(now - self._current_at, 0.0)

    def read(self) -> Iterator[Metric]:
        """The state metrics; runs on the event loop."""
        now = time.time()
        cfg, link = self.cfg, self.link
        yield info(PREFIX, {"device_id": cfg.device_id, "kind": cfg.kind, "group": str(cfg.group_id),
                            "channel": str(cfg.channel_id), "version": __version__})
        yield gauge(f"{PREFIX}_outbox_depth", "events journalled but not yet acknowledged by the hub",
                    float(self.store.outbox_count()))
        yield gauge(f"{PREFIX}_whitelist_seq", "seq of the installed whitelist (-1: none yet)",
                    float(self.store.whitelist_seq))
        yield gauge(f"{PREFIX}_whitelist_age_seconds", "seconds the whitelist may be behind the hub: 0 while "
                    "connected and not stale, else since it last was; +Inf: no whitelist", self.whitelist_age(now))
        yield from link_metrics(PREFIX, link.stats.connects, link.connected.is_set())
        health = dict(link.health()) if link.health is not None else {}
        health.update({part: "stale" for part in link.stale})
        yield health_gauge(PREFIX, health)

    async def aclose(self) -> None:
        with suppress(Exception):
            await self.server.aclose()
