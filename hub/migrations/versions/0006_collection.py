"""self-service collection: collection codes, collected marks, replace policy, print jobs, kiosk OTPs and
lookup tokens; the printer condition on devices

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TICKET_COLUMNS = ("replaces", "replaced_by", "collected_printer", "collected_by", "collected_at", "collection_code")


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("collection_code", sa.String(16), nullable=True))
        batch.add_column(sa.Column("collected_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("collected_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("collected_printer", sa.String(64), nullable=True))
        batch.add_column(sa.Column("replaced_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("replaces", sa.Integer(), nullable=True))
        batch.create_index("ix_tickets_collection_code", ["collection_code"])
        batch.create_index("ix_tickets_holder_phone", ["holder_phone"])
        batch.create_index("ix_tickets_holder_id_number", ["holder_id_number"])
    with op.batch_alter_table("performances") as batch:
        batch.add_column(sa.Column("print_replaces_eticket", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("printer", sa.JSON(), nullable=True))
    op.create_table(
        "print_jobs",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("printer_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_print_jobs_ticket_id", "print_jobs", ["ticket_id"])
    op.create_table(
        "kiosk_otps",
        sa.Column("phone", sa.String(40), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("phone"),
    )
    op.create_table(
        "kiosk_lookups",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("ticket_ids", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )


def downgrade() -> None:
    op.drop_table("kiosk_lookups")
    op.drop_table("kiosk_otps")
    op.drop_index("ix_print_jobs_ticket_id", "print_jobs")
    op.drop_table("print_jobs")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("printer")
    with op.batch_alter_table("performances") as batch:
        batch.drop_column("print_replaces_eticket")
    with op.batch_alter_table("tickets") as batch:
        for name in ("ix_tickets_holder_id_number", "ix_tickets_holder_phone", "ix_tickets_collection_code"):
            batch.drop_index(name)
        for name in _TICKET_COLUMNS:
            batch.drop_column(name)
