"""The gate's durable local state in one SQLite file (WAL, ``synchronous=FULL``).

Tables: ``meta`` (group, whitelist seq, rules, the latched emergency state), ``entries`` (the
whitelist with the hub's usage of each ticket, looked up by primary key per scan so 100,000 tickets
stay on disk), ``usage_events`` (this gate's own entries, exits and annulments of tickets and cards),
``journal`` (every decision, forever) and ``outbox`` (events not yet acknowledged by the hub);
``cards`` (member cards / annual passes by UID hash) and ``card_usage`` (the hub's count of each
card's admissions per venue day, from ``card_used`` deltas).

Exact counts offline: a gate decides on the hub's usage (the whitelist) folded with its own usage
events the hub has not yet echoed. An event's ``echo_seq`` is NULL until the hub acknowledges it; the
ack names the group's whitelist seq from which the hub's counts include it (``AckPayload.echo_seq``).
Once ``whitelist_seq >= echo_seq`` the event is in the hub's numbers and stops counting here, so an
entry is counted exactly once whether the ack or the "used" delta arrives first. (Between a "used"
delta and its ack the event counts twice for a moment: a refusal, never an extra admission.)

Recording a scan is one transaction (journal + outbox + usage event), so after a crash or power loss
a decision is either fully recorded or was never shown to the patron.

Schema versions (``PRAGMA user_version``, :mod:`confkit.storeschema`; ``gate.db`` files from before
versioning are recognised by their tables and columns): 1 the first release (d618755); 2 member cards,
``cards`` and ``card_usage`` (4c5f122); 3 ``usage_events`` backfilled from the outbox and
``entries.usage`` (2833d3b); 4 ``set_aside``. Opening migrates forward in one transaction; a store from
a newer release is refused (:class:`~confkit.storeschema.StoreTooNew`). The old ``usage`` table (bare
counts, version 1) is kept but no longer read.

An outbox row this code cannot read (bad JSON, a field this release refuses: written by a newer release
before a rollback) or queued under another device id (before a re-enrolment) would block every event
behind it: :meth:`Store.pending` moves it to ``set_aside`` with the reason, logs it once at ERROR, and goes
on; the count is in every heartbeat. A set-aside row readable again (after the upgrade it was written
for) goes back to the outbox the next time the gate starts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from confkit.storeschema import (
    StoreSchema,
    UnknownStoreLayout,
    add_column,
    columns,
    migrate,
    private_sqlite,
    tables,
)
from protocol.cards import CardEntry
from protocol.decision import UsageHistory
from protocol.errors import ProtocolError
from protocol.localtime import local_day
from protocol.messages import CheckinEvent
from protocol.reasons import Reason
from protocol.usage import Usage, UsageEvent
from protocol.whitelist import Delta, GroupRules, WhitelistEntry

_V1 = (  # d618755: the first release
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entries (
    ticket_id INTEGER PRIMARY KEY, performance_id INTEGER NOT NULL, ticket_type_id INTEGER NOT NULL,
    persons INTEGER NOT NULL, revoked INTEGER NOT NULL, used INTEGER NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS usage (ticket_id INTEGER PRIMARY KEY, entries INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL)",
)
_V2 = (  # 4c5f122: member cards
    "CREATE TABLE IF NOT EXISTS cards (key TEXT PRIMARY KEY, card_id INTEGER NOT NULL, wire TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS card_usage (
    card_id INTEGER NOT NULL, day TEXT NOT NULL, entries INTEGER NOT NULL, PRIMARY KEY (card_id, day))""",
)
_V3 = (  # 2833d3b: check-in rules; usage events count this gate's own usage until the hub echoes it
    add_column("entries", "usage", "TEXT"),
    """CREATE TABLE IF NOT EXISTS usage_events (
    event_id TEXT PRIMARY KEY, ticket_id INTEGER, card_id INTEGER, kind TEXT NOT NULL, at REAL NOT NULL,
    persons INTEGER NOT NULL, of_persons INTEGER NOT NULL, credit INTEGER NOT NULL, annuls TEXT,
    echo_seq INTEGER)""",
    "CREATE INDEX IF NOT EXISTS usage_events_ticket ON usage_events (ticket_id) WHERE ticket_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS usage_events_card ON usage_events (card_id) WHERE card_id IS NOT NULL",
    lambda conn: Store._backfill(conn),  # the events still waiting for the hub keep counting here
)
_V4 = (  # outbox rows this code cannot send, moved aside with the reason (never deleted)
    """CREATE TABLE IF NOT EXISTS set_aside (
    event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL)""",
)


def _detect(conn: sqlite3.Connection) -> int:
    """The version of a gate.db from before versioning (``user_version`` 0), by its tables and columns."""
    found = tables(conn)
    if not {"meta", "entries", "journal", "outbox"} <= found:
        raise UnknownStoreLayout(f"gate.db with tables {sorted(found)[:20]} was not made by any gate release")
    if "usage_events" in found and "usage" in columns(conn, "entries"):
        return 3
    if {"cards", "card_usage"} <= found:
        return 2
    return 1


SCHEMA = StoreSchema("gate.db", (_V1, _V2, _V3, _V4), _detect)
_INSERT_ENTRY = "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_CARD = "INSERT OR REPLACE INTO cards VALUES (?, ?, ?)"
_INSERT_USAGE = "INSERT OR IGNORE INTO usage_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
_UNECHOED = "(echo_seq IS NULL OR echo_seq > ?)"
log = logging.getLogger(__name__)
CARD_EVENTS_KEPT_S = 2 * 86400  # echoed card events stay this long: the card's last entry, for cool-downs


def _entry_row(e: WhitelistEntry) -> tuple[int, int, int, int, int, int, str | None]:
    usage = e.to_wire()[6:]
    return (e.ticket_id, e.performance_id, e.ticket_type_id, e.persons, int(e.revoked), e.used,
            json.dumps(usage, separators=(",", ":")) if usage else None)


def _readable(body: object, device_id: str | None) -> tuple[CheckinEvent | None, str]:
    """(the event, "") if the outbox row ``body`` can be sent by ``device_id``, else (None, why): a reason
    naming the field and the rule, never the row's values (an unreadable scan may hold a ticket token)."""
    if not isinstance(body, str | bytes):
        return None, f"not text ({type(body).__name__})"
    try:
        event = CheckinEvent.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            return None, "not JSON"
        where = ".".join(str(p) for p in first["loc"])[:64] or "event"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return None, f"unreadable by this release: {where}: {first['msg']}"[:180] + more
    except ValueError:
        return None, "not JSON"
    if device_id is not None and event.device_id != device_id:
        return None, f"queued under device {event.device_id}, this device is {device_id}"
    return event, ""


def _card_row(c: CardEntry) -> tuple[str, int, str]:
    return c.key, c.card_id, json.dumps(c.to_wire(), separators=(",", ":"))


class Store:
    """The SQLite store. Use as a context manager, or call :meth:`close`.

        >>> with Store.open(Path("var/gate-1")) as store:
        ...     store.whitelist_seq
        -1
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = conn
        self.group_id: int | None = None
        self.whitelist_seq = -1
        self.rules: GroupRules | None = None
        self._load_meta()
        row = self._db.execute("SELECT MAX(seq) FROM journal").fetchone()
        self._next_seq = 0 if row[0] is None else int(row[0]) + 1
        self._restored = False  # set-aside rows readable again are put back once, on the first pending()

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        private_sqlite(data_dir / "gate.db")  # 0600: the journal names tickets and devices
        conn = sqlite3.connect(data_dir / "gate.db", isolation_level=None)  # explicit transactions
        conn.execute("PRAGMA journal_mode=WAL")
        private_sqlite(data_dir / "gate.db")  # the -wal/-shm files WAL mode just made
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        try:
            migrate(conn, SCHEMA, data_dir / "gate.db")  # one transaction; StoreTooNew: a newer release's
            return cls(conn)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def _backfill(cls, conn: sqlite3.Connection) -> None:
        """Migration to version 3 (inside its transaction): the events still waiting for the hub keep
        counting here. A row this code cannot read is left to :meth:`pending`, which sets it aside."""
        for (body,) in conn.execute("SELECT event FROM outbox ORDER BY seq").fetchall():
            try:
                row = cls._usage_row(conn, CheckinEvent.model_validate_json(body))
            except ValueError:  # pydantic's ValidationError is one
                continue
            if row is not None:
                conn.execute(_INSERT_USAGE, row)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- whitelist ---------------------------------------------------------------------------

    def _load_meta(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        self.group_id = int(meta["group_id"]) if "group_id" in meta else None
        self.whitelist_seq = int(meta.get("seq", -1))
        self.rules = None
        if "rules" in meta:
            try:
                self.rules = GroupRules.from_wire(json.loads(meta["rules"]))
            except (ProtocolError, ValueError) as exc:  # a newer release's rules (a rollback): not installed,
                log.error("stored check-in rules unreadable by this release (%s): asking the hub for a snapshot",
                          str(exc)[:120])  # so the link asks for a snapshot instead of the gate not starting

    @property
    def installed(self) -> bool:
        return self.rules is not None

    @staticmethod
    def _set_meta(db: sqlite3.Connection, group_id: int, seq: int, rules: GroupRules) -> None:
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       [("group_id", str(group_id)), ("seq", str(seq)),
                        ("rules", json.dumps(rules.to_wire(), separators=(",", ":")))])

    def install_snapshot(self, group_id: int, seq: int, rules: GroupRules,
                         entries: Iterable[WhitelistEntry], cards: Iterable[CardEntry] = ()) -> int:
        """Replace the whole whitelist atomically. Call only with a verified snapshot."""
        with self._transaction() as db:
            db.execute("DELETE FROM entries")
            db.executemany(_INSERT_ENTRY, (_entry_row(e) for e in entries))
            db.execute("DELETE FROM cards")
            db.executemany(_INSERT_CARD, (_card_row(c) for c in cards))
            self._set_meta(db, group_id, seq, rules)
            self._prune(db, seq)
            count = int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        self.group_id, self.whitelist_seq, self.rules = group_id, seq, rules
        return count

    def apply_delta(self, delta: Delta) -> None:
        """Apply one verified delta (``seq == whitelist_seq + 1``) and advance the seq, atomically."""
        if self.rules is None or delta.seq != self.whitelist_seq + 1:
            raise ValueError(f"delta {delta.seq} does not follow {self.whitelist_seq}")
        rules = delta.rules if delta.rules is not None else self.rules
        with self._transaction() as db:
            if delta.entry is not None:
                db.execute(_INSERT_ENTRY, _entry_row(delta.entry))
            if delta.card is not None:
                db.execute(_INSERT_CARD, _card_row(delta.card))
            if (used := delta.card_used) is not None:  # the hub's count over every gate at this seq
                db.execute("INSERT OR REPLACE INTO card_usage VALUES (?, ?, ?)", (used.card_id, used.day, used.entries))
            self._set_meta(db, delta.group_id, delta.seq, rules)
            self._prune(db, delta.seq)
        self.group_id, self.whitelist_seq, self.rules = delta.group_id, delta.seq, rules

    def entry(self, ticket_id: int) -> WhitelistEntry | None:
        row = self._db.execute("SELECT * FROM entries WHERE ticket_id = ?", (ticket_id,)).fetchone()
        if row is None:
            return None
        usage = Usage(row[5], *json.loads(row[6])) if row[6] else None
        return WhitelistEntry(row[0], row[1], row[2], row[3], bool(row[4]), row[5], usage)

    def newest_ticket_id(self) -> int | None:
        """The highest ticket id in the whitelist (0 when it is empty; None before any snapshot): a validly
        signed ticket above it was sold after our last sync."""
        if not self.installed:
            return None
        row = self._db.execute("SELECT MAX(ticket_id) FROM entries").fetchone()
        return int(row[0]) if row[0] is not None else 0

    def entry_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def card(self, key: str) -> CardEntry | None:
        """The card whose UID hashes to ``key`` (:func:`protocol.cards.card_key`), if the hub sent it."""
        row = self._db.execute("SELECT wire FROM cards WHERE key = ?", (key,)).fetchone()
        return CardEntry.from_wire(json.loads(row[0])) if row else None

    def card_entries(self, card_id: int, now: float, tz: str = "UTC") -> int:
        """The card's admissions on the venue day of ``now`` (zone ``tz``): the hub's count for that day
        (``card_used`` deltas, over every gate) plus this gate's own the hub has not yet echoed."""
        return self.card_usage(card_id, now, tz)[0]

    def card_usage(self, card_id: int, now: float, tz: str = "UTC") -> tuple[int, float]:
        """(admissions on the venue day of ``now``, newest admission made here or 0.0) of one card."""
        day = local_day(now, tz)
        row = self._db.execute("SELECT entries FROM card_usage WHERE card_id = ? AND day = ?",
                               (card_id, day)).fetchone()
        hub = int(row[0]) if row else 0
        rows = self._db.execute(f"SELECT event_id, kind, at, annuls, {_UNECHOED} FROM usage_events "
                                "WHERE card_id = ?", (self.whitelist_seq, card_id)).fetchall()
        annulled = {r[3] for r in rows if r[1] == "annul"}
        own = sum((1 if kind == "entry" else -1 if kind == "annul" else 0)
                  for _, kind, at, _, unechoed in rows if unechoed and local_day(at, tz) == day)
        last = max((float(at) for event_id, kind, at, _, _ in rows if kind == "entry" and event_id not in annulled),
                   default=0.0)
        return max(0, hub + own), last

    # ---- other state (provisioning: birth counter, hub config, commands seen) -----------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, **values: str) -> None:
        """Store ``key=value`` pairs in ``meta`` in one committed transaction."""
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # ---- emergency ---------------------------------------------------------------------------

    def emergency(self) -> dict[str, Any] | None:
        """The latched emergency state (:class:`gate_agent.emergency.Latched` as a dict), if any."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'emergency'").fetchone()
        return json.loads(row[0]) if row else None

    def save_emergency(self, state: dict[str, Any]) -> None:
        """Latch the emergency state durably (committed, ``synchronous=FULL``) before the gate acts on it."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('emergency', ?)",
                       (json.dumps(state, separators=(",", ":")),))

    # ---- scans: this gate's own usage, counted until the hub echoes it --------------------------

    def history(self, ticket_id: int) -> UsageHistory:
        """This gate's entries, exits and annulments of the ticket that the hub has not yet echoed."""
        rows = self._db.execute(
            f"SELECT kind, at, persons, of_persons, credit FROM usage_events WHERE ticket_id = ? AND {_UNECHOED} "
            "ORDER BY at", (ticket_id, self.whitelist_seq)).fetchall()
        return UsageHistory(events=tuple(UsageEvent(k, float(at), int(p), int(of), bool(c))
                                         for k, at, p, of, c in rows))

    def usage(self, ticket_id: int) -> UsageHistory:
        """Older name of :meth:`history`."""
        return self.history(ticket_id)

    def next_seq(self) -> int:
        return self._next_seq

    def record(self, event: CheckinEvent) -> None:
        """Journal ``event``, queue it for the hub and add its usage event: one transaction."""
        if event.seq != self._next_seq:
            raise ValueError(f"event seq {event.seq} is not the next journal seq {self._next_seq}")
        body = event.model_dump_json(exclude_none=True)
        with self._transaction() as db:
            db.execute("INSERT INTO journal VALUES (?, ?, ?)", (event.seq, event.event_id, body))
            db.execute("INSERT INTO outbox VALUES (?, ?, ?)", (event.seq, event.event_id, body))
            row = self._usage_row(db, event)
            if row is not None:
                db.execute(_INSERT_USAGE, row)
        self._next_seq += 1

    @staticmethod
    def _usage_row(db: sqlite3.Connection, e: CheckinEvent) -> tuple[Any, ...] | None:
        """(event_id, ticket, card, kind, at, persons, of_persons, credit, annuls) of what ``e`` does to a
        ticket's or card's usage, or None (a refusal, garbage, an exit without ticket)."""
        if e.admitted and (e.ticket_id is not None or e.card_id is not None):
            return (e.event_id, e.ticket_id, e.card_id if e.ticket_id is None else None, "entry", e.scanned_at,
                    e.persons, e.persons, int(e.credit), None)
        if e.reason is Reason.EXIT and e.ticket_id is not None:
            return e.event_id, e.ticket_id, None, "exit", e.scanned_at, e.persons, e.persons, 0, None
        if e.reason is Reason.ANNULLED and e.annuls is not None and e.persons > 0:
            found = db.execute("SELECT event FROM journal WHERE event_id = ?", (e.annuls,)).fetchone()
            admission = CheckinEvent.model_validate_json(found[0]) if found else None
            if admission is None or not admission.admitted:
                return None
            if admission.ticket_id is None and admission.card_id is None:
                return None
            return (e.event_id, admission.ticket_id, admission.card_id if admission.ticket_id is None else None,
                    "annul", e.scanned_at, min(e.persons, admission.persons), max(1, admission.persons),
                    int(admission.credit), admission.event_id)
        return None

    def _prune(self, db: sqlite3.Connection, seq: int) -> None:
        """Forget usage events the hub's numbers at ``seq`` include (a card's last two days stay: cool-downs)."""
        db.execute("DELETE FROM usage_events WHERE echo_seq IS NOT NULL AND echo_seq <= ? "
                   "AND (card_id IS NULL OR at < ?)", (seq, time.time() - CARD_EVENTS_KEPT_S))

    # ---- outbox ------------------------------------------------------------------------------

    def pending(self, limit: int, device_id: str | None = None) -> list[CheckinEvent]:
        """Up to ``limit`` events waiting for the hub, in seq order; never raises on a row.

        A row this code cannot read, or queued under another device id than ``device_id`` (the running
        one), is moved to ``set_aside`` (logged once at ERROR, counted in :meth:`set_aside_count`) and the
        rows behind it are returned in its place. The first call with a ``device_id`` first puts back the
        set-aside rows that are readable now (an upgrade to the release that wrote them)."""
        if device_id is not None and not self._restored:
            self._restored = True
            self._restore_set_aside(device_id)
        events: list[CheckinEvent] = []
        after = -(2**63)
        while len(events) < limit:
            rows = self._db.execute("SELECT seq, event_id, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit - len(events))).fetchall()
            if not rows:
                break
            for seq, event_id, body in rows:
                event, why = _readable(body, device_id)
                if event is None:
                    self._set_aside(seq, event_id, body, why)
                else:
                    events.append(event)
            after = rows[-1][0]
        return events

    def _set_aside(self, seq: int, event_id: object, body: object, reason: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO set_aside VALUES (?, ?, ?, ?, ?)",
                       (event_id, seq, body, reason, time.time()))
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        log.error("outbox event %s (seq %s) set aside, not sent to the hub: %s; the events behind it are sent",
                  str(event_id)[:64], seq, reason)

    def _restore_set_aside(self, device_id: str) -> None:
        rows = self._db.execute("SELECT event_id, seq, event FROM set_aside ORDER BY seq").fetchall()
        for event_id, seq, body in rows:
            if _readable(body, device_id)[0] is None:
                continue
            with self._transaction() as db:
                if db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?)", (seq, event_id, body)).rowcount == 1:
                    db.execute("DELETE FROM set_aside WHERE event_id = ?", (event_id,))
                    log.warning("set-aside outbox event %s (seq %s) is readable now: queued for the hub again",
                                str(event_id)[:64], seq)

    def set_aside_count(self) -> int:
        """Outbox rows set aside (never sent): reported in every heartbeat, health ``outbox: error``."""
        return int(self._db.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0])

    def set_aside_rows(self) -> list[dict[str, Any]]:
        """``event_id``, ``seq``, ``reason``, ``at`` of every set-aside row, by seq (not the event itself)."""
        cur = self._db.execute("SELECT event_id, seq, reason, at FROM set_aside ORDER BY seq")
        return [dict(zip(("event_id", "seq", "reason", "at"), row, strict=True)) for row in cur.fetchall()]

    def outbox_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def acknowledge(self, event_ids: Iterable[str], echo_seq: int | None = None) -> int:
        """The hub committed these events: delete them from the outbox; return how many were there.

        ``echo_seq``: the whitelist seq from which the hub's counts include them (None: they already do).
        Their usage events count here until our whitelist reaches that seq.
        """
        ids = [(i,) for i in event_ids]
        with self._transaction() as db:
            cur = db.executemany("DELETE FROM outbox WHERE event_id = ?", ids)
            deleted = int(cur.rowcount)
            echo = self.whitelist_seq if echo_seq is None else echo_seq
            db.executemany("UPDATE usage_events SET echo_seq = ? WHERE event_id = ? AND echo_seq IS NULL",
                           [(echo, i) for (i,) in ids])
            self._prune(db, self.whitelist_seq)
            return deleted

    def usage_events(self) -> list[dict[str, Any]]:
        """Every usage event kept here (for tests and diagnostics)."""
        cur = self._db.execute("SELECT * FROM usage_events ORDER BY at")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def journal(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT event FROM journal ORDER BY seq")]
