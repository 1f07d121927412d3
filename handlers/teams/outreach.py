"""Placeholder replaced while this feature is built."""

from __future__ import annotations

from slack_bolt import App

from bot.infra.duework import JobRegistry
from handlers.common.services import Services


def register(app: App) -> None:
    """Nothing yet."""


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Nothing yet."""
