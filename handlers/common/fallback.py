"""Catch-alls: anything no other listener claimed is acknowledged and ignored.

Old buttons from a previous version, or ids this app never made, must not produce Slack's
error banner or a retry storm, and are never logged with their content.
"""

from __future__ import annotations

import logging
import re

from slack_bolt import Ack, App

log = logging.getLogger(__name__)
ANYTHING = re.compile(r".*", re.DOTALL)


def register(app: App) -> None:
    """Register the catch-alls; call last."""
    app.action(ANYTHING)(acknowledge_and_ignore)
    app.view(ANYTHING)(acknowledge_and_ignore)
    app.view_closed(ANYTHING)(acknowledge_and_ignore)
    app.shortcut(ANYTHING)(acknowledge_and_ignore)
    app.options(ANYTHING)(acknowledge_with_no_options)
    app.event(ANYTHING)(acknowledge_and_ignore)


def acknowledge_and_ignore(ack: Ack) -> None:
    """Acknowledge a request nobody handles (nothing from it is logged)."""
    ack()
    log.info("acknowledged and ignored a request no listener handles")


def acknowledge_with_no_options(ack: Ack) -> None:
    """Answer an options request nobody handles with an empty list."""
    ack(options=[])
