"""The request state machine: a version per request, one active request per person, one alert
per request per coordinator, and an index for the outbox's look-ups by kind.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ACTIVE = "state IN ('open', 'escalated', 'assigned') AND requester_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("support_requests") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("escalations", sa.Integer(), nullable=False,
                                   server_default="0"))
    # Older data could hold two active requests for one person: keep the newest active.
    op.execute(
        "UPDATE support_requests SET state = 'cancelled' WHERE state IN ('open', 'escalated', "
        "'assigned') AND requester_id IS NOT NULL AND id NOT IN (SELECT MAX(id) FROM "
        "support_requests WHERE state IN ('open', 'escalated', 'assigned') AND requester_id IS "
        "NOT NULL GROUP BY requester_id)")
    op.create_index("uq_support_requests_one_active", "support_requests", ["requester_id"],
                    unique=True, sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))
    op.create_index("ix_due_work_kind_state", "due_work", ["kind", "state"])
    op.execute(
        "DELETE FROM coordinator_alerts WHERE id NOT IN (SELECT MIN(id) FROM coordinator_alerts "
        "GROUP BY request_id, coordinator_id)")
    with op.batch_alter_table("coordinator_alerts") as batch:
        batch.create_unique_constraint("uq_coordinator_alerts_request_coordinator",
                                       ["request_id", "coordinator_id"])


def downgrade() -> None:
    with op.batch_alter_table("coordinator_alerts") as batch:
        batch.drop_constraint("uq_coordinator_alerts_request_coordinator", type_="unique")
    op.drop_index("uq_support_requests_one_active", table_name="support_requests")
    op.drop_index("ix_due_work_kind_state", table_name="due_work")
    with op.batch_alter_table("support_requests") as batch:
        batch.drop_column("escalations")
        batch.drop_column("version")
