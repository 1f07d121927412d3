"""Anonymous wellbeing prompts: prompts, their runs, and answers without identities.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pulses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("leader_id", sa.String(32), nullable=True),
        sa.Column("question", sa.String(300), nullable=False),
        sa.Column("scale", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("department", sa.String(80), nullable=False),
        sa.Column("recurrence", sa.String(16), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("open_hours", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pulses")),
    )
    op.create_index(op.f("ix_pulses_leader_id"), "pulses", ["leader_id"])
    op.create_table(
        "pulse_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pulse_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closes_at", sa.DateTime(), nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["pulse_id"], ["pulses.id"], ondelete="CASCADE",
                                name=op.f("fk_pulse_runs_pulse_id_pulses")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pulse_runs")),
    )
    op.create_index(op.f("ix_pulse_runs_pulse_id"), "pulse_runs", ["pulse_id"])
    op.create_table(
        "pulse_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("responder", sa.String(64), nullable=False),
        sa.Column("choice", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["pulse_runs.id"], ondelete="CASCADE",
                                name=op.f("fk_pulse_answers_run_id_pulse_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pulse_answers")),
        sa.UniqueConstraint("run_id", "responder", name="uq_pulse_answers_run_id_responder"),
    )
    op.create_index(op.f("ix_pulse_answers_run_id"), "pulse_answers", ["run_id"])


def downgrade() -> None:
    op.drop_table("pulse_answers")
    op.drop_table("pulse_runs")
    op.drop_table("pulses")
