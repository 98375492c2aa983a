"""check-in rules: venue time zones, retiring, channel rules (per type, for cards), group links and
unlisted admissions, usage per ticket and counting scope, supervisors, richer check-in events

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-05 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENT_COLUMNS = ("denied", "forced_by", "unlisted", "credit")


def upgrade() -> None:
    with op.batch_alter_table("venues") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="Asia/Shanghai"))
    for table in ("performances", "ticket_types"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("retired", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("retired", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("rules", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("type_rules", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("card_rules", sa.JSON(), nullable=True))
    with op.batch_alter_table("checkin_groups") as batch:
        batch.add_column(sa.Column("admit_unlisted", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("counter_group_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("tickets") as batch:  # when it was refunded or voided: offline admissions before are fine
        batch.add_column(sa.Column("status_at", sa.Float(), nullable=True))
    with op.batch_alter_table("checkin_events") as batch:
        batch.add_column(sa.Column("credit", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("unlisted", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("forced_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("denied", sa.String(32), nullable=True))
        batch.create_index("ix_checkin_events_scanned_at", ["scanned_at"])
    op.create_table(
        "ticket_usage",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("scope_id", sa.Integer(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("exits", sa.Integer(), nullable=False),
        sa.Column("credit", sa.Integer(), nullable=False),
        sa.Column("last_entry", sa.BigInteger(), nullable=False),
        sa.Column("last_exit", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("day_entries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", "scope_id"),
    )
    op.create_index("ix_ticket_usage_scope_id", "ticket_usage", ["scope_id"])
    op.create_table(
        "supervisors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("pin_hash", sa.String(200), nullable=False),
        sa.Column("card_key", sa.String(32), nullable=True),
        sa.Column("retired", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("card_key"),
    )


def downgrade() -> None:
    op.drop_table("supervisors")
    op.drop_index("ix_ticket_usage_scope_id", "ticket_usage")
    op.drop_table("ticket_usage")
    with op.batch_alter_table("checkin_events") as batch:
        batch.drop_index("ix_checkin_events_scanned_at")
        for name in _EVENT_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("status_at")
    with op.batch_alter_table("checkin_groups") as batch:
        batch.drop_column("counter_group_id")
        batch.drop_column("admit_unlisted")
    with op.batch_alter_table("channels") as batch:
        for name in ("card_rules", "type_rules", "rules", "retired"):
            batch.drop_column(name)
    for table in ("ticket_types", "performances"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("retired")
    with op.batch_alter_table("venues") as batch:
        batch.drop_column("timezone")
