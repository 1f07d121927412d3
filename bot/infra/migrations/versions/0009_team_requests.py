"""Team requests: a kind and a number of seats per request, the seats supporters hold, and what a
team asked for. The one-active-request-per-person rule now covers personal requests only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ACTIVE_BEFORE = "state IN ('open', 'escalated', 'assigned') AND requester_id IS NOT NULL"
ACTIVE = ACTIVE_BEFORE + " AND kind = 'personal'"


def upgrade() -> None:
    with op.batch_alter_table("support_requests") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False,
                                   server_default="personal"))
        batch.add_column(sa.Column("seats", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("filled", sa.Integer(), nullable=False, server_default="0"))
    op.drop_index("uq_support_requests_one_active", table_name="support_requests")
    op.create_index("uq_support_requests_one_active", "support_requests", ["requester_id"],
                    unique=True, sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))
    op.create_table(
        "request_seats",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(),
                  sa.ForeignKey("support_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("supporter_id", sa.String(32)),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=False),
        sa.Column("left_at", sa.DateTime()),
    )
    op.create_index("ix_request_seats_request_id", "request_seats", ["request_id"])
    op.create_index("ix_request_seats_supporter_id", "request_seats", ["supporter_id"])
    op.create_table(
        "team_requests",
        sa.Column("request_id", sa.Integer(),
                  sa.ForeignKey("support_requests.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("unit", sa.String(80), nullable=False),
        sa.Column("size", sa.String(8), nullable=False),
        sa.Column("visit", sa.Boolean(), nullable=False),
        sa.Column("group", sa.Boolean(), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("team_requests")
    op.drop_index("ix_request_seats_supporter_id", table_name="request_seats")
    op.drop_index("ix_request_seats_request_id", table_name="request_seats")
    op.drop_table("request_seats")
    op.drop_index("uq_support_requests_one_active", table_name="support_requests")
    op.create_index("uq_support_requests_one_active", "support_requests", ["requester_id"],
                    unique=True, sqlite_where=sa.text(ACTIVE_BEFORE),
                    postgresql_where=sa.text(ACTIVE_BEFORE))
    with op.batch_alter_table("support_requests") as batch:
        batch.drop_column("filled")
        batch.drop_column("seats")
        batch.drop_column("kind")
