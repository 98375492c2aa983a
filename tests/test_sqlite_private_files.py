"""Stores are made 0600 without dropping SQLite's locks (confkit.storeschema.private_sqlite).

Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included. When the hub
opened and closed its database file on each new connection, another process's connection closing next thought
itself the last one and deleted the -wal and -shm files under the running hub ("disk I/O error").
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from confkit.storeschema import private_sqlite

OTHER_PROCESS = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                 "c.execute('SELECT count(*) FROM t').fetchall(); c.close()")


def test_making_a_store_private_keeps_the_open_connections_locks(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    private_sqlite(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    private_sqlite(db)  # what the hub does on each new connection: the -wal/-shm files now exist
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")))

    # another process (an export worker, a backup, sqlite3 on the command line) opens and closes the file
    subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(db)], check=True, timeout=30)

    assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()  # not deleted under this connection
    conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    conn.close()
