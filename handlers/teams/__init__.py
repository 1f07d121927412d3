"""The Slack side of team support beyond the request itself: the group conversation and the
private outreach to each member. `register(app)` and `register_jobs` add both."""

from __future__ import annotations

from slack_bolt import App

from bot.infra.duework import JobRegistry
from handlers.common.services import Services
from handlers.teams import outreach, sessions


def register(app: App) -> None:
    """Listen for the group conversation's and the outreach's buttons and modals."""
    sessions.register(app)
    outreach.register(app)


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register how team messages are delivered, and the group conversation's reminder."""
    sessions.register_jobs(jobs, services)
    outreach.register_jobs(jobs, services)
