"""Roster: supporters, their availability and their on-duty hours.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "supporters",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("department", sa.String(80), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("away_until", sa.DateTime(), nullable=True),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("case_cap", sa.Integer(), nullable=False),
        sa.Column("cooldown_hours", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_supporters")),
    )
    op.create_table(
        "duty_hours",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["supporters.user_id"], ondelete="CASCADE",
                                name=op.f("fk_duty_hours_user_id_supporters")),
        sa.PrimaryKeyConstraint("user_id", "weekday", name=op.f("pk_duty_hours")),
    )


def downgrade() -> None:
    op.drop_table("duty_hours")
    op.drop_table("supporters")
