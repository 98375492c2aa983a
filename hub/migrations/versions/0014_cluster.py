"""several hubs on one database (issue 13): sequence numbers and rate limits live in the database

Revision ID: 0014
Revises: 0013
Create Date: 2027-03-01 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hub_sequences",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "rate_hits",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("slot", sa.BigInteger(), primary_key=True),
        sa.Column("hits", sa.Integer(), nullable=False),
    )
    # the sequences start where the tables they number stand
    op.execute("INSERT INTO hub_sequences (name, value) SELECT 'emergency', COALESCE(MAX(seq), 0) "
               "FROM emergency_commands")
    op.execute("INSERT INTO hub_sequences (name, value) SELECT 'key_list', COALESCE(MAX(version), 0) "
               "FROM hub_key_lists")


def downgrade() -> None:
    op.drop_table("rate_hits")
    op.drop_table("hub_sequences")
