"""The clock's heartbeat: when a clock process last ticked, and whether coordinators were told
that it stopped.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clock_heartbeat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticked_at", sa.DateTime(), nullable=True),
        sa.Column("process", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("stop_told_at", sa.DateTime(), nullable=True),
        sa.Column("stops", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clock_heartbeat")),
    )


def downgrade() -> None:
    op.drop_table("clock_heartbeat")
