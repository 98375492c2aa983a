"""Benchmark: full exports of 1,000,000 check-in rows through a real hub process, and what they cost it.

    .venv/bin/python bench/report_export.py [--events 1000000] [--formats xlsx,csv]

A private Mosquitto and ``python -m hub`` (bench/_hubproc.py) with a show set up; the events are
bulk-inserted straight into the hub's SQLite file (tests/support/bulk_events.py: a bench, not the product
path). Then, for each format, as the Reports page does: ``POST /api/v1/reports/exports`` (the whole detail,
no filter), progress polled every 0.5 s until done, and the file downloaded once with a one-time link. While
each export runs, the hub process's RSS is sampled (psutil, every 0.1 s: the peak over the export, and the
RSS before it) and ``GET /api/v1/health`` is timed every 0.25 s (its p50 and max while the export runs: the
event loop keeps answering). Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

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


def export_once(api: httpx.Client, base_url: str, pid: int, fmt: str, out_dir: Path) -> dict[str, Any]:
    before = psutil.Process(pid).memory_info().rss
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
            result: dict[str, Any] = {"events": args.events, "load_s": round(time.perf_counter() - started, 1)}
            for fmt in args.formats.split(","):
                print(f"exporting {fmt}", file=sys.stderr)
                result[f"{fmt}_export"] = export_once(bench.hub.api, bench.hub.base_url, bench.hub.proc.pid, fmt,
                                                      Path(tmp))
        finally:
            bench.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
