"""Report exports against a real hub process: CSV, XLSX and PDF files opened and checked (the CSV's rows,
openpyxl on the XLSX, pdftotext on the PDF), who may see an export, the download link, the limits, the
clean-up, and the hub answering while a big export runs."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openpyxl
import psutil
import pytest

from hub.services.context import Principal
from hub.services.export_jobs import ExportJobs, ExportRefused
from hub.services.reports import ReportFilters
from tests.hubkit import Hub, hub_fixture, setup_show  # noqa: F401  (fixture)
from tests.support.bulk_events import add_events
from tests.support.console import make_user
from tests.support.net import wait_for
from tests.support.processes import HubProcess
from tests.support.scenario import Show, sell


def client_as(hub: HubProcess, role: str, username: str | None = None) -> httpx.Client:
    name, password = make_user(hub, role, username)
    client = httpx.Client(base_url=hub.base_url + "/api/v1", timeout=30)
    token = client.post("/auth/login", json={"username": name, "password": password}).json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def start(client: httpx.Client, report: str, fmt: str, **filters: Any) -> str:
    r = client.post("/reports/exports", json={"report": report, "format": fmt, "filters": filters})
    assert r.status_code == 202, r.text
    export_id: str = r.json()["export_id"]
    return export_id


def finished(client: httpx.Client, export_id: str, timeout: float = 90) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def over() -> bool:
        seen.update(client.get(f"/reports/exports/{export_id}").json())
        return seen["state"] not in ("queued", "running")

    wait_for(over, timeout=timeout, interval=0.2, what=f"export {export_id} finished")
    return seen


def exported(client: httpx.Client, report: str, fmt: str, **filters: Any) -> tuple[dict[str, Any], httpx.Response]:
    export_id = start(client, report, fmt, **filters)
    job = finished(client, export_id)
    assert job["state"] == "done", job
    file = client.get(f"/reports/exports/{export_id}/file")
    assert file.status_code == 200, file.text
    return job, file


def pdf_text(content: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(content)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def xlsx_rows(content: bytes) -> list[tuple[Any, ...]]:
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    rows = [row for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)]
    book.close()
    return rows


def second_channel(hub: HubProcess, show: Show) -> int:
    channel: int = hub.call("POST", f"/checkin-groups/{show.group_id}/channels", json={
        "name": "Gate B B口", "ticket_type_ids": [show.adult_type]})["id"]
    return channel


def fill(hub: HubProcess, show: Show, count: int, channels: list[int]) -> dict[str, int]:
    return add_events(hub.workdir / "hub.db", count=count, performance_id=show.performance_id,
                      group_id=show.group_id, channel_ids=channels, ticket_type_id=show.adult_type,
                      start=time.time() - 3 * 3600, every=2.0)


def test_a_finance_user_exports_the_detail_as_csv_xlsx_and_pdf_with_chinese_intact(
        hub_process: HubProcess, show: Show, tmp_path: Path) -> None:
    gate_b = second_channel(hub_process, show)
    counts = fill(hub_process, show, 3000, [show.channel_id, gate_b])
    finance = client_as(hub_process, "finance")
    perf = show.performance_id

    job, file = exported(finance, "checkin_detail", "csv", performance_id=perf)
    assert job["rows_done"] == job["rows_total"] == 3000
    assert file.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the file as UTF-8
    assert file.headers["content-type"].startswith("text/csv")
    disposition = file.headers["content-disposition"]
    assert "filename*=UTF-8''" + quote("检票明细表") in disposition and 'filename="checkin-detail-' in disposition
    lines = list(csv.reader(io.StringIO(file.content.decode("utf-8-sig"))))
    assert lines[0][:4] == ["检票时间 Scanned at", "场次 Performance", "检票组 Check-in group", "通道 Channel"]
    assert len(lines) - 1 == 3000 == sum(counts.values())
    assert {line[3] for line in lines[1:]} == {"Gate A A口", "Gate B B口"}

    job, file = exported(finance, "checkin_detail", "xlsx", performance_id=perf)
    rows = xlsx_rows(file.content)
    assert rows[0][0] == "检票明细表 Check-in detail"
    head = next(i for i, row in enumerate(rows) if row[0] == "检票时间 Scanned at")
    assert "结果说明 Result text" in rows[head]
    data = rows[head + 1:]
    assert len(data) == 3000 and all(row[0] is not None for row in data)
    assert sum(1 for row in data if row[7] == "admitted") == counts["admitted"]
    assert data[0][1] == "茶馆 Teahouse"

    job, file = exported(finance, "checkin_detail", "pdf", performance_id=perf)
    assert file.content.startswith(b"%PDF")
    text = pdf_text(file.content, tmp_path)
    for heading in ("检票明细表 Check-in detail", "检票汇总表 Check-in summary", "按通道入场人数", "合计 Total",
                    "场次 Performance: 茶馆 Teahouse", "Gate B B口"):
        assert heading in text, heading
    assert f"{counts['admitted']:,}" in text  # 2,700 admitted: the totals row
    assert "共 3,000 行" in text and "CSV 或 XLSX" in text  # only the first 500 rows, and where the rest are
    assert job["rows_done"] == 500

    audit = hub_process.call("GET", "/audit", params={"action": "report.export", "username": "finance-user"})
    assert {a["target"] for a in audit} >= {"checkin_detail.csv", "checkin_detail.xlsx", "checkin_detail.pdf"}


def test_summary_and_sales_exports_carry_the_same_totals_as_the_report(
        hub_process: HubProcess, show: Show, tmp_path: Path) -> None:
    for _ in range(3):
        sell(hub_process, show)
    fill(hub_process, show, 200, [show.channel_id])
    manager = client_as(hub_process, "manager")
    summary = manager.get("/reports/checkins/summary", params={"performance_id": show.performance_id}).json()

    _job, file = exported(manager, "checkin_summary", "xlsx", performance_id=show.performance_id)
    rows = xlsx_rows(file.content)
    total = next(row for row in rows if row[0] == "合计 Total")
    head = next(row for row in rows if row[0] == "场次 Performance")
    assert total[head.index("入场人数 Persons admitted")] == summary["totals"]["persons"] == 180
    assert total[head.index("拒绝 Denied")] == summary["totals"]["denied"] == 20

    _job, file = exported(manager, "checkin_summary", "pdf", performance_id=show.performance_id)
    text = pdf_text(file.content, tmp_path)
    assert "检票汇总表 Check-in summary" in text and "合计 Total" in text and "180" in text

    _job, file = exported(manager, "sales", "csv")
    lines = list(csv.reader(io.StringIO(file.content.decode("utf-8-sig"))))
    assert lines[0][0] == "场次 Performance" and lines[-1][0] == "合计 Total"
    assert lines[-1][lines[0].index("售出 Sold")] == "3"


def test_an_export_is_seen_only_by_its_maker_or_an_admin_and_a_download_link_works_once(
        hub_process: HubProcess, show: Show) -> None:
    fill(hub_process, show, 50, [show.channel_id])
    finance = client_as(hub_process, "finance")
    viewer = client_as(hub_process, "viewer")
    box_office = client_as(hub_process, "box_office")
    export_id = start(finance, "checkin_detail", "csv")
    job = finished(finance, export_id)

    assert viewer.get(f"/reports/exports/{export_id}").status_code == 404
    refused = viewer.get(f"/reports/exports/{export_id}/file")
    assert refused.status_code == 404 and "请重新导出" in refused.json()["detail_zh"]
    assert box_office.post("/reports/exports", json={"report": "sales", "format": "csv"}).status_code == 403
    assert hub_process.api.get(f"/reports/exports/{export_id}").json()["username"] == "finance-user"  # admin

    ticket = finance.post(f"/reports/exports/{export_id}/ticket").json()
    assert str(finance.headers["Authorization"])[7:] not in ticket["url"]
    first = httpx.get(hub_process.base_url + ticket["url"])  # no bearer: what a browser's link does
    assert first.status_code == 200 and len(first.content) == job["size"]
    again = httpx.get(hub_process.base_url + ticket["url"])
    assert again.status_code == 403 and "重新点击下载" in again.json()["detail_zh"]

    exports_dir = hub_process.workdir / "exports"
    assert os.stat(exports_dir).st_mode & 0o777 == 0o700
    assert [os.stat(p).st_mode & 0o777 for p in exports_dir.iterdir()] == [0o600]
    deleted = finance.delete(f"/reports/exports/{export_id}")
    assert deleted.status_code == 200 and not list(exports_dir.iterdir())


def test_the_hub_answers_while_a_big_export_runs_and_limits_exports_under_way(
        hub_process: HubProcess, show: Show) -> None:
    fill(hub_process, show, 200_000, [show.channel_id])
    finance = client_as(hub_process, "finance")
    big = start(finance, "checkin_detail", "xlsx")
    health_during: list[dict[str, Any]] = []

    def health_answered_mid_export() -> bool:
        job = finance.get(f"/reports/exports/{big}").json()
        assert job["state"] in ("queued", "running"), job  # it must not be over before the hub answered
        if job["state"] != "running" or not 0 < job["rows_done"] < job["rows_total"]:
            return False
        health = httpx.get(hub_process.base_url + "/api/v1/health", timeout=10)
        after = finance.get(f"/reports/exports/{big}").json()
        health_during.append({"status": health.status_code, "after": after})
        return True

    wait_for(health_answered_mid_export, timeout=60, interval=0.1, what="the big export under way")
    assert health_during[0]["status"] == 200
    assert health_during[0]["after"]["state"] == "running"  # answered before the export was done

    second = start(finance, "checkin_detail", "csv")
    third = finance.post("/reports/exports", json={"report": "sales", "format": "csv"})
    assert third.status_code == 429 and third.headers["retry-after"] == "10"
    assert third.json()["code"] == "exports_busy_user" and "等待完成或取消" in third.json()["detail_zh"]

    for export_id in (big, second):
        assert finance.delete(f"/reports/exports/{export_id}").status_code == 200
    assert {finished(finance, e)["state"] for e in (big, second)} == {"cancelled"}
    assert not list((hub_process.workdir / "exports").iterdir())  # no partial file left behind
    assert start(finance, "sales", "csv")  # a free slot again


def test_exports_are_forgotten_an_hour_after_they_finish(hub: Hub) -> None:
    setup_show(hub)
    now = [1_800_000_000.0]
    jobs = ExportJobs(hub.ctx, hub.settings.key_file.parent / "exports-test", clock=lambda: now[0])
    who = Principal(1, "admin", "admin")
    try:
        job = jobs.start(who, "sales", "csv", ReportFilters())
        wait_for(lambda: not jobs.get(who, job.id).active, timeout=30, what="the export finished")
        assert job.state == "done" and job.path.is_file()
        now[0] += 3599
        jobs.sweep()
        assert jobs.file(who, job.id).path.is_file()
        now[0] += 2
        jobs.sweep()
        assert not job.path.exists()
        with pytest.raises(ExportRefused) as gone:
            jobs.get(who, job.id)
        assert gone.value.status == 404
    finally:
        jobs.close()


def test_nothing_survives_a_restart(hub_process: HubProcess, show: Show) -> None:
    export_id = start(hub_process.api, "checkin_summary", "csv", performance_id=show.performance_id)
    assert finished(hub_process.api, export_id)["state"] == "done"
    hub_process.stop()
    hub_process.start()
    assert hub_process.api.get(f"/reports/exports/{export_id}").status_code == 404
    assert not (hub_process.workdir / "exports" / f"{export_id}.csv").exists()


def test_an_export_runs_in_its_own_process_and_a_killed_one_fails_with_what_to_do(
        hub_process: HubProcess, show: Show) -> None:
    fill(hub_process, show, 100_000, [show.channel_id])
    finance = client_as(hub_process, "finance")
    asked = time.time()
    big = start(finance, "checkin_detail", "xlsx")
    assert hub_process.proc is not None
    hub = psutil.Process(hub_process.proc.pid)

    def worker() -> psutil.Process | None:
        job = finance.get(f"/reports/exports/{big}").json()
        assert job["state"] in ("queued", "running"), job
        if job["rows_done"] == 0:
            return None
        # the export's child, not the hub's ingest child (hub/ingest_worker.py, running since the hub started)
        return next((c for c in hub.children() if "spawn_main" in " ".join(c.cmdline())
                     and c.create_time() >= asked - 1.0), None)

    child = wait_for(worker, timeout=60, interval=0.1, what="the export's worker process writing rows")
    child.kill()  # out of memory, or an operator's kill -9
    job = finished(finance, big)
    assert job["state"] == "failed" and "try again" in job["error"] and "请重试" in job["error_zh"], job
    assert not list((hub_process.workdir / "exports").iterdir())  # its partial file went with it
    assert finished(finance, start(finance, "sales", "csv"))["state"] == "done"  # the next one works
    assert "ended with exit code -9" in hub_process.logs()
