"""The PDF of a report (fpdf2): title, filters, the summary tables, bar charts, and a bounded part of the detail.

The text is set in Noto Sans CJK SC (Debian's fonts-noto-cjk, found with ``fc-match``), embedded as a subset
(CFF outlines in a TTC collection: fpdf2 picks the SC face by its collection number), so the file shows the
Chinese on any reader and ``pdftotext`` gets it back. A detail report stops after ``PDF_DETAIL_ROWS`` rows
with a note to export CSV or XLSX for all of them.
"""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from hub.services.report_export import Chart, Progress, ReportData, display, heading, is_time

PDF_DETAIL_ROWS = 500  # about 15 pages of A4 landscape
MAX_BARS = 20
FONT_FAMILY = "cjk"
_FALLBACK = [  # Debian's fonts-noto-cjk; index 2 of the collection is Simplified Chinese
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
]


class FontMissing(RuntimeError):
    """No CJK font on this machine: install fonts-noto-cjk (scripts/setup.sh does)."""


def _fc_match(pattern: str) -> tuple[str, int] | None:
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}\t%{index}", pattern], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    file, _, index = out.partition("\t")
    if "CJK" not in file or not Path(file).is_file():
        return None
    return file, int(index or 0)


@functools.cache
def cjk_fonts() -> tuple[tuple[str, int], tuple[str, int]]:
    """(file, collection index) of the regular and the bold face of Noto Sans CJK SC."""
    regular, bold = _fc_match("Noto Sans CJK SC:style=Regular"), _fc_match("Noto Sans CJK SC:style=Bold")
    if regular is None:
        for reg_file, bold_file in _FALLBACK:
            if Path(reg_file).is_file():
                regular = (reg_file, 2)
                bold = (bold_file, 2) if Path(bold_file).is_file() else regular
                break
    if regular is None:
        raise FontMissing("no Chinese font (Noto Sans CJK SC) on the hub: install the fonts-noto-cjk package")
    return regular, bold or regular


class ReportPdf(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="landscape", unit="mm", format="A4")
        (reg_file, reg_index), (bold_file, bold_index) = cjk_fonts()
        self.add_font(FONT_FAMILY, "", reg_file, collection_font_number=reg_index)
        self.add_font(FONT_FAMILY, "B", bold_file, collection_font_number=bold_index)
        self.report_title = title
        self.set_title(title)
        self.set_creator("Venue hub")
        self.set_margins(12, 12, 12)
        self.set_auto_page_break(True, margin=14)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FONT_FAMILY, "", 8)
        self.set_text_color(110)
        self.cell(0, 5, f"{self.report_title} · 第 {self.page_no()} 页 Page {self.page_no()}", align="C")
        self.set_text_color(0)


def _cell_text(key: str, value: Any, tz: dt.tzinfo) -> str:
    shown = display(key, value, tz)
    if isinstance(shown, dt.datetime):
        return shown.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(shown, float):
        return f"{shown:,.2f}"
    if isinstance(shown, int):
        return f"{shown:,}"
    return str(shown)


def _heading(pdf: ReportPdf, zh: str, en: str, size: float = 13) -> None:
    pdf.set_font(FONT_FAMILY, "B", size)
    pdf.multi_cell(0, size * 0.55, f"{zh} {en}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)


def _table(pdf: ReportPdf, data: ReportData, limit: int | None, progress: Progress | None) -> int:
    """The table of ``data`` (its first ``limit`` rows) and its totals row; returns the rows written."""
    keys = [c[0] for c in data.columns]
    widths = [2.0 if is_time(k) else 1.0 for k in keys]
    pdf.set_font(FONT_FAMILY, "", 8 if len(keys) > 6 else 9)
    done = 0
    more = False
    with pdf.table(col_widths=widths, line_height=4.6, text_align="LEFT", first_row_as_headings=True,
                   headings_style=FontFace(emphasis="BOLD", fill_color=(221, 228, 238)),
                   padding=0.8) as table:
        table.row([heading(c) for c in data.columns])
        for row in data.rows:
            if limit is not None and done >= limit:
                more = True
                break
            table.row([_cell_text(k, row.get(k), data.tz) for k in keys])
            done += 1
            if progress is not None and done % 100 == 0:
                progress(done, data.rows_total)
        if data.totals is not None:
            table.row([_cell_text(k, data.totals.get(k), data.tz) for k in keys],
                      style=FontFace(emphasis="BOLD", fill_color=(240, 240, 240)))
    if not done and data.totals is None:
        pdf.set_font(FONT_FAMILY, "", 9)
        pdf.cell(0, 6, "没有符合条件的记录 No rows match these filters", new_x="LMARGIN", new_y="NEXT")
    if more or (data.rows_total is not None and data.rows_total > done):
        total = f"{data.rows_total:,}" if data.rows_total is not None else "更多 more"
        pdf.ln(2)
        pdf.set_font(FONT_FAMILY, "B", 9)
        pdf.multi_cell(0, 5, f"PDF 只列出前 {done:,} 行(共 {total} 行);全部明细请导出 CSV 或 XLSX。 / "
                             f"The PDF lists the first {done:,} rows of {total}; export CSV or XLSX for all of them.",
                       new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    return done


def _column_chart(pdf: ReportPdf, chart: Chart) -> None:
    """Vertical columns in the order given (time buckets), a label under every few, drawn with rectangles."""
    bars = chart.bars[:60]
    plot_h, label_h = 45.0, 16.0
    if pdf.get_y() + 12 + plot_h + label_h > pdf.h - pdf.b_margin:
        pdf.add_page()
    _heading(pdf, chart.title_zh, chart.title_en, 11)
    if not bars:
        pdf.set_font(FONT_FAMILY, "", 9)
        pdf.cell(0, 6, "没有数据 No data", new_x="LMARGIN", new_y="NEXT")
        return
    top = max(v for _l, v in bars) or 1
    left = pdf.l_margin + 14
    slot = min(12.0, (pdf.w - pdf.r_margin - left) / len(bars))
    base = pdf.get_y() + plot_h
    pdf.set_font(FONT_FAMILY, "", 7)
    pdf.set_draw_color(120)
    pdf.line(left, base, left + slot * len(bars), base)
    pdf.line(left, base - plot_h, left, base)
    pdf.set_xy(pdf.l_margin, base - plot_h - 2)
    pdf.cell(13, 4, f"{top:,.0f}", align="R")
    pdf.set_fill_color(53, 110, 180)
    every = max(1, len(bars) // 12)
    for i, (label, value) in enumerate(bars):
        x = left + i * slot
        height = plot_h * max(0.0, value) / top
        if height > 0:
            pdf.rect(x + slot * 0.15, base - height, slot * 0.7, height, style="F")
        if i % every == 0:
            with pdf.rotation(45, x + slot / 2, base + 2):
                pdf.set_xy(x + slot / 2 - 22, base)
                pdf.cell(22, 4, label, align="R")
    pdf.set_draw_color(0)
    pdf.set_fill_color(255)
    pdf.set_xy(pdf.l_margin, base + label_h)


def _bar_chart(pdf: ReportPdf, chart: Chart) -> None:
    """Horizontal bars (labels can be long Chinese names), drawn with rectangles and text."""
    if chart.ordered:
        _column_chart(pdf, chart)
        return
    bars = sorted(chart.bars, key=lambda b: -b[1])
    if len(bars) > MAX_BARS:
        bars = [*bars[:MAX_BARS - 1], ("其他 Other", sum(v for _l, v in bars[MAX_BARS - 1:]))]
    bar_h, gap, label_w = 5.0, 1.4, 62.0
    needed = 12 + len(bars) * (bar_h + gap)
    if pdf.get_y() + needed > pdf.h - pdf.b_margin:
        pdf.add_page()
    _heading(pdf, chart.title_zh, chart.title_en, 11)
    if not bars:
        pdf.set_font(FONT_FAMILY, "", 9)
        pdf.cell(0, 6, "没有数据 No data", new_x="LMARGIN", new_y="NEXT")
        return
    top = max((v for _l, v in bars), default=0) or 1
    plot_w = pdf.w - pdf.l_margin - pdf.r_margin - label_w - 24
    pdf.set_font(FONT_FAMILY, "", 8)
    y = y0 = pdf.get_y()
    for label, value in bars:
        pdf.set_xy(pdf.l_margin, y)
        pdf.cell(label_w - 2, bar_h, label[:40], align="R")
        width = max(0.3, plot_w * value / top)
        pdf.set_fill_color(53, 110, 180)
        pdf.rect(pdf.l_margin + label_w, y + 0.5, width, bar_h - 1, style="F")
        pdf.set_xy(pdf.l_margin + label_w + width + 1.5, y)
        pdf.cell(22, bar_h, f"{value:,.0f}")
        y += bar_h + gap
    pdf.set_draw_color(120)
    pdf.line(pdf.l_margin + label_w, y0, pdf.l_margin + label_w, y - gap)
    pdf.set_draw_color(0)
    pdf.set_fill_color(255)
    pdf.set_xy(pdf.l_margin, y + 3)


def write_pdf(data: ReportData, path: Path, progress: Progress | None = None) -> int:
    """The PDF of ``data``: its sections (e.g. the summary) with the charts after the first, then its own
    rows (at most ``PDF_DETAIL_ROWS`` unless it has a totals row, i.e. it is a summary)."""
    pdf = ReportPdf(f"{data.title_zh} {data.title_en}")
    pdf.add_page()
    _heading(pdf, data.title_zh, data.title_en, 17)
    pdf.set_font(FONT_FAMILY, "", 9)
    for note in data.notes:
        pdf.multi_cell(0, 4.6, note, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    charts_left = list(data.charts)
    for section in data.sections:
        _heading(pdf, section.title_zh, section.title_en, 12)
        _table(pdf, section, None, None)
        while charts_left:
            _bar_chart(pdf, charts_left.pop(0))
    if data.sections:
        if pdf.get_y() > pdf.h - 60:
            pdf.add_page()
        _heading(pdf, data.title_zh, data.title_en, 12)
    done = _table(pdf, data, None if data.totals is not None else PDF_DETAIL_ROWS, progress)
    for chart in charts_left:
        _bar_chart(pdf, chart)
    pdf.output(str(path))
    if progress is not None:
        progress(done, done)
    return done
