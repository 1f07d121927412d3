"""Team support beyond the state machine: who is on the team (people, a user group or a
channel), the group conversation (proposed times, the one picked, where), counts of the private
outreach (never who received or replied), the team's closing answer, the request a follow-up
session continues, and people who opted out of team notes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COUNTS = ("session_version", "reached", "skipped", "asked_personal", "opted_checkins")


def upgrade() -> None:
    with op.batch_alter_table("team_requests") as batch:
        batch.add_column(sa.Column("people", sa.JSON()))
        batch.add_column(sa.Column("usergroup_id", sa.String(32)))
        batch.add_column(sa.Column("channel_id", sa.String(32)))
        batch.add_column(sa.Column("session_state", sa.String(16), nullable=False,
                                   server_default="none"))
        batch.add_column(sa.Column("session_at", sa.DateTime()))
        batch.add_column(sa.Column("session_place", sa.String(200)))
        batch.add_column(sa.Column("invitation_posted", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("outreach_state", sa.String(16), nullable=False,
                                   server_default="none"))
        for name in COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("people_present", sa.String(8)))
        batch.add_column(sa.Column("previous_id", sa.Integer()))
        batch.create_foreign_key("fk_team_requests_previous_id", "support_requests",
                                 ["previous_id"], ["id"], ondelete="SET NULL")
    op.create_table(
        "session_proposals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(),
                  sa.ForeignKey("support_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("proposed_by", sa.String(32)),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_session_proposals_request_id", "session_proposals", ["request_id"])
    op.create_table(
        "outreach_optouts",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outreach_optouts")
    op.drop_index("ix_session_proposals_request_id", table_name="session_proposals")
    op.drop_table("session_proposals")
    with op.batch_alter_table("team_requests") as batch:
        batch.drop_constraint("fk_team_requests_previous_id", type_="foreignkey")
        for name in ("previous_id", "people_present", *reversed(COUNTS), "outreach_state",
                     "invitation_posted", "session_place", "session_at", "session_state",
                     "channel_id", "usergroup_id", "people"):
            batch.drop_column(name)
