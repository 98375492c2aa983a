"""check-in events may annul an admission; devices report per-part health

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:40:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkin_events") as batch:
        batch.add_column(sa.Column("annuls", sa.String(32), nullable=True))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("health", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("health")
    with op.batch_alter_table("checkin_events") as batch:
        batch.drop_column("annuls")
