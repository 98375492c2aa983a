"""live check-in (issue 12): the people a check-in group (zone) holds, shown against inside now

Revision ID: 0013
Revises: 0012
Create Date: 2027-02-01 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkin_groups") as batch:
        batch.add_column(sa.Column("capacity", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkin_groups") as batch:
        batch.drop_column("capacity")
