"""Benchmark: full exports of 1,000,000 check-in rows through a real hub process, and what they cost it.

    .venv/bin/python bench/report_export.py [--events 1000000] [--formats xlsx,csv]

A private Mosquitto and ``python -m hub`` (bench/_hubproc.py) with a show set up; the events are
bulk-inserted straight into the hub's SQLite file (tests/support/bulk_events.py: a bench, not the product
path). Then, for each format, as the Reports page does: ``POST /api/v1/reports/exports`` (the whole detail,
no filter), progress polled every 0.5 s until done, and the file downloaded once with a one-time link. While
each export runs, the hub process's RSS is sampled (psutil, every 0.1 s: the peak over the export, and the
RSS before it; and the kernel's own high-water mark of the hub process, ``VmHWM`` in /proc/<pid>/status,
before and after: no sampling gap can miss that peak) and ``GET /api/v1/health`` is timed every 0.25 s (its
p50 and max while the export runs: the event loop keeps answering). Raw limits measured in the same run
(``raw``): the health round trip of the idle hub, the hub's SQLite file read straight with sqlite3 (every
detail column of every row, in detail order), and XlsxWriter (constant_memory) and the csv module writing
rows of the export's 16 columns, without the database, in this process. Prints one JSON object as its
last line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import xlsxwriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hubproc import BenchHub

from tests.support.bulk_events import add_events


class Sampler:
    """RSS of ``pid`` and the hub's health latency, sampled from a thread until ``stop``."""

    def __init__(self, pid: int, health_url: str) -> None:
        self.proc = psutil.Process(pid)
        self.health_url = health_url
        self.peak = self.proc.memory_info().rss
        self.health_ms: list[float] = []
        self.health_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_health = 0.0
        with httpx.Client(timeout=30) as client:
            while not self._stop.wait(0.1):
                self.peak = max(self.peak, self.proc.memory_info().rss)
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + 0.25
                    started = time.perf_counter()
                    try:
                        ok = client.get(self.health_url).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        self.health_ms.append((time.perf_counter() - started) * 1000)
                    else:
                        self.health_failures += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def vm_hwm(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM, bytes), as the kernel tracks it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


RAW_ROW: list[Any] = [1.78e9, "茶馆 Teahouse", "Main hall 主厅", "Gate A A口", "gate-a1", "成人票 Adult", 1_000_123,
                      "admitted", "已入场", 1, "entry", "否 No", "qr", "否 No", "", "0123456789abcdef0123456789abcdef"]


def raw_xlsx_rows_per_s(tmp: Path, rows: int = 100_000) -> float:
    """XlsxWriter constant_memory writing ``rows`` rows of the detail export's 16 cells (a time, 3 numbers,
    text), cell by cell as hub/services/report_export.py does: the library's own floor on this machine."""
    path = tmp / "raw.xlsx"
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "tmpdir": str(tmp), "strings_to_formulas": False,
                                           "strings_to_urls": False, "strings_to_numbers": False})
    sheet = book.add_worksheet("raw")
    time_format = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    started = time.perf_counter()
    for r in range(1, rows + 1):
        for i, value in enumerate(RAW_ROW):
            if i == 0:
                sheet.write_number(r, i, value / 86400 + 25569, time_format)
            elif isinstance(value, str):
                sheet.write_string(r, i, value)
            else:
                sheet.write_number(r, i, value)
    book.close()
    elapsed = time.perf_counter() - started
    path.unlink()
    return rows / elapsed


def raw_csv_rows_per_s(tmp: Path, rows: int = 200_000) -> float:
    path = tmp / "raw.csv"
    started = time.perf_counter()
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        for _ in range(rows):
            writer.writerow(RAW_ROW)
    elapsed = time.perf_counter() - started
    path.unlink()
    return rows / elapsed


def raw_sqlite_rows_per_s(db: Path) -> float:
    """Every detail column of every event, in (scanned_at, event_id) order, straight from the hub's file."""
    with sqlite3.connect(db) as conn:
        started = time.perf_counter()
        cur = conn.execute("SELECT event_id, scanned_at, received_at, performance_id, group_id, channel_id, device_id,"
                           " ticket_type_id, ticket_id, reason, persons, direction, offline, source, conflict, "
                           "forced_by, credit, annuls FROM checkin_events ORDER BY scanned_at, event_id")
        n = 0
        while batch := cur.fetchmany(5000):
            n += len(batch)
        return n / (time.perf_counter() - started)


def health_idle(base_url: str, rounds: int = 50) -> dict[str, float]:
    laps = []
    with httpx.Client(timeout=10) as client:
        for _ in range(rounds + 1):
            started = time.perf_counter()
            client.get(base_url + "/api/v1/health").raise_for_status()
            laps.append((time.perf_counter() - started) * 1000)
    laps = laps[1:]
    return {"p50_ms": round(statistics.median(laps), 2), "max_ms": round(max(laps), 2)}


def export_once(api: httpx.Client, base_url: str, pid: int, fmt: str, out_dir: Path) -> dict[str, Any]:
    before = psutil.Process(pid).memory_info().rss
    hwm_before = vm_hwm(pid)
    started = time.perf_counter()
    with Sampler(pid, base_url + "/api/v1/health") as sampler:
        r = api.post("/reports/exports", json={"report": "checkin_detail", "format": fmt, "filters": {}})
        r.raise_for_status()
        export_id = r.json()["export_id"]
        while True:
            job = api.get(f"/reports/exports/{export_id}").json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        written = time.perf_counter() - started
    hwm_after = vm_hwm(pid)
    if job["state"] != "done":
        return {"state": job["state"], "error": job.get("error")}
    ticket = api.post(f"/reports/exports/{export_id}/ticket").json()
    path = out_dir / f"detail.{fmt}"
    download_started = time.perf_counter()
    with httpx.stream("GET", base_url + ticket["url"], timeout=120) as response, path.open("wb") as f:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            f.write(chunk)
    download = time.perf_counter() - download_started
    health = sampler.health_ms
    return {"rows": job["rows_done"], "seconds": round(written, 1), "rows_per_s": round(job["rows_done"] / written),
            "bytes": path.stat().st_size, "download_s": round(download, 2),
            "hub_rss_before_mb": round(before / 2**20, 1), "hub_peak_rss_mb": round(sampler.peak / 2**20, 1),
            "hub_vmhwm_before_mb": round(hwm_before / 2**20, 1), "hub_vmhwm_after_mb": round(hwm_after / 2**20, 1),
            "health_during_export": {"answers": len(health), "failures": sampler.health_failures,
                                     "p50_ms": round(statistics.median(health), 1) if health else None,
                                     "max_ms": round(max(health), 1) if health else None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--formats", default="xlsx,csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        bench = BenchHub(Path(tmp))
        bench.start()
        try:
            assert bench.hub is not None and bench.hub.proc is not None
            show = bench.setup_show()
            print(f"loading {args.events} events", file=sys.stderr)
            started = time.perf_counter()
            add_events(bench.hub.workdir / "hub.db", count=args.events, performance_id=show["performance"],
                       group_id=show["group"], channel_ids=[show["channel"]], ticket_type_id=show["adult"],
                       start=time.time() - 86400, every=0.05)
            result: dict[str, Any] = {"bench": "report_export", "events": args.events,
                                      "load_s": round(time.perf_counter() - started, 1)}
            hub_db = bench.hub.workdir / "hub.db"
            result["raw"] = {"health_idle": health_idle(bench.hub.base_url),
                             "sqlite_detail_scan_rows_per_s": round(raw_sqlite_rows_per_s(hub_db)),
                             "xlsxwriter_rows_per_s": round(raw_xlsx_rows_per_s(Path(tmp))),
                             "csv_writer_rows_per_s": round(raw_csv_rows_per_s(Path(tmp)))}
            for fmt in args.formats.split(","):
                print(f"exporting {fmt}", file=sys.stderr)
                result[f"{fmt}_export"] = export_once(bench.hub.api, bench.hub.base_url, bench.hub.proc.pid, fmt,
                                                      Path(tmp))
        finally:
            bench.stop()
    result["cpus"], result["loadavg_1m_at_end"] = os.cpu_count(), round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
