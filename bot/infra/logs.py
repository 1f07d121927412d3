"""Logging set-up. Slack libraries are held at WARNING: at DEBUG they print request bodies."""

from __future__ import annotations

import logging

QUIET_LOGGERS = ("slack_bolt", "slack_sdk", "peersupport.bolt", "apscheduler.executors",
                 "werkzeug", "alembic.runtime.plugins")


class _DropBoltTokenNotice(logging.Filter):
    # Bolt reads SLACK_BOT_TOKEN from the environment itself and then warns that our client
    # (which carries the same token) wins; the notice is true and useless.
    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def configure_logging(level: str) -> None:
    """Log to stderr at `level`, keeping every logger that could print payloads at WARNING."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("peersupport.bolt").addFilter(_DropBoltTokenNotice())
