"""The one settings object, built once at start from the environment and `.env`, then passed down."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import Field, PlainValidator, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SLACK_APPS_URL = "https://api.slack.com/apps"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite:///peersupport.sqlite3"
# Also the urgencies a per-urgency PEERSUPPORT_OFFER_TIMEOUT may name; those it omits keep these.
DEFAULT_OFFER_TIMEOUTS = (("now", 600), ("today", 3600), ("week", 14400))

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable and the fix."""


# Each parser below turns one variable's stripped, non-blank text into its value. Its ValueError
# is the rest of the one-line message: from_mapping puts the variable's name in front of it.

def _token(prefix: str, what: str) -> PlainValidator:
    def parse(value: str) -> str:
        if not value.startswith(prefix):
            raise ValueError(f"does not look like {what}: it should start with '{prefix}'; copy it "
                             f"again from your app's settings at {SLACK_APPS_URL}.")
        return value
    return PlainValidator(parse)


def _url(example: str) -> PlainValidator:
    def parse(value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"must be an http(s) URL such as {example}, got {value!r}.")
        return value if value.endswith("/") else value + "/"
    return PlainValidator(parse)


def _database_url(value: str) -> str:
    if value.startswith("postgres://"):
        value = "postgresql+psycopg://" + value[len("postgres://") :]
    elif value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value[len("postgresql://") :]
    if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
        raise ValueError("must be a SQLite URL (sqlite:///path/to/file.sqlite3) or a PostgreSQL URL "
                         "(postgresql://user:password@host:5432/dbname).")
    if value.startswith("postgresql") and not _names_a_database(value):
        # Without one, PostgreSQL connects to the user's own database (often `postgres`)
        # and the app's tables would land there.
        raise ValueError("names no database, so the tables would go into the server's default one: "
                         "add the database's name at the end, like "
                         "postgresql://user:password@host:5432/peersupport.")
    return value


def _names_a_database(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.path.strip("/")) or "dbname=" in parts.query


def _bounded(convert: type, what: str, low: float, high: float) -> PlainValidator:
    def parse(value: str) -> float:
        try:
            number = convert(value)
        except ValueError:
            raise ValueError(f"must be {what}, got {value!r}.") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}.")
        return number
    return PlainValidator(parse)


def _whole(low: int, high: int) -> PlainValidator:
    return _bounded(int, "a whole number", low, high)


def _directory(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"must name an existing directory of content files, got {value!r}.")
    return path


def _group_id(value: str) -> str:
    if not re.match(r"^S[A-Z0-9]{2,}$", value):
        raise ValueError(f"must be a Slack user group id like S012ABCDEF (found {value!r}); find it "
                         "in the group's URL in Slack's People view.")
    return value


def _time_of_day(value: str) -> int:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value)
    if match is None:
        raise ValueError(f"must be a time of day as HH:MM, got {value!r}.")
    return int(match.group(1)) * 60 + int(match.group(2))


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"must be an IANA time zone such as America/New_York, "
                         f"got {value!r}.") from None
    return value


def _timeouts(value: str) -> tuple[tuple[str, int], ...]:
    result = dict(DEFAULT_OFFER_TIMEOUTS)
    if re.fullmatch(r"\d+", value):
        seconds = int(value)
        if not 10 <= seconds <= 7 * 86400:
            raise ValueError("must be between 10 and 604800 seconds.")
        return tuple((urgency, seconds) for urgency in result)
    for part in value.split(","):
        urgency, sep, seconds = part.strip().partition("=")
        if not sep or urgency not in result or not seconds.isdigit() \
                or not 10 <= int(seconds) <= 7 * 86400:
            raise ValueError("must be seconds (600) or per urgency "
                             f"(now=600,today=3600,week=14400), got {value!r}.")
        result[urgency] = int(seconds)
    return tuple(result.items())


def _minutes(value: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"must be minutes between notices, like 15,30,60,120 "
                         f"(got {value!r}).") from None
    if not steps or len(steps) > 12 or not all(1 <= m <= 1440 for m in steps):
        raise ValueError("must list 1 to 12 steps of 1 to 1440 minutes, like 15,30,60,120.")
    return steps


def _days(value: str) -> tuple[float, ...]:
    try:
        days = tuple(sorted(float(part) for part in value.split(",") if part.strip()))
    except ValueError:
        raise ValueError(f"must be days after connecting, like 1,3,7,30 (got {value!r}).") from None
    if not days or len(days) > 12 or not all(0 < d <= 365 for d in days):
        raise ValueError("must list 1 to 12 days between 0 and 365, like 1,3,7,30.")
    return days


def _secret(value: str) -> str:
    if len(value) < 32:
        raise ValueError("must be at least 32 characters; generate one with "
                         "`python -c 'import secrets; print(secrets.token_hex(32))'`.")
    return value


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}.")


def _choice(*options: str) -> PlainValidator:
    def parse(value: str) -> str:
        value = value.upper()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}.")
        return value
    return PlainValidator(parse)


def _lower_choice(*options: str) -> PlainValidator:
    def parse(value: str) -> str:
        value = value.lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}.")
        return value
    return PlainValidator(parse)


def _user_ids(value: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [uid for uid in ids if not _USER_ID.match(uid)]
    if bad:
        raise ValueError(f"must be comma-separated Slack user ids like U012ABCDEF (found {bad[0]!r}); "
                         "in Slack, open a profile, choose 'More' and 'Copy member ID'.")
    return ids


UserIds = Annotated[tuple[str, ...], PlainValidator(_user_ids)]
GroupId = Annotated[str | None, PlainValidator(_group_id)]
TimeOfDay = Annotated[int, PlainValidator(_time_of_day)]


class Settings(BaseSettings):
    """Everything the app reads from its environment, validated."""

    # Defaults are final values, not text, so they are not parsed again.
    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, validate_default=False)

    # Each field is read from the variable named by its alias. They are in the order they are
    # checked: with several mistakes, the first one here is the one reported.

    slack_bot_token: Annotated[str | None, _token("xoxb-", "the Bot User OAuth Token")] = Field(
        None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: Annotated[str | None, _token("xapp-", "an app-level token")] = Field(
        None, alias="SLACK_APP_TOKEN")
    slack_api_url: Annotated[str, _url(DEFAULT_SLACK_API_URL)] = Field(
        DEFAULT_SLACK_API_URL, alias="SLACK_API_URL")
    database_url: Annotated[str, PlainValidator(_database_url)] = Field(
        DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    port: Annotated[int, _whole(1, 65535)] = Field(3000, alias="PORT")
    coordinators: UserIds = Field((), alias="PEERSUPPORT_COORDINATORS")
    log_level: Annotated[str, _choice("DEBUG", "INFO", "WARNING", "ERROR")] = Field(
        "INFO", alias="LOG_LEVEL")
    # text: one readable line per record; json: one JSON object per line, for log collectors.
    log_format: Annotated[str, _lower_choice("text", "json")] = Field("text", alias="LOG_FORMAT")
    # Who sends the messages a click or a form leads to: "auto" hands them to a clock process
    # that PostgreSQL wakes at once (when one listens), so acknowledging processes only commit;
    # "web" has the process that recorded them send them itself, as it always does on SQLite.
    delivery: Annotated[str, _lower_choice("auto", "web")] = Field(
        "auto", alias="PEERSUPPORT_DELIVERY")
    # Metrics (/metrics) are served only to a scraper presenting this token, as a bearer token.
    metrics_token: Annotated[str | None, PlainValidator(_secret)] = Field(
        None, alias="PEERSUPPORT_METRICS_TOKEN")
    # The port on which the clock (and a Socket Mode process) serves /metrics; the web process
    # serves it on PORT. Unset: not served.
    metrics_port: Annotated[int | None, _whole(1, 65535)] = Field(
        None, alias="PEERSUPPORT_METRICS_PORT")
    web_workers: Annotated[int, _whole(1, 64)] = Field(2, alias="WEB_CONCURRENCY")
    web_threads: Annotated[int, _whole(1, 256)] = Field(8, alias="PEERSUPPORT_WEB_THREADS")
    listener_threads: Annotated[int, _whole(1, 256)] = Field(16, alias="PEERSUPPORT_LISTENER_THREADS")
    slack_parallel: Annotated[int, _whole(1, 64)] = Field(8, alias="PEERSUPPORT_SLACK_PARALLEL")
    # The clock's processor priority (Unix niceness, 0 to 19): where it shares a machine with
    # web processes, acknowledging Slack within its three seconds comes before applying clicks
    # and sending; 0 leaves it as started.
    clock_nice: Annotated[int, _whole(0, 19)] = Field(10, alias="PEERSUPPORT_CLOCK_NICE")
    tick_seconds: Annotated[float, _bounded(float, "a number of seconds", 0.05, 3600)] = Field(
        15.0, alias="PEERSUPPORT_TICK_SECONDS")
    duework_batch: Annotated[int, _whole(1, 10000)] = Field(100, alias="PEERSUPPORT_DUEWORK_BATCH")
    duework_threads: Annotated[int, _whole(1, 64)] = Field(4, alias="PEERSUPPORT_DUEWORK_THREADS")
    duework_lease_seconds: Annotated[int, _whole(5, 86400)] = Field(
        300, alias="PEERSUPPORT_DUEWORK_LEASE_SECONDS")
    duework_grace_seconds: Annotated[int, _whole(0, 7 * 86400)] = Field(
        900, alias="PEERSUPPORT_DUEWORK_GRACE_SECONDS")
    duework_catchup_seconds: Annotated[int, _whole(1, 7 * 86400)] = Field(
        1800, alias="PEERSUPPORT_DUEWORK_CATCHUP_SECONDS")
    content_dir: Annotated[Path | None, PlainValidator(_directory)] = Field(
        None, alias="PEERSUPPORT_CONTENT_DIR")
    leaders: UserIds = Field((), alias="PEERSUPPORT_LEADERS")
    coordinator_group: GroupId = Field(None, alias="PEERSUPPORT_COORDINATOR_GROUP")
    leader_group: GroupId = Field(None, alias="PEERSUPPORT_LEADER_GROUP")
    default_case_cap: Annotated[int, _whole(1, 10)] = Field(2, alias="PEERSUPPORT_DEFAULT_CASE_CAP")
    default_cooldown_hours: Annotated[int, _whole(0, 72)] = Field(
        12, alias="PEERSUPPORT_DEFAULT_COOLDOWN_HOURS")
    min_on_duty: Annotated[int, _whole(0, 1000)] = Field(1, alias="PEERSUPPORT_MIN_ON_DUTY")
    coverage_window_hours: Annotated[int, _whole(1, 168)] = Field(
        24, alias="PEERSUPPORT_COVERAGE_WINDOW_HOURS")
    coverage_check_minute: TimeOfDay = Field(16 * 60, alias="PEERSUPPORT_COVERAGE_CHECK_TIME")
    program_timezone: Annotated[str, PlainValidator(_timezone)] = Field("UTC", alias="PEERSUPPORT_TIMEZONE")
    wave_size: Annotated[int, _whole(1, 100)] = Field(3, alias="PEERSUPPORT_WAVE_SIZE")
    # Teams of at least this many people get two supporters together (pairs run group sessions).
    team_pair_from: Annotated[int, _whole(2, 1000)] = Field(6, alias="PEERSUPPORT_TEAM_PAIR_FROM")
    # Hours after a team request is placed that its caller is asked how the team is doing.
    team_checkin_hours: Annotated[int, _whole(1, 24 * 30)] = Field(
        72, alias="PEERSUPPORT_TEAM_CHECKIN_HOURS")
    offer_timeouts: Annotated[tuple[tuple[str, int], ...], PlainValidator(_timeouts)] = Field(
        DEFAULT_OFFER_TIMEOUTS, alias="PEERSUPPORT_OFFER_TIMEOUT")
    # Minutes between an unplaced request's alert re-notices; the last step repeats.
    escalation_alert_minutes: Annotated[tuple[int, ...], PlainValidator(_minutes)] = Field(
        (15, 30, 60, 120), alias="PEERSUPPORT_ESCALATION_ALERT_MINUTES")
    escalation_digest_minute: TimeOfDay = Field(8 * 60, alias="PEERSUPPORT_ESCALATION_DIGEST_TIME")
    retention_days: Annotated[int, _whole(1, 3650)] = Field(90, alias="PEERSUPPORT_RETENTION_DAYS")
    audit_retention_days: Annotated[int, _whole(30, 3650)] = Field(
        365, alias="PEERSUPPORT_AUDIT_RETENTION_DAYS")
    checkin_days: Annotated[tuple[float, ...], PlainValidator(_days)] = Field(
        (1, 3, 7, 30), alias="PEERSUPPORT_CHECKIN_DAYS")
    alert_on_struggling: Annotated[bool, PlainValidator(_flag)] = Field(
        True, alias="PEERSUPPORT_ALERT_ON_STRUGGLING")
    min_group: Annotated[int, _whole(5, 1000)] = Field(5, alias="PEERSUPPORT_MIN_GROUP")
    pulse_secret: Annotated[str | None, PlainValidator(_secret)] = Field(
        None, alias="PEERSUPPORT_PULSE_SECRET")

    @model_validator(mode="after")
    def _tick_fits_the_grace(self) -> Settings:
        if self.tick_seconds * 2 > self.duework_grace_seconds > 0:
            # Otherwise work that is merely waiting for the next tick would count as late.
            raise ValueError("PEERSUPPORT_TICK_SECONDS must be at most half of "
                             "PEERSUPPORT_DUEWORK_GRACE_SECONDS.")
        return self

    @model_validator(mode="after")
    def _metrics_need_a_token(self) -> Settings:
        if self.metrics_port is not None and not self.metrics_token:
            # Metrics are figures about the program: never served to whoever asks.
            raise ValueError("PEERSUPPORT_METRICS_PORT needs PEERSUPPORT_METRICS_TOKEN: metrics "
                             "are served only to a scraper that presents it.")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        **other_sources: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read only the values handed over, never os.environ or `.env` behind the caller's back."""
        return (init_settings,)

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
        given = {}
        for field in cls.model_fields.values():
            # A blank variable counts as unset, so its default applies.
            value = (values.get(field.alias) or "").strip()
            if value:
                given[field.alias] = value
        try:
            return cls(**given)
        except ValidationError as error:
            raise SettingsError(_one_line(error)) from None


def _one_line(error: ValidationError) -> str:
    """The first problem, as the variable's name followed by what its parser said."""
    first = error.errors(include_url=False)[0]
    cause = first.get("ctx", {}).get("error")
    # A parser's own words show the value only where they always did (never for tokens or
    # secrets); pydantic's fallback message never shows the input.
    return " ".join([*(str(part) for part in first["loc"][:1]), str(cause or first["msg"])])
