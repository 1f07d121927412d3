"""A message's update waits for its own first post: in place while that post is going out, and
handed to the clock (never holding a thread) while the post itself waits for a later tick."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from bot.infra.clock import ManualClock
from bot.infra.db import after_commit, run_after_commit
from bot.infra.duework import DueWorkEngine, JobContext, JobKind, JobRegistry, schedule
from bot.infra.models import DueWork, WorkState
from bot.infra.outbox import Effect
from handlers.common.ids import Action
from handlers.requests.effects import wait_for_earlier
from tests.conftest import AppServer, Database
from tests.requests.test_requests_http import (
    SUPPORTERS,
    add_supporters,
    ask,
    offer_value,
    posted_offers,
)

KIND = Effect.STATUS.value


class StatusMessage:
    """Stands in for a request's status message: the post blocks until released; an update
    waits for earlier ones as the real delivery does."""

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.post_started = threading.Event()
        self.release_post = threading.Event()

    def __call__(self, ctx: JobContext) -> None:
        if ctx.key == "status:1:post":
            self.post_started.set()
            assert self.release_post.wait(30)
        else:
            wait_for_earlier(ctx, Effect.STATUS, "status:1:")
        self.finished.append(str(ctx.key))


def engine_for(database: Database, clock: ManualClock, body: StatusMessage) -> DueWorkEngine:
    registry = JobRegistry()
    registry.register(JobKind(KIND, body))
    return DueWorkEngine(database.sessions, registry, clock, threads=1)


def record(database: Database, clock: ManualClock, key: str, in_seconds: float) -> int:
    with database.sessions.begin() as session:
        schedule(session, KIND, clock.now() + timedelta(seconds=in_seconds), now=clock.now(),
                 key=key)
    with database.sessions() as session:
        return session.scalar(select(DueWork.id).where(DueWork.key == key))


def row(database: Database, item_id: int) -> DueWork:
    with database.sessions() as session:
        return session.get(DueWork, item_id)


def test_an_update_behind_a_post_handed_to_a_later_tick_follows_it_there(
        database: Database, clock: ManualClock) -> None:
    body = StatusMessage()
    body.release_post.set()
    engine = engine_for(database, clock, body)
    post = record(database, clock, "status:1:post", 30)  # Slack asked it to wait 30 s
    update = record(database, clock, "status:1:v2", 0)

    report = engine.tick()

    assert (report.claimed, report.retried) == (1, 1)
    waiting = row(database, update)
    assert waiting.state == WorkState.PENDING
    assert waiting.due_at == row(database, post).due_at, "it goes out with the post, not before"
    assert waiting.last_error == "waiting for the message's first post"
    assert body.finished == []

    clock.advance(30)
    assert engine.tick().done == 2
    assert body.finished == ["status:1:post", "status:1:v2"], "the post first, once each"


def test_an_update_waits_in_place_for_a_post_going_out_now(
        database: Database, clock: ManualClock) -> None:
    body = StatusMessage()
    post = record(database, clock, "status:1:post", 0)
    update = record(database, clock, "status:1:v2", 0)
    posting = threading.Thread(target=engine_for(database, clock, body).run_now, args=([post],))
    posting.start()
    assert body.post_started.wait(10)

    updating = threading.Thread(target=engine_for(database, clock, body).run_now,
                                args=([update],))
    updating.start()
    # The update is waiting on the post, which then finishes (its Slack call came back).
    body.release_post.set()
    posting.join(30)
    updating.join(30)

    assert body.finished == ["status:1:post", "status:1:v2"]
    assert row(database, update).state == WorkState.DONE, "never handed to the clock"


def test_after_an_accept_the_introduction_goes_out_before_anything_else(
        app_server: AppServer) -> None:
    """Both people wait on the introduction: the others' offer updates, the supporter's own
    notes and the time-zone look-up for check-ins days away come after it."""
    add_supporters(app_server, *SUPPORTERS[:3])
    ask(app_server)
    posted_offers(app_server, 3)
    app_server.settle()  # the person's own status message went out after the offers
    fake = app_server.slack.fake
    before = len(fake.calls)
    winner = SUPPORTERS[0]
    assert app_server.slack.block_action(winner, Action.ACCEPT_OFFER,
                                         offer_value(app_server, winner)).status == 200
    app_server.settle()
    fake.wait_for("chat.update", lambda c: "already taken" in c.args["text"], count=2)
    fake.wait_for("users.info")
    after = list(fake.calls)[before:]
    methods = [(call.method, str(call.args.get("channel", ""))[:1]) for call in after]
    intro = methods.index(("chat.postMessage", "G"))
    assert methods[:intro] == [("conversations.open", "")], methods


def test_what_commits_send_runs_before_housekeeping_and_in_commit_order(
        database: Database) -> None:
    """A listener that commits twice sends the first commit's messages first (the second's
    updates wait on the first's posts), and both before work such as a time-zone look-up."""
    ran: list[str] = []
    session = database.sessions()
    after_commit(session, lambda: ran.append("first commit's messages"), first=True)
    after_commit(session, lambda: ran.append("time zone look-up"))
    after_commit(session, lambda: ran.append("second commit's messages"), first=True)
    run_after_commit(session)
    assert ran == ["first commit's messages", "second commit's messages", "time zone look-up"]
    run_after_commit(session)
    assert len(ran) == 3, "run once"
    session.close()
