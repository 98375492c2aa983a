"""The printer agent's Prometheus metrics (docs/operations.md, "Metrics and alerts"), on ``[metrics]
host:port``: job results by status, the queue, the printer's condition and the broker link, read at
scrape time on the event loop (the job store's SQLite connection belongs to the loop's thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import suppress

from prometheus_client.metrics_core import Metric

from confkit.metrics import (
    LoopCollector,
    MetricsServer,
    counter,
    device_registry,
    gauge,
    health_gauge,
    info,
    link_metrics,
)
from printer_agent import __version__
from printer_agent.config import PrinterAgentConfig
from printer_agent.link import PrinterLink
from printer_agent.service import PrintService

PREFIX = "venue_printer"


class PrinterMetrics:
    def __init__(self, cfg: PrinterAgentConfig, service: PrintService, link: PrinterLink,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cfg, self.service, self.link = cfg, service, link
        self.registry = device_registry()
        self.registry.register(LoopCollector(loop, self.read, PREFIX))
        self.server = MetricsServer(self.registry, cfg.metrics)

    @classmethod
    def start(cls, cfg: PrinterAgentConfig, service: PrintService, link: PrinterLink) -> PrinterMetrics | None:
        """Serve the printer's metrics; None if ``[metrics] port = 0``. Also closes when the calling task ends."""
        if cfg.metrics.port == 0:
            return None
        metrics = cls(cfg, service, link, asyncio.get_running_loop())
        if metrics.server.start():
            metrics.server.close_with(asyncio.current_task())
        return metrics

    def read(self) -> Iterator[Metric]:
        cond = self.service.condition
        yield info(PREFIX, {"device_id": self.cfg.device_id, "kind": self.cfg.printer.kind, "version": __version__})
        yield counter(f"{PREFIX}_jobs", "print job results by status: printed, failed (paper out, cover open, "
                      "offline, a send error), refused, duplicate", 0.0,
                      labels={"status": {k: float(v) for k, v in self.service.results.items()}})
        yield gauge(f"{PREFIX}_queue_depth", "jobs queued, not yet printed", float(self.service.store.queue_depth()))
        yield gauge(f"{PREFIX}_paper_out", "1 if the printer reports no paper", 1.0 if cond.paper == "out" else 0.0)
        yield from link_metrics(PREFIX, self.link.stats.connects, self.link.connected.is_set())
        healthy = cond.online and cond.paper != "out" and cond.cover != "open"  # as the heartbeat reports it
        yield health_gauge(PREFIX, {"printer": "ok" if healthy else "error"})

    async def aclose(self) -> None:
        with suppress(Exception):
            await self.server.aclose()
