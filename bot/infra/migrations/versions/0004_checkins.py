"""Follow-up check-ins, the hours people accept them in, and 'talk again' preferences.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("supporters") as batch:
        batch.add_column(sa.Column("checkin_reminders", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
    with op.batch_alter_table("support_requests") as batch:
        batch.add_column(sa.Column("preferred_supporter_id", sa.String(32), nullable=True))
    op.create_table(
        "checkins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("planned_for", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("answer", sa.String(16), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["support_requests.id"], ondelete="CASCADE",
                                name=op.f("fk_checkins_request_id_support_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkins")),
    )
    op.create_index(op.f("ix_checkins_request_id"), "checkins", ["request_id"])
    op.create_index(op.f("ix_checkins_user_id"), "checkins", ["user_id"])
    op.create_table(
        "contact_hours",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_contact_hours")),
    )


def downgrade() -> None:
    op.drop_table("contact_hours")
    op.drop_table("checkins")
    with op.batch_alter_table("support_requests") as batch:
        batch.drop_column("preferred_supporter_id")
    with op.batch_alter_table("supporters") as batch:
        batch.drop_column("checkin_reminders")
