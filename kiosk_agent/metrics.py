"""The kiosk's Prometheus metrics (docs/operations.md, "Metrics and alerts"), on ``[metrics] host:port``:
lookups and collections by outcome, tickets sent to the printer, the heartbeat's broker link and the
health of its parts (the hub, the printer, the ID-card reader), all read at scrape time on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import suppress

from prometheus_client.metrics_core import Metric

from confkit.metrics import LoopCollector, MetricsServer, counter, device_registry, health_gauge, info, link_metrics
from confkit.mqtt import ConnectionStats
from kiosk_agent import __version__
from kiosk_agent.config import KioskConfig
from kiosk_agent.service import KioskService

PREFIX = "venue_kiosk"


class KioskMetrics:
    def __init__(self, cfg: KioskConfig, service: KioskService, health: Callable[[], dict[str, str]],
                 stats: ConnectionStats, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg, self.service, self.health, self.stats = cfg, service, health, stats
        self.registry = device_registry()
        self.registry.register(LoopCollector(loop, self.read, PREFIX))
        self.server = MetricsServer(self.registry, cfg.metrics)

    @classmethod
    def start(cls, cfg: KioskConfig, service: KioskService, health: Callable[[], dict[str, str]],
              stats: ConnectionStats) -> KioskMetrics | None:
        """Serve the kiosk's metrics; None if ``[metrics] port = 0``."""
        if cfg.metrics.port == 0:
            return None
        metrics = cls(cfg, service, health, stats, asyncio.get_running_loop())
        metrics.server.start()
        return metrics

    def read(self) -> Iterator[Metric]:
        counts = self.service.counts
        yield info(PREFIX, {"device_id": self.cfg.device_id, "printer_id": self.cfg.printer_id,
                            "version": __version__})
        for what, name, doc in (
                ("lookup", "lookups", "ticket lookups (code, phone + SMS code, ID card) by outcome: ok or the error "
                                      "code"),
                ("collect", "collections", "collections (tickets sent to the printer) by outcome: ok, "
                                           "out_of_service, expired or the hub's error code")):
            yield counter(f"{PREFIX}_{name}", doc, 0.0, labels={"outcome": {
                outcome[:40]: float(n) for (kind, outcome), n in counts.items() if kind == what}})
        yield counter(f"{PREFIX}_tickets_printing", "tickets sent to the printer by collections",
                      float(counts["tickets", "printing"]))
        yield from link_metrics(PREFIX, self.stats.connects, self.stats.connected)
        yield health_gauge(PREFIX, self.health())

    async def aclose(self) -> None:
        with suppress(Exception):
            await self.server.aclose()
