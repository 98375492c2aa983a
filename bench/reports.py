"""Benchmark: the report queries over 1,000,000 check-in events, in SQLite and in PostgreSQL.

    .venv/bin/python bench/reports.py [--events 1000000] [--repeats 30] [--no-postgres] [--no-export]

A bench, not the product path: the events are bulk-inserted straight into ``checkin_events`` (SQLite:
executemany; PostgreSQL: COPY) over 20 performances, 8 channels in 4 check-in groups and 40 devices;
about 85 % admissions (5 % of them group tickets of 2-4 persons), 3 % annulments naming an admission of
the same device and ticket, 5 % exits and 7 % refusals; 30 % offline. The schema comes from the Alembic
migrations (so the indexes of 0012 are the ones measured). PostgreSQL is a throwaway server this script
starts itself (initdb on a free port, as tests/support/postgres.py does) and ANALYZEs after the load (its
autovacuum would; SQLite is left as the hub leaves it, without ANALYZE).

Timed, each ``--repeats`` times in a fresh read transaction (as the API does), p50 and p99 in ms:
``checkin_summary`` for one performance, a detail page of 100 rows for that performance (the first and a
deep one: after its 40,000th row) and unfiltered (first and after the 900,000th row), the count and the
chart of one performance. Next to them, the raw limits of the same database in the same run (``raw``): a
``SELECT 1`` on an open connection and in a fresh read transaction, ``count(*)`` of the whole table, a
``sum(persons)`` over the whole table (every row read) and over one performance's rows. Then the full
detail as XLSX (every row, hub/services/report_export.py ``export_to_file``), with the wall time and the
peak RSS of this process (psutil, sampled every 20 ms, and ``ru_maxrss``; the export runs in-process as in
the hub's worker thread; bench/report_export.py measures it through a real hub process) and, as its floor,
XlsxWriter alone writing rows of the same 16 cells. Goals: summary
<= 200 ms, detail page <= 50 ms. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hub.db import Database, make_engine, migrate
from hub.services import reports
from hub.services.reports import ReportFilters
from hub.tables import channels, checkin_events, checkin_groups, performances, ticket_types, venues
from protocol.reasons import Reason
from tests.support.postgres import PostgresServer, server_bin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_export import raw_xlsx_rows_per_s

PERFORMANCES, GROUPS, CHANNELS_PER_GROUP, DEVICES, TYPES = 20, 4, 2, 40, 4
CHUNK = 20_000
START = 1_780_000_000.0  # 2026-05-28
COLUMNS = [c.name for c in checkin_events.columns]
DENIALS = ("already_used", "wrong_channel", "too_early", "unknown", "forged", "malformed", "cooldown")


def catalogue(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(venues), [{"id": 1, "name": "Grand Theatre", "timezone": "Asia/Shanghai"}])
        conn.execute(insert(performances), [
            {"id": p, "venue_id": 1, "name": f"演出 Show {p}", "doors_open": START + p * 86400 - 3600,
             "starts_at": START + p * 86400, "ends_at": START + p * 86400 + 3 * 3600}
            for p in range(1, PERFORMANCES + 1)])
        conn.execute(insert(ticket_types), [
            {"id": t, "name": f"Type {t}", "name_zh": f"票种{t}", "price_cents": 10000 * t}
            for t in range(1, TYPES + 1)])
        conn.execute(insert(checkin_groups), [{"id": g, "name": f"检票组 {g}", "venue_id": 1}
                                              for g in range(1, GROUPS + 1)])
        conn.execute(insert(channels), [{"id": (g - 1) * CHANNELS_PER_GROUP + c, "group_id": g, "name": f"通道 {g}-{c}"}
                                        for g in range(1, GROUPS + 1) for c in range(1, CHANNELS_PER_GROUP + 1)])


def events(n: int, seed: int = 12) -> Iterator[list[dict[str, Any]]]:
    """``n`` events in chunks; each performance's scans spread over its doors-open hour and the show."""
    rnd = random.Random(seed)
    per_perf = n // PERFORMANCES
    last: dict[str, dict[str, Any]] = {}  # the newest admission of each device (what an annulment names)
    chunk: list[dict[str, Any]] = []
    seq = 0
    for i in range(n):
        perf = min(PERFORMANCES, i // per_perf + 1)
        device = rnd.randrange(DEVICES)
        channel = device % (GROUPS * CHANNELS_PER_GROUP) + 1
        device_id = f"gate-{device:02d}"
        at = START + perf * 86400 - 3600 + (i % per_perf) * (4 * 3600 / per_perf) + rnd.random()
        seq += 1
        row: dict[str, Any] = {
            "event_id": uuid.UUID(int=rnd.getrandbits(128)).hex, "device_id": device_id,
            "group_id": (channel - 1) // CHANNELS_PER_GROUP + 1, "channel_id": channel, "device_seq": seq,
            "reason": "admitted", "ticket_id": perf * 100_000 + rnd.randrange(60_000), "performance_id": perf,
            "ticket_type_id": rnd.randrange(TYPES) + 1, "persons": 1, "direction": "entry",
            "offline": rnd.random() < 0.3, "source": "serial", "scanned_at": at, "received_at": at + 1,
            "conflict": False, "excerpt": None, "annuls": None, "card_id": None, "credit": False,
            "unlisted": False, "forced_by": None, "denied": None}
        r = rnd.random()
        admitted = last.get(device_id)
        if r < 0.03 and admitted is not None and admitted["performance_id"] == perf:
            row.update(reason="annulled", annuls=admitted["event_id"], ticket_id=admitted["ticket_id"],
                       ticket_type_id=admitted["ticket_type_id"], persons=admitted["persons"], offline=True)
            del last[device_id]
        elif r < 0.08:
            row.update(reason="exit", direction="exit")
        elif r < 0.15:
            row.update(reason=rnd.choice(DENIALS), persons=0)
        else:
            if rnd.random() < 0.05:
                row["persons"] = rnd.randrange(2, 5)
            row["conflict"] = rnd.random() < 0.002
            last[device_id] = row
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load_sqlite(engine: Engine, n: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        for chunk in events(n):
            conn.execute(insert(checkin_events), chunk)
    return time.perf_counter() - started


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def load_postgres(engine: Engine, n: int) -> float:
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:  # type: ignore[attr-defined]
            for chunk in events(n):
                buf = io.StringIO()
                for row in chunk:
                    buf.write("\t".join(_copy_text(row[c]) if not isinstance(row[c], float) else repr(row[c])
                                        for c in COLUMNS) + "\n")
                with cur.copy(f"COPY checkin_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    copy.write(buf.getvalue())
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE checkin_events"))
    return time.perf_counter() - started


def timed(db: Database, repeats: int, work: Callable[[Any], Any]) -> dict[str, float]:
    laps = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        with db.read() as conn:
            work(conn)
        laps.append((time.perf_counter() - started) * 1000)
    laps = sorted(laps[1:])  # the first warms the cache
    return {"p50_ms": round(statistics.median(laps), 2),
            "p99_ms": round(laps[min(len(laps) - 1, int(len(laps) * 0.99))], 2)}


def raw_limits(db: Database, repeats: int, performance_id: int) -> dict[str, Any]:
    """What the database itself costs on this machine in this run: the floor under every report."""
    laps = []
    with db.engine.connect() as conn:
        for _ in range(201):
            started = time.perf_counter()
            conn.exec_driver_sql("SELECT 1").scalar()
            laps.append((time.perf_counter() - started) * 1000)
    laps = sorted(laps[1:])
    one = text("SELECT count(*), sum(persons) FROM checkin_events WHERE performance_id = :p")
    few = max(3, repeats // 10)
    return {
        "select_1_open_connection": {"p50_ms": round(statistics.median(laps), 3),
                                     "p99_ms": round(laps[int(len(laps) * 0.99)], 3)},
        "select_1_read_transaction": timed(db, repeats, lambda c: c.exec_driver_sql("SELECT 1").scalar()),
        "count_all": timed(db, few, lambda c: c.exec_driver_sql("SELECT count(*) FROM checkin_events").scalar()),
        "sum_persons_all_rows": timed(db, few, lambda c: c.exec_driver_sql(
            "SELECT sum(persons) FROM checkin_events").scalar()),
        "sum_persons_one_performance": timed(db, repeats, lambda c: c.execute(one, {"p": performance_id}).one()),
    }


def cursor_at(db: Database, f: ReportFilters, offset: int) -> tuple[float, str]:
    """The (scanned_at, event_id) of the ``offset``-th row in detail order (found once, not timed)."""
    where = " AND performance_id = :p" if f.performance_id is not None else ""
    with db.read() as conn:
        row = conn.execute(text(f"SELECT scanned_at, event_id FROM checkin_events WHERE 1=1{where} "
                                "ORDER BY scanned_at, event_id LIMIT 1 OFFSET :o"),
                           {"p": f.performance_id, "o": offset}).one()
    return float(row.scanned_at), str(row.event_id)


def queries(db: Database, repeats: int, n: int) -> dict[str, Any]:
    one = ReportFilters(performance_id=PERFORMANCES // 2)
    everything = ReportFilters()
    deep_one, deep_all = cursor_at(db, one, int(n / PERFORMANCES * 0.8)), cursor_at(db, everything, int(n * 0.9))

    def page(f: ReportFilters, after: tuple[float, str] | None) -> Callable[[Any], Any]:
        def run(conn: Any) -> None:
            rows, _ = reports.checkin_detail_page(conn, f, after, 100)
            assert len(rows) == 100
        return run

    out = {
        "summary_one_performance": timed(db, repeats, lambda c: reports.checkin_summary(c, one)),
        "summary_one_performance_reason": timed(db, repeats, lambda c: reports.checkin_summary(
            c, ReportFilters(performance_id=one.performance_id, reason=Reason.ALREADY_USED))),
        "detail_page_one_performance_first": timed(db, repeats, page(one, None)),
        "detail_page_one_performance_deep": timed(db, repeats, page(one, deep_one)),
        "detail_page_all_first": timed(db, repeats, page(everything, None)),
        "detail_page_all_deep": timed(db, repeats, page(everything, deep_all)),
        "detail_page_one_channel_deep": timed(db, repeats, page(ReportFilters(channel_id=3), deep_all)),
        "count_one_performance": timed(db, repeats, lambda c: reports.count_checkin_detail(c, one)),
        "chart_one_performance": timed(db, repeats, lambda c: reports.summary_chart(c, one)),
        "summary_all": timed(db, max(3, repeats // 10), lambda c: reports.checkin_summary(c, everything)),
    }
    with db.read() as conn:
        rows = reports.checkin_summary(conn, one)
        out["one_performance_events"] = reports.summary_totals(rows)["scans"]
    out["raw"] = raw_limits(db, repeats, PERFORMANCES // 2)
    return out


def peak_rss_during(work: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, seconds, peak RSS in bytes of this process while ``work`` ran, sampled every 20 ms)."""
    me = psutil.Process()
    peak = me.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, me.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = work()
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    return result, elapsed, max(peak, me.memory_info().rss)


def export(db: Database, tmp: Path) -> dict[str, Any]:
    from hub.services.report_export import export_to_file

    path = tmp / f"detail-{db.engine.dialect.name}.xlsx"
    before = psutil.Process().memory_info().rss
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows, seconds, peak = peak_rss_during(lambda: export_to_file(db, "checkin_detail", "xlsx", ReportFilters(), path))
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = path.stat().st_size
    path.unlink()
    return {"rows": rows, "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds),
            # the floor: XlsxWriter alone writing rows of the same 16 cells, no database, same process, same run
            "raw_xlsxwriter_rows_per_s": round(raw_xlsx_rows_per_s(tmp)),
            "bytes": size, "rss_before_mb": round(before / 2**20, 1),
            "peak_rss_mb": round(peak / 2**20, 1), "peak_rss_growth_mb": round((peak - before) / 2**20, 1),
            # the process's lifetime peak (the load's chunks included): grows only if the export set a new peak
            "ru_maxrss_before_mb": round(maxrss_before / 2**20, 1),
            "ru_maxrss_after_mb": round(maxrss_after / 2**20, 1)}


def run(engine: Engine, load: Callable[[Engine, int], float], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    migrate(engine)
    catalogue(engine)
    print(f"{engine.dialect.name}: loading {args.events} events", file=sys.stderr)
    seconds = load(engine, args.events)
    db = Database(engine)
    out: dict[str, Any] = {"events": args.events, "load_s": round(seconds, 1), **queries(db, args.repeats, args.events)}
    if not args.no_export:
        print(f"{engine.dialect.name}: full XLSX export", file=sys.stderr)
        out["xlsx_export_all"] = export(db, tmp)
    db.dispose()
    engine.dispose()
    return out


def goals(result: dict[str, Any]) -> dict[str, bool]:
    out = {}
    for name, figures in result.items():
        if not isinstance(figures, dict) or "summary_one_performance" not in figures:
            continue
        out[f"{name}_summary_le_200ms"] = figures["summary_one_performance"]["p99_ms"] <= 200
        out[f"{name}_detail_page_le_50ms"] = all(figures[k]["p99_ms"] <= 50 for k in figures
                                                 if k.startswith("detail_page"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-export", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "reports", "performances": PERFORMANCES, "channels": GROUPS * CHANNELS_PER_GROUP,
                              "devices": DEVICES, "load": "bulk insert straight into checkin_events (a bench)"}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        result["sqlite"] = run(make_engine(f"sqlite:///{tmp}/hub.db"), load_sqlite, args, tmp)
        bindir = None if args.no_postgres else server_bin()
        if bindir is not None:
            server = PostgresServer(bindir)
            try:
                server.start()
                result["postgres"] = run(make_engine(server.create_database("reports")), load_postgres, args, tmp)
            finally:
                server.stop()
        elif not args.no_postgres:
            result["postgres"] = {"skipped": "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"}
    result["goals_met"] = goals(result)
    result["cpus"], result["loadavg_1m_at_end"] = os.cpu_count(), round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
