"""What listeners and the jobs that talk to Slack use of the running app, named one by one.

The composition root (bot.app.runtime) builds one object with these and hands it to listeners as
`context["services"]`, and to each feature's jobs when they are registered. Nothing here can
reach the engine, the Slack client or the job registry: those stay with the composition root.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from bot.infra.clock import Clock
from bot.infra.messaging import Messenger
from bot.infra.roles import RoleResolver
from bot.infra.settings import Settings
from bot.library import Library


class Services(Protocol):
    """The long-lived services a Slack-facing feature may use."""

    settings: Settings
    clock: Clock
    messenger: Messenger
    library: Library
    roles: RoleResolver
    sessions: sessionmaker[Session]
    # True while a listening clock sends this process's messages (and applies its clicks).
    hands_over: Callable[[], bool]
