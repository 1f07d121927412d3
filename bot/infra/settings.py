"""The one settings object, built once at start from the environment and `.env`, then passed down."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

SLACK_APPS_URL = "https://api.slack.com/apps"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite:///peersupport.sqlite3"

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, validated."""

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    database_url: str = DEFAULT_DATABASE_URL
    port: int = 3000
    coordinators: tuple[str, ...] = ()
    log_level: str = "INFO"
    web_workers: int = 2
    web_threads: int = 8
    listener_threads: int = 16
    slack_parallel: int = 8
    duework_threads: int = 4
    tick_seconds: float = 15.0
    duework_batch: int = 100
    duework_lease_seconds: int = 300
    duework_grace_seconds: int = 900
    duework_catchup_seconds: int = 1800
    content_dir: Path | None = None
    leaders: tuple[str, ...] = ()
    coordinator_group: str | None = None
    leader_group: str | None = None
    default_case_cap: int = 2
    default_cooldown_hours: int = 12
    min_on_duty: int = 1
    coverage_window_hours: int = 24
    coverage_check_minute: int = 16 * 60
    program_timezone: str = "UTC"
    wave_size: int = 3
    offer_timeouts: tuple[tuple[str, int], ...] = (("now", 600), ("today", 3600),
                                                   ("week", 14400))
    # Minutes between an unplaced request's alert re-notices; the last step repeats.
    escalation_alert_minutes: tuple[int, ...] = (15, 30, 60, 120)
    escalation_digest_minute: int = 8 * 60
    retention_days: int = 90
    audit_retention_days: int = 365
    checkin_days: tuple[float, ...] = (1, 3, 7, 30)
    alert_on_struggling: bool = True
    min_group: int = 5
    pulse_secret: str | None = None

    def offer_timeout(self, urgency: str) -> int:
        """Seconds a wave of offers waits for an answer, for a request of this urgency."""
        return dict(self.offer_timeouts)[urgency]

    @property
    def socket_mode(self) -> bool:
        """True when an app-level token is set, so Slack is reached over Socket Mode."""
        return bool(self.slack_app_token)

    def require_slack(self, *, transport: str) -> None:
        """Check the Slack credentials a process needs: 'http', 'socket' or 'clock'."""
        if not self.slack_bot_token:
            raise SettingsError(
                "SLACK_BOT_TOKEN is not set: create the Slack app from manifest.yml at "
                f"{SLACK_APPS_URL}, install it to your workspace, and put its Bot User OAuth Token "
                "(xoxb-...) in .env (see .env.example)."
            )
        if transport == "http" and not self.slack_signing_secret:
            raise SettingsError(
                "SLACK_SIGNING_SECRET is not set: copy the Signing Secret from your app's "
                f"'Basic Information' page at {SLACK_APPS_URL} into .env, or set SLACK_APP_TOKEN "
                "to use Socket Mode instead."
            )
        if transport == "socket" and not self.slack_app_token:
            raise SettingsError(
                "SLACK_APP_TOKEN is not set: Socket Mode needs an app-level token with the "
                f"connections:write scope ('Basic Information' at {SLACK_APPS_URL}), put it in .env."
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], dotenv_path: str | Path | None = ".env"
    ) -> Settings:
        """Build settings from `.env` (if present) overlaid by the real environment."""
        values: dict[str, str] = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        values.update(environ)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        """Build and validate settings from a plain mapping of variable names to strings."""
        settings = cls._read(_Reader(values))
        if settings.tick_seconds * 2 > settings.duework_grace_seconds > 0:
            # Otherwise work that is merely waiting for the next tick would count as late.
            raise SettingsError("PEERSUPPORT_TICK_SECONDS must be at most half of "
                                "PEERSUPPORT_DUEWORK_GRACE_SECONDS.")
        return settings

    @classmethod
    def _read(cls, reader: _Reader) -> Settings:
        return cls(
            slack_bot_token=reader.token("SLACK_BOT_TOKEN", "xoxb-", "the Bot User OAuth Token"),
            slack_signing_secret=reader.text("SLACK_SIGNING_SECRET"),
            slack_app_token=reader.token("SLACK_APP_TOKEN", "xapp-", "an app-level token"),
            slack_api_url=reader.url("SLACK_API_URL", DEFAULT_SLACK_API_URL),
            database_url=reader.database_url("DATABASE_URL", DEFAULT_DATABASE_URL),
            port=reader.integer("PORT", 3000, low=1, high=65535),
            coordinators=reader.user_ids("PEERSUPPORT_COORDINATORS"),
            log_level=reader.choice(
                "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            web_workers=reader.integer("WEB_CONCURRENCY", 2, low=1, high=64),
            web_threads=reader.integer("PEERSUPPORT_WEB_THREADS", 8, low=1, high=256),
            listener_threads=reader.integer("PEERSUPPORT_LISTENER_THREADS", 16, low=1, high=256),
            slack_parallel=reader.integer("PEERSUPPORT_SLACK_PARALLEL", 8, low=1, high=64),
            tick_seconds=reader.number("PEERSUPPORT_TICK_SECONDS", 15.0, low=0.05, high=3600),
            duework_batch=reader.integer("PEERSUPPORT_DUEWORK_BATCH", 100, low=1, high=10000),
            duework_threads=reader.integer("PEERSUPPORT_DUEWORK_THREADS", 4, low=1, high=64),
            duework_lease_seconds=reader.integer(
                "PEERSUPPORT_DUEWORK_LEASE_SECONDS", 300, low=5, high=86400
            ),
            duework_grace_seconds=reader.integer(
                "PEERSUPPORT_DUEWORK_GRACE_SECONDS", 900, low=0, high=7 * 86400
            ),
            duework_catchup_seconds=reader.integer(
                "PEERSUPPORT_DUEWORK_CATCHUP_SECONDS", 1800, low=1, high=7 * 86400
            ),
            content_dir=reader.directory("PEERSUPPORT_CONTENT_DIR"),
            leaders=reader.user_ids("PEERSUPPORT_LEADERS"),
            coordinator_group=reader.group_id("PEERSUPPORT_COORDINATOR_GROUP"),
            leader_group=reader.group_id("PEERSUPPORT_LEADER_GROUP"),
            default_case_cap=reader.integer("PEERSUPPORT_DEFAULT_CASE_CAP", 2, low=1, high=10),
            default_cooldown_hours=reader.integer(
                "PEERSUPPORT_DEFAULT_COOLDOWN_HOURS", 12, low=0, high=72),
            min_on_duty=reader.integer("PEERSUPPORT_MIN_ON_DUTY", 1, low=0, high=1000),
            coverage_window_hours=reader.integer(
                "PEERSUPPORT_COVERAGE_WINDOW_HOURS", 24, low=1, high=168),
            coverage_check_minute=reader.time_of_day("PEERSUPPORT_COVERAGE_CHECK_TIME", "16:00"),
            program_timezone=reader.timezone("PEERSUPPORT_TIMEZONE", "UTC"),
            wave_size=reader.integer("PEERSUPPORT_WAVE_SIZE", 3, low=1, high=100),
            offer_timeouts=reader.timeouts("PEERSUPPORT_OFFER_TIMEOUT"),
            escalation_alert_minutes=reader.minutes(
                "PEERSUPPORT_ESCALATION_ALERT_MINUTES", (15, 30, 60, 120)),
            escalation_digest_minute=reader.time_of_day("PEERSUPPORT_ESCALATION_DIGEST_TIME",
                                                        "08:00"),
            retention_days=reader.integer("PEERSUPPORT_RETENTION_DAYS", 90, low=1, high=3650),
            audit_retention_days=reader.integer("PEERSUPPORT_AUDIT_RETENTION_DAYS", 365,
                                                low=30, high=3650),
            checkin_days=reader.days("PEERSUPPORT_CHECKIN_DAYS", (1, 3, 7, 30)),
            alert_on_struggling=reader.flag("PEERSUPPORT_ALERT_ON_STRUGGLING", True),
            min_group=reader.integer("PEERSUPPORT_MIN_GROUP", 5, low=5, high=1000),
            pulse_secret=reader.secret("PEERSUPPORT_PULSE_SECRET"),
        )


def _names_a_database(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.path.strip("/")) or "dbname=" in parts.query


class _Reader:
    """Reads one variable at a time and turns a bad value into a one-line SettingsError."""

    def __init__(self, values: Mapping[str, str]):
        self._values = values

    def raw(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def text(self, name: str) -> str | None:
        return self.raw(name)

    def token(self, name: str, prefix: str, what: str) -> str | None:
        value = self.raw(name)
        if value is not None and not value.startswith(prefix):
            raise SettingsError(
                f"{name} does not look like {what}: it should start with '{prefix}'; copy it again "
                f"from your app's settings at {SLACK_APPS_URL}."
            )
        return value

    def url(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        if not re.match(r"^https?://[^\s/]+", value):
            raise SettingsError(f"{name} must be an http(s) URL such as {default}, got {value!r}.")
        return value if value.endswith("/") else value + "/"

    def database_url(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        if value.startswith("postgres://"):
            value = "postgresql+psycopg://" + value[len("postgres://") :]
        elif value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
            raise SettingsError(
                f"{name} must be a SQLite URL (sqlite:///path/to/file.sqlite3) or a PostgreSQL URL "
                "(postgresql://user:password@host:5432/dbname)."
            )
        if value.startswith("postgresql") and not _names_a_database(value):
            # Without one, PostgreSQL connects to the user's own database (often `postgres`)
            # and the app's tables would land there.
            raise SettingsError(
                f"{name} names no database, so the tables would go into the server's default one: "
                "add the database's name at the end, like "
                "postgresql://user:password@host:5432/peersupport."
            )
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        return int(self._bounded(name, default, low, high, int, "a whole number"))

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        return self._bounded(name, default, low, high, float, "a number of seconds")

    def _bounded(self, name: str, default: float, low: float, high: float,
                 convert: type, what: str) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = convert(value)
        except ValueError:
            raise SettingsError(f"{name} must be {what}, got {value!r}.") from None
        if not low <= number <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, got {number}.")
        return number

    def directory(self, name: str) -> Path | None:
        value = self.raw(name)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_dir():
            raise SettingsError(f"{name} must name an existing directory of content files, "
                                f"got {value!r}.")
        return path

    def group_id(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not re.match(r"^S[A-Z0-9]{2,}$", value):
            raise SettingsError(f"{name} must be a Slack user group id like S012ABCDEF (found "
                                f"{value!r}); find it in the group's URL in Slack's People view.")
        return value

    def time_of_day(self, name: str, default: str) -> int:
        value = self.raw(name) or default
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value)
        if match is None:
            raise SettingsError(f"{name} must be a time of day as HH:MM, got {value!r}.")
        return int(match.group(1)) * 60 + int(match.group(2))

    def timezone(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"{name} must be an IANA time zone such as America/New_York, "
                                f"got {value!r}.") from None
        return value

    def timeouts(self, name: str) -> tuple[tuple[str, int], ...]:
        defaults = {"now": 600, "today": 3600, "week": 14400}
        value = self.raw(name)
        if value is None:
            return tuple(defaults.items())
        if re.fullmatch(r"\d+", value):
            seconds = int(value)
            if not 10 <= seconds <= 7 * 86400:
                raise SettingsError(f"{name} must be between 10 and 604800 seconds.")
            return tuple((urgency, seconds) for urgency in defaults)
        result = dict(defaults)
        for part in value.split(","):
            urgency, sep, seconds = part.strip().partition("=")
            if not sep or urgency not in defaults or not seconds.isdigit() \
                    or not 10 <= int(seconds) <= 7 * 86400:
                raise SettingsError(f"{name} must be seconds (600) or per urgency "
                                    f"(now=600,today=3600,week=14400), got {value!r}.")
            result[urgency] = int(seconds)
        return tuple(result.items())

    def minutes(self, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self.raw(name)
        if value is None:
            return default
        try:
            steps = tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise SettingsError(f"{name} must be minutes between notices, like 15,30,60,120 "
                                f"(got {value!r}).") from None
        if not steps or len(steps) > 12 or not all(1 <= m <= 1440 for m in steps):
            raise SettingsError(f"{name} must list 1 to 12 steps of 1 to 1440 minutes, like "
                                "15,30,60,120.")
        return steps

    def days(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        value = self.raw(name)
        if value is None:
            return default
        try:
            days = tuple(sorted(float(part) for part in value.split(",") if part.strip()))
        except ValueError:
            raise SettingsError(f"{name} must be days after connecting, like 1,3,7,30 "
                                f"(got {value!r}).") from None
        if not days or len(days) > 12 or not all(0 < d <= 365 for d in days):
            raise SettingsError(f"{name} must list 1 to 12 days between 0 and 365, like "
                                "1,3,7,30.")
        return days

    def secret(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and len(value) < 32:
            raise SettingsError(f"{name} must be at least 32 characters; generate one with "
                                "`python -c 'import secrets; print(secrets.token_hex(32))'`.")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {value!r}.")

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).upper()
        if value not in options:
            raise SettingsError(f"{name} must be one of {', '.join(options)}, got {value!r}.")
        return value

    def user_ids(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        ids = tuple(part.strip() for part in value.split(",") if part.strip())
        bad = [uid for uid in ids if not _USER_ID.match(uid)]
        if bad:
            raise SettingsError(
                f"{name} must be comma-separated Slack user ids like U012ABCDEF (found {bad[0]!r}); "
                "in Slack, open a profile, choose 'More' and 'Copy member ID'."
            )
        return ids
