"""The gate's durable local state in one SQLite file (WAL, ``synchronous=FULL``).

Tables: ``meta`` (group, whitelist seq, rules, the latched emergency state), ``entries`` (the
whitelist, looked up by primary key per scan so 100,000 tickets stay on disk), ``usage`` (admissions
made here), ``journal``
(every decision, forever) and ``outbox`` (events not yet acknowledged by the hub); ``cards`` (member
cards / annual passes by UID hash) and ``card_usage`` (admissions per card per local day).

Recording a scan is one transaction (journal + outbox + usage), so after a crash or power loss a
decision is either fully recorded or was never shown to the patron.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protocol.cards import CardEntry
from protocol.decision import UsageHistory
from protocol.messages import CheckinEvent
from protocol.reasons import Reason
from protocol.whitelist import Delta, GroupRules, WhitelistEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    ticket_id INTEGER PRIMARY KEY, performance_id INTEGER NOT NULL, ticket_type_id INTEGER NOT NULL,
    persons INTEGER NOT NULL, revoked INTEGER NOT NULL, used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS usage (ticket_id INTEGER PRIMARY KEY, entries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (key TEXT PRIMARY KEY, card_id INTEGER NOT NULL, wire TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS card_usage (
    card_id INTEGER NOT NULL, day TEXT NOT NULL, entries INTEGER NOT NULL, PRIMARY KEY (card_id, day));
"""
_INSERT_ENTRY = "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_CARD = "INSERT OR REPLACE INTO cards VALUES (?, ?, ?)"


def local_day(ts: float) -> str:
    """The gate's local calendar day of ``ts``: the unit of a card's entries per day."""
    return time.strftime("%Y-%m-%d", time.localtime(ts))


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

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(data_dir / "gate.db", isolation_level=None)  # explicit transactions
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        return cls(conn)

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
        self.rules = GroupRules.from_wire(json.loads(meta["rules"])) if "rules" in meta else None

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
        rows = ((e.ticket_id, e.performance_id, e.ticket_type_id, e.persons, int(e.revoked), e.used)
                for e in entries)
        with self._transaction() as db:
            db.execute("DELETE FROM entries")
            db.executemany(_INSERT_ENTRY, rows)
            db.execute("DELETE FROM cards")
            db.executemany(_INSERT_CARD, (_card_row(c) for c in cards))
            self._set_meta(db, group_id, seq, rules)
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
                e = delta.entry
                db.execute(_INSERT_ENTRY, (e.ticket_id, e.performance_id, e.ticket_type_id, e.persons,
                                           int(e.revoked), e.used))
            if delta.card is not None:
                db.execute(_INSERT_CARD, _card_row(delta.card))
            if (used := delta.card_used) is not None:  # the hub's count over every gate; ours is part of it
                db.execute("INSERT INTO card_usage VALUES (?, ?, ?) ON CONFLICT(card_id, day) "
                           "DO UPDATE SET entries = MAX(entries, excluded.entries)",
                           (used.card_id, used.day, used.entries))
            self._set_meta(db, delta.group_id, delta.seq, rules)
        self.group_id, self.whitelist_seq, self.rules = delta.group_id, delta.seq, rules

    def entry(self, ticket_id: int) -> WhitelistEntry | None:
        row = self._db.execute("SELECT * FROM entries WHERE ticket_id = ?", (ticket_id,)).fetchone()
        if row is None:
            return None
        return WhitelistEntry(row[0], row[1], row[2], row[3], bool(row[4]), row[5])

    def entry_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def card(self, key: str) -> CardEntry | None:
        """The card whose UID hashes to ``key`` (:func:`protocol.cards.card_key`), if the hub sent it."""
        row = self._db.execute("SELECT wire FROM cards WHERE key = ?", (key,)).fetchone()
        return CardEntry.from_wire(json.loads(row[0])) if row else None

    def card_entries(self, card_id: int, now: float) -> int:
        """Admissions of the card recorded here on the local day of ``now``."""
        row = self._db.execute("SELECT entries FROM card_usage WHERE card_id = ? AND day = ?",
                               (card_id, local_day(now))).fetchone()
        return int(row[0]) if row else 0

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

    # ---- scans -------------------------------------------------------------------------------

    def usage(self, ticket_id: int) -> UsageHistory:
        row = self._db.execute("SELECT entries FROM usage WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return UsageHistory(int(row[0])) if row else UsageHistory()

    def next_seq(self) -> int:
        return self._next_seq

    def record(self, event: CheckinEvent) -> None:
        """Journal ``event``, queue it for the hub and count an admission: one transaction."""
        if event.seq != self._next_seq:
            raise ValueError(f"event seq {event.seq} is not the next journal seq {self._next_seq}")
        body = event.model_dump_json(exclude_none=True)
        with self._transaction() as db:
            db.execute("INSERT INTO journal VALUES (?, ?, ?)", (event.seq, event.event_id, body))
            db.execute("INSERT INTO outbox VALUES (?, ?, ?)", (event.seq, event.event_id, body))
            if event.admitted and event.ticket_id is not None:
                db.execute("INSERT INTO usage VALUES (?, 1) ON CONFLICT(ticket_id) "
                           "DO UPDATE SET entries = entries + 1", (event.ticket_id,))
            if event.admitted and event.card_id is not None and event.direction == "entry":
                db.execute("INSERT INTO card_usage VALUES (?, ?, 1) ON CONFLICT(card_id, day) "
                           "DO UPDATE SET entries = entries + 1", (event.card_id, local_day(event.scanned_at)))
            if event.reason is Reason.ANNULLED and event.annuls is not None:
                self._give_back(db, event)
        self._next_seq += 1

    @staticmethod
    def _give_back(db: sqlite3.Connection, annulment: CheckinEvent) -> None:
        """A full annulment (nobody of the admission passed) takes the ticket's admission back here."""
        row = db.execute("SELECT event FROM journal WHERE event_id = ?", (annulment.annuls,)).fetchone()
        admission = CheckinEvent.model_validate_json(row[0]) if row else None
        if (admission is not None and admission.admitted and admission.ticket_id is not None
                and admission.persons == annulment.persons):
            db.execute("UPDATE usage SET entries = MAX(entries - 1, 0) WHERE ticket_id = ?", (admission.ticket_id,))

    # ---- outbox ------------------------------------------------------------------------------

    def pending(self, limit: int) -> list[CheckinEvent]:
        rows = self._db.execute("SELECT event FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [CheckinEvent.model_validate_json(r[0]) for r in rows]

    def outbox_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def acknowledge(self, event_ids: Iterable[str]) -> int:
        """Delete acknowledged events from the outbox; return how many were there."""
        with self._transaction() as db:
            cur = db.executemany("DELETE FROM outbox WHERE event_id = ?", [(i,) for i in event_ids])
            return int(cur.rowcount)

    def journal(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT event FROM journal ORDER BY seq")]
