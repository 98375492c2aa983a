"""The hub's Prometheus metrics, served at ``GET /metrics`` (docs/operations.md, "Metrics and alerts").

Each :class:`~hub.services.context.HubContext` has its own :class:`HubMetrics` with its own registry (never
the process-wide default: the tests run several hubs in one process). Counters and histograms are
updated where things happen, after the transaction and once per batch or request, never per event;
what is in the database (devices online, whitelist seqs, the emergency state) is read when Prometheus
scrapes, by :class:`DatabaseCollector`: three small queries in one read transaction. A database that
does not answer costs the scrape those metrics (logged; ``venue_hub_metrics_db_ok`` says 0), never the
scrape.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import select

from hub.tables import checkin_groups, devices, emergency_commands

if TYPE_CHECKING:
    from hub.services.context import HubContext
    from protocol.messages import CheckinEvent, EventBatch

log = logging.getLogger(__name__)
PREFIX = "venue_hub"
# an online check is one short write: milliseconds; handhelds give up after 500 ms
ONLINE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# scan to stored: under a second from an online gate; minutes to hours from a gate that was offline
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HubMetrics:
    """One hub's metrics. Services call :meth:`stored`, :meth:`scanned`, :meth:`security_event`; the
    app's lifespan calls :meth:`watch` to add what is read at scrape time."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_*: the hub's CPU, memory, open files, start time
        self.scans = Counter(f"{PREFIX}_scans", "check-in events stored (each once, duplicates not counted), by "
                             "reason, channel id and source (serial, qr, nfc, online, keyboard)",
                             ["reason", "channel", "source"], registry=r)
        self.online_check_seconds = Histogram(f"{PREFIX}_online_check_seconds", "seconds the hub took to decide and "
                                              "answer POST /api/v1/checkins/online after the login check "
                                              "(refusals included)",
                                              buckets=ONLINE_BUCKETS, registry=r)
        self.ingest_lag_seconds = Histogram(
            f"{PREFIX}_ingest_lag_seconds", "per stored event batch: hub time when stored (received_at) minus the "
            "scan time of its newest new event: gate outbox, broker, the hub's queue and transaction (gate "
            "clocks are NTP-synced; a negative skew counts as 0)", buckets=LAG_BUCKETS, registry=r)
        self.ingest_store_seconds = Histogram(f"{PREFIX}_ingest_store_seconds", "seconds of one ingest "
                                              "transaction (one or more batches stored together)",
                                              buckets=STORE_BUCKETS, registry=r)
        self.security_events = Counter(f"{PREFIX}_security_events", "security events (a message the registry "
                                       "contradicts or that does not verify), by kind; repeats the log suppresses "
                                       "are counted too", ["what"], registry=r)
        self.ingest_queue = Gauge(f"{PREFIX}_ingest_queue", "event batches received and waiting for the writer",
                                  registry=r)
        self._watched = False

    # -- updated where things happen -------------------------------------------------------------
    def stored(self, new: Sequence[CheckinEvent], batches: Sequence[EventBatch], known: set[str], now: float,
               seconds: float) -> None:
        """After an ingest transaction committed: ``new`` events stored, of ``batches``; ``known`` event ids
        were there already; ``now`` is their ``received_at``; ``seconds`` the transaction took."""
        self.ingest_store_seconds.observe(seconds)
        for (reason, channel, source), n in Tally((e.reason.value, e.channel_id, e.source) for e in new).items():
            self.scans.labels(reason, str(channel), source).inc(n)
        for b in batches:
            newest = b.events[-1] if b.events else None  # the events of a batch are in the gate's seq order
            if newest is not None and newest.event_id not in known:
                self.ingest_lag_seconds.observe(max(now - newest.scanned_at, 0.0))

    def scanned(self, reason: str, channel: int, source: str) -> None:
        """One event stored outside a batch (an online check)."""
        self.scans.labels(reason, str(channel), source).inc()

    def security_event(self, what: str) -> None:
        self.security_events.labels(what[:40]).inc()

    # -- read at scrape time ---------------------------------------------------------------------
    def watch(self, ctx: HubContext, ingest_queue: Callable[[], int] | None = None) -> None:
        """Add the scrape-time metrics of ``ctx``'s database and the bridge's ingest queue (once)."""
        if self._watched:
            return
        self._watched = True
        if ingest_queue is not None:
            self.ingest_queue.set_function(lambda: float(ingest_queue()))
        self.registry.register(DatabaseCollector(ctx))


class DatabaseCollector:
    """Devices, whitelist seqs and the emergency state, read from the database at scrape time."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx
        self._failures = 0

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            with self.ctx.db.read() as conn:
                device_rows = conn.execute(select(devices.c.device_id, devices.c.kind, devices.c.state,
                                                  devices.c.group_id, devices.c.whitelist_seq,
                                                  devices.c.outbox)).all()
                group_rows = conn.execute(select(checkin_groups.c.id, checkin_groups.c.seq)).all()
                newest = conn.execute(select(emergency_commands.c.seq, emergency_commands.c.state)
                                      .order_by(emergency_commands.c.seq.desc()).limit(1)).first()
        except Exception as exc:
            self._failures += 1
            if self._failures == 1 or self._failures % 100 == 0:
                log.warning("metrics: reading the database failed (%r; %s time(s)); scrape without its metrics",
                            exc, self._failures)
            yield GaugeMetricFamily(f"{PREFIX}_metrics_db_ok", "1 if the last scrape read the database", value=0)
            return
        yield from self._devices(device_rows, {r.id: r.seq for r in group_rows})
        seqs = GaugeMetricFamily(f"{PREFIX}_whitelist_seq", "newest whitelist seq of each check-in group",
                                 labels=["group"])
        for r in sorted(group_rows, key=lambda r: r.id):
            seqs.add_metric([str(r.id)], float(r.seq))
        yield seqs
        yield from self._emergency(newest)
        yield GaugeMetricFamily(f"{PREFIX}_metrics_db_ok", "1 if the last scrape read the database", value=1)
        yield GaugeMetricFamily(f"{PREFIX}_metrics_db_seconds", "seconds the last scrape spent reading the "
                                "database", value=time.perf_counter() - started)

    @staticmethod
    def _devices(rows: Sequence[Any], group_seq: dict[int, int]) -> Iterator[Metric]:
        per_kind: Tally[str] = Tally()
        kinds: set[str] = set()
        online = GaugeMetricFamily(f"{PREFIX}_device_online", "1 if the device is online (its newest status, "
                                   "and heartbeats within [provisioning] offline_after intervals)",
                                   labels=["device_id", "kind"])
        outbox = GaugeMetricFamily(f"{PREFIX}_device_outbox", "events the device says wait for the hub's ack "
                                   "(its newest status)", labels=["device_id", "kind"])
        behind = GaugeMetricFamily(f"{PREFIX}_device_whitelist_behind", "whitelist seqs the device is behind its "
                                   "group (its newest status)", labels=["device_id", "kind"])
        for r in sorted(rows, key=lambda r: r.device_id):
            kinds.add(r.kind)
            up = r.state == "online"
            per_kind[r.kind] += up
            online.add_metric([r.device_id, r.kind], 1.0 if up else 0.0)
            if r.outbox is not None:
                outbox.add_metric([r.device_id, r.kind], float(r.outbox))
            if r.whitelist_seq is not None and r.group_id in group_seq:
                behind.add_metric([r.device_id, r.kind], float(max(group_seq[r.group_id] - r.whitelist_seq, 0)))
        total = GaugeMetricFamily(f"{PREFIX}_devices_online", "devices online, by kind", labels=["kind"])
        for kind in sorted(kinds):
            total.add_metric([kind], float(per_kind[kind]))
        yield from (total, online, outbox, behind)

    @staticmethod
    def _emergency(newest: Any) -> Iterator[Metric]:
        state: dict[str, Any] = {}
        if newest is not None:
            state = newest.state if isinstance(newest.state, dict) else json.loads(newest.state)
        is_open = bool(state.get("open_all") or state.get("open_group_ids") or state.get("open_channel_ids"))
        yield GaugeMetricFamily(f"{PREFIX}_emergency_open", "1 while an emergency command has gates standing open "
                                "(all, or some groups or channels)", value=1.0 if is_open else 0.0)
        yield GaugeMetricFamily(f"{PREFIX}_emergency_seq", "seq of the newest emergency command (0: none yet)",
                                value=float(newest.seq) if newest is not None else 0.0)
