"""staff console reports (issue 12): indexes for the check-in summary and the detail's keyset paging

The detail pages in (scanned_at, event_id) order, with or without a performance or channel filter; the
summary for one performance reads that performance's events. (scanned_at, event_id) replaces the
index on scanned_at alone (same prefix: the evacuation count and the journal still use it).

Revision ID: 0012
Revises: 0011
Create Date: 2027-02-01 11:00:00

"""
from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_checkin_events_scanned_event": ["scanned_at", "event_id"],
    "ix_checkin_events_performance_scanned": ["performance_id", "scanned_at", "event_id"],
    "ix_checkin_events_channel_scanned": ["channel_id", "scanned_at", "event_id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "checkin_events", columns)
    op.drop_index("ix_checkin_events_scanned_at", table_name="checkin_events")


def downgrade() -> None:
    op.create_index("ix_checkin_events_scanned_at", "checkin_events", ["scanned_at"])
    for name in INDEXES:
        op.drop_index(name, table_name="checkin_events")
