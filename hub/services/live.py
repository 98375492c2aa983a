"""Live check-in: a snapshot of the last hour from the journal, and a feed of what arrives after it.

One tally, :func:`tally`, serves both: the snapshot runs it over the events scanned in the window, the feed over
each coalesced bunch of newly stored events, so the page adds deltas that mean the same as the snapshot.

- admissions: persons of admitted entries, per minute of the scan (device clock), by channel and by gate;
- zones: inside now per check-in group as :mod:`hub.services.evacuation` counts it, with its capacity;
- denials: scans refused, by reason (admissions, annulments, exits and emergency journal entries are not);
- scans: the newest 50 with their reason (ticket id only: never the holder's name, phone or ID number);
- devices: every device's state and outbox backlog (the page shows the offline ones and the backlogs).

:class:`LiveFeed` is the in-process fan-out. The MQTT bridge calls :meth:`LiveFeed.stored` after an ingest
transaction commits and :meth:`LiveFeed.devices_changed` after a status is recorded; both only append and
wake (never block ingest). The feed reads the stored rows back by id (at most every ``flush_every`` seconds),
keeps those that are new, and puts them on each subscriber's bounded queue; a subscriber whose queue is
full is dropped (its browser reconnects and gets a fresh snapshot), so a slow browser never slows ingest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, case, func, select

from hub.errors import NotFound
from hub.services import evacuation
from hub.services.context import HubContext
from hub.services.usage import chunks
from hub.tables import channels, checkin_events, checkin_groups, devices, group_performances, performances
from protocol.messages import EventBatch
from protocol.reasons import Reason

log = logging.getLogger(__name__)
WINDOW = 3600.0  # the chart, the denials and the last scans: the last 60 minutes
LAST_SCANS = 50
MAX_DEVICES = 1000
NOT_DENIALS = frozenset({Reason.ADMITTED.value, Reason.ANNULLED.value, Reason.EXIT.value, Reason.EMERGENCY.value})
SCAN_COLUMNS = ("event_id", "device_id", "group_id", "channel_id", "reason", "ticket_id", "performance_id",
                "persons", "direction", "offline", "source", "scanned_at", "received_at", "conflict", "credit")
REASONS = {r.value: {"zh": r.text_zh, "en": r.text_en} for r in Reason}


@dataclass(frozen=True)
class Filters:
    performance_id: int | None = None
    group_id: int | None = None

    def keeps(self, row: dict[str, Any]) -> bool:
        return ((self.performance_id is None or row["performance_id"] == self.performance_id)
                and (self.group_id is None or row["group_id"] == self.group_id))

    def keeps_zone(self, row: dict[str, Any]) -> bool:
        """Inside counts people, whatever their performance: only the group filter narrows it."""
        return self.group_id is None or row["group_id"] == self.group_id


def minute(t: float) -> int:
    return int(t // 60) * 60


def tally(rows: Iterable[dict[str, Any]], zones_since: float | None = None) -> dict[str, Any]:
    """Admissions per minute by channel and by gate, denials by reason, and the zone terms of ``rows``."""
    by_channel: Counter[tuple[int, int]] = Counter()
    by_gate: Counter[tuple[int, str]] = Counter()
    denials: Counter[str] = Counter()
    zones: dict[int, list[int]] = {}
    for r in rows:
        entry = r["direction"] == "entry"
        if r["reason"] == Reason.ADMITTED.value and entry:
            by_channel[(minute(r["scanned_at"]), r["channel_id"])] += r["persons"]
            by_gate[(minute(r["scanned_at"]), r["device_id"])] += r["persons"]
        elif r["reason"] not in NOT_DENIALS:
            denials[r["reason"]] += 1
        if zones_since is not None and r["scanned_at"] >= zones_since:
            z = zones.setdefault(r["group_id"], [0, 0, 0])
            if r["reason"] == Reason.ADMITTED.value and entry:
                z[0] += r["persons"]
            elif r["reason"] == Reason.ANNULLED.value:
                z[1] += r["persons"]
            if r["direction"] == "exit":
                z[2] += max(r["persons"], 1)
    return {
        "admissions": {
            "by_channel": [{"minute": m, "key": str(k), "persons": n} for (m, k), n in sorted(by_channel.items())],
            "by_gate": [{"minute": m, "key": k, "persons": n} for (m, k), n in sorted(by_gate.items())]},
        "denials": dict(sorted(denials.items())),
        "zones": {str(g): {"admitted": a, "annulled": n, "exits": x} for g, (a, n, x) in sorted(zones.items())},
    }


def scan_view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in SCAN_COLUMNS}


def _check_filters(conn: Connection, f: Filters) -> None:
    if f.performance_id is not None and conn.execute(
            select(performances.c.id).where(performances.c.id == f.performance_id)).first() is None:
        raise NotFound(f"performance {f.performance_id} does not exist; see GET /api/v1/performances")
    if f.group_id is not None and conn.execute(
            select(checkin_groups.c.id).where(checkin_groups.c.id == f.group_id)).first() is None:
        raise NotFound(f"check-in group {f.group_id} does not exist; see GET /api/v1/checkin-groups")


def _inside(conn: Connection, since: float) -> dict[int, tuple[int, int, int]]:
    """(admitted, annulled, exits) persons per group since ``since``: :data:`hub.services.evacuation.FORMULA`,
    read on the snapshot's own connection so that it agrees with ``as_of``."""
    e = checkin_events
    admitted = func.sum(case(((e.c.reason == Reason.ADMITTED.value) & (e.c.direction == "entry"), e.c.persons),
                             else_=0))
    annulled = func.sum(case((e.c.reason == Reason.ANNULLED.value, e.c.persons), else_=0))
    exits = func.sum(case((e.c.direction == "exit", case((e.c.persons > 1, e.c.persons), else_=1)), else_=0))
    rows = conn.execute(select(e.c.group_id, admitted, annulled, exits).where(e.c.scanned_at >= since)
                        .group_by(e.c.group_id)).all()
    return {gid: (int(a or 0), int(n or 0), int(x or 0)) for gid, a, n, x in rows}


def device_rows(conn: Connection) -> list[dict[str, Any]]:
    d = devices
    rows = conn.execute(select(d.c.device_id, d.c.kind, d.c.state, d.c.heard_at, d.c.last_seen, d.c.outbox,
                               d.c.set_aside, d.c.group_id, d.c.channel_id)
                        .order_by(d.c.device_id).limit(MAX_DEVICES))
    return [{**dict(r._mapping), "online": r.state == "online"} for r in rows]


def snapshot(ctx: HubContext, filters: Filters | None = None) -> dict[str, Any]:
    """What the live page shows, from the database; ``as_of``: the newest ``received_at`` it includes."""
    f = filters or Filters()
    now = ctx.clock()
    since = minute(now - WINDOW)
    e = checkin_events
    zones_since = now - evacuation.WINDOW
    with ctx.db.read() as conn:  # one read: the zones, the rows and ``as_of`` agree
        _check_filters(conn, f)
        inside = _inside(conn, zones_since)
        query = select(*(e.c[k] for k in SCAN_COLUMNS)).where(e.c.scanned_at >= since)
        if f.performance_id is not None:
            query = query.where(e.c.performance_id == f.performance_id)
        if f.group_id is not None:
            query = query.where(e.c.group_id == f.group_id)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        newest = conn.execute(select(e.c.received_at).order_by(e.c.received_at.desc()).limit(1)).scalar()
        groups = {r.id: r for r in conn.execute(select(checkin_groups.c.id, checkin_groups.c.name,
                                                       checkin_groups.c.capacity))}
        names = [{"id": r.id, "name": r.name, "group_id": r.group_id}
                 for r in conn.execute(select(channels.c.id, channels.c.name, channels.c.group_id)
                                       .order_by(channels.c.id))]
        shown = set(groups)
        if f.performance_id is not None:
            shown &= set(conn.execute(select(group_performances.c.group_id)
                                      .where(group_performances.c.performance_id == f.performance_id)).scalars())
        device_list = device_rows(conn)
    if f.group_id is not None:
        shown &= {f.group_id}
        device_list = [d for d in device_list if d["group_id"] == f.group_id]
    counted = tally(rows)
    rows.sort(key=lambda r: (r["scanned_at"], r["received_at"]), reverse=True)
    zones = []
    for gid in sorted(shown):
        a, n, x = inside.get(gid, (0, 0, 0))
        zones.append({"group_id": gid, "name": groups[gid].name, "capacity": groups[gid].capacity, "admitted": a,
                      "annulled": n, "exits": x, "inside": max(0, a - n - x)})
    return {"at": now, "as_of": newest or 0.0, "since": since, "window_s": WINDOW, "zones_since": zones_since,
            "filters": {"performance_id": f.performance_id, "group_id": f.group_id},
            "channels": names, "admissions": counted["admissions"], "zones": zones,
            "denials": [{"reason": k, "count": n} for k, n in counted["denials"].items()],
            "scans": [scan_view(r) for r in rows[:LAST_SCANS]], "devices": device_list, "reasons": REASONS}


def stored_rows(ctx: HubContext, ids: Sequence[str]) -> list[dict[str, Any]]:
    e = checkin_events
    found: list[dict[str, Any]] = []
    with ctx.db.read() as conn:
        for chunk in chunks(list(ids)):
            found += [dict(r._mapping) for r in conn.execute(select(*(e.c[k] for k in SCAN_COLUMNS))
                                                             .where(e.c.event_id.in_(chunk)))]
    return found


def read_devices(ctx: HubContext) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return device_rows(conn)


# -- the feed -------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Subscriber:
    filters: Filters
    queue: asyncio.Queue[tuple[str, Any]]
    as_of: float | None = None  # set once its snapshot is read: rows received up to it are in the snapshot
    dropped: bool = False


@dataclass
class LiveFeed:
    ctx: HubContext
    flush_every: float = 0.2  # coalesce new scans: at most one ``scans`` event per subscriber this often
    devices_every: float = 5.0  # re-read devices this often too (an offline sweep changes them in the database)
    queue_size: int = 200  # per subscriber; full: the subscriber is dropped and reconnects
    seen_max: int = 200_000
    started_at: float = field(default_factory=time.time)
    _subs: set[Subscriber] = field(default_factory=set)
    _pending: dict[str, float] = field(default_factory=dict)  # event id -> when the bridge handed it over
    _devices_due: bool = True
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: int | None = None
    closed: bool = False
    # several hubs on one database (hub/cluster.py): the other hubs' feeds are told of what this hub stored
    tell_others: Callable[[list[str]], None] = lambda _ids: None

    # -- from the bridge (any thread) -----------------------------------------------------------------------
    def stored(self, batches: Sequence[EventBatch]) -> None:
        """An ingest transaction holding ``batches`` committed (some events may be duplicates)."""
        ids = [e.event_id for b in batches for e in b.events]
        self._soon(self._add_ids, ids)
        self.tell_others(ids)

    def stored_elsewhere(self, event_ids: list[str]) -> None:
        """Another hub on the database stored these events (hub/cluster.py news): show them here too."""
        self._soon(self._add_ids, [i for i in event_ids if i])

    def checked_online(self, event_id: str) -> None:
        """A handheld's online check was decided and stored (POST /checkins/online)."""
        self._soon(self._add_ids, [event_id])
        self.tell_others([event_id])

    def devices_changed(self) -> None:
        self._soon(self._nudge_devices)

    def _soon(self, fn: Any, *args: Any) -> None:
        if self._loop is None or self.closed:
            return
        if threading.get_ident() == self._thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _add_ids(self, ids: list[str]) -> None:
        now = self.ctx.clock()
        for i in ids:
            self._pending.setdefault(i, now)
        self._wake_up()

    def _nudge_devices(self) -> None:
        self._devices_due = True
        self._wake_up()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- subscribers (the event loop) --------------------------------------------------------------------------
    def subscribe(self, filters: Filters) -> Subscriber:
        sub = Subscriber(filters, asyncio.Queue(self.queue_size))
        if self.closed:
            sub.queue.put_nowait(("end", "stopping"))
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def subscribers(self) -> int:
        return len(self._subs)

    def _offer(self, sub: Subscriber, item: tuple[str, Any]) -> None:
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:
            log.info("a live subscriber fell %s updates behind: ended (it reconnects for a fresh snapshot)",
                     self.queue_size)
            self._end(sub, "behind")

    def _end(self, sub: Subscriber, reason: str) -> None:
        sub.dropped = True
        self._subs.discard(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(("end", reason))

    def close(self) -> None:
        """The hub stops: every stream ends."""
        self.closed = True
        for sub in list(self._subs):
            self._end(sub, "stopping")
        self._wake_up()

    # -- the loop ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        self._wake = asyncio.Event()
        last_flush = 0.0
        next_devices = 0.0
        while not self.closed:
            timeout = max(0.0, next_devices - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._devices_due = True
            self._wake.clear()
            await asyncio.sleep(max(0.0, last_flush + self.flush_every - time.monotonic()))
            last_flush = time.monotonic()
            if self._pending:
                try:
                    await self._flush_scans()
                except Exception:
                    log.exception("live feed: reading new scans failed; subscribers catch up on reconnect")
            if self._devices_due:
                self._devices_due = False
                next_devices = time.monotonic() + self.devices_every
                try:
                    await self._flush_devices()
                except Exception:
                    log.exception("live feed: reading devices failed; will retry")
        # closed (the hub stops, its streams ended): nothing more to read; wait to be cancelled, as a supervised
        # task must not return
        await asyncio.get_running_loop().create_future()

    def _is_new(self, row: dict[str, Any], handed: float) -> bool:
        """Stored by this transaction, not re-sent: not seen before in this process, not stored before it
        started, not stored long before the bridge handed it over."""
        eid, received = row["event_id"], row["received_at"]
        if eid in self._seen or received < self.started_at or received < handed - 60.0:
            return False
        self._seen[eid] = None
        if len(self._seen) > self.seen_max:
            self._seen.popitem(last=False)
        return True

    async def _flush_scans(self) -> None:
        pending, self._pending = self._pending, {}
        if not self._subs:
            for eid in pending:  # nobody watching: remember them so a re-send later is not shown as new
                self._seen[eid] = None
            while len(self._seen) > self.seen_max:
                self._seen.popitem(last=False)
            return
        rows = await asyncio.to_thread(stored_rows, self.ctx, list(pending))
        new = [r for r in rows if self._is_new(r, pending[r["event_id"]])]
        if not new:
            return
        new.sort(key=lambda r: (r["scanned_at"], r["received_at"]), reverse=True)
        for sub in list(self._subs):
            mine = [r for r in new if sub.filters.keeps(r) or sub.filters.keeps_zone(r)]
            if mine:
                self._offer(sub, ("scans", mine))

    async def _flush_devices(self) -> None:
        rows = await asyncio.to_thread(read_devices, self.ctx)
        current = {d["device_id"]: d for d in rows}
        changed = [d for k, d in current.items() if self._devices.get(k) != d]
        self._devices = current
        if not changed:
            return
        for sub in list(self._subs):
            mine = [d for d in changed if sub.filters.group_id is None or d["group_id"] == sub.filters.group_id]
            if mine:
                self._offer(sub, ("devices", mine))


def scans_event(sub: Subscriber, rows: list[dict[str, Any]], zones_since: float) -> dict[str, Any] | None:
    """The ``scans`` event for ``sub``: new rows it has not had in its snapshot, and their tally."""
    rows = [r for r in rows if sub.as_of is None or r["received_at"] > sub.as_of]
    shown = [r for r in rows if sub.filters.keeps(r)]
    zoned = [r for r in rows if sub.filters.keeps_zone(r)]
    if not shown and not zoned:
        return None
    counted = tally(shown)
    counted["zones"] = tally(zoned, zones_since)["zones"]
    return {"scans": [scan_view(r) for r in shown[:LAST_SCANS]], **counted}
