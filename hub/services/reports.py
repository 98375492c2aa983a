"""Reports: check-in summary and detail (检票汇总表 / 检票明细表), sales summary, the chart's data.

Interface (the exports in hub/services/report_export.py build on it; every function takes an open
read connection, ``ctx.db.read()``, and a :class:`ReportFilters`):

* ``checkin_summary(conn, f) -> list[dict]``: one row per (performance, channel, ticket type) with the
  keys of ``SUMMARY_COLUMNS``; ``summary_totals(rows) -> dict`` is the totals row (same keys).
* ``checkin_detail_page(conn, f, after, limit) -> (rows, next_cursor)``: events in (scanned_at,
  event_id) order, keyset paging; ``after`` / ``next_cursor`` are ``(scanned_at, event_id)`` or None
  (``cursor_text`` / ``parse_cursor`` turn them into the API's ``"<scanned_at>:<event_id>"``).
* ``iter_checkin_detail(conn, f, batch) -> Iterator[list[dict]]``: every detail row, same order and keys,
  streamed from a server-side cursor (for the 1,000,000-row export); ``count_checkin_detail(conn, f)``.
* ``sales_summary(conn, f) -> list[dict]`` (``SALES_COLUMNS``), ``sales_totals(rows)``.
* ``summary_chart(conn, f) -> dict``: persons admitted per time bucket per channel.
* ``venue_timezone(conn, f) -> str``: the zone to show times in (protocol/localtime.py).
* ``summary_report`` / ``detail_report`` / ``sales_report`` / ``chart_report`` (ctx, ...): the API's answers.

Column lists are ``(key, "中文标题", "English heading")``. Rows hold names as well as ids; times are
unix seconds.

What counts (the same truth as hub/services/usage.py and hub/services/evacuation.py):

* ``admitted``: admissions (entry direction, reason admitted, forced ones included) that started an entry
  (not ``credit``: persons coming in on a partly annulled entry), minus full annulments (all persons of an
  admission did not pass: usage takes the entry back). An annulled admission is not an admission.
* ``persons``: persons of admitted entries (credit ones too) minus persons of annulments: people who
  passed; a group ticket (一票多人) counts each person.
* ``annulled``: annulments that name an admission of the same device and ticket (as usage replays them).
* ``exits``: exit-direction events; ``denied``: entry-direction scans refused (any other reason,
  emergency scans included); ``conflicts``: admissions the hub flagged as conflicts (they did pass and
  count); ``forced``: supervisor overrides; ``offline_share``: offline admissions / admission events.

Filters narrow the events first: with ``reason`` set only events with that reason count (reason admitted:
annulments are not subtracted). ``since`` <= scanned_at < ``until``. The sales summary uses only
``performance_id``, ``group_id`` (its performances), ``ticket_type_id`` and the time range (sale time).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Connection, Select, and_, case, func, literal, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from hub.errors import Invalid
from hub.services.context import HubContext
from hub.tables import (
    channels,
    checkin_events,
    checkin_groups,
    group_performances,
    performances,
    ticket_types,
    tickets,
    venues,
)
from protocol.bounds import DEVICE_ID_PATTERN, EVENT_ID_PATTERN, MAX_ID, MAX_UNIX
from protocol.localtime import DEFAULT_TIMEZONE
from protocol.reasons import Reason

OptId = Annotated[int | None, Field(ge=1, le=MAX_ID)]
OptUnix = Annotated[float | None, Field(ge=0, le=MAX_UNIX, allow_inf_nan=False)]
Cursor = tuple[float, str]
MAX_PAGE = 1000
DEFAULT_PAGE = 100


class ReportFilters(BaseModel):
    """What a report covers; every field optional (None: no filter)."""

    model_config = ConfigDict(extra="forbid")

    since: OptUnix = Field(None, description="scanned at or after, unix seconds")
    until: OptUnix = Field(None, description="scanned before, unix seconds")
    performance_id: OptId = None
    group_id: OptId = Field(None, description="check-in group")
    channel_id: OptId = None
    ticket_type_id: OptId = None
    device_id: Annotated[str | None, Field(pattern=DEVICE_ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ -")] = None
    reason: Reason | None = None
    offline: bool | None = Field(None, description="true: offline events only; false: online only")

    @model_validator(mode="after")
    def _range(self) -> ReportFilters:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since / 结束时间须晚于开始时间")
        return self


Columns = list[tuple[str, str, str]]

SUMMARY_COLUMNS: Columns = [
    ("performance", "场次", "Performance"),
    ("group", "检票组", "Check-in group"),
    ("channel", "通道", "Channel"),
    ("ticket_type", "票种", "Ticket type"),
    ("scans", "扫码次数", "Scans"),
    ("admitted", "入场次数", "Admissions"),
    ("persons", "入场人数", "Persons admitted"),
    ("annulled", "撤销", "Annulled"),
    ("exits", "出场", "Exits"),
    ("denied", "拒绝", "Denied"),
    ("conflicts", "冲突", "Conflicts"),
    ("forced", "强制放行", "Forced"),
    ("offline_share", "离线占比", "Offline share"),
]

DETAIL_COLUMNS: Columns = [
    ("scanned_at", "检票时间", "Scanned at"),
    ("performance", "场次", "Performance"),
    ("group", "检票组", "Check-in group"),
    ("channel", "通道", "Channel"),
    ("device_id", "设备", "Device"),
    ("ticket_type", "票种", "Ticket type"),
    ("ticket_id", "票号", "Ticket"),
    ("reason", "结果", "Result"),
    ("persons", "人数", "Persons"),
    ("direction", "方向", "Direction"),
    ("offline", "离线", "Offline"),
    ("source", "来源", "Source"),
    ("conflict", "冲突", "Conflict"),
    ("forced_by", "强制放行人", "Forced by"),
    ("event_id", "事件号", "Event"),
]

SALES_COLUMNS: Columns = [
    ("performance", "场次", "Performance"),
    ("ticket_type", "票种", "Ticket type"),
    ("sold", "售出", "Sold"),
    ("persons", "人数", "Persons"),
    ("refunded", "退票", "Refunded"),
    ("void", "作废", "Void"),
    ("valid", "有效", "Valid"),
    ("revenue_cents", "收入（分）", "Revenue (cents)"),
    ("checked_in", "已检票", "Checked in"),
]

_ADMITTED, _ANNULLED = Reason.ADMITTED.value, Reason.ANNULLED.value
_E = checkin_events


# ---- filters and names -----------------------------------------------------------------------------

def _where(f: ReportFilters, e: Any = _E) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    for column, value in ((e.c.performance_id, f.performance_id), (e.c.group_id, f.group_id),
                          (e.c.channel_id, f.channel_id), (e.c.ticket_type_id, f.ticket_type_id),
                          (e.c.device_id, f.device_id), (e.c.offline, f.offline)):
        if value is not None:
            out.append(column == value)
    if f.reason is not None:
        out.append(e.c.reason == f.reason.value)
    if f.since is not None:
        out.append(e.c.scanned_at >= f.since)
    if f.until is not None:
        out.append(e.c.scanned_at < f.until)
    return out


class Names:
    """Names of performances, groups, channels and ticket types (small tables: read whole, once a call)."""

    def __init__(self, conn: Connection) -> None:
        self.performance = {r.id: r.name for r in conn.execute(select(performances.c.id, performances.c.name))}
        self.group = {r.id: r.name for r in conn.execute(select(checkin_groups.c.id, checkin_groups.c.name))}
        self.channel: dict[int, str] = {}
        self.channel_group: dict[int, int] = {}
        for r in conn.execute(select(channels.c.id, channels.c.name, channels.c.group_id)):
            self.channel[r.id] = r.name
            self.channel_group[r.id] = r.group_id
        self.ticket_type = {r.id: f"{r.name_zh} {r.name}" if r.name_zh and r.name_zh != r.name else r.name
                            for r in conn.execute(select(ticket_types.c.id, ticket_types.c.name,
                                                         ticket_types.c.name_zh))}

    @staticmethod
    def of(table: dict[int, str], key: int | None) -> str:
        if key is None:
            return "—"
        return table.get(key, f"#{key}")


def venue_timezone(conn: Connection, f: ReportFilters | None = None) -> str:
    """The performance's venue's zone (or the first venue's): times in reports are shown in it."""
    query = select(venues.c.timezone).order_by(venues.c.id).limit(1)
    if f is not None and f.performance_id is not None:
        query = (select(venues.c.timezone).join(performances, performances.c.venue_id == venues.c.id)
                 .where(performances.c.id == f.performance_id))
    zone = conn.execute(query).scalar()
    return str(zone) if zone else DEFAULT_TIMEZONE


# ---- check-in summary ------------------------------------------------------------------------------

def _n(cond: ColumnElement[bool]) -> Any:
    """Rows matching ``cond`` (an aggregate FILTER: SQLite >= 3.30 and PostgreSQL; cheaper than CASE)."""
    return func.count().filter(cond)


def _sum(column: Any, cond: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(column).filter(cond), 0)


def _main_summary(conn: Connection, f: ReportFilters) -> dict[tuple[Any, ...], dict[str, int]]:
    e = _E
    entry_admit = and_(e.c.reason == _ADMITTED, e.c.direction == "entry")
    query = (select(e.c.performance_id, e.c.channel_id, e.c.ticket_type_id,
                    func.count().label("scans"),
                    _n(and_(entry_admit, e.c.credit == False)).label("admission_events"),  # noqa: E712
                    _sum(e.c.persons, entry_admit).label("persons_in"),
                    _n(e.c.direction == "exit").label("exits"),
                    _n(and_(e.c.direction == "entry", e.c.reason.not_in((_ADMITTED, _ANNULLED)))).label("denied"),
                    _n(and_(entry_admit, e.c.conflict == True)).label("conflicts"),  # noqa: E712
                    _n(and_(entry_admit, e.c.forced_by.is_not(None))).label("forced"),
                    _n(and_(entry_admit, e.c.credit == False, e.c.offline == True))  # noqa: E712
                    .label("offline_admitted"))
             .where(*_where(f)).group_by(e.c.performance_id, e.c.channel_id, e.c.ticket_type_id))
    return {(r.performance_id, r.channel_id, r.ticket_type_id): {k: int(v) for k, v in r._mapping.items()
                                                                  if k not in ("performance_id", "channel_id",
                                                                               "ticket_type_id")}
            for r in conn.execute(query)}


def _annulments(conn: Connection, f: ReportFilters) -> dict[tuple[Any, ...], dict[str, int]]:
    """Annulments that take back an admission of the same device and ticket (as usage replays them)."""
    a, b = _E.alias("a"), _E.alias("b")
    full = and_(a.c.persons >= func.coalesce(func.nullif(b.c.persons, 0), 1), b.c.credit == False)  # noqa: E712
    query = (select(a.c.performance_id, a.c.channel_id, a.c.ticket_type_id,
                    func.count().label("annulled"),
                    func.coalesce(func.sum(a.c.persons), 0).label("persons_out"),
                    _n(full).label("full_annulled"))
             .select_from(a.join(b, b.c.event_id == a.c.annuls))
             .where(a.c.reason == _ANNULLED, a.c.persons > 0, b.c.reason == _ADMITTED, b.c.direction == "entry",
                    b.c.device_id == a.c.device_id, b.c.ticket_id == a.c.ticket_id,
                    a.c.persons <= func.coalesce(func.nullif(b.c.persons, 0), 1), *_where(f, a))
             .group_by(a.c.performance_id, a.c.channel_id, a.c.ticket_type_id))
    return {(r.performance_id, r.channel_id, r.ticket_type_id): {
        "annulled": int(r.annulled), "persons_out": int(r.persons_out), "full_annulled": int(r.full_annulled)}
        for r in conn.execute(query)}


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    row["admitted"] = max(0, row["admission_events"] - row["full_annulled"])
    row["persons"] = max(0, row["persons_in"] - row["persons_out"])
    row["offline_share"] = _share(row["offline_admitted"], row["admission_events"])
    return row


_COUNTS = ("scans", "admission_events", "persons_in", "exits", "denied", "conflicts", "forced",
           "offline_admitted", "annulled", "persons_out", "full_annulled")


def checkin_summary(conn: Connection, f: ReportFilters) -> list[dict[str, Any]]:
    """One row per (performance, channel, ticket type) with any filtered event, ordered by their names."""
    names = Names(conn)
    main, annul = _main_summary(conn, f), _annulments(conn, f)
    rows = []
    for key in set(main) | set(annul):
        perf, channel, ttype = key
        row: dict[str, Any] = dict.fromkeys(_COUNTS, 0)
        row.update(main.get(key, {}))
        row.update(annul.get(key, {}))
        group = names.channel_group.get(channel) if channel is not None else None
        row.update(performance_id=perf, performance=names.of(names.performance, perf), group_id=group,
                   group=names.of(names.group, group), channel_id=channel, channel=names.of(names.channel, channel),
                   ticket_type_id=ttype, ticket_type=names.of(names.ticket_type, ttype))
        rows.append(_finish(row))
    rows.sort(key=lambda r: (r["performance"], r["performance_id"] or 0, r["group"], r["channel"],
                             r["channel_id"] or 0, r["ticket_type"], r["ticket_type_id"] or 0))
    return rows


def summary_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals row of :func:`checkin_summary` rows (same keys; names say 合计 Total)."""
    total: dict[str, Any] = {k: sum(int(r.get(k, 0)) for r in rows) for k in _COUNTS}
    total.update(performance="合计 Total", performance_id=None, group="", group_id=None, channel="",
                 channel_id=None, ticket_type="", ticket_type_id=None, totals=True)
    return _finish(total)


# ---- check-in detail -------------------------------------------------------------------------------

_DETAIL_FIELDS = (_E.c.event_id, _E.c.scanned_at, _E.c.received_at, _E.c.performance_id, _E.c.group_id,
                  _E.c.channel_id, _E.c.device_id, _E.c.ticket_type_id, _E.c.ticket_id, _E.c.reason, _E.c.persons,
                  _E.c.direction, _E.c.offline, _E.c.source, _E.c.conflict, _E.c.forced_by, _E.c.credit,
                  _E.c.annuls)


def _detail_query(f: ReportFilters) -> Select[Any]:
    return select(*_DETAIL_FIELDS).where(*_where(f)).order_by(_E.c.scanned_at, _E.c.event_id)


def _detail_row(r: Any, names: Names) -> dict[str, Any]:
    reason = r.reason
    try:
        text = Reason(reason)
        reason_zh, reason_en = text.text_zh, text.text_en
    except ValueError:
        reason_zh = reason_en = reason
    return {"event_id": r.event_id, "scanned_at": float(r.scanned_at), "received_at": float(r.received_at),
            "performance_id": r.performance_id, "performance": names.of(names.performance, r.performance_id),
            "group_id": r.group_id, "group": names.of(names.group, r.group_id),
            "channel_id": r.channel_id, "channel": names.of(names.channel, r.channel_id),
            "device_id": r.device_id, "ticket_type_id": r.ticket_type_id,
            "ticket_type": names.of(names.ticket_type, r.ticket_type_id), "ticket_id": r.ticket_id,
            "reason": reason, "reason_zh": reason_zh, "reason_en": reason_en, "persons": int(r.persons),
            "direction": r.direction, "offline": bool(r.offline), "source": r.source, "conflict": bool(r.conflict),
            "forced_by": r.forced_by, "credit": bool(r.credit), "annuls": r.annuls}


def checkin_detail_page(conn: Connection, f: ReportFilters, after: Cursor | None = None,
                        limit: int = DEFAULT_PAGE) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Up to ``limit`` events after ``after`` (oldest scan first) and the cursor of the next page (None: last)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1..{MAX_PAGE}")
    query = _detail_query(f)
    if after is not None:
        query = query.where(tuple_(_E.c.scanned_at, _E.c.event_id) > tuple_(literal(after[0]), literal(after[1])))
    found = conn.execute(query.limit(limit + 1)).all()
    names = Names(conn)
    rows = [_detail_row(r, names) for r in found[:limit]]
    more = len(found) > limit
    return rows, ((rows[-1]["scanned_at"], rows[-1]["event_id"]) if more and rows else None)


def iter_checkin_detail(conn: Connection, f: ReportFilters, batch: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """Every filtered event in :func:`checkin_detail_page` order, ``batch`` rows at a time (server-side cursor)."""
    names = Names(conn)
    result = conn.execution_options(yield_per=batch).execute(_detail_query(f))
    try:
        for part in result.partitions(batch):
            yield [_detail_row(r, names) for r in part]
    finally:
        result.close()


def count_checkin_detail(conn: Connection, f: ReportFilters) -> int:
    return int(conn.execute(select(func.count()).select_from(_E).where(*_where(f))).scalar() or 0)


def cursor_text(cursor: Cursor | None) -> str | None:
    return None if cursor is None else f"{cursor[0]!r}:{cursor[1]}"


def parse_cursor(text: str | None) -> Cursor | None:
    """``"<scanned_at>:<event_id>"`` (a next_cursor the hub gave) -> (scanned_at, event_id); Invalid otherwise."""
    if text is None:
        return None
    at, _, event_id = text.partition(":")
    try:
        value = float(at)
    except ValueError:
        value = -1.0
    if not (0 <= value <= MAX_UNIX) or not re.fullmatch(EVENT_ID_PATTERN.strip("^$"), event_id):
        raise Invalid("after must be a next_cursor this report returned; start again from the first page")
    return value, event_id


# ---- sales -----------------------------------------------------------------------------------------

def sales_summary(conn: Connection, f: ReportFilters) -> list[dict[str, Any]]:
    """By performance and ticket type. A purchase counts once, through its current ticket (a printed ticket
    that replaced an e-ticket, not both); revenue is the type's price per valid ticket; the time range is
    the current ticket's creation time; checked_in: tickets used at least once."""
    t = tickets
    status = t.c.status
    query = (select(t.c.performance_id, t.c.ticket_type_id, func.count().label("sold"),
                    func.coalesce(func.sum(t.c.persons), 0).label("persons"),
                    _n(status == "refunded").label("refunded"), _n(status == "void").label("void"),
                    _n(status == "valid").label("valid"),
                    _sum(ticket_types.c.price_cents, status == "valid").label("revenue_cents"),
                    _n(t.c.used > 0).label("checked_in"))
             .select_from(t.join(ticket_types, ticket_types.c.id == t.c.ticket_type_id))
             .where(t.c.replaced_by.is_(None))
             .group_by(t.c.performance_id, t.c.ticket_type_id))
    if f.performance_id is not None:
        query = query.where(t.c.performance_id == f.performance_id)
    if f.ticket_type_id is not None:
        query = query.where(t.c.ticket_type_id == f.ticket_type_id)
    if f.group_id is not None:
        query = query.where(t.c.performance_id.in_(select(group_performances.c.performance_id)
                                                  .where(group_performances.c.group_id == f.group_id)))
    if f.since is not None:
        query = query.where(t.c.created_at >= f.since)
    if f.until is not None:
        query = query.where(t.c.created_at < f.until)
    names = Names(conn)
    rows = []
    for r in conn.execute(query):
        row: dict[str, Any] = {k: int(v) for k, v in r._mapping.items()}
        row.update(performance=names.of(names.performance, r.performance_id),
                   ticket_type=names.of(names.ticket_type, r.ticket_type_id))
        rows.append(row)
    rows.sort(key=lambda r: (r["performance"], r["performance_id"], r["ticket_type"], r["ticket_type_id"]))
    return rows


_SALES_COUNTS = ("sold", "persons", "refunded", "void", "valid", "revenue_cents", "checked_in")


def sales_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {k: sum(int(r.get(k, 0)) for r in rows) for k in _SALES_COUNTS}
    total.update(performance="合计 Total", performance_id=None, ticket_type="", ticket_type_id=None, totals=True)
    return total


# ---- chart -----------------------------------------------------------------------------------------

BUCKETS = (300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 48
MAX_SERIES = 12  # channels drawn; the rest are summed as "other"


def summary_chart(conn: Connection, f: ReportFilters) -> dict[str, Any]:
    """Persons admitted (net of annulments, at the annulment's time) per time bucket per channel.

    ``{"bucket_seconds", "start", "end", "timezone", "buckets": [unix start of each], "series":
    [{"channel_id", "channel", "values": [...], "total"}], "total"}``; buckets are whole multiples from
    ``start`` (the range's start rounded down to the bucket), at most 48 of them.
    """
    e = _E
    timezone = venue_timezone(conn, f)
    base = _where(f)
    counted = or_(and_(e.c.reason == _ADMITTED, e.c.direction == "entry"), e.c.reason == _ANNULLED)
    lo, hi = f.since, f.until
    if lo is None or hi is None:
        first, last = conn.execute(select(func.min(e.c.scanned_at), func.max(e.c.scanned_at))
                                   .where(*base, counted)).one()
        lo = float(first) if lo is None and first is not None else lo
        hi = float(last) + 1 if hi is None and last is not None else hi
    empty: dict[str, Any] = {"bucket_seconds": 3600, "start": lo, "end": hi, "timezone": timezone, "buckets": [],
                             "series": [], "total": 0}
    if lo is None or hi is None or hi <= lo:
        return empty
    size = next((b for b in BUCKETS if (hi - lo) / b <= MAX_BUCKETS), BUCKETS[-1])
    start = (lo // size) * size
    count = min(int((hi - start + size - 1) // size), 10_000)
    bucket = func.floor((e.c.scanned_at - start) / size)
    signed = case((e.c.reason == _ANNULLED, -e.c.persons), else_=e.c.persons)
    query = (select(e.c.channel_id, bucket.label("b"), func.sum(signed).label("n"))
             .where(*base, counted).group_by(e.c.channel_id, bucket))
    names = Names(conn)
    by_channel: dict[int, list[int]] = {}
    for r in conn.execute(query):
        i = int(r.b)
        if 0 <= i < count:
            by_channel.setdefault(r.channel_id, [0] * count)[i] += int(r.n or 0)
    ranked = sorted(by_channel.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    series = [{"channel_id": cid, "channel": names.of(names.channel, cid), "values": vals, "total": sum(vals)}
              for cid, vals in ranked[:MAX_SERIES]]
    if len(ranked) > MAX_SERIES:
        other = [sum(vals[i] for _, vals in ranked[MAX_SERIES:]) for i in range(count)]
        series.append({"channel_id": None, "channel": "其他 Other", "values": other, "total": sum(other)})
    return {**empty, "bucket_seconds": size, "start": start, "end": start + count * size,
            "buckets": [start + i * size for i in range(count)], "series": series,
            "total": sum(s["total"] for s in series)}


# ---- the API's reports (one read transaction each) -------------------------------------------------

def columns_out(columns: Columns) -> list[dict[str, str]]:
    return [{"key": k, "zh": zh, "en": en} for k, zh, en in columns]


def summary_report(ctx: HubContext, f: ReportFilters) -> dict[str, Any]:
    with ctx.db.read() as conn:
        rows = checkin_summary(conn, f)
        return {"timezone": venue_timezone(conn, f), "columns": columns_out(SUMMARY_COLUMNS), "rows": rows,
                "totals": summary_totals(rows)}


def detail_report(ctx: HubContext, f: ReportFilters, after: str | None, limit: int,
                  with_total: bool = False) -> dict[str, Any]:
    cursor = parse_cursor(after)
    with ctx.db.read() as conn:
        rows, nxt = checkin_detail_page(conn, f, cursor, limit)
        return {"timezone": venue_timezone(conn, f), "columns": columns_out(DETAIL_COLUMNS), "rows": rows,
                "next_cursor": cursor_text(nxt), "total": count_checkin_detail(conn, f) if with_total else None}


def sales_report(ctx: HubContext, f: ReportFilters) -> dict[str, Any]:
    with ctx.db.read() as conn:
        rows = sales_summary(conn, f)
        return {"timezone": venue_timezone(conn, f), "columns": columns_out(SALES_COLUMNS), "rows": rows,
                "totals": sales_totals(rows)}


def chart_report(ctx: HubContext, f: ReportFilters) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return summary_chart(conn, f)
