"""provisioning: enrollment requests, provisioned devices with their assigned config, remote commands,
the published hub key lists; liveness columns on devices

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrollment_requests",
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
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_table(
        "enrollment_nonces",
        sa.Column("nonce", sa.String(32), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_table(
        "provisioned_devices",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("config_envelope", sa.LargeBinary(), nullable=False),
        sa.Column("acked_version", sa.Integer(), nullable=True),
        sa.Column("ack_error", sa.String(500), nullable=True),
        sa.Column("acked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_index("ix_provisioned_devices_serial", "provisioned_devices", ["serial"])
    op.create_table(
        "device_commands",
        sa.Column("command_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("issued_by", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("command_id"),
    )
    op.create_index("ix_device_commands_device_id", "device_commands", ["device_id"])
    op.create_table(
        "hub_key_lists",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("active_kid", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("birth", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reboots", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("interval", sa.Float(), nullable=True))
        batch.add_column(sa.Column("heard_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("config_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        for name in ("config_version", "heard_at", "interval", "reboots", "birth"):
            batch.drop_column(name)
    op.drop_table("hub_key_lists")
    op.drop_index("ix_device_commands_device_id", "device_commands")
    op.drop_table("device_commands")
    op.drop_index("ix_provisioned_devices_serial", "provisioned_devices")
    op.drop_table("provisioned_devices")
    op.drop_table("enrollment_nonces")
    op.drop_table("enrollment_requests")
