"""trust model (issue 10): login throttling and sessions; contested enrolments

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-06 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _upgrade_logins()
    _upgrade_enrolment()


def downgrade() -> None:
    _downgrade_enrolment()
    _downgrade_logins()


# ---- logins (login throttling, lock-out, sessions) ---------------------------------------------

def _upgrade_logins() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("device_id", sa.String(64), nullable=True))
        batch.create_index("ix_users_device_id", ["device_id"], unique=True)
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )


def _downgrade_logins() -> None:
    op.drop_table("login_throttle")
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_device_id")
        batch.drop_column("device_id")


# ---- enrolment (contested serials, fingerprints) -----------------------------------------------

_REQUEST_COLUMNS = ("serial", "kind", "hardware_model", "software_version", "public_key", "reply_to", "nonce",
                    "at", "received_at", "status", "decided_by", "reason")


def _requests_table(name: str, primary_key: tuple[str, ...]) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("hardware_model", sa.String(100), nullable=False),
        sa.Column("software_version", sa.String(40), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("reply_to", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint(*primary_key),
    )


def _swap_requests(primary_key: tuple[str, ...]) -> None:
    """Rebuild enrollment_requests with another primary key, keeping its rows (the newest per key).

    A new table, copy, drop, rename: the same on SQLite and PostgreSQL (the new table's primary key
    gets its own constraint name, so the old one's never clashes)."""
    conn = op.get_bind()
    old = sa.table("enrollment_requests", *(sa.column(c) for c in _REQUEST_COLUMNS))
    rows = [dict(r._mapping) for r in conn.execute(sa.select(old).order_by(old.c.received_at))]
    newest = {tuple(r[c] for c in primary_key): r for r in rows}  # ordered by time: the last one wins
    temp = f"enrollment_requests_{'_'.join(primary_key)}"
    new = _requests_table(temp, primary_key)
    if newest:
        op.bulk_insert(new, list(newest.values()))
    op.drop_table("enrollment_requests")
    op.rename_table(temp, "enrollment_requests")


def _upgrade_enrolment() -> None:
    # several requests per serial, one per device key: a second key for a serial no longer replaces
    # the pending one but contests the serial (hub/services/enrollment.py)
    _swap_requests(("serial", "public_key"))


def _downgrade_enrolment() -> None:
    _swap_requests(("serial",))  # back to one row per serial: the newest request of each serial stays
