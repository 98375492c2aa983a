"""The kiosk's small on-device store: ``kiosk.db`` in ``data_dir`` (SQLite, WAL, 0600).

A kiosk keeps no tickets or personal data: the hub answers every lookup. What it keeps is the state of an
enrolled kiosk's provisioning agent (:mod:`kiosk_agent.enrolled`): its birth counter, the hub config last
applied, the command ids already run, in a ``meta`` key/value table.

Schema versions (``PRAGMA user_version``, :mod:`confkit.storeschema`): 1 the ``meta`` table (the first
release with a store). A store from a newer release is refused (:class:`~confkit.storeschema.StoreTooNew`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from confkit.storeschema import META_TABLE, StoreSchema, UnknownStoreLayout, get_meta, open_store, set_meta, tables

_V1 = (META_TABLE,)


def _detect(conn: sqlite3.Connection) -> int:
    raise UnknownStoreLayout(f"kiosk.db with tables {sorted(tables(conn))[:20]} but no schema version: no "
                             f"release of the kiosk made it")


SCHEMA = StoreSchema("kiosk.db", (_V1,), _detect)


class KioskStore:
    """``meta`` values, each write one committed transaction. Use as a context manager, or :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = conn

    @classmethod
    def open(cls, data_dir: Path) -> KioskStore:
        return cls(open_store(data_dir / "kiosk.db", SCHEMA))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> KioskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_meta(self, key: str) -> str | None:
        return get_meta(self._db, key)

    def set_meta(self, **values: str) -> None:
        """Store ``key=value`` pairs in ``meta`` in one committed transaction."""
        set_meta(self._db, values)
