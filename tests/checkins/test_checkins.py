"""Follow-up check-ins: placement in people's hours, answers, and sending exactly once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.checkins import service as checkins
from bot.checkins.service import CheckInError, place
from bot.infra.db import make_sessions
from bot.infra.duework import DueWorkEngine
from bot.infra.models import (
    CheckIn,
    CheckInState,
    ContactHours,
    DueWork,
    RequestState,
    SeenDelivery,
    SupportRequest,
    WorkState,
)
from bot.requests import service as domain
from bot.requests.service import RequestForm
from handlers.checkins.blocks import METADATA_TYPE
from handlers.common.ids import Action, Block, Callback
from tests.conftest import AppServer, Database, eventually, run_together
from tests.requests.test_requests_http import (
    REQUESTER,
    SUPPORTERS,
    accept_first,
    add_supporters,
    home_of,
    tick,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
NINE, SIX_PM = 9 * 60, 18 * 60


def at(tz: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=tz).astimezone(UTC)


# -- placement ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "expected"), [
    (at(NY, 2026, 3, 3, 10, 0), at(NY, 2026, 3, 3, 10, 0)),   # inside: unchanged
    (at(NY, 2026, 3, 3, 6, 0), at(NY, 2026, 3, 3, 9, 0)),     # early: that morning
    (at(NY, 2026, 3, 3, 19, 0), at(NY, 2026, 3, 4, 9, 0)),    # late: next morning
    (at(NY, 2026, 3, 7, 20, 0), at(NY, 2026, 3, 8, 9, 0)),    # into the spring-forward day
    (at(NY, 2026, 10, 31, 23, 0), at(NY, 2026, 11, 1, 9, 0)),  # into the fall-back day
])
def test_check_ins_land_inside_the_persons_hours(moment: datetime, expected: datetime) -> None:
    placed = place(moment, "America/New_York", NINE, SIX_PM)
    assert placed == expected
    assert placed.astimezone(NY).hour >= 9


def test_spring_forward_keeps_the_wall_clock() -> None:
    before = place(at(NY, 2026, 3, 6, 20, 0), "America/New_York", NINE, SIX_PM)
    after = place(at(NY, 2026, 3, 7, 20, 0), "America/New_York", NINE, SIX_PM)
    assert (before.astimezone(NY).hour, after.astimezone(NY).hour) == (9, 9)
    assert after - before == timedelta(hours=23), "the night of 8 March is an hour short"


def test_a_start_inside_the_skipped_hour_lands_after_it() -> None:
    placed = place(at(NY, 2026, 3, 8, 1, 0), "America/New_York", 150, 600)  # from 02:30
    assert placed.astimezone(NY).strftime("%H:%M") == "03:30"


def test_night_shift_hours_run_overnight() -> None:
    nights = (20 * 60, 8 * 60)
    assert place(at(NY, 2026, 3, 3, 23, 0), "America/New_York", *nights) == \
        at(NY, 2026, 3, 3, 23, 0)
    assert place(at(NY, 2026, 3, 3, 12, 0), "America/New_York", *nights) == \
        at(NY, 2026, 3, 3, 20, 0)


# -- plan and answers --------------------------------------------------------------------------


def connected(db: Database, *, followups: bool = True, tz: str = "America/New_York") -> int:
    with db.sessions.begin() as session:
        session.add(ContactHours(user_id=REQUESTER, tz=tz, start_minute=NINE,
                                 end_minute=SIX_PM, updated_at=NOW))
        request = domain.create(session, REQUESTER, RequestForm(
            urgency="now", connection="slack", followups=followups), now=NOW)
        request.state, request.supporter_id = RequestState.ASSIGNED, "USUPP00001"
        checkins.plan(session, request, now=NOW, offsets_days=(1, 3, 7, 30),
                      default_tz="UTC")
        return request.id


def planned(db: Database) -> list[CheckIn]:
    with db.sessions() as session:
        return list(session.scalars(select(CheckIn).order_by(CheckIn.number)))


def test_plan_places_each_check_in_in_hours(database: Database) -> None:
    connected(database)
    times = [c.due_at.astimezone(NY) for c in planned(database)]
    assert [t.strftime("%a %d %b %H:%M") for t in times] == [
        "Tue 03 Mar 10:00", "Thu 05 Mar 10:00", "Mon 09 Mar 11:00", "Wed 01 Apr 11:00"]


def test_a_check_in_moved_since_it_was_loaded_is_not_claimed(database: Database) -> None:
    connected(database)
    with database.sessions() as reader:
        stale = reader.scalars(select(CheckIn).order_by(CheckIn.number)).first()
        reader.expunge(stale)
    with database.sessions.begin() as session:
        checkins.snooze(session, stale.id, REQUESTER, now=NOW)  # a new version, a new timer
    with database.sessions.begin() as session:
        assert checkins.claim_for_sending(session, [stale]) == set()
    assert planned(database)[0].state == CheckInState.SCHEDULED


def test_no_check_ins_without_consent(database: Database) -> None:
    connected(database, followups=False)
    assert planned(database) == []


def test_each_answer_is_stored_and_stop_cancels_the_rest(database: Database) -> None:
    connected(database)
    first = planned(database)[0]
    with database.sessions.begin() as session:
        checkins.mark_sent(session, session.get(CheckIn, first.id), "D1", "1.1", NOW)
    with database.sessions.begin() as session:
        checkins.answer(session, first.id, REQUESTER, "stop", now=NOW)
    states = [c.state for c in planned(database)]
    assert states == [CheckInState.ANSWERED] + [CheckInState.CANCELLED] * 3
    assert planned(database)[0].answer == "stop"


@pytest.mark.parametrize(("user", "choice", "message"), [
    ("USOMEONE1", "better", "not yours"),
    (REQUESTER, "fine-thanks", "not one of the answers"),
    (REQUESTER, "better", "no longer open"),  # not sent yet
])
def test_bad_answers_change_nothing(database: Database, user: str, choice: str,
                                    message: str) -> None:
    connected(database)
    with pytest.raises(CheckInError, match=message), database.sessions.begin() as session:
        checkins.answer(session, planned(database)[0].id, user, choice, now=NOW)
    assert planned(database)[0].answer is None


def test_snooze_cancel_and_new_hours_move_check_ins(database: Database) -> None:
    connected(database)
    first, second = planned(database)[:2]
    with database.sessions.begin() as session:
        checkins.snooze(session, first.id, REQUESTER, now=NOW)
        checkins.cancel_one(session, second.id, REQUESTER, now=NOW)
    moved = planned(database)
    assert moved[0].due_at == first.due_at + timedelta(days=1) and moved[0].version == 1
    assert moved[1].state == CheckInState.CANCELLED
    with database.sessions.begin() as session:
        checkins.set_hours(session, REQUESTER, start=20 * 60, end=23 * 60, now=NOW,
                           default_tz="UTC")
    for checkin in planned(database):
        if checkin.state == CheckInState.SCHEDULED:
            assert checkin.due_at.astimezone(NY).hour >= 20
    with pytest.raises(CheckInError), database.sessions.begin() as session:
        checkins.set_hours(session, REQUESTER, start=600, end=600, now=NOW, default_tz="UTC")


# -- end to end --------------------------------------------------------------------------------


def connect_with_checkins(app_server: AppServer) -> SupportRequest:
    app_server.slack.fake.add_user(REQUESTER, tz="Europe/Berlin")
    add_supporters(app_server, SUPPORTERS[0])
    request = accept_first(app_server, SUPPORTERS[0])

    def placed_in_berlin() -> list[CheckIn] | None:
        with app_server.runtime.sessions() as session:
            rows = list(session.scalars(select(CheckIn).order_by(CheckIn.number)))
            hours = session.get(ContactHours, REQUESTER)
            return rows if rows and hours and hours.tz == "Europe/Berlin" else None

    rows = eventually(placed_in_berlin)
    assert rows and len(rows) == 4, "planned at connection, in the person's own zone"
    # Let the connection's own messages finish before a test injects Slack failures.
    app_server.slack.fake.wait_for("chat.postMessage", lambda c: "Before you meet" in json.dumps(
        c.args.get("blocks")))
    return request


def checkin_posts(app_server: AppServer) -> list:
    return [c for c in app_server.slack.fake.calls_to("chat.postMessage")
            if (c.args.get("metadata") or {}).get("event_type") == METADATA_TYPE]


def first_checkin(app_server: AppServer) -> CheckIn:
    with app_server.runtime.sessions() as session:
        return session.scalars(select(CheckIn).order_by(CheckIn.number)).first()


def run_to_first(app_server: AppServer) -> CheckIn:
    due = first_checkin(app_server).due_at
    tick(app_server, (due - app_server.runtime.clock.now()).total_seconds())
    return first_checkin(app_server)


def test_a_check_in_is_sent_at_its_time_inside_hours_and_only_once(
        app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    checkin = run_to_first(app_server)
    assert checkin.state == CheckInState.SENT
    assert checkin.due_at.astimezone(BERLIN).hour >= 9
    posts = checkin_posts(app_server)
    assert len(posts) == 1
    assert posts[0].args["channel"] == REQUESTER, "one call, straight to the person's DM"
    assert checkin.channel.startswith("D")
    buttons = [e["action_id"] for b in posts[0].args["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert len(buttons) == 5
    tick(app_server, 3600)
    assert len(checkin_posts(app_server)) == 1
    assert "Next check-in:" in home_of(app_server, REQUESTER)


def answer_first(app_server: AppServer, choice: str) -> dict:
    checkin = run_to_first(app_server)
    app_server.slack.block_action(REQUESTER, f"{Action.CHECKIN_ANSWER}:{choice}", str(checkin.id))
    return app_server.slack.fake.wait_for_response()[0]


def test_doing_better_is_recorded_and_thanked(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    reply = answer_first(app_server, "better")
    assert reply["replace_original"] is True and "Doing better" in reply["text"]
    assert eventually(lambda: first_checkin(app_server).answer == "better")
    app_server.slack.block_action(REQUESTER, f"{Action.CHECKIN_ANSWER}:same",
                                  str(first_checkin(app_server).id))
    assert "already answered" in app_server.slack.fake.wait_for_response(count=2)[1]["text"]


def test_struggling_brings_help_and_tells_the_right_people(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    reply = answer_first(app_server, "struggling")
    text = json.dumps(reply["blocks"])
    assert "988" in text and Action.TALK_AGAIN in text
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: "checked in as *struggling*" in
                          c.args.get("text", ""))[0]
    assert REQUESTER not in json.dumps(alert.args), "coordinators are not told who"
    note = fake.wait_for("chat.postMessage", lambda c: f"<@{REQUESTER}> checked in as "
                         "struggling" in c.args.get("text", ""))[0]
    assert note.args["channel"] == fake._conversations[frozenset([SUPPORTERS[0]])]


def test_talk_again_prefers_the_earlier_supporter(app_server: AppServer) -> None:
    first = connect_with_checkins(app_server)
    add_supporters(app_server, *SUPPORTERS[1:4])
    with app_server.runtime.sessions.begin() as session:
        domain.close(session, first.id, SUPPORTERS[0], now=app_server.runtime.clock.now(),
                     duration="15_30", referred=False, need_met="yes")
    app_server.runtime.clock.advance(timedelta(hours=13))  # past the supporter's rest period
    answer_first(app_server, "talk_again")

    def new_request() -> SupportRequest | None:
        with app_server.runtime.sessions() as session:
            return session.scalars(select(SupportRequest).where(
                SupportRequest.id != first.id)).first()

    again = eventually(new_request)
    assert again.preferred_supporter_id == SUPPORTERS[0]
    offer = app_server.slack.fake.wait_for(
        "chat.postMessage", lambda c: Action.ACCEPT_OFFER in json.dumps(c.args.get("blocks")),
        count=2)[-1]
    assert offer.args["channel"] == app_server.slack.fake._conversations[
        frozenset([SUPPORTERS[0]])], "only the earlier supporter is asked first"


def test_stop_cancels_the_rest(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    answer_first(app_server, "stop")

    def states() -> list[str] | None:
        with app_server.runtime.sessions() as session:
            rows = [c.state for c in session.scalars(select(CheckIn).order_by(CheckIn.number))]
            return rows if rows[0] == CheckInState.ANSWERED else None

    assert eventually(states)[1:] == [CheckInState.CANCELLED] * 3
    tick(app_server, 40 * 86400)
    assert len(checkin_posts(app_server)) == 1


def test_the_checkins_command_lists_snoozes_and_cancels(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    app_server.slack.command(REQUESTER, "checkins")
    listing = app_server.slack.fake.wait_for_response()[0]
    assert listing["text"] == "Your check-ins: 4 coming"
    first = first_checkin(app_server)
    app_server.slack.block_action(REQUESTER, Action.CHECKIN_SNOOZE, str(first.id))
    app_server.slack.fake.wait_for_response(count=2)
    assert eventually(lambda: first_checkin(app_server).version == 1)
    assert first_checkin(app_server).due_at == first.due_at + timedelta(days=1)
    app_server.slack.block_action(REQUESTER, Action.CHECKIN_CANCEL, str(first.id))
    after = app_server.slack.fake.wait_for_response(count=3)[2]
    assert after["text"] == "Your check-ins: 3 coming"
    app_server.slack.block_action("USOMEONE1", Action.CHECKIN_CANCEL, str(first.id))
    assert "not yours" in app_server.slack.fake.wait_for_response(count=4)[3]["text"]


def test_changing_hours_moves_coming_check_ins(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    app_server.slack.block_action(REQUESTER, Action.CHECKIN_HOURS)
    view = app_server.slack.fake.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == Callback.CHECKIN_HOURS

    def submit(start: str, end: str):  # noqa: ANN202
        return app_server.slack.view_submission(REQUESTER, Callback.CHECKIN_HOURS, {
            Block.HOURS_FROM: {Action.FIELD: {"type": "static_select",
                                              "selected_option": {"value": start}}},
            Block.HOURS_UNTIL: {Action.FIELD: {"type": "static_select",
                                               "selected_option": {"value": end}}}})

    assert Block.HOURS_UNTIL in submit("600", "600").json()["errors"]
    assert submit(str(20 * 60), str(23 * 60)).status == 200
    assert eventually(lambda: first_checkin(app_server).due_at.astimezone(BERLIN).hour == 20)


def profile_change(app_server: AppServer, **user: object) -> None:
    """Slack's `user_change` event for the requester, as Slack sends it."""
    reply = app_server.slack.event({"type": "user_change", "event_ts": "1.2",
                                    "user": {"id": REQUESTER, "name": "someone", **user}})
    assert reply.status == 200


def test_a_person_who_left_slack_gets_no_more_check_ins(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    app_server.slack.fake.users[REQUESTER].deleted = True
    profile_change(app_server, deleted=True, tz="Europe/Berlin")

    def all_cancelled() -> bool:
        with app_server.runtime.sessions() as session:
            return set(session.scalars(select(CheckIn.state))) == {CheckInState.CANCELLED}

    assert eventually(all_cancelled)
    tick(app_server, 8 * 86400)
    assert checkin_posts(app_server) == []


def test_a_new_time_zone_in_slack_moves_coming_check_ins(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    tokyo = ZoneInfo("Asia/Tokyo")
    profile_change(app_server, deleted=False, tz="Asia/Tokyo")

    def in_tokyo_hours() -> list[CheckIn] | None:
        with app_server.runtime.sessions() as session:
            rows = list(session.scalars(select(CheckIn).order_by(CheckIn.number)))
            hours = session.get(ContactHours, REQUESTER)
        fits = hours is not None and hours.tz == "Asia/Tokyo" and all(
            9 <= c.due_at.astimezone(tokyo).hour < 18 for c in rows)
        return rows if fits else None

    assert eventually(in_tokyo_hours)
    checkin = run_to_first(app_server)
    assert checkin.state == CheckInState.SENT
    assert 9 <= checkin.sent_at.astimezone(tokyo).hour < 18


@pytest.mark.parametrize("change", [{"tz": "Not/AZone"}, {"tz": 7}, {"id": None}])
def test_a_profile_change_that_makes_no_sense_changes_nothing(app_server: AppServer,
                                                              change: dict) -> None:
    connect_with_checkins(app_server)
    before = [(c.due_at, c.state) for c in planned_rows(app_server)]
    seen = seen_deliveries(app_server)
    profile_change(app_server, **change)
    # Someone we never checked in with: nothing to do either.
    reply = app_server.slack.event({"type": "user_change", "event_ts": "1.3",
                                    "user": {"id": "USTRANGER1", "deleted": True}})
    assert reply.status == 200
    app_server.settle()
    assert [(c.due_at, c.state) for c in planned_rows(app_server)] == before
    # Profile changes arrive for the whole workspace and are safe to repeat: none is recorded.
    assert seen_deliveries(app_server) == seen


def seen_deliveries(app_server: AppServer) -> int:
    with app_server.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(SeenDelivery))


def planned_rows(app_server: AppServer) -> list[CheckIn]:
    with app_server.runtime.sessions() as session:
        return list(session.scalars(select(CheckIn).order_by(CheckIn.number)))


def test_two_timers_for_one_check_in_due_together_send_it_once(app_server: AppServer) -> None:
    """A crashed clock's timer, retaken after its lease, and the timer of a move made meanwhile
    can fall due in the same batch: the newer speaks for the check-in, it is sent once, and
    both timers finish."""
    connect_with_checkins(app_server)
    first = first_checkin(app_server)
    with app_server.runtime.sessions.begin() as session:
        checkin = session.get(CheckIn, first.id)
        checkins.move(session, checkin, first.due_at, now=app_server.runtime.clock.now())
        # The old timer was already claimed when the move came, so it is still there too.
        session.add(DueWork(kind=checkins.CHECKIN, key="stale-timer", due_at=first.due_at,
                            payload={"checkin_id": first.id, "version": first.version},
                            state=WorkState.PENDING, attempts=0, rescheduled=0,
                            created_at=first.due_at))
    run_to_first(app_server)
    assert first_checkin(app_server).state == CheckInState.SENT
    assert len(checkin_posts(app_server)) == 1
    with app_server.runtime.sessions() as session:
        timers = {w.key: w.state for w in session.scalars(select(DueWork).where(
            DueWork.kind == checkins.CHECKIN, DueWork.due_at <= first.due_at))}
    assert timers.pop("stale-timer") == WorkState.DONE
    assert sorted(timers.values()) == [WorkState.CANCELLED, WorkState.DONE], \
        "the first timer cancelled by the move, the move's timer done"


def test_a_rate_limit_retries_later_and_still_sends_once(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    # Three 429s: slack_sdk retries twice itself, then the engine schedules a retry.
    app_server.slack.fake.fail("chat.postMessage", status=429, retry_after=1, times=3)
    checkin = run_to_first(app_server)
    assert checkin.state == CheckInState.SENDING
    tick(app_server, 2)
    assert first_checkin(app_server).state == CheckInState.SENT
    delivered = [c for c in checkin_posts(app_server)]
    assert len(delivered) == 4  # three refused, one delivered
    assert len(app_server.slack.fake.messages[first_checkin(app_server).channel]) >= 1


def test_a_crash_after_posting_does_not_post_again(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    runtime = app_server.runtime
    kind = runtime.jobs.kinds[checkins.CHECKIN]
    original = kind.run

    def post_then_die(ctx) -> None:  # noqa: ANN001
        original(ctx)
        raise RuntimeError("the process died before committing")

    runtime.jobs.kinds[checkins.CHECKIN] = type(kind)(checkins.CHECKIN, post_then_die)
    run_to_first(app_server)
    assert first_checkin(app_server).state == CheckInState.SENDING
    runtime.jobs.kinds[checkins.CHECKIN] = kind  # the restarted process
    tick(app_server, 60)
    assert first_checkin(app_server).state == CheckInState.SENT
    assert len(checkin_posts(app_server)) == 1, "found by its metadata, not posted twice"


def test_check_ins_missed_while_down_are_caught_up_inside_hours(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    tick(app_server, 10 * 86400)  # the clock was down for ten days
    for _ in range(90):  # then runs normally (a tick a minute here)
        tick(app_server, 60)
    with app_server.runtime.sessions() as session:
        sent = list(session.scalars(select(CheckIn).where(CheckIn.state == CheckInState.SENT)))
    assert len(sent) == 3, "the three due ones, none lost"
    assert all(9 <= c.sent_at.astimezone(BERLIN).hour < 18 for c in sent)
    assert len(checkin_posts(app_server)) == 3


@pytest.fixture
def many_due(app_server: AppServer) -> list[int]:
    """Thirty people with a check-in due now, inside their hours."""
    runtime = app_server.runtime
    now = runtime.clock.now()  # 14:00 UTC
    ids = []
    with runtime.sessions.begin() as session:
        for number in range(30):
            user = f"UPERSON{number:03d}"
            app_server.slack.fake.add_user(user, tz="UTC")
            request = domain.create(session, user, RequestForm(
                urgency="now", connection="slack", followups=True), now=now)
            request.state = RequestState.ASSIGNED
            ids += [c.id for c in checkins.plan(session, request, now=now,
                                                offsets_days=(0.01,), default_tz="UTC")]
    runtime.clock.advance(timedelta(days=0.01))
    return ids


def test_two_clocks_on_the_same_database_send_each_check_in_once(
        app_server: AppServer, many_due: list[int]) -> None:
    runtime = app_server.runtime
    engines = [DueWorkEngine(make_sessions(runtime.engine), runtime.jobs, runtime.clock,
                             batch_size=4, worker_id=name) for name in ("clock-a", "clock-b")]

    def run(engine: DueWorkEngine, go) -> None:  # noqa: ANN001
        go()
        while engine.tick().claimed:
            pass

    run_together(run, engines)
    sent = Counter(c.args["metadata"]["event_payload"]["checkin_id"]
                   for c in checkin_posts(app_server))
    assert sorted(sent) == sorted(many_due) and set(sent.values()) == {1}


def test_when_slack_says_slow_down_the_rest_of_the_batch_waits(
        app_server: AppServer, many_due: list[int]) -> None:
    fake = app_server.slack.fake
    before = len(fake.calls_to("chat.postMessage"))  # each person's status DM, from the setup
    fake.fail("chat.postMessage", status=429, retry_after=1, times=1000)
    app_server.runtime.duework().tick()
    refused = len(fake.calls_to("chat.postMessage")) - before
    parallel = app_server.runtime.messenger.parallel
    # Only the posts already under way when Slack first said 429 were tried (each with
    # slack_sdk's two retries); the others were not sent to Slack at all.
    assert refused <= parallel * 3 < len(many_due) * 3
    fake.recover()  # Slack's limit has passed
    tick(app_server, 2)
    sent = Counter(c.args["metadata"]["event_payload"]["checkin_id"]
                   for c in checkin_posts(app_server))
    with app_server.runtime.sessions() as session:
        states = Counter(session.scalars(select(CheckIn.state).where(CheckIn.id.in_(many_due))))
    assert states == Counter({CheckInState.SENT: len(many_due)})
    delivered = [m for channel in fake.messages.values() for m in channel
                 if (m.get("metadata") or {}).get("event_type") == METADATA_TYPE]
    assert len(delivered) == len(many_due), "each delivered exactly once"
    assert set(sent) == set(many_due)
