"""Prometheus metrics: what each process counts (Slack calls, due items run, Slack deliveries),
and the program's figures read from the database when scraped.

The program's figures (requests by state, time to accept, offers, check-ins, due work, the
outbox) are counted by the database itself at scrape time, so every process answers the same,
restarts lose nothing, and no domain code counts anything. What only a process sees is counted
in it; under gunicorn, prometheus_client's multiprocess mode adds up the workers' counts.

Label values are names from the code only (a Slack method, a Slack error code, a kind of due
work, a state), each checked against a fixed list or pattern before use. Never a user id, a name,
a department, or anything typed: per-department figures are left out altogether, since any two
scrapes could be subtracted to show one person's request however large the department.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from sqlalchemy import ColumnElement, case, extract, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.models import (
    CheckIn,
    CheckInState,
    ClockHeartbeat,
    DueWork,
    Offer,
    OfferState,
    PulseAnswer,
    RequestKind,
    RequestState,
    SupportRequest,
    WorkState,
)
from bot.infra.settings import DEFAULT_OFFER_TIMEOUTS, Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# bot.infra.outbox.PREFIX (imported here it would make a loop: the outbox uses due work, which
# counts here); tests/infra/test_metrics.py checks the two agree.
EFFECT_PREFIX = "effect."
# Seconds from asking to a supporter (every seat) accepting: minutes for "now", hours for "week".
ACCEPT_BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 259200.0)
# A scrape's queries give up after this long on PostgreSQL rather than pile up behind a lock.
QUERY_TIMEOUT_MS = 5000
# bot.infra.health's rule for a stopped clock (ticks late, plus the due-work grace period);
# health imports the outbox, so it is repeated here, and a test keeps the two equal.
STALE_TICKS = 3

# -- what a process counts --------------------------------------------------------------------

# A counter's `_created` series would double every series for a time Prometheus knows anyway,
# and multiprocess mode never has it: the exposition is the same in every mode.
disable_created_metrics()

SLACK_CALLS = Counter(
    "peersupport_slack_calls", "Slack Web API calls made, by method and outcome: ok, Slack's "
    "error code, or transport_error (after slack_sdk's own retries).", ["method", "outcome"])
DUE_ITEMS = Counter(
    "peersupport_due_items", "Due items (timers and outbox messages) this process ran, by kind "
    "and outcome: done, retried, failed, rescheduled, lost_lease, released.", ["kind", "outcome"])
SLACK_DELIVERIES = Counter(
    "peersupport_slack_deliveries", "Slack deliveries received (events, clicks, forms, "
    "commands), by type.", ["type"])
LISTENER_ERRORS = Counter(
    "peersupport_listener_errors", "Slack listeners that ended in an unhandled error, by the "
    "error's type.", ["error"])
PROCESS_METRICS = (SLACK_CALLS, DUE_ITEMS, SLACK_DELIVERIES, LISTENER_ERRORS)

# A Slack error code, a due-work kind, an event type: lower case, digits, dots and underscores.
_CODE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
# An exception's class name.
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
OTHER = "other"
INTERACTIONS = frozenset({"block_actions", "view_submission", "view_closed", "shortcut",
                          "message_action", "block_suggestion"})
EVENTS = frozenset({"app_home_opened", "user_change", "message", "app_mention",
                    "member_joined_channel", "app_uninstalled", "tokens_revoked"})
URGENCIES = frozenset(urgency for urgency, _seconds in DEFAULT_OFFER_TIMEOUTS)


def code_name(value: object) -> str:
    """`value` if it looks like a name from code or Slack's vocabulary, else 'other'."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else OTHER


def count_slack_call(method: str, outcome: str) -> None:
    """Count one Web API call: `method` from METHODS_USED, outcome 'ok' or an error code."""
    SLACK_CALLS.labels(method=method, outcome=outcome if outcome == "ok" else code_name(outcome)
                       ).inc()


def count_due_item(kind: str, outcome: str) -> None:
    """Count one due item's outcome; `kind` is a registered kind's name (or 'unknown')."""
    DUE_ITEMS.labels(kind=code_name(kind), outcome=outcome).inc()


def delivery_type(body: Mapping[str, Any]) -> str:
    """What a Slack delivery is, from a fixed list: a command, an interaction or an event."""
    if "command" in body:
        return "command"
    kind = body.get("type")
    if kind == "event_callback":
        event = body.get("event")
        name = event.get("type") if isinstance(event, dict) else None
        return f"event.{name}" if name in EVENTS else "event.other"
    return kind if kind in INTERACTIONS else OTHER


def count_delivery(body: Mapping[str, Any]) -> None:
    """Count one Slack delivery by its type."""
    SLACK_DELIVERIES.labels(type=delivery_type(body)).inc()


def count_listener_error(error: BaseException) -> None:
    """Count one listener's unhandled error by its class name."""
    name = type(error).__name__
    LISTENER_ERRORS.labels(error=name if _TYPE_NAME.fullmatch(name) else OTHER).inc()


# -- what the database holds ------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime: ...


def _seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _count_when(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


class ProgramFigures:
    """A collector reading the program's figures from the database at each scrape: a handful of
    grouped counts over indexed columns, bounded in time on PostgreSQL."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings,
                 clock: Clock | None = None):
        self.sessions = sessions
        self.settings = settings
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Every family, or only peersupport_database_up 0 when the database cannot answer."""
        now = self.clock.now() if self.clock is not None else datetime.now(UTC)
        try:
            with self.sessions() as session, session.begin():
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}"))
                families = [*self._requests(session), self._accept_times(session),
                            self._offers(session), *self._checkins(session),
                            self._prompt_answers(session), *self._due_work(session, now),
                            *self._heartbeat(session, now)]
        except Exception as error:  # noqa: BLE001 - the process's own metrics still go out
            log.warning("metrics: the database could not be read (%s)", type(error).__name__)
            families = []
        yield from families
        yield GaugeMetricFamily("peersupport_database_up", "1 if this scrape could read the "
                                "program's figures from the database, else 0.",
                                value=1 if families else 0)

    def _requests(self, session: Session) -> list[Metric]:
        counts: dict[tuple[str, str], int] = {(k.value, s.value): 0 for k in RequestKind
                                              for s in RequestState}
        escalations: dict[str, int] = {k.value: 0 for k in RequestKind}
        rows = session.execute(select(
            SupportRequest.kind, SupportRequest.state, func.count(),
            func.coalesce(func.sum(SupportRequest.escalations), 0),
        ).group_by(SupportRequest.kind, SupportRequest.state))
        for kind, state, count, escalated in rows:
            kind = kind if kind in escalations else OTHER
            state = state if state in RequestState.__members__.values() else OTHER
            counts[kind, state] = counts.get((kind, state), 0) + int(count)
            escalations[kind] = escalations.get(kind, 0) + int(escalated)
        requests = GaugeMetricFamily("peersupport_requests", "Requests for support, by kind "
                                     "(personal, team) and state now.", labels=["kind", "state"])
        for (kind, state), count in sorted(counts.items()):
            requests.add_metric([kind, state], count)
        escalated_total = CounterMetricFamily(
            "peersupport_request_escalations", "Times requests were escalated to coordinators "
            "because nobody accepted in time, by kind.", labels=["kind"])
        for kind, count in sorted(escalations.items()):
            escalated_total.add_metric([kind], count)
        return [requests, escalated_total]

    def _accept_times(self, session: Session) -> Metric:
        seconds = _seconds_between(session, SupportRequest.created_at, SupportRequest.assigned_at)
        rows = session.execute(
            select(SupportRequest.kind, SupportRequest.urgency, func.count(),
                   func.coalesce(func.sum(seconds), 0),
                   *(_count_when(seconds <= bound) for bound in ACCEPT_BUCKETS))
            .where(SupportRequest.assigned_at.is_not(None))
            .group_by(SupportRequest.kind, SupportRequest.urgency))
        merged: dict[tuple[str, str], list[float]] = defaultdict(
            lambda: [0.0] * (len(ACCEPT_BUCKETS) + 2))
        for kind, urgency, *figures in rows:
            key = (kind if kind in RequestKind.__members__.values() else OTHER,
                   urgency if urgency in URGENCIES else OTHER)
            merged[key] = [a + float(b or 0) for a, b in zip(merged[key], figures, strict=True)]
        family = HistogramMetricFamily(
            "peersupport_request_accept_seconds", "Seconds from a request being made to every "
            "seat being accepted, for requests placed, by kind and urgency.",
            labels=["kind", "urgency"])
        for (kind, urgency), (count, total, *cumulative) in sorted(merged.items()):
            buckets = [(floatToGoString(bound), value)
                       for bound, value in zip(ACCEPT_BUCKETS, cumulative, strict=True)]
            family.add_metric([kind, urgency], [*buckets, ("+Inf", count)], total)
        return family

    def _offers(self, session: Session) -> Metric:
        counts = {state.value: 0 for state in OfferState}
        for state, count in session.execute(select(Offer.state, func.count())
                                            .group_by(Offer.state)):
            key = state if state in counts else OTHER
            counts[key] = counts.get(key, 0) + int(count)
        family = GaugeMetricFamily("peersupport_offers", "Offers made to supporters, by state "
                                   "now.", labels=["state"])
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        return family

    def _checkins(self, session: Session) -> list[Metric]:
        counts = {state.value: 0 for state in CheckInState}
        sent = answered = 0
        rows = session.execute(select(CheckIn.state, func.count(), func.count(CheckIn.sent_at),
                                      func.count(CheckIn.answered_at)).group_by(CheckIn.state))
        for state, count, were_sent, were_answered in rows:
            key = state if state in counts else OTHER
            counts[key] = counts.get(key, 0) + int(count)
            sent, answered = sent + int(were_sent), answered + int(were_answered)
        family = GaugeMetricFamily("peersupport_checkins", "Check-ins, by state now.",
                                   labels=["state"])
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        return [family,
                CounterMetricFamily("peersupport_checkins_sent", "Check-ins sent.", value=sent),
                CounterMetricFamily("peersupport_checkins_answered", "Check-ins answered (the "
                                    "answers themselves are not counted here).", value=answered)]

    def _prompt_answers(self, session: Session) -> Metric:
        count = session.scalar(select(func.count()).select_from(PulseAnswer)) or 0
        return CounterMetricFamily("peersupport_prompt_answers", "Answers to wellbeing prompts.",
                                   value=count)

    def _due_work(self, session: Session, now: datetime) -> list[Metric]:
        is_due = DueWork.due_at <= now
        rows = session.execute(
            select(DueWork.kind, DueWork.state, func.count(), _count_when(is_due),
                   func.min(case((is_due, DueWork.due_at))), func.min(DueWork.created_at))
            .where(DueWork.state.in_([WorkState.PENDING, WorkState.RUNNING, WorkState.FAILED]))
            .group_by(DueWork.kind, DueWork.state))
        backlog, running, failed = defaultdict(int), defaultdict(int), defaultdict(int)
        outbox, refused = defaultdict(int), 0
        oldest_due: datetime | None = None
        oldest_effect: datetime | None = None
        for kind, state, count, due, first_due, first_created in rows:
            name, count = code_name(kind), int(count)
            effect = isinstance(kind, str) and kind.startswith(EFFECT_PREFIX)
            if state == WorkState.FAILED:
                failed[name] += count
                refused += count if effect else 0
                continue
            if state == WorkState.PENDING:
                backlog[name] += int(due)
                if first_due is not None:
                    oldest_due = _earliest(oldest_due, first_due)
            else:
                running[name] += count
            if effect:
                outbox[name] += count
                oldest_effect = _earliest(oldest_effect, first_created)

        def by_kind(name: str, help_text: str, counts: Mapping[str, int]) -> Metric:
            family = GaugeMetricFamily(name, help_text, labels=["kind"])
            for kind, count in sorted(counts.items()):
                family.add_metric([kind], count)
            return family

        def age(since: datetime | None) -> float:
            return max(0.0, (now - since).total_seconds()) if since is not None else 0.0

        return [
            by_kind("peersupport_due_work_backlog", "Due items past their time and not yet "
                    "started, by kind.", backlog),
            GaugeMetricFamily("peersupport_due_work_lag_seconds", "How long the oldest due item "
                              "not yet started has been due (0 when none is waiting).",
                              value=age(oldest_due)),
            by_kind("peersupport_due_work_running", "Due items being run now, by kind.", running),
            by_kind("peersupport_due_work_failed", "Due items that failed after their last "
                    "attempt (kept, never deleted silently), by kind.", failed),
            by_kind("peersupport_outbox_backlog", "Slack messages recorded and not yet "
                    "delivered, by kind.", outbox),
            GaugeMetricFamily("peersupport_outbox_oldest_seconds", "Age of the oldest Slack "
                              "message not yet delivered (0 when none).", value=age(oldest_effect)),
            CounterMetricFamily("peersupport_outbox_refused", "Slack messages given up on "
                                "after their last attempt.", value=refused),
        ]


    def _heartbeat(self, session: Session, now: datetime) -> list[Metric]:
        row = session.execute(select(ClockHeartbeat.ticked_at, ClockHeartbeat.created_at)
                              .order_by(ClockHeartbeat.id).limit(1)).first()
        limit = STALE_TICKS * self.settings.tick_seconds + self.settings.duework_grace_seconds
        families: list[Metric] = [GaugeMetricFamily(
            "peersupport_clock_stale_after_seconds", "How old the clock's last tick may be "
            "before the clock counts as stopped (three ticks plus the due-work grace period).",
            value=limit)]
        if row is not None:
            # Never ticked yet: late from when a process first looked for it.
            since = _earliest(None, row.ticked_at or row.created_at)
            families.append(GaugeMetricFamily(
                "peersupport_clock_heartbeat_age_seconds", "Seconds since a clock process last "
                "ticked (absent until one has been looked for).",
                value=max(0.0, (now - since).total_seconds())))
        return families


def _earliest(known: datetime | None, moment: datetime | str) -> datetime:
    # An aggregate (MIN) may come back naive, or as text from SQLite, not through UTCDateTime.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment if known is None else min(known, moment)


# -- serving ----------------------------------------------------------------------------------


class _Collectors:
    def __init__(self, collectors: Iterable[Any]):
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def render(sessions: sessionmaker[Session], settings: Settings,
           clock: Clock | None = None) -> tuple[bytes, str]:
    """The exposition: this process's counts (every worker's, in multiprocess mode) and the
    program's figures from the database; returns (body, content type)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry, path=directory)
        own: Any = registry
    else:
        own = REGISTRY
    figures = ProgramFigures(sessions, settings, clock)
    return generate_latest(_Collectors([own, figures])), CONTENT_TYPE_LATEST


def authorized(settings: Settings, authorization: str | None) -> bool:
    """Whether an Authorization header carries PEERSUPPORT_METRICS_TOKEN as a bearer token."""
    token = settings.metrics_token
    scheme, _, given = (authorization or "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), (token or "").encode())


def answer(settings: Settings, authorization: str | None, sessions: sessionmaker[Session],
           clock: Clock | None = None) -> tuple[int, bytes, str]:
    """GET /metrics: (status, body, content type). 404 while no token is set, 401 without it."""
    if not settings.metrics_token:
        return 404, b"not found\n", "text/plain; charset=utf-8"
    if not authorized(settings, authorization):
        return 401, b"a bearer token is needed\n", "text/plain; charset=utf-8"
    return (200, *render(sessions, settings, clock))


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # a line per scrape would drown the clock's own log


def start_clock_metrics(settings: Settings, sessions: sessionmaker[Session],
                        clock: Clock | None = None) -> WSGIServer | None:
    """Serve GET /metrics on PEERSUPPORT_METRICS_PORT from a background thread (the clock's
    and Socket Mode's processes have no web server); None when the port is not set."""
    if settings.metrics_port is None:
        return None

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            status, body, content_type = 404, b"not found\n", "text/plain; charset=utf-8"
        else:
            status, body, content_type = answer(settings, environ.get("HTTP_AUTHORIZATION"),
                                                sessions, clock)
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server("0.0.0.0", settings.metrics_port, app, server_class=_Server,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("serving metrics on port %d at /metrics", settings.metrics_port)
    return server


# -- gunicorn's multiprocess mode ------------------------------------------------------------


def prepare_multiprocess() -> str:
    """Make this process and the workers it forks count into PROMETHEUS_MULTIPROC_DIR, emptied
    first (a private temporary directory when it is unset); returns the directory.

    Call it in gunicorn's master before any worker starts (gunicorn_on_starting). Counts of
    workers that died stay in the directory, so totals survive a worker's restart.
    """
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()  # counts from the previous server run would add up with this one's
        return directory
    # prometheus_client chose in-memory values when it was imported. Counts made so far are
    # dropped (a worker would inherit them, in memory, where no scrape sees them), and those
    # made from now on (every count is labelled, so made on first use, in a worker) go to files.
    for metric in PROCESS_METRICS:
        metric.clear()
    directory = tempfile.mkdtemp(prefix="peersupport-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    values.ValueClass = values.get_value_class()
    return directory


def gunicorn_on_starting(_server: Any) -> None:
    """gunicorn's on_starting hook: prepare multiprocess mode before the first fork."""
    directory = prepare_multiprocess()
    log.info("metrics: workers count into %s", directory)


def gunicorn_child_exit(_server: Any, worker: Any) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges no longer count."""
    multiprocess.mark_process_dead(worker.pid)
