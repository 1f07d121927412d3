"""Slack listeners, one module per surface; each module has `register(app)`."""

from slack_bolt import App

from handlers.checkins import listeners as checkins
from handlers.commands import listeners as commands
from handlers.common import fallback
from handlers.dm import listeners as messages
from handlers.home import listeners as home
from handlers.library import listeners as library
from handlers.pulses import listeners as pulses
from handlers.requests import listeners as requests


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
