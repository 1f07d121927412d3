"""Logging set-up: plain text or one JSON object per line (LOG_FORMAT), each record tagged with
the correlation id of the Slack delivery or due item it belongs to.

What reaches a log is ids, types and Slack error codes: messages are written that way, Slack
libraries are held at WARNING (at DEBUG they print request bodies), and a traceback shows types
and frames but never an exception's message, which can quote data ("invalid literal for int():
...", a database error's parameters).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

QUIET_LOGGERS = ("slack_bolt", "slack_sdk", "peersupport.bolt", "apscheduler.executors",
                 "werkzeug", "alembic.runtime.plugins")
FORMATS = ("text", "json")
T = TypeVar("T")

# The Slack delivery or due item the running code works for; None outside both.
CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None)
_OURS = "_peersupport_handler"


@contextlib.contextmanager
def correlated(correlation_id: str) -> Iterator[str]:
    """Tag every log record made in this block with `correlation_id`. Inside another one (a due
    item a Slack delivery runs at once) the ids are joined, parent first: `Ev0123/due-45`."""
    parent = CORRELATION.get()
    value = f"{parent}/{correlation_id}" if parent else correlation_id
    token = CORRELATION.set(value)
    try:
        yield value
    finally:
        CORRELATION.reset(token)


class ContextPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitting thread's context, so work
    handed to it (a listener after Slack's ack, a wave of posts) keeps its correlation id."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def traceback_without_messages(error: BaseException) -> str:
    """Where `error` and the errors it was raised from happened: types and frames, no messages."""
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 10:  # a chain can loop back on itself
        frames = "".join(traceback.format_list(traceback.extract_tb(current.__traceback__)))
        parts.append(f"{type(current).__name__}, raised at:\n{frames}")
        current = current.__cause__ or current.__context__
    return "which led to ".join(reversed(parts)).rstrip()


def _correlation(record: logging.LogRecord) -> str | None:
    # Set when the record was made (see _tag_records); a record made elsewhere (a test's)
    # falls back to the formatting thread's context.
    return getattr(record, "correlation_id", None) or CORRELATION.get()


def _error(record: logging.LogRecord) -> BaseException | None:
    return record.exc_info[1] if record.exc_info else None


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [correlation id]: message`, then the traceback without messages."""

    def format(self, record: logging.LogRecord) -> str:
        correlation = _correlation(record)
        line = (f"{self.formatTime(record)} {record.levelname} {record.name}"
                f"{f' [{correlation}]' if correlation else ''}: {record.getMessage()}")
        error = _error(record)
        # Not logging.Formatter's exc_text: another handler may have cached it with messages.
        return f"{line}\n{traceback_without_messages(error)}" if error is not None else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation_id, and for an
    exception its type and where it was raised (never its message)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": _correlation(record),
        }
        error = _error(record)
        if error is not None:
            entry["exc_type"] = type(error).__name__
            entry["stack"] = traceback_without_messages(error)
        # ASCII only: a line separator inside a string (U+2028) must not split the line.
        return json.dumps(entry, default=str)


class _DropBoltTokenNotice(logging.Filter):
    # Bolt reads SLACK_BOT_TOKEN from the environment itself and then warns that our client
    # (which carries the same token) wins; the notice is true and useless.
    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for LOG_FORMAT `text` or `json`."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {log_format!r}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def log_handler(log_format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing records to `stream` (stderr) in `log_format`, tagged with their
    correlation ids."""
    _tag_records()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    setattr(handler, _OURS, True)
    return handler


def _tag_records() -> None:
    """Give every log record the correlation id of the thread that made it, once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, _OURS, False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.correlation_id = CORRELATION.get()
        return record

    setattr(make, _OURS, True)
    logging.setLogRecordFactory(make)


def gunicorn_logger(log_format: str) -> type:
    """A gunicorn logger class (its `logger_class` setting) whose own lines (starting, a worker
    booting or stopping) are written in `log_format` like every other record."""
    from gunicorn.glogging import Logger  # only the web process needs gunicorn

    class _Logger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(formatter(log_format))

    return _Logger


# Installed on import, so records carry their id however logging is set up (gunicorn's own).
_tag_records()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level` in `log_format`, keeping every logger that could print payloads
    at WARNING. Like logging.basicConfig, it adds its handler only where nothing else (a test
    runner's capture) already handles the root logger; called again, it updates its own."""
    _tag_records()
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if getattr(handler, _OURS, False)]
    for handler in ours:
        handler.setFormatter(formatter(log_format))
    if ours or not root.handlers:
        if not ours:
            root.addHandler(log_handler(log_format))
        root.setLevel(getattr(logging, level, logging.INFO))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    bolt = logging.getLogger("peersupport.bolt")
    if not any(isinstance(f, _DropBoltTokenNotice) for f in bolt.filters):
        bolt.addFilter(_DropBoltTokenNotice())
