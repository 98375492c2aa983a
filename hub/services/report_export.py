"""Report files: CSV (UTF-8 with a BOM, so Excel reads the Chinese right), XLSX and PDF.

    rows = export_to_file(ctx, "checkin_detail", "xlsx", ReportFilters(performance_id=1), Path("out.xlsx"))

Writers take a :class:`ReportData` (title, columns ``(key, 中文, English)``, rows as an iterable of dicts that
may be a generator over a million rows, an optional totals row) and stream: CSV row by row, XLSX through
XlsxWriter's ``constant_memory`` mode (one row in memory at a time; a sheet holds at most 1,048,576 rows, so
a longer report goes on to a second sheet). The PDF (``hub.services.report_pdf``) holds the summary tables,
bar charts and at most ``PDF_DETAIL_ROWS`` rows of the detail, with a note to use CSV or XLSX for the rest.
``progress(rows_done, rows_total)`` is called every ``PROGRESS_EVERY`` rows and at the end; it may raise
(e.g. :class:`Cancelled`) to stop the export.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xlsxwriter
from sqlalchemy import Connection

from hub.db import Database
from hub.services import reports
from hub.services.reports import ReportFilters
from protocol.localtime import zone

Column = tuple[str, str, str]  # (key, 中文, English)
Row = Mapping[str, Any]
Progress = Callable[[int, int | None], None]

FORMATS = ("csv", "xlsx", "pdf")
PROGRESS_EVERY = 2000
XLSX_MAX_ROWS = 1_048_576  # Excel's rows per sheet
SHARES = frozenset({"offline_share"})  # 0..1, shown as a percentage
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a cell starting so would run as a formula in Excel


class Cancelled(Exception):
    """Raised from a progress callback to stop an export (the partial file is the caller's to delete)."""


@dataclass
class ReportData:
    """One report, ready to be written: ``rows`` is consumed once."""

    report: str
    title_zh: str
    title_en: str
    columns: Sequence[Column]
    rows: Iterable[Row]
    rows_total: int | None = None
    totals: Row | None = None  # the 合计 Total row (summaries)
    notes: list[str] = field(default_factory=list)  # the filters, one "label: value" a line
    tz: dt.tzinfo = dt.UTC  # times are written in the venue's time zone
    charts: list[Chart] = field(default_factory=list)  # PDF only
    sections: list[ReportData] = field(default_factory=list)  # PDF only: further tables (e.g. the summary)


@dataclass
class Chart:
    """A bar chart: one bar per label (PDF)."""

    title_zh: str
    title_en: str
    bars: list[tuple[str, float]]
    ordered: bool = False  # keep the bars in their order (time); otherwise the largest first


def heading(column: Column) -> str:
    """A column heading in both languages: "检票时间 Scanned at"."""
    _key, zh, en = column
    return f"{zh} {en}" if en and en != zh else zh


def is_time(key: str) -> bool:
    return key.endswith("_at") or key in {"time", "minute", "hour"}


def display(key: str, value: Any, tz: dt.tzinfo) -> Any:
    """A cell's value as written: times in the venue's zone, yes/no in both languages, None as blank."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是 Yes" if value else "否 No"
    if key in SHARES and isinstance(value, int | float):
        return f"{value * 100:.1f}%"
    if is_time(key) and isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz).replace(tzinfo=None)
    return value


def _counting(rows: Iterable[Row], data: ReportData, progress: Progress | None) -> Iterator[Row]:
    done = 0
    if progress is not None:
        progress(0, data.rows_total)
    for row in rows:
        yield row
        done += 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, data.rows_total)
    if progress is not None:
        progress(done, data.rows_total if data.rows_total is not None and data.rows_total >= done else done)


def _csv_cell(key: str, value: Any, tz: dt.tzinfo) -> Any:
    if type(value) is str:
        return "'" + value if value.startswith(CSV_FORMULA_START) else value
    if type(value) is int and not is_time(key):
        return value
    shown = display(key, value, tz)
    if isinstance(shown, dt.datetime):
        return shown.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(shown, str) and shown.startswith(CSV_FORMULA_START):
        return "'" + shown  # text from devices and people never runs as a formula
    return shown


def write_csv(data: ReportData, path: Path, progress: Progress | None = None) -> int:
    """Header + one line per row (+ the totals line); returns the number of data rows."""
    keys = [c[0] for c in data.columns]
    done = 0
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([heading(c) for c in data.columns])
        for row in _counting(data.rows, data, progress):
            writer.writerow([_csv_cell(k, row.get(k), data.tz) for k in keys])
            done += 1
        if data.totals is not None:
            writer.writerow([_csv_cell(k, data.totals.get(k), data.tz) for k in keys])
    return done


class _Sheets:
    """Worksheets of one XLSX report: the title, the filters, the headings; a new sheet when one is full."""

    def __init__(self, book: xlsxwriter.Workbook, data: ReportData) -> None:
        self.book, self.data = book, data
        self.title = book.add_format({"bold": True, "font_size": 14, "font_name": "Noto Sans CJK SC"})
        self.head = book.add_format({"bold": True, "bg_color": "#DDE4EE", "border": 1, "text_wrap": True})
        self.time = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.bold = book.add_format({"bold": True, "top": 1})
        self.share = book.add_format({"num_format": "0.0%"})
        self.count = 0
        self.sheet: Any = None
        self.row = 0
        self.first_data_row = 0

    def new_sheet(self) -> None:
        self.finish()
        self.count += 1
        name = self.data.title_zh[:25] + (f" {self.count}" if self.count > 1 else "")
        sheet = self.book.add_worksheet(name)
        sheet.write_string(0, 0, f"{self.data.title_zh} {self.data.title_en}", self.title)
        row = 1
        for note in self.data.notes:
            sheet.write_string(row, 0, note)
            row += 1
        for i, column in enumerate(self.data.columns):
            sheet.set_column(i, i, 22 if is_time(column[0]) else max(12, min(40, len(heading(column)) + 4)))
            sheet.write_string(row, i, heading(column), self.head)
        sheet.freeze_panes(row + 1, 0)
        self.sheet, self.row, self.first_data_row = sheet, row + 1, row + 1

    def finish(self) -> None:
        if self.sheet is not None and self.row > self.first_data_row:
            self.sheet.autofilter(self.first_data_row - 1, 0, self.row - 1, len(self.data.columns) - 1)

    def write(self, row: Row, fmt: Any = None) -> None:
        """One row; the common cells (text, numbers, times as Excel serial numbers) by the shortest path."""
        if self.sheet is None or self.row >= XLSX_MAX_ROWS:
            self.new_sheet()
        sheet, r, tz = self.sheet, self.row, self.data.tz
        for i, (key, _zh, _en) in enumerate(self.data.columns):
            value = row.get(key)
            if value is None:
                if fmt is not None:
                    sheet.write_blank(r, i, None, fmt)
            elif isinstance(value, str):
                sheet.write_string(r, i, value, fmt)
            elif isinstance(value, bool):
                sheet.write_string(r, i, "是 Yes" if value else "否 No", fmt)
            elif isinstance(value, int | float):
                if key in SHARES:
                    sheet.write_number(r, i, value, self.share)
                elif is_time(key):
                    sheet.write_number(r, i, excel_time(value, tz), self.time)
                else:
                    sheet.write_number(r, i, value, fmt)
            else:
                sheet.write_string(r, i, str(value), fmt)
        self.row += 1


@functools.lru_cache(maxsize=4096)
def _utc_offset(quarter_hour: int, tz: dt.tzinfo) -> float:
    offset = dt.datetime.fromtimestamp(quarter_hour * 900, tz).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def excel_time(ts: float, tz: dt.tzinfo) -> float:
    """Unix seconds as an Excel date-time serial number in ``tz`` (zones change offset on quarter hours)."""
    return (ts + _utc_offset(int(ts // 900), tz)) / 86400.0 + 25569.0


def write_xlsx(data: ReportData, path: Path, progress: Progress | None = None) -> int:
    """A workbook streamed to ``path`` (XlsxWriter constant_memory); returns the number of data rows."""
    book = xlsxwriter.Workbook(str(path), {
        "constant_memory": True, "tmpdir": str(path.parent),
        # text is text: a holder's name starting with "=" or a URL stays a string
        "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
    })
    book.set_properties({"title": f"{data.title_zh} {data.title_en}", "author": "Venue hub"})
    done = 0
    try:
        sheets = _Sheets(book, data)
        sheets.new_sheet()
        for row in _counting(data.rows, data, progress):
            sheets.write(row)
            done += 1
        if data.totals is not None:
            sheets.write(data.totals, sheets.bold)
        sheets.finish()
    finally:
        book.close()
    return done


def write_file(data: ReportData, fmt: str, path: Path, progress: Progress | None = None) -> int:
    """Write ``data`` as ``fmt`` (csv, xlsx, pdf) to ``path``; returns the number of data rows written."""
    if fmt == "csv":
        return write_csv(data, path, progress)
    if fmt == "xlsx":
        return write_xlsx(data, path, progress)
    if fmt == "pdf":
        from hub.services import report_pdf  # fpdf2 and the CJK font only when a PDF is asked for

        return report_pdf.write_pdf(data, path, progress)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


# ---- the reports, as ReportData ---------------------------------------------------------------------

REPORTS = {  # report -> (中文, English)
    "checkin_summary": ("检票汇总表", "Check-in summary"),
    "checkin_detail": ("检票明细表", "Check-in detail"),
    "sales": ("销售汇总表", "Sales summary"),
}
DETAIL_BATCH = 5000
# the detail's columns with the result's Chinese text beside its code
EXPORT_DETAIL_COLUMNS: list[Column] = [
    c for col in reports.DETAIL_COLUMNS
    for c in ([col, ("reason_zh", "结果说明", "Result text")] if col[0] == "reason" else [col])]


def _notes(conn: Connection, f: ReportFilters, tz: dt.tzinfo, now: float) -> list[str]:
    """The filters as "中文 English: value" lines, names instead of ids."""
    names = reports.Names(conn)

    def at(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")

    lines = [f"导出时间 Exported at: {at(now)} ({getattr(tz, 'key', str(tz))})"]
    if f.since is not None or f.until is not None:
        lines.append(f"时间范围 Time range: {at(f.since) if f.since is not None else '…'} – "
                     f"{at(f.until) if f.until is not None else '…'}")
    for label, table, value in (("场次 Performance", names.performance, f.performance_id),
                                ("检票组 Check-in group", names.group, f.group_id),
                                ("通道 Channel", names.channel, f.channel_id),
                                ("票种 Ticket type", names.ticket_type, f.ticket_type_id)):
        if value is not None:
            lines.append(f"{label}: {names.of(table, value)}")
    if f.device_id is not None:
        lines.append(f"设备 Device: {f.device_id}")
    if f.reason is not None:
        lines.append(f"结果 Result: {f.reason.value} {f.reason.text_zh}")
    if f.offline is not None:
        lines.append("离线/在线 Offline/online: " + ("仅离线 offline only" if f.offline else "仅在线 online only"))
    return lines


def _detail_rows(conn: Connection, f: ReportFilters) -> Iterator[Row]:
    for batch in reports.iter_checkin_detail(conn, f, DETAIL_BATCH):
        for row in batch:
            row["reason_zh"] = row.get("reason_zh") if row.get("reason_zh") != row.get("reason") else ""
            yield row


def _checkin_charts(conn: Connection, f: ReportFilters, tz: dt.tzinfo) -> list[Chart]:
    chart = reports.summary_chart(conn, f)
    by_channel = [(str(s["channel"]), float(s["total"])) for s in chart["series"]]
    size = int(chart["bucket_seconds"])
    fmt = "%m-%d %H:%M" if size < 86400 else "%Y-%m-%d"
    by_time = [(dt.datetime.fromtimestamp(start, tz).strftime(fmt), float(sum(s["values"][i] for s in chart["series"])))
               for i, start in enumerate(chart["buckets"])]
    unit, zh, en = (60, "分钟", "min") if size < 3600 else (3600, "小时", "h") if size < 86400 else (86400, "天", "d")
    zh, en = f"{size // unit} {zh}", f"{size // unit} {en}"
    return [Chart("按通道入场人数", "Persons admitted by channel", by_channel),
            Chart(f"按时段入场人数(每 {zh})", f"Persons admitted per {en}", by_time,
                  ordered=True)]


def build_report(conn: Connection, report: str, f: ReportFilters, fmt: str, now: float) -> ReportData:
    """``report`` under ``f`` as ReportData for ``fmt`` (the PDF gets the summary and the charts too)."""
    if report not in REPORTS:
        raise ValueError(f"unknown report {report!r}; use one of {', '.join(REPORTS)}")
    tz = zone(reports.venue_timezone(conn, f))
    zh, en = REPORTS[report]
    notes = _notes(conn, f, tz, now)
    if report == "sales":
        rows = reports.sales_summary(conn, f)
        charts = [Chart("各票种售出人数", "Persons sold by ticket type",
                        _sum_by(rows, "ticket_type", "persons"))] if fmt == "pdf" else []
        return ReportData(report, zh, en, reports.SALES_COLUMNS, rows, len(rows), reports.sales_totals(rows),
                          notes, tz, charts)
    charts = _checkin_charts(conn, f, tz) if fmt == "pdf" else []
    if report == "checkin_summary" or fmt == "pdf":
        summary = reports.checkin_summary(conn, f)
        summary_data = ReportData("checkin_summary", *REPORTS["checkin_summary"], reports.SUMMARY_COLUMNS, summary,
                                  len(summary), reports.summary_totals(summary), notes, tz, charts)
        if report == "checkin_summary":
            return summary_data
    total = reports.count_checkin_detail(conn, f)
    detail = ReportData(report, zh, en, EXPORT_DETAIL_COLUMNS, _detail_rows(conn, f), total, None, notes, tz)
    if fmt == "pdf":
        summary_data.charts, summary_data.notes = [], []
        detail.charts, detail.sections = charts, [summary_data]
    return detail


def _sum_by(rows: Sequence[Row], label: str, value: str) -> list[tuple[str, float]]:
    out: dict[str, float] = {}
    for row in rows:
        out[str(row[label])] = out.get(str(row[label]), 0.0) + float(row[value] or 0)
    return list(out.items())


def export_to_file(ctx_or_db: Any, report: str, fmt: str, filters: ReportFilters, path: Path,
                   progress: Progress | None = None, now: float | None = None) -> int:
    """Write ``report`` (checkin_summary, checkin_detail, sales) under ``filters`` as ``fmt`` to ``path`` in one
    read transaction (one consistent snapshot, streamed); returns the number of rows. Blocking: call it from
    a worker thread (hub.services.export_jobs), never on the event loop. ``ctx_or_db``: a HubContext or a
    Database."""
    db: Database = getattr(ctx_or_db, "db", ctx_or_db)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    clock = getattr(ctx_or_db, "clock", None)
    with db.read() as conn:
        data = build_report(conn, report, filters, fmt, now if now is not None else clock() if clock else
                            dt.datetime.now(dt.UTC).timestamp())
        return write_file(data, fmt, path, progress)
