"""trust model (issue 10): devices are what the registry says (fire input), security events

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-07 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("provisioned_devices") as batch:
        batch.add_column(sa.Column("fire_input", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("what", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_security_events_device_id", "security_events", ["device_id"])
    op.create_index("ix_security_events_at", "security_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_security_events_at", "security_events")
    op.drop_index("ix_security_events_device_id", "security_events")
    op.drop_table("security_events")
    with op.batch_alter_table("provisioned_devices") as batch:
        batch.drop_column("fire_input")
