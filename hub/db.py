"""Engine, SQLite pragmas, programmatic ``alembic upgrade head`` and the write-transaction helper.

Services own transactions through :class:`Database`: ``read()`` for consistent reads and ``write()``
for changes. On SQLite (one writer at a time anyway) writes are serialised in-process, an online check first;
on PostgreSQL they are not: each write transaction has its own pooled connection and the services lock the rows
they change with ``SELECT ... FOR UPDATE``, as they must against the writes of other hub processes (the ingest
child process, hub/ingest_worker.py, and other hubs on the database).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from confkit.storeschema import private_sqlite

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL checkpoints run from a background thread (Database.checkpoint), not inside a request's commit.
    for pragma in ("journal_mode=WAL", "busy_timeout=10000", "foreign_keys=ON", "synchronous=NORMAL",
                   "wal_autocheckpoint=0"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            private_sqlite(Path(parsed.database))
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8,
                               max_overflow=32)
        event.listen(engine, "connect", _sqlite_pragmas)
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            event.listen(engine, "connect", lambda _c, _r: private_sqlite(path))  # its -wal/-shm, once made
        return engine
    # PostgreSQL: no writer lock (Database.write), so as many connections as threads may write at once
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=24)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("database schema is at the newest revision")


class WriterLock:
    """One writer at a time, and an urgent writer (an online check a handheld waits on, with a 500 ms budget)
    goes before every ordinary one waiting (ingest, sales, reports' audit rows): it waits for at most the
    transaction under way, never behind a queue of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._urgent = 0  # urgent writers waiting

    @contextmanager
    def hold(self, urgent: bool = False) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent += 1
            try:
                while self._held or (not urgent and self._urgent):
                    self._cond.wait()
            finally:
                if urgent:
                    self._urgent -= 1
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()


class Database:
    """The engine plus, on SQLite, a process-wide writer lock (SQLite allows one writer at a time anyway)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_lock = WriterLock()
        self._writer: Connection | None = None  # one long-lived connection for writes: no pool checkout
        self.serialised = engine.dialect.name == "sqlite"  # PostgreSQL: row locks, concurrent writers

    @contextmanager
    def write(self, urgent: bool = False) -> Iterator[Connection]:
        """A write transaction; ``urgent``: go before the ordinary writers waiting (online checks only; SQLite)."""
        if not self.serialised:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._write_lock.hold(urgent):
            if self._writer is None or self._writer.invalidated or self._writer.closed:
                self._writer = self.engine.connect()
            with self._writer.begin():
                yield self._writer

    @contextmanager
    def turn(self, urgent: bool = False) -> Iterator[None]:
        """The writer's turn without a connection, for a write transaction another process runs on this one's
        behalf (the ingest child, hub/ingest_worker.py): on SQLite it waits in the writer lock's order (an
        online check goes first) instead of polling SQLite's file lock. Nothing on PostgreSQL."""
        if not self.serialised:
            yield
            return
        with self._write_lock.hold(urgent):
            yield

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def checkpoint(self) -> None:
        """Copy the WAL back into the database file (PASSIVE: never waits for, nor blocks, a writer)."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def dispose(self) -> None:
        with self._write_lock.hold():
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()
