"""Request and response bodies of the report exports (hub/api/routes_exports.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.services.reports import ReportFilters

ReportName = Literal["checkin_summary", "checkin_detail", "sales"]
ExportFormat = Literal["csv", "xlsx", "pdf"]


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report: ReportName = Field(description="检票汇总表 checkin_summary, 检票明细表 checkin_detail, 销售汇总表 sales")
    format: ExportFormat = Field(description="csv (UTF-8 with BOM), xlsx, or pdf (summary, charts and the first "
                                             "rows of the detail)")
    filters: ReportFilters = Field(default_factory=ReportFilters, description="as the report's own filters")


class ExportStarted(BaseModel):
    export_id: str
    state: str = Field(description="queued: it starts when a worker is free")


class ExportOut(BaseModel):
    export_id: str
    report: ReportName
    format: ExportFormat
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    rows_done: int = Field(description="rows written so far")
    rows_total: int | None = Field(description="rows the export will hold (known once it is running)")
    size: int | None = Field(description="bytes of the file, once done")
    error: str | None = None
    error_zh: str | None = None
    filename: str = Field(description="the file's name when downloaded")
    created_at: float
    finished_at: float | None
    expires_at: float | None = Field(description="when the file is deleted (unix seconds), once finished")
    username: str = Field(description="who started it")


class DownloadTicketOut(BaseModel):
    url: str = Field(description="GET this (no bearer needed) once, before expires_at, to download the file")
    expires_at: float
