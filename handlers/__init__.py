"""Slack listeners, one module per surface; each module has `register(app)`."""

from slack_bolt import App

from handlers import (
    checkins,
    commands,
    fallback,
    home,
    library,
    messages,
    pulses,
    requests,
)


def register(app: App) -> None:
    """Register every listener; the catch-all fallbacks go last so they only see the unmatched."""
    commands.register(app)
    library.register(app)
    home.register(app)
    requests.register(app)
    checkins.register(app)
    pulses.register(app)
    messages.register(app)
    fallback.register(app)
