"""Support requests, offers to supporters, escalation alerts; round-robin order on supporters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("supporters") as batch:
        batch.add_column(sa.Column("last_offered_at", sa.DateTime(), nullable=True))
    op.create_table(
        "support_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_key", sa.String(64), nullable=True),
        sa.Column("requester_id", sa.String(32), nullable=True),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("connection", sa.String(16), nullable=False),
        sa.Column("outside_department", sa.Boolean(), nullable=False),
        sa.Column("same_role", sa.Boolean(), nullable=False),
        sa.Column("requester_department", sa.String(80), nullable=True),
        sa.Column("requester_role", sa.String(32), nullable=True),
        sa.Column("followups", sa.Boolean(), nullable=False),
        sa.Column("crisis", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.String(32), nullable=True),
        sa.Column("status_channel", sa.String(32), nullable=True),
        sa.Column("status_ts", sa.String(32), nullable=True),
        sa.Column("intro_channel", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("duration", sa.String(16), nullable=True),
        sa.Column("referred", sa.Boolean(), nullable=True),
        sa.Column("need_met", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_requests")),
        sa.UniqueConstraint("source_key", name=op.f("uq_support_requests_source_key")),
    )
    op.create_index(op.f("ix_support_requests_requester_id"), "support_requests",
                    ["requester_id"])
    op.create_index(op.f("ix_support_requests_state"), "support_requests", ["state"])
    op.create_index(op.f("ix_support_requests_supporter_id"), "support_requests",
                    ["supporter_id"])
    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.String(32), nullable=True),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("direct", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("responded_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["support_requests.id"], ondelete="CASCADE",
                                name=op.f("fk_offers_request_id_support_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
        sa.UniqueConstraint("request_id", "supporter_id",
                            name="uq_offers_request_id_supporter_id"),
    )
    op.create_index(op.f("ix_offers_request_id"), "offers", ["request_id"])
    op.create_table(
        "coordinator_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("coordinator_id", sa.String(32), nullable=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["support_requests.id"], ondelete="CASCADE",
                                name=op.f("fk_coordinator_alerts_request_id_support_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coordinator_alerts")),
    )
    op.create_index(op.f("ix_coordinator_alerts_request_id"), "coordinator_alerts",
                    ["request_id"])


def downgrade() -> None:
    op.drop_table("coordinator_alerts")
    op.drop_table("offers")
    op.drop_table("support_requests")
    with op.batch_alter_table("supporters") as batch:
        batch.drop_column("last_offered_at")
