"""A stateful property test of the request machine on PostgreSQL: random interleavings of every
event (requests for oneself and for a team of one or two seats, accepts and seats taken, declines,
offer timeouts, reminders, coordinators taking and picking, cancels, hand-backs, closes, duplicate
deliveries and races between them, the clock) from three requesters, a team caller, four
supporters (case cap 2) and a coordinator, with the invariants checked after every step and, at
the end of each run, once the clock has delivered everything.

Each step runs as the app runs it: the domain change and its flow in one transaction, committed,
and the messages it implies delivered to the loopback Slack stand-in (bot.infra.outbox). A race runs
each side in its own engine and session on its own thread, as two processes would; a timer that
fires "early" does the work its due-work item would do and is marked done with it.

CI runs a short, repeatable run; a longer one explores new ground each time (docs/testing.md):
`TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test PEERSUPPORT_PROPERTY_EXAMPLES=500 \
./test tests/requests/test_request_property.py`
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.app.runtime import Runtime, build_runtime
from bot.infra import outbox
from bot.infra.clock import ManualClock
from bot.infra.db import discard_after_commit, make_sessions, run_after_commit
from bot.infra.messaging import build_client
from bot.infra.models import (
    ACTIVE_STATES,
    UNASSIGNED_STATES,
    CoordinatorAlert,
    DueWork,
    Offer,
    OfferState,
    RequestKind,
    RequestState,
    Seat,
    SeatState,
    Supporter,
    SupportRequest,
    WorkState,
)
from bot.infra.outbox import Effect
from bot.requests import flows as flow
from bot.requests import service as domain
from bot.requests import teams
from bot.requests.service import AlreadyOpen, Outcome, RequestError, RequestForm
from bot.requests.teams import TeamForm
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from bot.sandbox.slack_api import FakeSlack
from bot.sandbox.spec import load_default_spec
from handlers.common.ids import Action
from handlers.requests.effects import MARK
from tests.conftest import PG_URL, START, make_settings, open_database, run_together

pytestmark = pytest.mark.skipif(not PG_URL,
                                reason="PostgreSQL skipped: TEST_DATABASE_URL is not set")

EXAMPLES = int(os.environ.get("PEERSUPPORT_PROPERTY_EXAMPLES", "15"))
STEPS = int(os.environ.get("PEERSUPPORT_PROPERTY_STEPS", "25"))

REQUESTERS = ("UREQPROP01", "UREQPROP02", "UREQPROP03")
TEAM_CALLER = "UTEAMPROP1"  # calls for their team only (the requesters may too)
SUPPORTERS = {  # user id: (department, role)
    "USUPPROP01": ("ICU", "nurse"),
    "USUPPROP02": ("Emergency Department", "nurse"),
    "USUPPROP03": ("ICU", "physician"),
    "USUPPROP04": ("Pharmacy", "pharmacist"),
}
COORDINATOR = "UCOORD0001"
CASE_CAP = 2
WISHES = {  # what the form asks about who should support, and who that leaves
    "anyone": {},
    "outside_icu": {"outside_department": True, "department": "ICU"},  # supporters 02 and 04
    "physician": {"same_role": True, "role": "physician"},  # supporter 03 only
    "nurse_outside_icu": {"same_role": True, "role": "nurse", "outside_department": True,
                          "department": "ICU"},  # supporter 02 only
    "nobody": {"same_role": True, "role": "social_worker"},  # escalated at once
}
TIMERS = (flow.OFFER_TIMEOUT, flow.ESCALATION_REMINDER)
LIVE = (WorkState.PENDING, WorkState.RUNNING)
# What may be left in last_error without anything having gone wrong: waiting for the first post
# of the same message, or a late item moved by the catch-up policy.
HARMLESS = ("waiting for the message's first post", "late: rescheduled")
SPEC = load_default_spec()

picks = st.integers(min_value=0, max_value=63)  # an index into what exists, modulo its size
stale = st.sampled_from([False, False, False, True])  # now and then, an old message's button


def _pick(items: list[Any], index: int) -> Any:
    return items[index % len(items)] if items else None


def _choose(meant: list[Any], ever: list[Any], index: int, old: bool = False) -> Any:
    """What a rule acts on: one of what it is meant for or, when there is none (or an old
    message's button is clicked), one of everything there ever was (a stale click)."""
    return _pick(ever if old or not meant else meant, index)


class _Refused(Exception):
    """Carries a refusal (RequestError, AlreadyOpen) out of a transaction, rolling it back."""


@contextlib.contextmanager
def transaction(runtime: Runtime) -> Iterator[Session]:
    """One listener's unit of work, as handlers/common/middleware.py runs it: commit when the body
    returns (roll back if it raises); what it recorded in the outbox is delivered on commit,
    and any other after-commit work then runs."""
    session = runtime.sessions()
    try:
        with session.begin():
            yield session
    except BaseException:
        discard_after_commit(session)
        session.close()
        raise
    session.close()
    run_after_commit(session)


def attempt(runtime: Runtime, work: Callable[[Session], Any]) -> Any:
    """Run `work` in its own transaction; a refusal the person would see is returned (and its
    transaction rolled back), any other exception fails the test."""
    try:
        with transaction(runtime) as session:
            try:
                return work(session)
            except (RequestError, AlreadyOpen) as refusal:
                raise _Refused(refusal) from None
    except _Refused as refused:
        return refused.args[0]


def describe(result: Any) -> str:
    if isinstance(result, domain.AcceptResult):
        return str(result.outcome)
    if isinstance(result, SupportRequest):
        return f"request {result.id} {result.state}"
    if isinstance(result, Exception):
        return f"refused ({type(result).__name__}: {result})"
    return str(result)


class ErrorLog(logging.Handler):
    """Keeps every log record that reports an error or carries an exception (a delivery that
    failed after its commit is only logged: here it fails the test)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


# -- each event as its listener or timer does it, in the session given ------------------------

def do_accept(runtime: Runtime, db: Session, offer_id: int, user_id: str) -> Any:
    result = domain.accept(db, offer_id, user_id, now=runtime.clock.now())
    if result.outcome == Outcome.ACCEPTED:
        flow.accepted(runtime, db, result)
    return result


def do_decline(runtime: Runtime, db: Session, offer_id: int, user_id: str) -> Any:
    result = domain.decline(db, offer_id, user_id, now=runtime.clock.now())
    if result.outcome == Outcome.DECLINED:
        flow.declined(runtime, db, result)
    return result


def do_cancel(runtime: Runtime, db: Session, request_id: int, user_id: str) -> Any:
    request, _withdrawn = domain.cancel(db, request_id, user_id, now=runtime.clock.now())
    flow.cancelled(runtime, db, request)
    return request


def do_call_team(runtime: Runtime, db: Session, caller: str, form: TeamForm, seats: int,
                 source_key: str) -> Any:
    request = teams.create_team(db, caller, form, seats=seats, now=runtime.clock.now(),
                                source_key=source_key)
    flow.start(runtime, db, request)
    return request


def do_leave(runtime: Runtime, db: Session, user_id: str) -> Any:
    request = domain.expire(db, user_id, now=runtime.clock.now())
    if request is not None:
        flow.cancelled(runtime, db, request)
    return request


def do_hand_back(runtime: Runtime, db: Session, request_id: int, user_id: str) -> Any:
    request = domain.hand_back(db, request_id, user_id, now=runtime.clock.now())
    flow.handed_back(runtime, db, request)
    return request


def do_take(runtime: Runtime, db: Session, request_id: int) -> Any:
    result = domain.take_as_coordinator(db, request_id, COORDINATOR, now=runtime.clock.now())
    if result.outcome == Outcome.ACCEPTED:  # as the listener does: a team's first seat joins
        flow.accepted(runtime, db, result)
    return result


def do_pick(runtime: Runtime, db: Session, request_id: int, supporter_id: str) -> Any:
    request = db.get(SupportRequest, request_id)
    assert request is not None
    flow.direct_offer(runtime, db, request, supporter_id)
    return request


def _fired(runtime: Runtime, db: Session, key: str) -> None:
    """The timer under `key` has fired: marked done as the engine marks it, at the end of the
    transaction that did its work (so it cannot fire again later)."""
    db.execute(update(DueWork).where(DueWork.key == key, DueWork.state == WorkState.PENDING)
               .values(state=WorkState.DONE, finished_at=runtime.clock.now())
               .execution_options(synchronize_session=False))


def do_offer_timeout(runtime: Runtime, db: Session, request_id: int) -> str:
    """The offer timeout of the request's current wave fires (before its time)."""
    request = db.get(SupportRequest, request_id)
    assert request is not None
    wave = request.wave
    flow.advance(runtime, db, request, wave)
    _fired(runtime, db, flow.offer_timeout_key(request_id, wave))
    return f"wave {wave} timed out: request {request.state}, wave {request.wave}"


def do_remind(runtime: Runtime, db: Session, request_id: int) -> str:
    """The request's pending escalation reminder fires (before its time); without one, a
    reminder of its current escalation arrives anyway (it must then change nothing)."""
    request = db.get(SupportRequest, request_id)
    assert request is not None
    live = [w for w in db.scalars(select(DueWork).where(
        DueWork.kind == flow.ESCALATION_REMINDER, DueWork.state == WorkState.PENDING)
        .order_by(DueWork.id)) if w.payload.get("request_id") == request_id]
    timer = live[0] if live else None
    escalation, number = (int(timer.payload["escalation"]), int(timer.payload["number"])) \
        if timer is not None else (request.escalations, 1)
    flow.remind(runtime, db, request_id, escalation, number)
    if timer is not None:
        _fired(runtime, db, timer.key or "")
    return f"reminder {escalation}:{number}: request {request.state}"


class RequestMachine(RuleBasedStateMachine):
    """One workspace on a fresh PostgreSQL schema, driven by hypothesis."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise

    def _start(self) -> None:
        directory = Path(self.stack.enter_context(tempfile.TemporaryDirectory()))
        self.db = self.stack.enter_context(open_database("postgresql", directory))
        self.fake = FakeSlack(SPEC).start()
        self.stack.callback(self.fake.stop)
        for user_id in (*REQUESTERS, TEAM_CALLER, *SUPPORTERS, COORDINATOR):
            self.fake.add_user(user_id)
        config = make_settings(
            self.fake, self.db.url, PEERSUPPORT_COORDINATORS=COORDINATOR,
            PEERSUPPORT_WAVE_SIZE="2", PEERSUPPORT_OFFER_TIMEOUT="now=30,today=60,week=90",
            PEERSUPPORT_ESCALATION_ALERT_MINUTES="1,2", PEERSUPPORT_DEFAULT_COOLDOWN_HOURS="0")
        self.clock = ManualClock(START)
        self.runtime = build_runtime(config, clock=self.clock,
                                     client=build_client(config, timeout=5),
                                     engine=self.db.engine, run_migrations=False)
        self.engine = self.runtime.duework(worker_id="clock")
        self.stack.callback(self.engine.stop)
        # Two more "processes" for races: engines and sessions of their own, each delivering
        # what its own transactions recorded.
        self.racers = [self._racer(), self._racer()]
        self.errors = ErrorLog()
        for name in ("bot", "handlers"):
            logging.getLogger(name).addHandler(self.errors)
            self.stack.callback(logging.getLogger(name).removeHandler, self.errors)
        with transaction(self.runtime) as session:
            roster.upsert(session, [SupporterSpec(u, d, r) for u, (d, r) in SUPPORTERS.items()],
                          now=self.clock.now(), time_zones={}, default_case_cap=CASE_CAP,
                          default_cooldown_hours=0)
        self.forms = 0
        self.seen_requests: list[SupportRequest] = []
        self.seen_offers: list[Offer] = []
        self.seen_seats: dict[int, list[str]] = {}  # team request: its seat holders, in order

    def _racer(self) -> Runtime:
        engine = self.db.new_engine()
        self.stack.callback(engine.dispose)
        racer = dataclasses.replace(self.runtime, engine=engine, sessions=make_sessions(engine),
                                    _now_engine=None)
        racer.sessions.configure(info={outbox.DELIVER_NOW: racer.deliver_now})
        outbox.deliver_on_commit(racer.sessions)
        return racer

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is None:  # else a step failed: that is the failure to report
                self.settle()
        finally:
            self.stack.close()

    # -- what exists (as the last check read it, which is as it is now) -----------------------

    def now(self) -> datetime:
        return self.clock.now()

    def requests(self, *states: str) -> list[SupportRequest]:
        return [r for r in self.seen_requests if not states or r.state in states]

    def offers(self, *states: str) -> list[Offer]:
        return [o for o in self.seen_offers if not states or o.state in states]

    def request(self, request_id: int) -> SupportRequest:
        return next(r for r in self.seen_requests if r.id == request_id)

    def helping(self, request: SupportRequest) -> list[str]:
        """Who is on a request now: its supporter, or a team request's seat holders."""
        if request.kind == RequestKind.TEAM:
            return self.seen_seats.get(request.id, [])
        return [request.supporter_id] if request.supporter_id else []

    def helper(self, request: SupportRequest, pick: int) -> str:
        """One who is on the request (when nobody is, any supporter: a stale click)."""
        return _pick(self.helping(request), pick) or sorted(SUPPORTERS)[pick % len(SUPPORTERS)]

    def race(self, *works: Callable[[Runtime, Session], Any]) -> list[Any]:
        """Run the works at the same moment, each in its own process's engine and session."""
        def run(pair: tuple[Runtime, Callable[[Runtime, Session], Any]],
                go: Callable[[], Any]) -> Any:
            racer, work = pair
            go()
            return attempt(racer, lambda session: work(racer, session))

        return run_together(run, list(zip(self.racers, works, strict=False)))

    def once(self, work: Callable[[Runtime, Session], Any]) -> Any:
        return attempt(self.runtime, lambda session: work(self.runtime, session))

    # -- rules (what they draw never depends on the state, which races make unpredictable: so
    # hypothesis can replay and shrink any run; a rule with nothing to act on does nothing) -----

    @initialize(wishes=st.lists(st.sampled_from(sorted(WISHES)), min_size=3, max_size=3),
                crises=st.lists(st.booleans(), min_size=3, max_size=3))
    def everyone_asks(self, wishes: list[str], crises: list[bool]) -> None:
        """Each requester starts with a request."""
        for requester, wish, crisis in zip(REQUESTERS, wishes, crises, strict=True):
            form = RequestForm(urgency="now", connection="slack", crisis=crisis, **WISHES[wish])
            result = self.once(lambda rt, s, r=requester, f=form: flow.create(rt, s, r, f, None))
            note(f"{requester} asks ({wish}, crisis={crisis}) -> {describe(result)}")

    @rule(requester=st.sampled_from(REQUESTERS), urgency=st.sampled_from(["now", "today", "week"]),
          connection=st.sampled_from(["slack", "phone", "in_person"]),
          wish=st.sampled_from(sorted(WISHES)), followups=st.booleans(), crisis=st.booleans(),
          copies=st.sampled_from(["once", "same_form_twice", "two_forms"]))
    def submit(self, requester: str, urgency: str, connection: str, wish: str, followups: bool,
               crisis: bool, copies: str) -> None:
        """A requester sends the request form: once, the same submission delivered twice at
        once, or two forms at once."""
        form = RequestForm(urgency=urgency, connection=connection, followups=followups,
                           crisis=crisis, **WISHES[wish])
        self.forms += 1
        views = {"once": [f"V{self.forms}"], "same_form_twice": [f"V{self.forms}"] * 2,
                 "two_forms": [f"V{self.forms}a", f"V{self.forms}b"]}[copies]
        works = [lambda rt, s, view=view: flow.create(rt, s, requester, form,
                                                      source_key=f"view:{view}")
                 for view in views]
        results = self.race(*works) if len(works) > 1 else [self.once(works[0])]
        note(f"submit {requester} {wish} crisis={crisis} ({copies}) -> "
             f"{[describe(r) for r in results]}")

    @rule(caller=st.sampled_from((TEAM_CALLER, *REQUESTERS)),
          urgency=st.sampled_from(["now", "today", "week"]), seats=st.sampled_from([1, 2]),
          copies=st.sampled_from(["once", "same_form_twice", "two_forms"]))
    def call_for_team(self, caller: str, urgency: str, seats: int, copies: str) -> None:
        """Someone sends the team form (one seat or two): once, the same submission delivered
        twice at once, or two forms at once (two team requests: a team is not one person)."""
        form = TeamForm(unit="Paediatric ICU", size="6_15" if seats == 2 else "2_5",
                        urgency=urgency, group=True)
        self.forms += 1
        views = {"once": [f"V{self.forms}"], "same_form_twice": [f"V{self.forms}"] * 2,
                 "two_forms": [f"V{self.forms}a", f"V{self.forms}b"]}[copies]
        works = [lambda rt, s, view=view: do_call_team(rt, s, caller, form, seats,
                                                       f"view:{view}")
                 for view in views]
        results = self.race(*works) if len(works) > 1 else [self.once(works[0])]
        note(f"team call by {caller}, {seats} seats ({copies}) -> "
             f"{[describe(r) for r in results]}")

    @rule(pick=picks, old=stale)
    def accept(self, pick: int, old: bool) -> None:
        """A supporter clicks Accept on one of their offers (now and then on an old one)."""
        offer = _choose(self.offers(OfferState.PENDING), self.offers(), pick, old)
        if offer is None:
            return
        result = self.once(lambda rt, s: do_accept(rt, s, offer.id, offer.supporter_id))
        note(f"accept offer {offer.id} ({offer.supporter_id}, request {offer.request_id}) -> "
             f"{describe(result)}")

    @rule(pick=picks, other=picks, how=st.sampled_from(
        ["double_click", "two_supporters", "one_supporter_two_requests"]))
    def accept_race(self, pick: int, other: int, how: str) -> None:
        """Two accepts at once: one click delivered twice, two supporters of one request, or
        one supporter accepting two requests (their case cap)."""
        pending = self.offers(OfferState.PENDING) or self.offers()
        first = _pick(pending, pick)
        if first is None:
            return
        if how == "two_supporters":
            second = _pick([o for o in pending if o.request_id == first.request_id
                            and o.id != first.id], other) or first
        elif how == "one_supporter_two_requests":
            second = _pick([o for o in pending if o.supporter_id == first.supporter_id
                            and o.id != first.id], other) or first
        else:
            second = first
        results = self.race(*(lambda rt, s, o=o: do_accept(rt, s, o.id, o.supporter_id)
                              for o in (first, second)))
        note(f"accept race ({how}): offers {first.id} ({first.supporter_id}) and {second.id} "
             f"({second.supporter_id}) -> {[describe(r) for r in results]}")

    @rule(pick=picks, old=stale)
    def decline(self, pick: int, old: bool) -> None:
        """A supporter declines one of their offers."""
        offer = _choose(self.offers(OfferState.PENDING), self.offers(), pick, old)
        if offer is None:
            return
        result = self.once(lambda rt, s: do_decline(rt, s, offer.id, offer.supporter_id))
        note(f"decline offer {offer.id} ({offer.supporter_id}) -> {describe(result)}")

    @rule(pick=picks, old=stale)
    def offer_timeout(self, pick: int, old: bool) -> None:
        """The offer timeout of a request's current wave fires."""
        request = _choose(self.requests(RequestState.OPEN), self.requests(), pick, old)
        if request is None:
            return
        result = self.once(lambda rt, s: do_offer_timeout(rt, s, request.id))
        note(f"offer timeout of request {request.id}: {describe(result)}")

    @rule(pick=picks, on_time=st.booleans())
    def offer_timeout_and_accept(self, pick: int, on_time: bool) -> None:
        """An offer's wave times out just as its supporter accepts: before its time (the
        timer's work alone), or on time (the clock reaches it and the due-work engine runs it)."""
        offer = _choose(self.offers(OfferState.PENDING), self.offers(), pick)
        if offer is None:
            return
        request = self.request(offer.request_id)
        with self.runtime.sessions() as session:
            timer = session.scalars(select(DueWork).where(
                DueWork.key == flow.offer_timeout_key(request.id, request.wave),
                DueWork.state == WorkState.PENDING)).first()
        on_time = on_time and timer is not None
        if on_time:
            assert timer is not None
            if timer.due_at > self.now():
                self.clock.advance((timer.due_at - self.now()).total_seconds())

            def timeout(rt: Runtime, _s: Session) -> Any:
                return rt.duework(worker_id="racer").run_now([timer.id])
        else:
            def timeout(rt: Runtime, s: Session) -> Any:
                return do_offer_timeout(rt, s, offer.request_id)
        results = self.race(timeout, lambda rt, s: do_accept(rt, s, offer.id,
                                                             offer.supporter_id))
        note(f"offer timeout (on_time={on_time}) of request {offer.request_id} and accept of "
             f"offer {offer.id} -> {[describe(r) for r in results]}")

    @rule(pick=picks, old=stale)
    def remind(self, pick: int, old: bool) -> None:
        """An escalated request's reminder fires."""
        request = _choose(self.requests(RequestState.ESCALATED), self.requests(), pick, old)
        if request is None:
            return
        result = self.once(lambda rt, s: do_remind(rt, s, request.id))
        note(f"remind request {request.id}: {describe(result)}")

    @rule(pick=picks, old=stale)
    def coordinator_takes(self, pick: int, old: bool) -> None:
        """The coordinator takes a request themselves."""
        request = _choose(self.requests(*UNASSIGNED_STATES), self.requests(), pick, old)
        if request is None:
            return
        result = self.once(lambda rt, s: do_take(rt, s, request.id))
        note(f"coordinator takes request {request.id} -> {describe(result)}")

    @rule(pick=picks, supporter=st.sampled_from(sorted(SUPPORTERS)), old=stale)
    def coordinator_picks(self, pick: int, supporter: str, old: bool) -> None:
        """The coordinator offers a request to a supporter they pick; when that is not refused
        (they are told "Offered to ..."), the supporter can accept it."""
        request = _choose(self.requests(*UNASSIGNED_STATES), self.requests(), pick, old)
        if request is None:
            return
        result = self.once(lambda rt, s: do_pick(rt, s, request.id, supporter))
        note(f"coordinator picks {supporter} for request {request.id} -> {describe(result)}")
        if isinstance(result, Exception):
            return
        with self.runtime.sessions() as session:
            picked = session.scalars(select(Offer).where(
                Offer.request_id == request.id, Offer.supporter_id == supporter)).one()
        assert picked.state == OfferState.PENDING, (
            f"the coordinator was told request {request.id} was offered to {supporter}, but "
            f"their offer {picked.id} is {picked.state}: they cannot accept it")

    @rule(pick=picks, how=st.sampled_from(["once", "twice_at_once", "requester_leaves"]),
          old=stale)
    def cancel(self, pick: int, how: str, old: bool) -> None:
        """A requester withdraws a request (the click delivered twice at once), or leaves the
        workspace."""
        request = _choose(self.requests(*ACTIVE_STATES), self.requests(), pick, old)
        if request is None:
            return
        requester = request.requester_id or ""
        if how == "twice_at_once":
            results = self.race(*(lambda rt, s: do_cancel(rt, s, request.id, requester),) * 2)
        elif how == "requester_leaves":
            results = [self.once(lambda rt, s: do_leave(rt, s, requester))]
        else:
            results = [self.once(lambda rt, s: do_cancel(rt, s, request.id, requester))]
        note(f"cancel request {request.id} by {requester} ({how}) -> "
             f"{[describe(r) for r in results]}")

    @rule(pick=picks)
    def cancel_and_accept(self, pick: int) -> None:
        """The requester withdraws just as a supporter accepts."""
        offer = _choose(self.offers(OfferState.PENDING), self.offers(), pick)
        if offer is None:
            return
        requester = self.request(offer.request_id).requester_id or ""
        results = self.race(
            lambda rt, s: do_cancel(rt, s, offer.request_id, requester),
            lambda rt, s: do_accept(rt, s, offer.id, offer.supporter_id))
        note(f"cancel request {offer.request_id} and accept offer {offer.id} -> "
             f"{[describe(r) for r in results]}")

    @rule(pick=picks, twice=st.booleans(), old=stale)
    def hand_back(self, pick: int, twice: bool, old: bool) -> None:
        """The assigned supporter, or a seat holder of a team request (placed or not), hands it
        back (the click delivered twice at once; a team request's two seat holders at once)."""
        meant = [r for r in self.requests(*ACTIVE_STATES)
                 if r.state == RequestState.ASSIGNED or self.helping(r)]
        request = _choose(meant, self.requests(), pick, old)
        if request is None:
            return
        user_id = self.helper(request, pick)
        holders = self.helping(request) if request.kind == RequestKind.TEAM else []
        # Twice: one click delivered twice or, now and then, both seat holders at once.
        users = holders if len(holders) == 2 and pick % 2 else [user_id] * 2
        if twice:
            results = self.race(*(lambda rt, s, u=u: do_hand_back(rt, s, request.id, u)
                                  for u in users))
        else:
            users = [user_id]
            results = [self.once(lambda rt, s: do_hand_back(rt, s, request.id, user_id))]
        note(f"hand back request {request.id} by {users} (twice={twice}) -> "
             f"{[describe(r) for r in results]}")

    @rule(pick=picks, old=stale)
    def close(self, pick: int, old: bool) -> None:
        """The supporter (of a team request, any seat holder) closes the encounter."""
        request = _choose(self.requests(RequestState.ASSIGNED), self.requests(), pick, old)
        if request is None:
            return
        user_id = self.helper(request, pick)
        present = "2_5" if request.kind == RequestKind.TEAM else None
        result = self.once(lambda rt, s: domain.close(
            s, request.id, user_id, now=rt.clock.now(), duration="15_30", referred=False,
            need_met="yes", people_present=present))
        note(f"close request {request.id} by {user_id} -> {describe(result)}")

    @rule(supporter=st.sampled_from(sorted(SUPPORTERS)), away=st.booleans())
    def supporter_status(self, supporter: str, away: bool) -> None:
        """A supporter sets themselves away, or available again (who is eligible changes)."""
        change = roster.set_away if away else roster.set_available
        self.once(lambda rt, s: change(s, supporter, now=rt.clock.now()))
        note(f"{supporter} is {'away' if away else 'available'}")

    @rule(seconds=st.sampled_from([1, 5, 10, 31, 61, 121]))
    def clock_runs(self, seconds: int) -> None:
        """Time passes and the clock runs what fell due (timers, and effects that waited)."""
        self.clock.advance(seconds)
        report = self.engine.run_until_idle()
        note(f"clock +{seconds}s: {report}")

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def everything_holds(self) -> None:
        with self.runtime.sessions() as session:
            self.check(session, settled=False)

    def settle(self) -> None:
        """Run the clock until every effect is delivered, then check everything again, now
        with nothing left that could still put it right."""
        for _ in range(60):
            with self.runtime.sessions() as session:
                waiting = session.scalars(select(DueWork.id).where(
                    DueWork.kind.like(outbox.PREFIX + "%"), DueWork.state.in_(LIVE))).first()
            if waiting is None:
                break
            self.clock.advance(2)
            self.engine.run_until_idle()
        with self.runtime.sessions() as session:
            self.check(session, settled=True)

    def check(self, session: Session, *, settled: bool) -> None:
        requests = list(session.scalars(select(SupportRequest).order_by(SupportRequest.id)))
        offers = list(session.scalars(select(Offer).order_by(Offer.id)))
        self.seen_requests, self.seen_offers = requests, offers
        work = list(session.scalars(select(DueWork).order_by(DueWork.id)))
        caps = {s.user_id: s.case_cap for s in session.scalars(select(Supporter))}
        seats = list(session.scalars(select(Seat).order_by(Seat.id)))
        self.seen_seats = {}
        for seat in seats:
            if seat.state == SeatState.HELD:
                self.seen_seats.setdefault(seat.request_id, []).append(seat.supporter_id or "")
        self.check_requests(requests, offers, work, caps)
        self.check_teams(requests, offers, seats, work)
        self.check_deliveries(requests, work, settled=settled)
        self.check_offers_shown(requests, offers, work, settled=settled)
        if settled:
            self.check_messages_agree(session, requests, offers)
        assert not self.fake.violations, f"calls breaking Slack's spec: {self.fake.violations}"
        errors = [f"{r.name}: {r.getMessage()} {r.exc_info[1] if r.exc_info else ''}"
                  for r in self.errors.records]
        assert not errors, f"errors were logged: {errors}"

    def check_requests(self, requests: list[SupportRequest], offers: list[Offer],
                       work: list[DueWork], caps: dict[str, int]) -> None:
        """One supporter at most (of a team request, its seats: check_teams), within their cap;
        ended requests are quiet; unplaced ones always have a timer that will move them on."""
        by_request: dict[int, list[Offer]] = {}
        for offer in offers:
            by_request.setdefault(offer.request_id, []).append(offer)
        timers: dict[int, list[DueWork]] = {}
        for item in work:
            if item.kind in TIMERS and item.state in LIVE:
                timers.setdefault(int(item.payload["request_id"]), []).append(item)

        # A team request is a call for others: it is not its caller's own active request.
        active = Counter(r.requester_id for r in requests if r.state in ACTIVE_STATES
                         and r.kind == RequestKind.PERSONAL)
        assert max(active.values(), default=0) <= 1, f"two active requests of one person: {active}"
        # Open cases: personal requests placed with them, and seats they hold on team requests.
        cases = Counter(r.supporter_id for r in requests if r.state == RequestState.ASSIGNED
                        and r.kind == RequestKind.PERSONAL)
        for holders in self.seen_seats.values():
            cases.update(holders)
        for supporter_id, count in cases.items():
            if supporter_id in caps:  # a coordinator who takes requests has no cap
                assert count <= caps[supporter_id], \
                    f"{supporter_id} has {count} open cases, over their cap"

        for request in requests:
            mine = by_request.get(request.id, [])
            accepted = [o.supporter_id for o in mine if o.state == OfferState.ACCEPTED]
            pending = [o.id for o in mine if o.state == OfferState.PENDING]
            live = timers.get(request.id, [])
            where = (f"request {request.id} ({request.state}, wave {request.wave}, escalation "
                     f"{request.escalations}, supporter {request.supporter_id})")
            if request.kind == RequestKind.PERSONAL:
                assert len(accepted) <= 1, f"{where}: several accepted offers {accepted}"
            if request.state == RequestState.ASSIGNED and request.kind == RequestKind.PERSONAL:
                # A supporter accepted their offer; a coordinator who took it has none.
                expected = [request.supporter_id] if request.supporter_id in caps else []
                assert accepted == expected, f"{where}: accepted offers {accepted}"
            if request.state in UNASSIGNED_STATES:
                if request.kind == RequestKind.PERSONAL:
                    assert request.supporter_id is None and not accepted, \
                        f"{where}: unassigned, but accepted by {accepted}"
            else:
                assert not pending, f"{where}: offers {pending} still pending"
            if request.state in (RequestState.CANCELLED, RequestState.CLOSED):
                assert not live, f"{where}: timers still live: {[t.key for t in live]}"
            if request.state == RequestState.OPEN:
                current = [t for t in live if t.kind == flow.OFFER_TIMEOUT
                           and t.payload.get("wave") == request.wave]
                assert current, (f"{where}: open with no timer for its wave (live: "
                                 f"{[t.key for t in live]}): nothing will ever move it on")
            if request.state == RequestState.ESCALATED:
                reminders = [t for t in live if t.kind == flow.ESCALATION_REMINDER
                             and t.payload.get("escalation") == request.escalations]
                assert reminders, (f"{where}: escalated with no reminder of this escalation "
                                   f"(live: {[t.key for t in live]})")

    def check_teams(self, requests: list[SupportRequest], offers: list[Offer], seats: list[Seat],
                    work: list[DueWork]) -> None:
        """A team request has exactly `seats` supporters when placed and fewer while it looks,
        each holding one seat and one accepted offer; ended, it holds none; each placement
        introduces them once and gives each seat holder the case."""
        effects = Counter((w.kind, w.key) for w in work if w.kind.startswith(outbox.PREFIX))
        for request in requests:
            mine = [s for s in seats if s.request_id == request.id]
            if request.kind == RequestKind.PERSONAL:
                assert not mine, f"request {request.id}: personal, with seats {mine}"
                continue
            holders = [s.supporter_id for s in mine if s.state == SeatState.HELD]
            accepted = Counter(o.supporter_id for o in offers
                               if o.request_id == request.id and o.state == OfferState.ACCEPTED)
            where = (f"team request {request.id} ({request.state}, {request.filled} of "
                     f"{request.seats} seats filled, held by {holders}, supporter "
                     f"{request.supporter_id}, version {request.version})")
            assert len(holders) <= request.seats, f"{where}: more seats held than it has"
            assert len(set(holders)) == len(holders), f"{where}: one supporter, two seats"
            if request.state in (RequestState.CANCELLED, RequestState.CLOSED):
                # Its seats are freed; `filled` keeps how many were on it, as a personal
                # request keeps its supporter.
                assert not holders, f"{where}: ended, but seats are still held"
                continue
            assert request.filled == len(holders), f"{where}: filled is not the seats held"
            assert (request.state == RequestState.ASSIGNED) == (request.filled == request.seats), \
                f"{where}: placed is not every seat held"
            if holders:
                assert request.supporter_id in holders, f"{where}: its supporter holds no seat"
            else:
                assert request.supporter_id is None, f"{where}: a supporter, but no seat held"
            for holder in holders:
                # A coordinator who took a seat themselves was never sent an offer.
                expected = 0 if holder == COORDINATOR and not accepted[holder] else 1
                assert accepted[holder] == expected, \
                    f"{where}: {holder} holds a seat with {accepted[holder]} accepted offers"
            assert set(accepted) <= set(holders), \
                f"{where}: accepted offers of {sorted(accepted)} who hold no seat"
            if request.state == RequestState.ASSIGNED:
                version = f"{request.id}:v{request.version}"
                intros = effects[(Effect.INTRO, f"intro:{version}")]
                assert intros == 1, f"{where}: {intros} introductions of this placement"
                cases = sorted(key for kind, key in effects if kind == Effect.CASE
                               and key.startswith(f"case:{request.id}:")
                               and key.endswith(f":v{request.version}"))
                assert cases == sorted(f"case:{request.id}:{h}:v{request.version}"
                                       for h in holders), \
                    f"{where}: this placement's cases went out as {cases}"

    def check_deliveries(self, requests: list[SupportRequest], work: list[DueWork], *,
                         settled: bool) -> None:
        """Every effect posts at most once (once settled: every effect was delivered), and each
        assignment introduces its two people exactly once, in their group DM."""
        effects = {w.id: w for w in work if w.kind.startswith(outbox.PREFIX)}
        troubled = [(w.key, w.state, w.attempts, w.last_error) for w in work
                    if w.state == WorkState.FAILED
                    or (w.last_error and w.last_error not in HARMLESS)]
        assert not troubled, f"due work that failed: {troubled}"
        posts: list[tuple[str, str]] = []  # (channel, effect id) of every marked post
        for call in self.fake.calls_to("chat.postMessage"):
            metadata = call.args.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            if isinstance(metadata, dict) and metadata.get("event_type") == MARK:
                posts.append((str(call.args.get("channel")),
                              str(metadata["event_payload"]["effect"])))
        # A message is marked with its effect's key, which names the change that implied it.
        twice = [effect_id for effect_id, count in Counter(e for _c, e in posts).items()
                 if count > 1]
        assert not twice, f"effects posted twice: {twice}"
        if settled:
            unfinished = [(w.key, w.state, w.last_error) for w in effects.values()
                          if w.state != WorkState.DONE]
            assert not unfinished, f"effects never delivered: {unfinished}"

        opened = Counter(str(c.args.get("users")) for c in self.fake.calls_to(
            "conversations.open"))
        for request in requests:
            if request.state != RequestState.ASSIGNED:
                continue
            # While assigned, the version is the one the assignment wrote.
            key = f"intro:{request.id}:v{request.version}"
            intro = next((w for w in effects.values()
                          if w.kind == Effect.INTRO and w.key == key), None)
            assert intro is not None, f"request {request.id}: assigned with no introduction"
            if intro.state != WorkState.DONE:
                assert not settled, f"request {request.id}: introduction never delivered"
                continue
            people = [request.requester_id or "", *(
                [str(s) for s in intro.payload["supporter_ids"]]
                if request.kind == RequestKind.TEAM else [request.supporter_id or ""])]
            if request.kind == RequestKind.TEAM:
                assert people[1:] == self.seen_seats.get(request.id, []), (
                    f"team request {request.id}: introduced {people[1:]}, seats held by "
                    f"{self.seen_seats.get(request.id, [])}")
            pair = ",".join(people)
            group = self.fake.dm_channel(people)
            shown = [c for c, e in posts if e == intro.key]
            assert opened[pair] >= 1 and shown == [group], (
                f"request {request.id}: introduction posted in {shown}, their group DM is "
                f"{group}, opened {opened[pair]} times")

    def shown(self, channel: str | None, ts: str | None) -> list[dict[str, Any]]:
        """The message at (channel, ts) as people see it now."""
        with self.fake._lock:
            return [dict(m) for m in self.fake.messages.get(channel or "", []) if m["ts"] == ts]

    def check_offers_shown(self, requests: list[SupportRequest], offers: list[Offer],
                           work: list[DueWork], *, settled: bool) -> None:
        """A supporter can answer every offer still open to them: its DM shows Accept and
        Decline (or is about to be posted)."""
        unplaced = {r.id for r in requests if r.state in UNASSIGNED_STATES}
        posting = {int(w.payload["offer_id"]) for w in work
                   if w.kind == Effect.OFFER_POST and w.state in LIVE}
        for offer in offers:
            if offer.state != OfferState.PENDING or offer.request_id not in unplaced:
                continue
            if offer.id in posting and not settled:
                continue
            shown = self.shown(offer.channel, offer.ts)
            assert any(Action.ACCEPT_OFFER in json.dumps(m.get("blocks")) for m in shown), (
                f"offer {offer.id} of request {offer.request_id} to {offer.supporter_id} is "
                f"pending, but its DM {offer.channel}/{offer.ts} reads "
                f"{[m['text'] for m in shown]}: they were never asked (again)")

    def check_messages_agree(self, session: Session, requests: list[SupportRequest],
                             offers: list[Offer]) -> None:
        """Once everything is delivered: no offer DM shows buttons that can no longer work, every
        escalated request is in front of the coordinator, and each coordinator alert shows Take
        exactly while the request still needs someone."""
        states = {r.id: r.state for r in requests}
        for offer in offers:
            if not offer.ts or (offer.state == OfferState.PENDING
                                and states[offer.request_id] in UNASSIGNED_STATES):
                continue
            shown = self.shown(offer.channel, offer.ts)
            assert not any(Action.ACCEPT_OFFER in json.dumps(m.get("blocks")) for m in shown), (
                f"offer {offer.id} ({offer.state}) of request {offer.request_id} "
                f"({states[offer.request_id]}) still shows its buttons")
        alerts = {(a.request_id, a.coordinator_id): a
                  for a in session.scalars(select(CoordinatorAlert))}
        for request in requests:
            if request.state == RequestState.ESCALATED:
                assert (request.id, COORDINATOR) in alerts, \
                    f"request {request.id} is escalated, but {COORDINATOR} was never alerted"
        for (request_id, coordinator), alert in alerts.items():
            shown = self.shown(alert.channel, alert.ts)
            take = any(Action.TAKE_REQUEST in json.dumps(m.get("blocks")) for m in shown)
            assert take == (states[request_id] in UNASSIGNED_STATES), (
                f"request {request_id} is {states[request_id]}, but {coordinator}'s alert reads "
                f"{[m['text'] for m in shown]}")


RequestMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    # Short runs (CI) are repeatable; long runs explore new ground each time.
    derandomize=EXAMPLES <= 100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
# One pytest test runs every example (about a second each) and, on a failure, shrinks it for
# up to five minutes: the suite's 120 s timeout is too short for that.
TestRequestMachine = pytest.mark.timeout(600 + 3 * EXAMPLES * STEPS // 25)(
    RequestMachine.TestCase)
