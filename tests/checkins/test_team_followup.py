"""Following up a team request: the caller's one check-in about the team, "another session" in
one click, and members' own check-ins, which tell nobody who opted in. End to end through
signed HTTP, the Slack stand-in and the manual clock, on both databases."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.app.runtime import Runtime
from bot.checkins import flows as checkin_flows
from bot.checkins import service as checkins
from bot.checkins.service import CheckInError, Role
from bot.infra.models import (
    CheckIn,
    CheckInState,
    ContactHours,
    DueWork,
    Offer,
    RequestKind,
    RequestState,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import MESSAGE
from bot.requests import flows
from bot.requests import service as domain
from bot.requests.service import AlreadyOpen, RequestError
from bot.requests.teams import TeamForm
from handlers.checkins.blocks import METADATA_TYPE, supporter_reminder
from handlers.common.ids import Action
from tests.conftest import AppServer, eventually, run_together
from tests.requests.test_requests_http import COORDINATOR, SUPPORTERS, add_supporters, tick

CALLER = "UCHARGE001"
MEMBER = "UMEMBER001"
OTHER_MEMBER = "UMEMBER002"
BERLIN = ZoneInfo("Europe/Berlin")
TEAM = TeamForm(unit="Ward 7 West", size="6_15", urgency="today", visit=True, group=False,
                private=False, people=(MEMBER, OTHER_MEMBER))
UNIT = "Ward 7 West"


# -- helpers -----------------------------------------------------------------------------------


def read(app_server: AppServer, query: Any) -> Any:
    with app_server.runtime.sessions() as session:
        return query(session)


def team_requests(app_server: AppServer) -> list[SupportRequest]:
    return read(app_server, lambda s: list(s.scalars(select(SupportRequest).where(
        SupportRequest.kind == RequestKind.TEAM).order_by(SupportRequest.id))))


def offered_to(app_server: AppServer, request_id: int) -> list[Offer]:
    return read(app_server, lambda s: list(s.scalars(select(Offer).where(
        Offer.request_id == request_id).order_by(Offer.id))))


def posted_offer(app_server: AppServer, offer: Offer) -> None:
    """Wait until the offer's DM is posted (its button can then be clicked)."""
    assert eventually(lambda: read(app_server, lambda s: s.get(Offer, offer.id).ts)), offer


def place_team_request(app_server: AppServer) -> SupportRequest:
    """A caller asks for their team; the first two supporters accept (the first leads); the
    second accept places it."""
    fake = app_server.slack.fake
    fake.add_user(CALLER, tz="Europe/Berlin")
    for member in (MEMBER, OTHER_MEMBER):
        fake.add_user(member, tz="Europe/Berlin")
    add_supporters(app_server, *SUPPORTERS[:3])
    runtime = app_server.runtime
    with runtime.sessions.begin() as session:
        request_id = flows.create_team(runtime.services, session, CALLER, TEAM,
                                       source_key="VTEAM00001").id
    offers = eventually(lambda: len(offered_to(app_server, request_id)) == 3 and
                        offered_to(app_server, request_id))
    by_supporter = {o.supporter_id: o for o in offers}
    for supporter in SUPPORTERS[:2]:
        posted_offer(app_server, by_supporter[supporter])
        app_server.slack.block_action(supporter, Action.ACCEPT_OFFER,
                                      str(by_supporter[supporter].id))
        app_server.settle()
    # Placed, and its introduction posted: a test may now count what comes after.
    placed = eventually(lambda: (r := team_requests(app_server)[0]) and
                        r.state == RequestState.ASSIGNED and r.intro_channel and r)
    assert placed and placed.supporter_id == SUPPORTERS[0]
    app_server.settle()
    return placed


def checkins_of(app_server: AppServer, user_id: str) -> list[CheckIn]:
    return read(app_server, lambda s: list(s.scalars(select(CheckIn).where(
        CheckIn.user_id == user_id).order_by(CheckIn.id))))


def checkin_posts(app_server: AppServer, user_id: str) -> list:
    return [c for c in app_server.slack.fake.calls_to("chat.postMessage")
            if (c.args.get("metadata") or {}).get("event_type") == METADATA_TYPE
            and c.args["channel"] == user_id]


def run_to(app_server: AppServer, checkin: CheckIn) -> CheckIn:
    """Advance the clock to the check-in's time and run due work."""
    tick(app_server, max(0.0, (checkin.due_at - app_server.runtime.clock.now()).total_seconds()))
    return read(app_server, lambda s: s.get(CheckIn, checkin.id))


def buttons(blocks: list[dict]) -> list[dict]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def responses(app_server: AppServer, count: int) -> list[dict]:
    return app_server.slack.fake.wait_for_response(count=count)


def dm_texts(app_server: AppServer, user_id: str) -> list[str]:
    """Every message the bot posted in its DM with one person, as JSON."""
    fake = app_server.slack.fake
    channel = fake.dm_channel([user_id])
    return [json.dumps(m) for m in fake.messages.get(channel or "", [])]


def caller_checkin_sent(app_server: AppServer) -> tuple[SupportRequest, CheckIn, Any]:
    placed = place_team_request(app_server)
    planned = eventually(lambda: (rows := checkins_of(app_server, CALLER)) and read(
        app_server, lambda s: s.get(ContactHours, CALLER).tz) == "Europe/Berlin" and rows)
    assert planned and len(planned) == 1
    sent = run_to(app_server, planned[0])
    assert sent.state == CheckInState.SENT
    posts = checkin_posts(app_server, CALLER)
    assert len(posts) == 1
    return placed, sent, posts[0]


# -- the caller's check-in ---------------------------------------------------------------------


def test_the_caller_gets_one_check_in_about_the_team_after_the_set_hours(
        app_server: AppServer) -> None:
    placed = place_team_request(app_server)
    hours = app_server.runtime.settings.team_checkin_hours
    planned = eventually(lambda: (rows := checkins_of(app_server, CALLER)) and read(
        app_server, lambda s: s.get(ContactHours, CALLER).tz) == "Europe/Berlin" and rows)
    assert len(planned) == 1 and planned[0].request_id == placed.id
    checkin = planned[0]
    assert checkin.planned_for == placed.assigned_at + timedelta(hours=hours)
    assert checkin.due_at >= checkin.planned_for
    assert 9 <= checkin.due_at.astimezone(BERLIN).hour < 18, "inside the caller's own hours"
    # Nothing before its time...
    tick(app_server, (checkin.due_at - app_server.runtime.clock.now()).total_seconds() - 60)
    assert checkin_posts(app_server, CALLER) == []
    # ...then exactly one, about the team, and never again.
    sent = run_to(app_server, checkin)
    assert sent.state == CheckInState.SENT
    tick(app_server, 7 * 86400)
    posts = checkin_posts(app_server, CALLER)
    assert len(posts) == 1
    message = posts[0].args
    assert message["text"] == "Checking in: how is the team doing?"
    assert "How is the team doing" in json.dumps(message["blocks"])
    actions = [b["action_id"] for b in buttons(message["blocks"])]
    assert actions == [f"{Action.CHECKIN_ANSWER}:better", f"{Action.CHECKIN_ANSWER}:same",
                       f"{Action.CHECKIN_ANSWER}:struggling", Action.ANOTHER_SESSION]
    assert "stop" not in json.dumps(actions) and "talk_again" not in json.dumps(actions)
    # The supporters get no personal-style nudge naming anyone: none was planned.
    assert read(app_server, lambda s: s.scalar(select(func.count()).select_from(DueWork).where(
        DueWork.kind == "checkin_supporter_reminder"))) == 0


def test_a_second_placement_keeps_the_first_plan(app_server: AppServer) -> None:
    placed = place_team_request(app_server)
    eventually(lambda: checkins_of(app_server, CALLER))
    runtime = app_server.runtime
    runtime.clock.advance(3600)
    with runtime.sessions.begin() as session:
        checkin_flows.plan_for_caller(runtime.services, session, session.get(
            SupportRequest, placed.id))
    assert len(checkins_of(app_server, CALLER)) == 1


def test_another_session_makes_one_new_team_request_offered_first_to_the_lead(
        app_server: AppServer) -> None:
    first, checkin, post = caller_checkin_sent(app_server)
    value = next(b["value"] for b in buttons(post.args["blocks"])
                 if b["action_id"] == Action.ANOTHER_SESSION)
    # Someone else (a member, a supporter) cannot use the caller's button.
    app_server.slack.block_action(MEMBER, Action.ANOTHER_SESSION, value)
    assert "not yours" in responses(app_server, 1)[0]["text"]
    app_server.slack.block_action(SUPPORTERS[0], Action.ANOTHER_SESSION, value)
    assert "not yours" in responses(app_server, 2)[1]["text"]
    assert len(team_requests(app_server)) == 1
    # The caller clicks, and clicks again.
    app_server.slack.block_action(CALLER, Action.ANOTHER_SESSION, value)
    app_server.slack.block_action(CALLER, Action.ANOTHER_SESSION, value)
    replies = responses(app_server, 4)[2:]
    texts = sorted(r["text"] for r in replies)
    assert texts == ["Thank you. We are asking for another session for the team.",
                     "You already asked for another session for the team."]
    assert all(r["replace_original"] for r in replies)
    assert "led the last one is asked first" in json.dumps(replies)
    app_server.settle()
    both = team_requests(app_server)
    assert len(both) == 2, "a double click makes one request"
    follow = both[1]
    team, earlier = read(app_server, lambda s: (s.get(TeamRequest, follow.id),
                                                 s.get(TeamRequest, first.id)))
    assert team.previous_id == first.id
    assert (team.unit, team.size, team.visit, team.group, team.private, team.people) == (
        earlier.unit, earlier.size, earlier.visit, earlier.group, earlier.private,
        earlier.people)
    assert (follow.requester_id, follow.seats, follow.preferred_supporter_id) == (
        CALLER, 2, SUPPORTERS[0])
    offers = eventually(lambda: offered_to(app_server, follow.id))
    assert [o.supporter_id for o in offers] == [SUPPORTERS[0]], "the lead alone, first"
    fake = app_server.slack.fake
    fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == fake.dm_channel(
        [SUPPORTERS[0]]) and Action.ACCEPT_OFFER in json.dumps(c.args.get("blocks"))
        and f'"{offers[0].id}"' in json.dumps(c.args.get("blocks")))
    assert read(app_server, lambda s: s.get(CheckIn, checkin.id).answer) == \
        checkins.ANOTHER_SESSION
    # The caller's status message for the new request is posted, as for the first one.
    assert eventually(lambda: read(app_server, lambda s: s.get(SupportRequest, follow.id)
                                   .status_ts))


def test_the_caller_cannot_answer_as_a_person_would(app_server: AppServer) -> None:
    _, checkin, _ = caller_checkin_sent(app_server)
    for choice in ("talk_again", "stop", "another_session"):
        app_server.slack.block_action(CALLER, f"{Action.CHECKIN_ANSWER}:{choice}",
                                      str(checkin.id))
    replies = responses(app_server, 3)
    assert all("not one of the answers" in r["text"] for r in replies)
    assert read(app_server, lambda s: s.get(CheckIn, checkin.id).state) == CheckInState.SENT
    assert len(team_requests(app_server)) == 1


def test_struggling_from_the_caller_tells_coordinators_namelessly_and_the_team_supporters(
        app_server: AppServer) -> None:
    _, checkin, _ = caller_checkin_sent(app_server)
    app_server.slack.block_action(CALLER, f"{Action.CHECKIN_ANSWER}:struggling", str(checkin.id))
    reply = responses(app_server, 1)[0]
    actions = [b["action_id"] for b in buttons(reply["blocks"])]
    assert Action.ANOTHER_SESSION in actions and Action.TALK_AGAIN in actions
    assert "988" in json.dumps(reply["blocks"]), "help is shown"
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == fake.dm_channel(
        [COORDINATOR]) and "*struggling*" in c.args.get("text", ""))[0]
    said = json.dumps(alert.args)
    assert CALLER not in said and UNIT not in said and MEMBER not in said
    for supporter in SUPPORTERS[:2]:
        note = fake.wait_for("chat.postMessage", lambda c, s=supporter: c.args["channel"] ==
                             fake.dm_channel([s]) and "struggling" in c.args.get("text", ""))[0]
        assert f"<@{CALLER}>" in note.args["text"] and MEMBER not in json.dumps(note.args)
    app_server.settle()
    assert not any("struggling" in t for t in dm_texts(app_server, SUPPORTERS[2])), \
        "only the team's own supporters"


def test_the_caller_talking_again_gets_a_personal_request_not_a_copy(
        app_server: AppServer) -> None:
    _, checkin, _ = caller_checkin_sent(app_server)
    app_server.slack.block_action(CALLER, f"{Action.CHECKIN_ANSWER}:struggling", str(checkin.id))
    responses(app_server, 1)
    app_server.slack.block_action(CALLER, Action.TALK_AGAIN, str(checkin.id))
    responses(app_server, 2)
    own = eventually(lambda: read(app_server, lambda s: domain.open_request_of(s, CALLER)))
    assert own.kind == RequestKind.PERSONAL and own.preferred_supporter_id is None
    assert len(team_requests(app_server)) == 1, "the team request is never copied"


# -- members' check-ins ------------------------------------------------------------------------


def member_checkin_sent(app_server: AppServer) -> tuple[SupportRequest, CheckIn, Any]:
    """A member opted in (as the outreach does it: plan_person on the team request)."""
    placed = place_team_request(app_server)
    runtime = app_server.runtime
    with runtime.sessions.begin() as session:
        planned = checkins.plan_person(session, placed.id, MEMBER, now=runtime.clock.now(),
                                       offsets_days=[1, 7], default_tz="Europe/Berlin")
    sent = run_to(app_server, planned[0])
    assert sent.state == CheckInState.SENT
    posts = checkin_posts(app_server, MEMBER)
    assert len(posts) == 1
    return placed, sent, posts[0]


def test_a_member_is_asked_about_themselves_with_the_personal_answers(
        app_server: AppServer) -> None:
    _, _, post = member_checkin_sent(app_server)
    assert post.args["text"] == "Checking in: how are you doing?"
    actions = [b["action_id"].rsplit(":", 1)[-1] for b in buttons(post.args["blocks"])]
    assert actions == list(checkins.ANSWERS)
    assert Action.ANOTHER_SESSION not in json.dumps(post.args)


def test_struggling_from_a_member_alerts_coordinators_namelessly_and_no_supporter(
        app_server: AppServer) -> None:
    placed, checkin, _ = member_checkin_sent(app_server)
    fake = app_server.slack.fake
    before = {s: len(dm_texts(app_server, s)) for s in SUPPORTERS[:3]}
    group = placed.intro_channel
    group_before = len(fake.messages.get(group, []))
    app_server.slack.block_action(MEMBER, f"{Action.CHECKIN_ANSWER}:struggling", str(checkin.id))
    reply = responses(app_server, 1)[0]
    assert Action.TALK_AGAIN in json.dumps(reply["blocks"])
    assert Action.ANOTHER_SESSION not in json.dumps(reply["blocks"])
    alert = fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == fake.dm_channel(
        [COORDINATOR]) and "*struggling*" in c.args.get("text", ""))[0]
    said = json.dumps(alert.args)
    assert MEMBER not in said and CALLER not in said and UNIT not in said
    assert "supporter was told" not in said
    app_server.settle()
    tick(app_server, 60)  # every recorded message delivered
    assert {s: len(dm_texts(app_server, s)) for s in SUPPORTERS[:3]} == before, \
        "no supporter hears of it: that would say who opted in"
    assert len(fake.messages.get(group, [])) == group_before
    everything_sent = json.dumps([c.args for c in fake.calls_to("chat.postMessage")
                                  if c.args["channel"] != MEMBER])
    assert MEMBER not in everything_sent.replace(f'"{fake.dm_channel([MEMBER])}"', "")
    keys = read(app_server, lambda s: list(s.scalars(select(DueWork.key).where(
        DueWork.kind == MESSAGE, DueWork.key.like(f"struggling:{checkin.id}:%")))))
    assert keys == [f"struggling:{checkin.id}:{COORDINATOR}"]
    # The lead supporter's nudge about the request, were one run, names the caller only.
    with app_server.runtime.sessions.begin() as session:
        checkin_flows.remind_supporter(session, placed.id, nudge=supporter_reminder,
                                       item_id=1, now=app_server.runtime.clock.now())
    nudges = read(app_server, lambda s: [w.payload for w in s.scalars(select(DueWork).where(
        DueWork.kind == MESSAGE, DueWork.key == f"nudge:{placed.id}:1"))])
    assert MEMBER not in json.dumps(nudges) and OTHER_MEMBER not in json.dumps(nudges)


def test_a_member_talking_again_starts_a_personal_request_for_them(
        app_server: AppServer) -> None:
    placed, checkin, _ = member_checkin_sent(app_server)
    app_server.slack.block_action(MEMBER, f"{Action.CHECKIN_ANSWER}:talk_again", str(checkin.id))
    reply = responses(app_server, 1)[0]
    assert "nobody on your team is told" in json.dumps(reply)
    own = eventually(lambda: read(app_server, lambda s: domain.open_request_of(s, MEMBER)))
    assert own.kind == RequestKind.PERSONAL and own.requester_id == MEMBER
    assert own.preferred_supporter_id is None, "no earlier supporter of their own"
    assert (own.urgency, own.connection, own.crisis) == ("today", "slack", False)
    assert len(team_requests(app_server)) == 1, "the team request is not copied"
    assert eventually(lambda: offered_to(app_server, own.id)), "offered like any request"
    # A second way in (the button after 'struggling') finds the request already open.
    app_server.slack.block_action(MEMBER, Action.TALK_AGAIN, str(checkin.id))
    assert "already have a request open" in responses(app_server, 2)[1]["text"]
    assert read(app_server, lambda s: s.scalar(select(func.count()).select_from(
        SupportRequest).where(SupportRequest.requester_id == MEMBER))) == 1


def test_a_members_check_in_is_no_way_to_another_session(app_server: AppServer) -> None:
    _, checkin, _ = member_checkin_sent(app_server)
    app_server.slack.block_action(MEMBER, Action.ANOTHER_SESSION, str(checkin.id))
    assert "not yours" in responses(app_server, 1)[0]["text"]
    assert len(team_requests(app_server)) == 1


@pytest.mark.parametrize("value", ["0", "-1", "abc", "9" * 40, "1\u0007", "1 2", ""])
def test_forged_another_session_values_change_nothing(app_server: AppServer,
                                                      value: str) -> None:
    app_server.slack.fake.add_user(CALLER)
    reply = app_server.slack.block_action(CALLER, Action.ANOTHER_SESSION, value)
    assert reply.status == 200
    assert "not yours" in responses(app_server, 1)[0]["text"]
    assert team_requests(app_server) == []


# -- the domain, without Slack -----------------------------------------------------------------


def placed_directly(runtime: Runtime) -> tuple[int, int]:
    """A placed two-seat team request and its caller's check-in, marked sent."""
    from bot.roster import supporters as roster
    from bot.roster.supporters import SupporterSpec

    now = runtime.clock.now()
    with runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(u, "", "nurse") for u in SUPPORTERS[:2]], now=now,
                      time_zones={}, default_case_cap=2, default_cooldown_hours=0)
        request = flows.create_team(runtime.services, session, CALLER, TEAM, source_key=None)
        wave = {o.supporter_id: o.id for o in session.scalars(select(Offer).where(
            Offer.request_id == request.id))}
        domain.accept(session, wave[SUPPORTERS[0]], SUPPORTERS[0], now=now)
        result = domain.accept(session, wave[SUPPORTERS[1]], SUPPORTERS[1], now=now)
        flows.accepted(runtime.services, session, result)
        checkin = session.scalars(select(CheckIn)).one()
        checkins.mark_sent(session, checkin, "D1", "1.1", now)
        return request.id, checkin.id


def test_two_clicks_at_once_make_one_request(runtime: Runtime) -> None:
    request_id, checkin_id = placed_directly(runtime)

    def click(_: int, go: Any) -> str:
        with runtime.sessions() as session:
            go()
            try:
                with session.begin():
                    flows.another_session(runtime.services, session, checkin_id, CALLER)
                return "made"
            except AlreadyOpen:
                return "already"

    assert Counter(run_together(click, [1, 2, 3])) == Counter({"made": 1, "already": 2})
    with runtime.sessions() as session:
        follows = session.scalars(select(TeamRequest).where(
            TeamRequest.previous_id == request_id)).all()
    assert len(follows) == 1


def test_another_session_needs_a_sent_check_in_of_the_caller(runtime: Runtime) -> None:
    request_id, checkin_id = placed_directly(runtime)
    with runtime.sessions.begin() as session:
        checkin = session.get(CheckIn, checkin_id)
        checkin.state = CheckInState.SCHEDULED
    with pytest.raises(CheckInError, match="no longer open"), \
            runtime.sessions.begin() as session:
        flows.another_session(runtime.services, session, checkin_id, CALLER)
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TeamRequest)) == 1


def test_roles_and_who_supported_the_team(runtime: Runtime) -> None:
    request_id, checkin_id = placed_directly(runtime)
    now = runtime.clock.now()
    with runtime.sessions.begin() as session:
        member = checkins.plan_person(session, request_id, MEMBER, now=now, offsets_days=[1],
                                      default_tz="UTC")[0]
        caller = session.get(CheckIn, checkin_id)
        assert checkins.roles_of(session, [caller, member]) == {
            caller.id: Role.CALLER, member.id: Role.MEMBER}
        request = session.get(SupportRequest, request_id)
        assert checkins.team_supporters(session, request) == SUPPORTERS[:2]
        domain.close(session, request_id, SUPPORTERS[1], now=now, duration="30_60",
                     referred=False, need_met="yes", **_close_extra())
    with runtime.sessions() as session:
        request = session.get(SupportRequest, request_id)
        assert checkins.team_supporters(session, request) == SUPPORTERS[:2], \
            "still the team's supporters once it is closed"


def test_a_handed_back_supporter_is_not_the_teams(runtime: Runtime) -> None:
    request_id, _ = placed_directly(runtime)
    with runtime.sessions.begin() as session:
        domain.hand_back(session, request_id, SUPPORTERS[0], now=runtime.clock.now())
    with runtime.sessions() as session:
        request = session.get(SupportRequest, request_id)
        assert checkins.team_supporters(session, request) == [SUPPORTERS[1]]


def test_talk_again_never_copies_a_team_request(runtime: Runtime) -> None:
    request_id, checkin_id = placed_directly(runtime)
    with runtime.sessions.begin() as session:
        made = flows.talk_again(runtime.services, session, session.get(CheckIn, checkin_id))
        assert made.kind == RequestKind.PERSONAL and made.requester_id == CALLER
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SupportRequest).where(
            SupportRequest.kind == RequestKind.TEAM)) == 1
    with pytest.raises(RequestError), runtime.sessions.begin() as session:
        orphan = CheckIn(request_id=request_id, user_id=None, number=9, planned_for=
                         runtime.clock.now(), due_at=runtime.clock.now(), version=0,
                         state=CheckInState.SENT)
        session.add(orphan)
        session.flush()
        flows.talk_again(runtime.services, session, orphan)


def _close_extra() -> dict[str, str]:
    """A team request's closing answers beyond a personal one's, when the close asks them."""
    import inspect

    return {"people_present": "6_15"} if "people_present" in inspect.signature(
        domain.close).parameters else {}
