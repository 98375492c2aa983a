"""staff console (issue 12): disabled users, and since when a device is online or offline

Revision ID: 0011
Revises: 0010
Create Date: 2027-02-01 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", sa.Float(), nullable=True))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("state_since", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("state_since")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_at")
