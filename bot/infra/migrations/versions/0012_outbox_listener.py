"""When a clock last said it listens for messages to send, so web processes hand them over only
while one does.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clock_heartbeat") as batch:
        batch.add_column(sa.Column("listener_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clock_heartbeat") as batch:
        batch.drop_column("listener_at")
