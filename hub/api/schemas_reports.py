"""Query models and answers of the report endpoints (hub/api/routes_reports.py, hub/services/reports.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hub.services.reports import DEFAULT_PAGE, MAX_PAGE, ReportFilters

CURSOR_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,20})?(e[+-]?[0-9]{1,3})?:[0-9a-f]{32}$"


class DetailQuery(ReportFilters):
    """The filters plus keyset paging: ``after`` is the ``next_cursor`` of the previous page."""

    after: str | None = Field(None, max_length=64, pattern=CURSOR_PATTERN,
                              description="next_cursor of the previous page; omit for the first page")
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description=f"rows per page, at most {MAX_PAGE}")
    with_total: bool = Field(False, description="also count every row the filters match (costs a count)")

    def filters(self) -> ReportFilters:
        return ReportFilters(**self.model_dump(exclude={"after", "limit", "with_total"}))


class ColumnOut(BaseModel):
    key: str
    zh: str
    en: str


class SummaryOut(BaseModel):
    timezone: str = Field(description="the venue's IANA zone: show times in it")
    columns: list[ColumnOut]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]


class DetailOut(BaseModel):
    timezone: str
    columns: list[ColumnOut]
    rows: list[dict[str, Any]]
    next_cursor: str | None = Field(description="pass as after= for the next page; null: this is the last")
    total: int | None = Field(description="rows matching the filters (only when with_total=true)")


class SeriesOut(BaseModel):
    channel_id: int | None
    channel: str
    values: list[int]
    total: int


class ChartOut(BaseModel):
    bucket_seconds: int
    start: float | None
    end: float | None
    timezone: str
    buckets: list[float]
    series: list[SeriesOut]
    total: int
