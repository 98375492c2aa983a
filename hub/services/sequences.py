"""Numbers several hub processes hand out on one database without colliding (emergency command seq, key list
version): one row per name in ``hub_sequences``, bumped by one ``UPDATE ... RETURNING``.

The UPDATE locks the row until the transaction ends, so a second hub's transaction asking for the same name waits
for the first to commit, then gets the next number and (PostgreSQL READ COMMITTED: each statement sees what is
committed when it starts) reads the state the first one left. Whitelist seqs per check-in group work the same way on
``checkin_groups.seq`` (:mod:`hub.services.whitelist`); config versions on ``provisioned_devices.config_version``.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.tables import hub_sequences

NAMES = frozenset({"emergency", "key_list", "emergency_reports"})  # the last: a lock only, never bumped


def _check(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown sequence {name!r}; one of {sorted(NAMES)}")


def lock(conn: Connection, name: str) -> int:
    """Hold ``name`` for this transaction (other hubs' ``lock``/``next_value`` wait) and return its last value."""
    _check(name)
    s = hub_sequences
    value = conn.execute(select(s.c.value).where(s.c.name == name).with_for_update()).scalar()
    if value is None:
        _create(conn, name)
        value = conn.execute(select(s.c.value).where(s.c.name == name).with_for_update()).scalar_one()
    return int(value)


def next_value(conn: Connection, name: str) -> int:
    """The next number of ``name`` (1, 2, ...), taken in this transaction: a rollback gives it back."""
    _check(name)
    s = hub_sequences
    bump = update(s).where(s.c.name == name).values(value=s.c.value + 1).returning(s.c.value)
    value = conn.execute(bump).scalar()
    if value is None:
        _create(conn, name)
        value = conn.execute(bump).scalar_one()
    return int(value)


def _create(conn: Connection, name: str) -> None:
    try:
        with conn.begin_nested():
            conn.execute(insert(hub_sequences).values(name=name, value=0))
    except IntegrityError:  # another hub created it just now
        pass
