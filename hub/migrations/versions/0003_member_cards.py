"""member cards and annual passes (keyed by a hash of the card UID); card check-in events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid_hash", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("holder_name", sa.String(200), nullable=False),
        sa.Column("valid_from", sa.Float(), nullable=False),
        sa.Column("valid_until", sa.Float(), nullable=False),
        sa.Column("channel_ids", sa.JSON(), nullable=False),
        sa.Column("entries_per_day", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("revoked_reason", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid_hash"),
    )
    with op.batch_alter_table("checkin_events") as batch:
        batch.add_column(sa.Column("card_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkin_events") as batch:
        batch.drop_column("card_id")
    op.drop_table("member_cards")
