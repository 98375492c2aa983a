"""Issue 11 item 7: the Alembic head is ``hub/tables.py``, no drift.

An empty database upgraded to head by the migrations (as the hub does on start, :func:`hub.db.migrate`)
and the tables the code queries (``hub.tables.metadata``) must compare equal under Alembic's
autogenerate: every table, column, type, nullability, index, unique and foreign key. On SQLite, and on
a PostgreSQL server the test starts itself (skipped only without the server binaries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from hub.db import MIGRATIONS, make_engine, migrate
from hub.tables import metadata
from tests.support.postgres import PostgresServer, postgres  # noqa: F401  (fixture)
from tests.test_hub_postgres import _alembic


def drift(engine: Engine) -> list[Any]:
    """What autogenerate would put in a new migration after ``alembic upgrade head`` on ``engine``."""
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == \
            ScriptDirectory.from_config(_alembic(None)).get_current_head()
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return list(compare_metadata(context, metadata))


def test_the_alembic_head_is_hub_tables_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/hub.db")
    try:
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_the_alembic_head_is_hub_tables_on_postgres(postgres: PostgresServer) -> None:  # noqa: F811
    engine = make_engine(postgres.create_database("drift"))
    try:
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_one_head_and_a_linear_history() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    assert len(scripts.get_heads()) == 1
    revisions = list(scripts.walk_revisions())
    assert all(not isinstance(r.down_revision, tuple) for r in revisions)  # no merges: one line of releases
