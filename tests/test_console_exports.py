"""A finance user on the Reports page exports CSV, XLSX and PDF as a person would, in a real headless Chromium
against a real hub and Mosquitto; the downloaded files are opened: the CSV's rows are counted against the
detail, openpyxl reads the XLSX's Chinese headings and rows, pdftotext finds 检票汇总表 and the totals.
Screenshots go to ``test-artifacts/console/reports/``."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path

import openpyxl
import pytest

from tests.support.bulk_events import add_events
from tests.support.console import TABLET, console_browser, console_page, shot
from tests.support.processes import HubProcess
from tests.support.scenario import Show

pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'")
from playwright.sync_api import Page, expect

DETAIL_ROWS = 25_000  # enough for the progress bar to be seen moving (several progress polls), yet quick


def export(page: Page, fmt: str, tmp_path: Path) -> Path:
    """Click the format's button and wait for the browser's download; returns the saved file."""
    with page.expect_download(timeout=120_000) as download:
        page.click(f"#export-{fmt}")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    expect(page.locator("#export-status")).to_contain_text("导出完成")
    return saved


def test_a_finance_user_exports_the_check_in_detail_as_csv_xlsx_and_pdf(
        hub_process: HubProcess, show: Show, tmp_path: Path) -> None:
    gate_b = hub_process.call("POST", f"/checkin-groups/{show.group_id}/channels", json={
        "name": "Gate B B口", "ticket_type_ids": [show.adult_type]})["id"]
    counts = add_events(hub_process.workdir / "hub.db", count=DETAIL_ROWS, performance_id=show.performance_id,
                        group_id=show.group_id, channel_ids=[show.channel_id, gate_b],
                        ticket_type_id=show.adult_type, start=time.time() - 4 * 3600, every=0.3)
    detail_total = hub_process.call("GET", "/reports/checkins/detail", params={"with_total": "true"})["total"]
    assert detail_total == DETAIL_ROWS
    errors: list[str] = []
    with console_browser() as browser:
        page = console_page(browser, hub_process, "finance", next_path="/console/reports", errors=errors,
                            accept_downloads=True)
        expect(page.locator("#export-csv")).to_be_visible()
        page.select_option("#export-report", "checkin_detail")
        shot(page, "reports", "exports-01-ready")

        csv_file = export(page, "csv", tmp_path)
        assert csv_file.name.startswith("检票明细表-") and csv_file.suffix == ".csv"
        with csv_file.open(encoding="utf-8-sig", newline="") as f:
            lines = list(csv.reader(f))
        assert lines[0][0] == "检票时间 Scanned at"
        assert len(lines) - 1 == detail_total  # every row of the detail, one line each
        shot(page, "reports", "exports-02-csv-done")

        with page.expect_download(timeout=120_000) as download:
            page.click("#export-xlsx")
            expect(page.locator("#export-progress")).to_be_visible()  # rows written, while the hub writes
            expect(page.locator("#export-progress-text")).to_contain_text("rows written", timeout=30_000)
            shot(page, "reports", "exports-03-xlsx-progress")
        xlsx_file = tmp_path / download.value.suggested_filename
        download.value.save_as(xlsx_file)
        assert xlsx_file.suffix == ".xlsx"
        book = openpyxl.load_workbook(xlsx_file, read_only=True)
        sheet = book.worksheets[0]
        top = list(sheet.iter_rows(max_row=20, values_only=True))  # the title lines, the headings, the first rows
        rows_in_sheet = sheet.max_row  # the sheet's <dimension>: reading all 25,000 rows would take seconds
        book.close()
        head = next(i for i, row in enumerate(top) if row[0] == "检票时间 Scanned at")
        assert top[head][:4] == ("检票时间 Scanned at", "场次 Performance", "检票组 Check-in group", "通道 Channel")
        assert top[head + 1][1] == "茶馆 Teahouse"
        assert rows_in_sheet - head - 1 == detail_total
        expect(page.locator("#export-download")).to_contain_text("再次下载")

        page.select_option("#export-report", "checkin_detail")
        pdf_file = export(page, "pdf", tmp_path)
        text = subprocess.run(["pdftotext", "-layout", str(pdf_file), "-"], capture_output=True, text=True,
                              check=True).stdout
        assert "检票汇总表" in text and "检票明细表" in text and "合计 Total" in text
        assert f"{counts['admitted']:,}" in text  # the persons admitted, in the totals row
        assert f"{counts['already_used']:,}" in text  # the denied
        shot(page, "reports", "exports-04-pdf-done")

        tablet = console_page(browser, hub_process, "finance", username="finance-tablet",
                              next_path="/console/reports", viewport=TABLET, errors=errors, accept_downloads=True)
        expect(tablet.locator("#export-pdf")).to_be_visible()
        tablet.select_option("#export-report", "checkin_summary")
        summary_pdf = export(tablet, "pdf", tmp_path)
        assert summary_pdf.name.startswith("检票汇总表-")
        shot(tablet, "reports", "exports-05-tablet")
    assert errors == []
