"""Prometheus metrics of a device daemon: a ``[metrics]`` section, a per-process registry, a local endpoint.

    server = MetricsServer(registry, cfg.metrics)      # a port of 0: no server
    server.start()                                     # GET http://127.0.0.1:9101/metrics
    ...
    await server.aclose()

Each daemon keeps its own :class:`~prometheus_client.CollectorRegistry` (never the global default: the
tests run several gates in one process). Counters and histograms are updated where things happen (a
decision, a printed job); what the daemon's event loop owns (the store's SQLite connection, the link's
state) is read at scrape time by a :class:`LoopCollector`, *on the loop*, so nothing is shared with the
HTTP server's thread but finished numbers. A port that cannot be bound is logged and the daemon runs on
without metrics: a gate must admit people whether or not it can be watched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from confkit.metrics_config import PORT_DOC, MetricsConfig  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

# part states that are not a fault: a part that is switched off is not unhealthy
HEALTHY_STATES = frozenset({"ok", "disabled"})


POLL = 0.1  # seconds the server thread waits for a request before it looks whether it should stop


class _Server(ThreadingWSGIServer):
    """prometheus-client's threading WSGI server; ``address_family`` is set per address."""


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: Prometheus scrapes every 15 s."""


class MetricsServer:
    """What ``prometheus_client.start_http_server`` does (its WSGI app, on a thread), for one registry, with a
    stop that takes at most :data:`POLL` seconds (``start_http_server``'s server polls every 0.5 s)."""

    def __init__(self, registry: CollectorRegistry, cfg: MetricsConfig) -> None:
        self.registry = registry
        self.host, self.port = cfg.host, cfg.port
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> bool:
        """Listen (port 0: do nothing); False if disabled or the port cannot be bound (logged)."""
        if self.port == 0:
            log.info("metrics endpoint disabled ([metrics] port = 0)")
            return False
        try:
            family, _kind, _proto, _name, sockaddr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]  # IPv4 or IPv6
            server = type("MetricsHTTPServer", (_Server,), {"address_family": family})
            self._httpd = make_server(str(sockaddr[0]), self.port, make_wsgi_app(self.registry), server,
                                      handler_class=_Quiet)
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%s (%s); running without a metrics endpoint",
                      self.host, self.port, exc)
            return False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": POLL},
                                        name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%s/metrics", self.host, self.port)
        return True

    def close(self) -> None:
        """Stop serving and release the port (blocks up to :data:`POLL` seconds)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(2)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close_with(self, task: asyncio.Task[Any] | None) -> None:
        """Also stop when ``task`` ends (say, by a cancellation before the daemon's orderly stop)."""
        if task is not None:
            task.add_done_callback(lambda _t: threading.Thread(target=self.close, daemon=True).start())


Read = Callable[[], Iterable[Metric]]


class LoopCollector:
    """Metrics read at scrape time by ``read`` on the daemon's event loop ``loop``, within ``timeout``.

    A loop that does not answer in time (blocked, or stopped) costs the scrape these metrics, never the
    scrape: it is logged, and ``<prefix>_loop_ok`` says 0."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read: Read, prefix: str, timeout: float = 2.0) -> None:
        self.loop, self.read, self.prefix, self.timeout = loop, read, prefix, timeout
        self._failures = 0

    def collect(self) -> Iterator[Metric]:
        future: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(list(self.read()))
            except BaseException as exc:  # reported to the scrape thread, which logs it
                future.set_exception(exc)

        ok = 1.0
        metrics: list[Metric] = []
        try:
            if _running_loop() is self.loop:  # collected on the loop itself (a test): no hop, no deadlock
                run()
            else:
                self.loop.call_soon_threadsafe(run)
            metrics = future.result(self.timeout)
        except Exception as exc:
            future.cancel()
            ok = 0.0
            self._failures += 1
            if self._failures == 1 or self._failures % 100 == 0:
                log.warning("metrics: reading the daemon's state failed (%r; %s time(s)); scrape without it",
                            exc, self._failures)
        yield from metrics
        yield gauge(f"{self.prefix}_loop_ok", "1 if the daemon's event loop answered the last scrape in time, "
                    "else 0 (its state metrics are missing from that scrape)", ok)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def device_registry() -> CollectorRegistry:
    """A daemon's own registry, with the process's CPU, memory, open files and start time (``process_*``)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def gauge(name: str, doc: str, value: float | None = None,
          labels: Mapping[str, Mapping[str, float]] | None = None) -> GaugeMetricFamily:
    """A gauge family: one value, or one per label value (``labels={"part": {"scanner": 1.0}}``)."""
    if labels is None:
        return GaugeMetricFamily(name, doc, value=value if value is not None else math.nan)
    (key, values), = labels.items()
    family = GaugeMetricFamily(name, doc, labels=[key])
    for k, v in sorted(values.items()):
        family.add_metric([str(k)], v)
    return family


def counter(name: str, doc: str, value: float, labels: Mapping[str, Mapping[str, float]] | None = None,
            ) -> CounterMetricFamily:
    """A counter family from a plain count kept by the daemon (``name`` without ``_total``)."""
    if labels is None:
        return CounterMetricFamily(name, doc, value=value)
    (key, values), = labels.items()
    family = CounterMetricFamily(name, doc, labels=[key])
    for k, v in sorted(values.items()):
        family.add_metric([str(k)], v)
    return family


def health_gauge(prefix: str, health: Mapping[str, str]) -> GaugeMetricFamily:
    """``<prefix>_part_healthy{part}``: 1 for ``ok`` (or ``disabled``), 0 for anything else (missing,
    error, stale, failed), from the health dict the daemon's heartbeat reports."""
    return gauge(f"{prefix}_part_healthy", "1 if the part is ok (as the heartbeat's health reports it), else 0",
                 labels={"part": {part: 1.0 if state in HEALTHY_STATES else 0.0 for part, state in health.items()}})


def link_metrics(prefix: str, connects: int, connected: bool) -> list[Metric]:
    """The broker link: ``<prefix>_reconnects_total`` (connections after the first) and ``_mqtt_connected``."""
    return [counter(f"{prefix}_reconnects", "MQTT connections to the broker after the first one (a rising rate: "
                    "a flapping link)", float(max(connects - 1, 0))),
            gauge(f"{prefix}_mqtt_connected", "1 while connected to the MQTT broker", 1.0 if connected else 0.0)]


def info(prefix: str, labels: Mapping[str, str]) -> GaugeMetricFamily:
    """``<prefix>_info{...} 1``: which device this is (id, version, group...)."""
    family = GaugeMetricFamily(f"{prefix}_info", "who this device is; always 1", labels=list(labels))
    family.add_metric([str(v) for v in labels.values()], 1.0)
    return family
