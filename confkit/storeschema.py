"""Versioned SQLite stores on the devices: ``PRAGMA user_version`` and forward migrations.

Each device store (the gate's ``gate.db``, the printer's ``printer.db``) declares its schema as an ordered
list of steps: ``steps[i]`` takes a file from version ``i`` to ``i + 1`` (version 0: an empty file), so
the code's version is ``len(steps)``. :func:`migrate` runs the missing steps and sets ``user_version``
in one ``BEGIN IMMEDIATE`` transaction: a failure anywhere (a full disk, a power cut, a bug in a step)
leaves the file at its old version, exactly as it was, and the daemon does not start.

Files written before versioning have ``user_version`` 0 and tables: the store's ``detect`` names their
version from the tables and columns they have. A file at a version newer than the code knows was
written by a newer release (the software was rolled back): it is refused with :class:`StoreTooNew`,
unchanged; ops install that release (or a newer one) again. Nothing is ever dropped to make a store fit.

A step is SQL text (one statement) or a function of the connection (a backfill in Python, or
:func:`add_column`); it runs inside the transaction and must not commit.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

Step = str | Callable[[sqlite3.Connection], None]
EXIT_STORE = 4  # daemon exit code: a store this release cannot open (restarting will not help; upgrade)


class StoreSchemaError(RuntimeError):
    """A device store this code cannot open. The file was left as it was."""


class StoreTooNew(StoreSchemaError):
    """The store was written by a newer release than the one running (a rollback): upgrade the software."""

    def __init__(self, path: Path | str, found: int, known: int) -> None:
        super().__init__(f"{path} is at schema version {found}, but this software knows versions up to {known}: it "
                         f"was written by a newer release. Upgrade the software to that release (or a newer "
                         f"one); the store was not changed")
        self.path, self.found, self.known = path, found, known


class UnknownStoreLayout(StoreSchemaError):
    """``user_version`` 0 (from before versioning) but tables no release of this store ever made."""


@dataclass(frozen=True)
class StoreSchema:
    """``steps[i]``: from version ``i`` to ``i + 1``. ``detect``: the version of a file with tables and
    ``user_version`` 0 (a release from before versioning); raise :class:`UnknownStoreLayout` if none."""

    name: str
    steps: Sequence[Sequence[Step]]
    detect: Callable[[sqlite3.Connection], int]

    @property
    def version(self) -> int:
        return len(self.steps)


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def add_column(table: str, column: str, decl: str) -> Callable[[sqlite3.Connection], None]:
    """A step: ``ALTER TABLE table ADD COLUMN column decl`` unless the column is there already (a file
    whose release was interrupted between creating its tables and adding the column)."""

    def step(conn: sqlite3.Connection) -> None:
        if column not in columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    step.__name__ = f"add_column_{table}_{column}"
    return step


def migrate(conn: sqlite3.Connection, schema: StoreSchema, path: Path | str) -> tuple[int, int]:
    """Bring the store on ``conn`` (opened with ``isolation_level=None``) to ``schema.version`` in one
    transaction; return (the version found, the version now). Raises :class:`StoreSchemaError`
    (:class:`StoreTooNew` for a newer store), or whatever a step raised, with the file unchanged."""
    conn.execute("BEGIN IMMEDIATE")  # the write lock first: two processes opening one file migrate once
    try:
        found = user_version(conn)
        if found > schema.version:
            raise StoreTooNew(path, found, schema.version)
        if found == 0:
            found = schema.detect(conn) if tables(conn) else 0
            if not 0 <= found <= schema.version:
                raise UnknownStoreLayout(f"{path}: detected schema version {found} is not one of 0..{schema.version}")
        for version in range(found, schema.version):
            for step in schema.steps[version]:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
        if user_version(conn) != schema.version:
            conn.execute(f"PRAGMA user_version = {int(schema.version)}")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if found != schema.version:
        log.info("%s: schema version %d -> %d%s", path, found, schema.version, " (new store)" if found == 0 else "")
    return found, schema.version


def private_sqlite(path: Path) -> None:
    """Create ``path`` 0600 if missing and make it and its -wal/-shm files 0600 (stores hold personal data).

    An existing file is only chmod-ed, never opened: closing any descriptor of a file drops every POSIX lock
    this process holds on it, SQLite's included, and another process's connection closing next would then
    think it the last one and delete the -wal and -shm files under the open connections here."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            os.chmod(part, 0o600)


def open_store(path: Path, schema: StoreSchema) -> sqlite3.Connection:
    """A device store at ``path`` (0600, WAL, ``synchronous=FULL``, autocommit: ``BEGIN`` explicitly),
    migrated to ``schema.version`` in one transaction; the file is left as it was if that fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private_sqlite(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        private_sqlite(path)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        migrate(conn, schema, path)  # StoreTooNew: a newer release's file
    except BaseException:
        conn.close()
        raise
    return conn


META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"  # a store's key/values


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """A value of the store's ``meta`` table (:data:`META_TABLE`), or None."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def set_meta(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    """Store ``values`` in ``meta`` in one committed transaction (``conn`` in autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
