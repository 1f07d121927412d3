"""Seen deliveries: event ids and trigger ids already handled, for deduplicating retries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_deliveries",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_seen_deliveries")),
    )
    op.create_index(op.f("ix_seen_deliveries_seen_at"), "seen_deliveries", ["seen_at"])


def downgrade() -> None:
    op.drop_table("seen_deliveries")
