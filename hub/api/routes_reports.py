"""Reports (manager, finance, viewer, admin): check-in summary and detail, sales, the chart's data.

Every filter is a bounded query parameter (hub/services/reports.py ReportFilters); unknown ones are refused.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import Ctx, ReportReader
from hub.api.schemas_reports import ChartOut, DetailOut, DetailQuery, SummaryOut
from hub.services import reports
from hub.services.reports import ReportFilters

router = APIRouter(prefix="/reports", tags=["reports"])
Filters = Annotated[ReportFilters, Query()]


@router.get("/checkins/summary")
def checkin_summary(f: Filters, ctx: Ctx, _who: ReportReader) -> SummaryOut:
    """检票汇总表: per performance, channel and ticket type, with a totals row."""
    return SummaryOut(**reports.summary_report(ctx, f))


@router.get("/checkins/detail")
def checkin_detail(q: Annotated[DetailQuery, Query()], ctx: Ctx, _who: ReportReader) -> DetailOut:
    """检票明细表: one page of events, oldest scan first; follow next_cursor for the next page."""
    return DetailOut(**reports.detail_report(ctx, q.filters(), q.after, q.limit, q.with_total))


@router.get("/sales")
def sales(f: Filters, ctx: Ctx, _who: ReportReader) -> SummaryOut:
    """Sales by performance and ticket type (time range: when the ticket was sold or printed)."""
    return SummaryOut(**reports.sales_report(ctx, f))


@router.get("/chart")
def chart(f: Filters, ctx: Ctx, _who: ReportReader) -> ChartOut:
    """Persons admitted per time bucket and channel: what the on-screen chart and the PDF draw."""
    return ChartOut(**reports.chart_report(ctx, f))
