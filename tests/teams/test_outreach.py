"""The private outreach to each member of a team, end to end: signed requests, the Slack
stand-in, the due-work engine on a manual clock, on SQLite and PostgreSQL. Each member gets one
note, exactly once; what they choose is known only as counts, and never who."""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select

from bot.infra import outbox
from bot.infra.db import make_sessions
from bot.infra.duework import DueWorkEngine
from bot.infra.models import (
    CheckIn,
    DueWork,
    Offer,
    OutreachOptOut,
    OutreachState,
    RequestKind,
    RequestState,
    SessionState,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.library import Moment, load_library
from bot.requests import flows, outreach, sessions, teams
from bot.requests import service as domain
from bot.requests.outreach import Start
from bot.requests.outreach_answers import NOT_SENT_TO_YOU
from bot.requests.teams import TeamForm
from bot.sandbox.slack_api import FakeSlack
from handlers.common.ids import Action
from handlers.teams.outreach_blocks import ARRANGING, CALLED_OFF, REARRANGED, member_note
from tests.blockkit import assert_within_limits
from tests.conftest import LEADER, AppServer, Database, eventually, run_together
from tests.requests.test_requests_http import add_supporters, tick

CALLER = "UCALLER001"
SUPPORTER = "USUPTEAM01"
COORDINATOR = "UCOORD0001"  # the sandbox settings' coordinator
CHANNEL = "CTEAMROOM1"
MEMBERS = [f"UMEMB{n:05d}" for n in range(200)]
DEACTIVATED = MEMBERS[10:20]
BOTS = MEMBERS[30:32]
UNKNOWN = MEMBERS[40]  # not in the workspace any more: users.info says user_not_found
ACTIVE = [m for m in MEMBERS if m not in (*DEACTIVATED, *BOTS, UNKNOWN)]
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def team_form(**changes: Any) -> TeamForm:
    values: dict[str, Any] = {"unit": "Ward 7", "size": "2_5", "urgency": "today",
                              "private": True, "channel": CHANNEL}
    values.update(changes)
    return TeamForm(**values)


def workspace(fake: FakeSlack, members: list[str], *, channel: str = CHANNEL) -> None:
    """The team's channel (with its caller, its supporter and the bot in it too)."""
    fake.set_members(channel, [*members, CALLER, SUPPORTER, fake.bot_user_id])
    for member in members:
        if member != UNKNOWN:
            fake.add_user(member, deleted=member in DEACTIVATED)
    for member in BOTS:
        if member in fake.users:
            fake.users[member].is_bot = True


def place(app_server: AppServer, form: TeamForm) -> int:
    """A team request asked for by CALLER and accepted by SUPPORTER through a signed click."""
    runtime = app_server.runtime
    app_server.slack.fake.add_user(CALLER)
    add_supporters(app_server, SUPPORTER)
    with runtime.sessions.begin() as session:
        request_id = flows.create_team(runtime.services, session, CALLER, form,
                                       source_key=None).id

    def offer() -> Offer | None:
        with runtime.sessions() as session:
            return session.scalars(select(Offer).where(
                Offer.request_id == request_id, Offer.supporter_id == SUPPORTER,
                Offer.ts.is_not(None))).first()

    sent = eventually(offer)
    assert sent is not None, "the supporter was offered the team request"
    app_server.slack.block_action(SUPPORTER, Action.ACCEPT_OFFER, str(sent.id))
    app_server.settle()
    assert team_row(app_server, request_id)[0].state == RequestState.ASSIGNED
    return request_id


def team_row(app_server: AppServer, request_id: int) -> tuple[SupportRequest, TeamRequest]:
    with app_server.runtime.sessions() as session:
        return session.get(SupportRequest, request_id), session.get(TeamRequest, request_id)


def team_of(app_server: AppServer, request_id: int) -> TeamRequest:
    return team_row(app_server, request_id)[1]


def notes_to(fake: FakeSlack, request_id: int) -> Counter:
    """How many notes of this team's outreach each person's DM holds (by the note's mark)."""
    with fake._lock:
        owner = {channel: next(iter(people)) for people, channel in fake._conversations.items()
                 if len(people) == 1}
        found: Counter = Counter()
        for channel, messages in fake.messages.items():
            for message in messages:
                effect = str(((message.get("metadata") or {}).get("event_payload") or {})
                             .get("effect", ""))
                if effect.startswith(f"outreach:{request_id}:"):
                    person = owner.get(channel, channel)
                    assert effect == outreach.note_key(request_id, person), "in their own DM"
                    found[person] += 1
    return found


def run_out(app_server: AppServer, request_id: int, *, seconds: float = 60) -> None:
    """Let the clock run (Retry-After is kept in real seconds) until the outreach is sent."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick(app_server, 31)
        if team_of(app_server, request_id).outreach_state == OutreachState.SENT:
            return
        time.sleep(0.1)
    raise AssertionError("the outreach never finished")


def wrap_job(app_server: AppServer, name: str,
             wrapper: Callable[[Callable[[Any], None], Any], None]) -> None:
    """Run every item of one due-work kind through `wrapper(original, ctx)`."""
    jobs = app_server.runtime.jobs
    kind = jobs.kinds[name]
    jobs.kinds[name] = dataclasses.replace(kind, run=lambda ctx: wrapper(kind.run, ctx))


def click(app_server: AppServer, user_id: str, action: str, value: str) -> None:
    assert app_server.slack.block_action(user_id, action, value).status == 200


def checkins_planned(app_server: AppServer) -> list[tuple[int, str | None]]:
    with app_server.runtime.sessions() as session:
        return sorted(tuple(row) for row in session.execute(select(CheckIn.request_id, CheckIn.user_id)))


def seen_by(fake: FakeSlack, user_id: str) -> str:
    """Everything only `user_id` was shown privately, as one text."""
    with fake._lock:
        return json.dumps(fake.ephemeral.get(user_id, []))


# -- one note each, exactly once -------------------------------------------------------------


def test_every_active_member_gets_one_note_through_a_rate_limit(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    workspace(fake, MEMBERS)
    seen = itertools.count(1)

    def slack_slows_down(original: Callable[[Any], None], ctx: Any) -> None:
        if next(seen) == 60:  # in the middle of the notes, Slack says 429 until it recovers
            fake.fail("chat.postMessage", status=429, retry_after=1, times=100_000)
        original(ctx)

    wrap_job(app_server, Effect.TEAM_OUTREACH.value, slack_slows_down)
    request_id = place(app_server, team_form())
    assert team_of(app_server, request_id).outreach_state == OutreachState.SENDING
    tick(app_server, 2)
    before = sum(notes_to(fake, request_id).values())
    assert 0 < before < len(ACTIVE), "the rate limit came in the middle of the notes"
    fake.recover()
    run_out(app_server, request_id)
    assert notes_to(fake, request_id) == Counter({member: 1 for member in ACTIVE}), \
        "each active member exactly once, nobody else (not the caller, supporter or bot)"
    team = team_of(app_server, request_id)
    assert (team.reached, team.skipped) == (len(ACTIVE), len(DEACTIVATED) + len(BOTS) + 1)
    with app_server.runtime.sessions() as session:
        limited = session.scalar(select(func.count()).select_from(DueWork).where(
            DueWork.kind == Effect.TEAM_OUTREACH.value,
            DueWork.last_error == "slack: ratelimited"))
    assert limited > 0, "notes waited for Slack's limit instead of being dropped"


def test_people_a_group_and_a_channel_that_overlap_reach_each_person_once(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    a, b, c, d, e, f = (f"UOVER0000{n}" for n in range(6))
    for person in (a, b, c, d, e, f):
        fake.add_user(person)
    fake.add_usergroup("S0TEAM0001", "ward7", [b, c, d, e, CALLER])
    fake.set_members(CHANNEL, [c, e, f, CALLER, SUPPORTER, fake.bot_user_id])
    request_id = place(app_server, team_form(people=(a, b, c), usergroup="S0TEAM0001"))
    run_out(app_server, request_id)
    assert notes_to(fake, request_id) == Counter({p: 1 for p in (a, b, c, d, e, f)})
    team = team_of(app_server, request_id)
    assert (team.reached, team.skipped) == (6, 0)


def test_a_channel_that_cannot_be_read_is_told_and_the_others_are_reached(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    named = ["UNAMED0001", "UNAMED0002"]
    for person in named:
        fake.add_user(person)
    request_id = place(app_server, team_form(people=tuple(named), channel="CPRIVATE01"))
    run_out(app_server, request_id)
    assert notes_to(fake, request_id) == Counter({p: 1 for p in named})
    for person in (CALLER, SUPPORTER):
        told = [m for m in fake.messages.get(fake.dm_channel([person]) or "", [])
                if "could not reach the members" in m["text"]]
        assert len(told) == 1, person


def test_a_channel_or_group_the_caller_is_not_in_sends_nobody_a_note(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    named = ["UNAMED0001", "UNAMED0002"]
    hospital = [f"UHOSP{n:05d}" for n in range(40)]  # a hospital-wide channel chosen by mistake
    nights = ["UNIGHT0001", "UNIGHT0002"]
    for person in (*named, *hospital, *nights):
        fake.add_user(person)
    fake.set_members(CHANNEL, [*hospital, SUPPORTER, fake.bot_user_id])  # not the caller's
    fake.add_usergroup("S0NIGHTS1", "nights", nights)  # nor is this group
    request_id = place(app_server, team_form(people=tuple(named), usergroup="S0NIGHTS1"))
    run_out(app_server, request_id)
    assert notes_to(fake, request_id) == Counter({p: 1 for p in named}), \
        "the people named are reached; nobody in a group or channel the caller is not in"
    assert team_of(app_server, request_id).reached == len(named)
    for person, reason in ((CALLER, "you are not a member of it"),
                           (SUPPORTER, "the person who asked for the team's support is not a "
                                       "member of it")):
        told = [m for m in fake.messages.get(fake.dm_channel([person]) or "", [])
                if "could not reach the members" in m["text"]]
        assert len(told) == 1, person
        text = told[0]["text"]
        assert "channel" in text and "user group" in text and text.count(reason) == 2, text
        assert "Everyone else named for the team is sent their note" in text


def test_a_group_the_caller_is_in_is_used_when_their_channel_is_not(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    ward = ["UWARD00001", "UWARD00002", "UWARD00003"]
    for person in (*ward, "UOTHER0001"):
        fake.add_user(person)
    fake.set_members(CHANNEL, ["UOTHER0001", fake.bot_user_id])
    fake.add_usergroup("S0WARD001", "ward", [*ward, CALLER])
    request_id = place(app_server, team_form(usergroup="S0WARD001"))
    run_out(app_server, request_id)
    assert notes_to(fake, request_id) == Counter({p: 1 for p in ward})
    told = [m for m in fake.messages.get(fake.dm_channel([CALLER]) or "", [])
            if "could not reach the members" in m["text"]]
    assert len(told) == 1 and "the team's channel: you are not a member of it" in told[0]["text"]
    assert "user group" not in told[0]["text"]


def test_a_crash_after_posting_and_a_second_start_never_send_or_count_twice(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    members = ACTIVE[:12]
    workspace(fake, members)
    crashed: list[str] = []

    def post_then_die(original: Callable[[Any], None], ctx: Any) -> None:
        original(ctx)
        if ctx.payload["user_id"] == members[3] and not crashed:
            crashed.append(ctx.payload["user_id"])
            raise RuntimeError("the process died before committing")

    wrap_job(app_server, Effect.TEAM_OUTREACH.value, post_then_die)
    request_id = place(app_server, team_form())
    run_out(app_server, request_id)
    assert crashed == [members[3]]
    assert notes_to(fake, request_id) == Counter({m: 1 for m in members}), \
        "found by its mark on the retry, not posted again"
    assert team_of(app_server, request_id).reached == len(members), "and counted once"
    posts = len(fake.calls_to("chat.postMessage"))
    # The start delivered again (recorded anew, or a second process) finds nothing to do.
    runtime = app_server.runtime
    with runtime.sessions.begin() as session:
        outbox.record(session, Effect.TEAM_OUTREACH_START.value, {"request_id": request_id},
                      key=f"outreach:{request_id}:start", now=runtime.clock.now())
        assert not domain.begin_outreach(session, request_id, runtime.clock.now())
    app_server.settle()
    tick(app_server, 60)
    assert len(fake.calls_to("chat.postMessage")) == posts
    assert team_of(app_server, request_id).reached == len(members)
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DueWork).where(
            DueWork.kind == Effect.TEAM_OUTREACH.value)) == len(members)


def test_a_request_withdrawn_before_its_notes_go_sends_none(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    workspace(fake, MEMBERS[:6])
    request_id = place(app_server, team_form())
    runtime = app_server.runtime
    with runtime.sessions.begin() as session:  # withdrawn between the start and the notes
        domain.cancel(session, request_id, CALLER, now=runtime.clock.now())
    run_out(app_server, request_id)
    assert notes_to(fake, request_id) == Counter()
    team = team_of(app_server, request_id)
    assert (team.reached, team.skipped) == (0, 0)


def test_a_team_far_larger_than_a_team_gets_no_notes_and_the_caller_is_told(
        app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outreach, "MAX_MEMBERS", 5)
    fake = app_server.slack.fake
    workspace(fake, MEMBERS[:8])
    request_id = place(app_server, team_form())
    tick(app_server, 60)
    assert notes_to(fake, request_id) == Counter()
    assert team_of(app_server, request_id).outreach_state == OutreachState.NONE
    for person in (CALLER, SUPPORTER):
        told = [m for m in fake.messages.get(fake.dm_channel([person]) or "", [])
                if "were not sent" in m["text"]]
        assert len(told) == 1 and "8 people" in told[0]["text"], person


# -- what members choose: counts only ---------------------------------------------------------


def answered_outreach(app_server: AppServer) -> tuple[int, list[str]]:
    """A team of eight reached; two ask for personal support (one twice), one opts in to
    check-ins (twice), one opts out (twice)."""
    fake = app_server.slack.fake
    members = MEMBERS[:8]
    workspace(fake, members)
    request_id = place(app_server, team_form())
    run_out(app_server, request_id)
    value = str(request_id)
    for member, action in ((members[0], Action.TEAM_TALK), (members[1], Action.TEAM_TALK),
                           (members[0], Action.TEAM_TALK), (members[2], Action.TEAM_CHECKINS),
                           (members[2], Action.TEAM_CHECKINS),
                           (members[3], Action.OUTREACH_OPT_OUT),
                           (members[3], Action.OUTREACH_OPT_OUT)):
        click(app_server, member, action, value)
        app_server.settle()
    return request_id, members


def test_replies_are_counted_once_each_and_an_opt_out_holds_for_the_next_team(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    request_id, members = answered_outreach(app_server)
    team = team_of(app_server, request_id)
    assert (team.reached, team.asked_personal, team.opted_checkins) == (8, 2, 1)
    runtime = app_server.runtime
    with runtime.sessions() as session:
        personal = session.scalars(select(SupportRequest).where(
            SupportRequest.kind == RequestKind.PERSONAL)).all()
        assert sorted(r.requester_id for r in personal) == sorted(members[:2])
        assert {(r.urgency, r.connection) for r in personal} == {("today", "slack")}
        planned = session.scalars(select(CheckIn).where(CheckIn.user_id == members[2])).all()
        assert len(planned) == len(runtime.settings.checkin_days), "planned once"
        assert session.scalars(select(OutreachOptOut.user_id)).all() == [members[3]]
    assert "We are finding a peer supporter for you" in seen_by(fake, members[1])
    assert "You already have a request for support open" in seen_by(fake, members[0])
    assert "You will get a few short check-ins" in seen_by(fake, members[2])
    assert "You already have check-ins planned" in seen_by(fake, members[2])
    assert "You will not be sent notes like this again" in seen_by(fake, members[3])
    # The team is called for again: the person who opted out is not sent a second note.
    again = place(app_server, team_form())
    run_out(app_server, again)
    assert notes_to(fake, again) == Counter({m: 1 for m in members if m != members[3]})


def test_someone_who_opted_out_can_change_their_mind(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    _request_id, members = answered_outreach(app_server)
    undo = [b for m in fake.ephemeral.get(members[3], []) for b in json.dumps(m.get("blocks"))
            .split('"action_id": ')[1:] if b.startswith(f'"{Action.OUTREACH_OPT_IN}"')]
    assert undo, "the opt-out's answer offers a way back"
    click(app_server, members[3], Action.OUTREACH_OPT_IN, "1")
    click(app_server, members[3], Action.OUTREACH_OPT_IN, "1")  # a repeat changes nothing
    app_server.settle()
    assert "You will be sent notes like this again" in seen_by(fake, members[3])
    with app_server.runtime.sessions() as session:
        assert session.scalars(select(OutreachOptOut.user_id)).all() == []
    again = place(app_server, team_form())
    run_out(app_server, again)
    assert notes_to(fake, again) == Counter({m: 1 for m in members})


def test_nobody_but_the_member_sees_who_replied(app_server: AppServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    runtime = app_server.runtime
    runtime.roles.leaders = frozenset({LEADER})
    app_server.slack.fake.add_user(LEADER)
    fake = app_server.slack.fake
    request_id, members = answered_outreach(app_server)
    # Time passes: the members' own requests go unanswered and escalate to a coordinator, the
    # daily digests and the team's follow-ups go out.
    for _ in range(30):
        tick(app_server, 3600)
    repliers = members[:4]
    with fake._lock:
        everything = {channel: json.dumps(messages) for channel, messages in fake.messages.items()}
        everything.update({f"thread:{c}:{t}": json.dumps(m)
                           for (c, t), m in fake.replies.items()})
        ephemeral = {user: json.dumps(seen) for user, seen in fake.ephemeral.items()}
        screens = json.dumps([fake.views, fake.homes])
    told = [COORDINATOR, CALLER, SUPPORTER, LEADER]
    assert any(fake.dm_channel([who]) for who in told), "the others were sent messages too"
    for member in repliers:
        own = fake.dm_channel([member])
        leaks = [channel for channel, text in everything.items()
                 if member in text and channel != own]
        assert leaks == [], f"a message outside their own DM names a member who replied: {leaks}"
        assert [user for user, text in ephemeral.items() if member in text and user != member] \
            == []
        assert member not in screens
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("bot.", "handlers."))]
    assert ours and not [line for line in ours if any(m in line for m in members)], \
        "logs never name a member"


def test_clicks_that_cannot_be_answered_change_nothing(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    members = MEMBERS[:6]
    workspace(fake, members)
    waiting = place(app_server, team_form(group=True))  # waits for the group's time
    assert team_of(app_server, waiting).outreach_state == OutreachState.WAITING
    request_id = place(app_server, team_form())
    run_out(app_server, request_id)
    planned = checkins_planned(app_server)
    for who, value in ((members[0], "999999"), (members[0], "abc"), (members[0], "-1"),
                       (members[0], "1" * 40), (members[0], str(waiting)),
                       (CALLER, str(request_id)), (SUPPORTER, str(request_id))):
        for action in (Action.TEAM_TALK, Action.TEAM_CHECKINS):
            click(app_server, who, action, value)
    app_server.settle()
    team = team_of(app_server, request_id)
    assert (team.asked_personal, team.opted_checkins) == (0, 0)
    with app_server.runtime.sessions() as session:
        assert session.scalars(select(SupportRequest).where(
            SupportRequest.kind == RequestKind.PERSONAL)).all() == []
    assert checkins_planned(app_server) == planned
    assert "This note is no longer active" in seen_by(fake, members[0])
    assert "meant for a member of the team" in seen_by(fake, CALLER)


def test_a_click_from_someone_not_sent_a_note_changes_nothing(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    members = MEMBERS[:6]
    workspace(fake, members)
    outsider = "UOUTSIDE01"  # on no team: a click no note of this team could carry
    fake.add_user(outsider)
    request_id = place(app_server, team_form())
    run_out(app_server, request_id)
    # A member's note whose record is gone (a week after delivery, nothing says who got one).
    with app_server.runtime.sessions.begin() as session:
        session.execute(delete(DueWork).where(
            DueWork.key == outreach.note_key(request_id, members[5])))
    planned = checkins_planned(app_server)
    for who in (outsider, members[5]):
        for action in (Action.TEAM_TALK, Action.TEAM_CHECKINS):
            click(app_server, who, action, str(request_id))
    app_server.settle()
    team = team_of(app_server, request_id)
    assert (team.asked_personal, team.opted_checkins) == (0, 0)
    with app_server.runtime.sessions() as session:
        assert session.scalars(select(SupportRequest).where(
            SupportRequest.kind == RequestKind.PERSONAL)).all() == []
    assert checkins_planned(app_server) == planned
    for who in (outsider, members[5]):
        assert seen_by(fake, who).count(NOT_SENT_TO_YOU.split(":")[0]) == 2, who
    click(app_server, members[0], Action.TEAM_TALK, str(request_id))  # a member still can
    app_server.settle()
    assert team_of(app_server, request_id).asked_personal == 1


def test_a_members_checkins_come_inside_their_own_hours(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    members = MEMBERS[:6]
    workspace(fake, members)
    sydney = ZoneInfo("Australia/Sydney")
    fake.users[members[0]].tz = "Australia/Sydney"  # the program's zone is UTC
    request_id = place(app_server, team_form())
    run_out(app_server, request_id)
    click(app_server, members[0], Action.TEAM_CHECKINS, str(request_id))
    app_server.settle()
    with app_server.runtime.sessions() as session:
        due = session.scalars(select(CheckIn.due_at).where(
            CheckIn.request_id == request_id, CheckIn.user_id == members[0])).all()
    assert len(due) == len(app_server.runtime.settings.checkin_days)
    local = [at.astimezone(sydney) for at in due]
    assert all(9 <= at.hour < 18 for at in local), local


# -- a note kept up to date with the group conversation --------------------------------------


def note_of(fake: FakeSlack, request_id: int, member: str) -> list[dict]:
    """Every message in the member's DM (there should be one: their note)."""
    with fake._lock:
        return [dict(m) for m in fake.messages.get(fake.dm_channel([member]) or "", [])]


def change_session(app_server: AppServer, request_id: int,
                   change: Callable[[Any, TeamRequest, datetime], Any]) -> None:
    """One change of the group conversation (bot.requests.sessions records the notes'
    refresh in the change's own transaction)."""
    runtime = app_server.runtime
    now = runtime.clock.now()
    with runtime.sessions.begin() as session:
        change(session, session.get(TeamRequest, request_id), now)
    app_server.settle()


def propose_and_pick(app_server: AppServer, request_id: int, at: datetime) -> None:
    def both(session: Any, _team: TeamRequest, now: datetime) -> None:
        [proposal] = sessions.propose(session, request_id, SUPPORTER, [at], "Room 4", now=now)
        sessions.pick(session, proposal.id, CALLER, now=now)

    change_session(app_server, request_id, both)


def test_a_moved_or_called_off_conversation_updates_each_note_in_place(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    members = [*ACTIVE[:6], DEACTIVATED[0]]
    workspace(fake, members)
    request_id = place(app_server, team_form(group=True))
    first = app_server.runtime.clock.now() + timedelta(days=2)
    propose_and_pick(app_server, request_id, first)
    run_out(app_server, request_id)
    reached = ACTIVE[:6]
    assert notes_to(fake, request_id) == Counter({m: 1 for m in reached})
    token = f"<!date^{int(first.timestamp())}^"
    assert all(token in json.dumps(note_of(fake, request_id, m)) for m in reached)
    posts = len(fake.calls_to("chat.postMessage"))

    def notes_say(*words: str) -> None:
        for member in reached:
            [note] = note_of(fake, request_id, member)  # still one message: never a second
            shown = json.dumps(note)
            assert all(word in shown for word in words), (member, shown)
            assert Action.TEAM_TALK in shown, "the note's buttons are kept"

    change_session(app_server, request_id, lambda session, team, now: sessions.reschedule(
        session, request_id, SUPPORTER, team.session_version, now=now))
    tick(app_server, 2)
    notes_say(REARRANGED)
    assert all(token not in json.dumps(note_of(fake, request_id, m)) for m in reached)
    second = first + timedelta(days=1)
    propose_and_pick(app_server, request_id, second)
    tick(app_server, 2)
    notes_say(f"<!date^{int(second.timestamp())}^", "Room 4")
    change_session(app_server, request_id, lambda session, team, now: sessions.cancel(
        session, request_id, CALLER, team.session_version, now=now))
    tick(app_server, 2)
    notes_say(CALLED_OFF)
    assert notes_to(fake, request_id) == Counter({m: 1 for m in reached})
    assert note_of(fake, request_id, DEACTIVATED[0]) == [], "a note never sent is not sent now"
    member_posts = [c for c in fake.calls_to("chat.postMessage")[posts:]
                    if c.args.get("channel") in {fake.dm_channel([m]) for m in members}]
    assert member_posts == [], "every change updated the note; none posted anew"
    assert len(fake.calls_to("chat.update")) >= 3 * len(reached)
    team = team_of(app_server, request_id)
    assert (team.reached, team.skipped) == (len(reached), 1), "updates count nothing"


def test_a_change_before_the_notes_go_out_leaves_one_current_note_each(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    members = ACTIVE[:5]
    workspace(fake, members)
    request_id = place(app_server, team_form(group=True))
    first = app_server.runtime.clock.now() + timedelta(days=2)
    propose_and_pick(app_server, request_id, first)
    # The notes are recorded but not yet out when the time is moved.
    assert team_of(app_server, request_id).outreach_state == OutreachState.SENDING
    change_session(app_server, request_id, lambda session, team, now: sessions.reschedule(
        session, request_id, SUPPORTER, team.session_version, now=now))
    run_out(app_server, request_id)
    tick(app_server, 10)
    assert notes_to(fake, request_id) == Counter({m: 1 for m in members})
    for member in members:
        [note] = note_of(fake, request_id, member)
        assert REARRANGED in json.dumps(note)
        assert f"<!date^{int(first.timestamp())}^" not in json.dumps(note)


def test_notes_sent_before_a_time_is_picked_show_it_once_picked(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    members = ACTIVE[:5]
    workspace(fake, members)
    request_id = place(app_server, team_form(group=True))
    tick(app_server, 25 * 3600)  # nobody picked a time in a day: the notes go without one
    run_out(app_server, request_id)
    assert all(ARRANGING in json.dumps(note_of(fake, request_id, m)) for m in members)
    at = app_server.runtime.clock.now() + timedelta(days=2)
    propose_and_pick(app_server, request_id, at)
    tick(app_server, 2)
    for member in members:
        [note] = note_of(fake, request_id, member)
        assert f"<!date^{int(at.timestamp())}^" in json.dumps(note), member
        assert ARRANGING not in json.dumps(note)


def test_refreshing_a_team_with_no_notes_records_nothing(app_server: AppServer) -> None:
    runtime = app_server.runtime
    with runtime.sessions.begin() as session:
        waiting = teams.create_team(session, CALLER, team_form(group=True), seats=1,
                                    now=NOW).id
        personal_only = teams.create_team(session, "UCALLER002", team_form(group=False),
                                          seats=1, now=NOW).id
        assert outreach.refresh_notes(session, waiting, NOW) == 0
        assert outreach.refresh_notes(session, personal_only, NOW) == 0
        assert outreach.refresh_notes(session, 999_999, NOW) == 0


# -- the note itself --------------------------------------------------------------------------


def test_the_note_is_kind_private_and_carries_the_group_time_and_crisis_lines() -> None:
    library = load_library()
    surfacing = library.for_moment(Moment.REQUEST_WAITING, audience="clinician")
    at = datetime(2026, 3, 5, 16, 30, tzinfo=UTC)
    team = TeamRequest(request_id=42, unit="Ward 7 <night> & day", session_state=SessionState.SET,
                       session_at=at, session_place="Room 4")
    note = member_note(team, surfacing)
    assert_within_limits(note["blocks"])
    text = json.dumps(note)
    assert f"<!date^{int(at.timestamp())}^" in text and "Room 4" in text
    assert "voluntary" in text and "Ward 7 &lt;night&gt; &amp; day" in text
    assert "Ward 7 &lt;night&gt; &amp; day" in note["text"] and "<night>" not in note["text"], \
        "the notification's text is escaped too"
    assert "<@" not in text, "it never names anyone"
    assert "988" in text, "crisis lines included"
    buttons = {e["action_id"]: e["value"] for b in note["blocks"] if b["type"] == "actions"
               for e in b["elements"]}
    assert buttons == {Action.TEAM_TALK: "42", Action.TEAM_CHECKINS: "42",
                       Action.OUTREACH_OPT_OUT: "42"}
    without = json.dumps(member_note(TeamRequest(request_id=42, unit="ICU",
                                                 session_state=SessionState.PROPOSED), surfacing))
    assert "<!date^" not in without


def test_a_note_says_where_the_group_conversation_stands() -> None:
    surfacing = load_library().for_moment(Moment.REQUEST_WAITING, audience="clinician")

    def says(state: SessionState, *, group: bool = True, updated: bool = False) -> str:
        team = TeamRequest(request_id=42, unit="ICU", group=group, session_state=state)
        note = member_note(team, surfacing, updated=updated)
        assert_within_limits(note["blocks"])
        return json.dumps(note["blocks"])

    # Sent before a time was picked: one is being arranged; brought up to date: none stands.
    assert ARRANGING in says(SessionState.NONE) and REARRANGED not in says(SessionState.NONE)
    assert REARRANGED in says(SessionState.PROPOSED, updated=True)
    assert ARRANGING not in says(SessionState.PROPOSED, updated=True)
    # Called off: told only to a note that may have spoken of it.
    assert CALLED_OFF in says(SessionState.CANCELLED, updated=True)
    assert CALLED_OFF not in says(SessionState.CANCELLED)
    for state in SessionState:
        if state != SessionState.SET:
            assert all(words not in says(state, group=False, updated=True)
                       for words in (ARRANGING, REARRANGED, CALLED_OFF)), state


# -- concurrency, on PostgreSQL -------------------------------------------------------------------


def test_two_starts_at_once_record_the_notes_once(pg_database: Database) -> None:
    with pg_database.sessions.begin() as session:
        request_id = teams.create_team(session, CALLER, team_form(), seats=1, now=NOW).id

    def start(_which: int, go: Callable[[], Any]) -> Start:
        engine = pg_database.new_engine()
        try:
            with make_sessions(engine).begin() as session:
                go()
                return outreach.start(session, request_id, MEMBERS[:50], bot_id=None,
                                      now=NOW).outcome
        finally:
            engine.dispose()

    outcomes = run_together(start, [1, 2])
    assert sorted(outcomes) == sorted([Start.STARTED, Start.NOT_DUE])
    with pg_database.sessions() as session:
        keys = session.scalars(select(DueWork.key).where(
            DueWork.kind == Effect.TEAM_OUTREACH.value)).all()
        assert sorted(keys) == sorted(outreach.note_key(request_id, m) for m in MEMBERS[:50])
        assert session.get(TeamRequest, request_id).outreach_state == OutreachState.SENDING


def test_two_clocks_and_double_clicks_count_exactly(app_server: AppServer) -> None:
    runtime = app_server.runtime
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("concurrent sessions are proven on PostgreSQL")
    fake = app_server.slack.fake
    members = MEMBERS[:60]
    workspace(fake, members)
    request_id = place(app_server, team_form())
    runtime.clock.advance(timedelta(seconds=2))
    engines = [DueWorkEngine(make_sessions(runtime.engine), runtime.jobs, runtime.clock,
                             batch_size=7, worker_id=name, threads=3)
               for name in ("clock-a", "clock-b")]

    def run(engine: DueWorkEngine, go: Callable[[], Any]) -> None:
        go()
        while engine.tick().claimed:
            pass

    run_together(run, engines)
    run_out(app_server, request_id)
    active = [m for m in members if m not in (*DEACTIVATED, *BOTS, UNKNOWN)]
    assert notes_to(fake, request_id) == Counter({m: 1 for m in active})
    team = team_of(app_server, request_id)
    assert (team.reached, team.skipped) == (len(active), len(members) - len(active))
    # Two clicks at once, by each of two members: one request, one plan, each counted once.
    for action in (Action.TEAM_TALK, Action.TEAM_CHECKINS):
        run_together(lambda who, go, action=action: (
            go(), click(app_server, who, action, str(request_id))),
            [active[0], active[0], active[1], active[1]])
        app_server.settle()
    team = team_of(app_server, request_id)
    assert (team.asked_personal, team.opted_checkins) == (2, 2)
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CheckIn).where(
            CheckIn.request_id == request_id, CheckIn.user_id.in_(active[:2]))) \
            == 2 * len(runtime.settings.checkin_days)

