"""Team requests on the App Home: everyone's "Support for my team" button, the caller's own
team requests, a seat holder's case, and coordinators' view of every open team request (its
unit, size, seats and wait; never who called it). Signed HTTP and the Slack stand-in."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.home.service import build_home
from bot.infra.models import RequestKind, RequestState, SupportRequest
from bot.requests import teams
from bot.requests.teams import TeamForm
from handlers.common.ids import Action
from handlers.home.blocks import home_view
from tests.blockkit import VIEW_BLOCKS, assert_within_limits
from tests.conftest import AppServer, eventually
from tests.home.test_home import open_home
from tests.requests.test_requests_http import add_supporters, posted_offers
from tests.requests.test_team_calling import CALLER, UNIT, accept_in_turn, call_team, offer_of

COORDINATOR = "UCOORD0001"
SUPPORTERS = ["USUPH00001", "USUPH00002"]


def team_request(app_server: AppServer) -> SupportRequest:
    def newest() -> SupportRequest | None:
        with app_server.runtime.sessions() as session:
            return session.scalars(select(SupportRequest).where(
                SupportRequest.kind == RequestKind.TEAM).order_by(
                    SupportRequest.id.desc())).first()
    request = eventually(newest)
    assert request is not None
    return request


def test_everyone_has_a_support_for_my_team_button(app_server: AppServer) -> None:
    home = open_home(app_server, "USOMEONE01")
    assert Action.REQUEST_SUPPORT in home and Action.REQUEST_TEAM_SUPPORT in home
    assert "Support for my team" in home


def test_the_caller_sees_their_team_request_and_can_withdraw_it_there(
        app_server: AppServer) -> None:
    call_team(app_server, size="6_15")  # nobody on the roster: escalated at once
    request = team_request(app_server)
    home = open_home(app_server, CALLER)
    assert f"Your request for {UNIT}:* " in home
    assert "a program coordinator has been asked to find supporters for your team" in home
    assert "you have no open request" in home, "their own support is a separate matter"
    app_server.slack.block_action(CALLER, Action.CANCEL_REQUEST, str(request.id))
    assert eventually(lambda: team_request(app_server).state == RequestState.CANCELLED)
    assert f"Your request for {UNIT}" not in open_home(app_server, CALLER)


def test_coordinators_see_each_team_request_by_unit_size_seats_and_wait_not_by_caller(
        app_server: AppServer) -> None:
    call_team(app_server, size="16_30")  # nobody on the roster: escalated at once
    request = team_request(app_server)
    eventually(lambda: team_request(app_server).state == RequestState.ESCALATED)
    app_server.runtime.clock.advance(25 * 60)
    home = open_home(app_server, COORDINATOR)
    assert "Unassigned or escalated requests:* 1" in home
    assert (f"Team: {UNIT} · roughly 16 to 30 people · 0 of 2 supporters · Today · waiting "
            "25 min · *escalated*") in home
    assert CALLER not in home, "coordinators never see who called it"

    # A coordinator and a supporter take a seat each: it is placed, and listed as such.
    add_supporters(app_server, SUPPORTERS[0])
    app_server.slack.block_action(COORDINATOR, Action.TAKE_REQUEST, str(request.id))
    assert eventually(lambda: team_request(app_server).filled == 1)
    app_server.runtime.clock.advance(15 * 60)
    app_server.runtime.duework().run_until_idle()  # the reminder asks the new supporter
    posted_offers(app_server, 1)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_of(app_server, request.id, SUPPORTERS[0]))
    assert eventually(lambda: team_request(app_server).state == RequestState.ASSIGNED)
    home = open_home(app_server, COORDINATOR)
    assert "Unassigned or escalated requests:* none" in home
    assert "Team requests with their supporters:* 1" in home
    assert f"Team: {UNIT} · roughly 16 to 30 people · 2 of 2 supporters · asked 40 min ago" \
        in home
    assert CALLER not in home


def test_a_coordinator_without_a_seat_never_sees_the_caller(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    call_team(app_server, size="6_15")
    request = team_request(app_server)
    posted_offers(app_server, 2)
    accept_in_turn(app_server, request.id, *SUPPORTERS)
    assert eventually(lambda: team_request(app_server).state == RequestState.ASSIGNED)
    home = open_home(app_server, COORDINATOR)
    assert f"Team: {UNIT} · roughly 6 to 15 people · 2 of 2 supporters" in home
    assert CALLER not in home


def test_a_seat_holder_learns_who_called_only_once_it_is_placed(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    call_team(app_server, size="6_15")
    request = team_request(app_server)
    posted_offers(app_server, 2)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_of(app_server, request.id, SUPPORTERS[0]))
    assert eventually(lambda: team_request(app_server).filled == 1)
    home = open_home(app_server, SUPPORTERS[0])
    assert f"*Team support* for {UNIT} · 1 of 2 supporters so far" in home
    assert CALLER not in home
    app_server.slack.block_action(SUPPORTERS[1], Action.ACCEPT_OFFER,
                                  offer_of(app_server, request.id, SUPPORTERS[1]))
    assert eventually(lambda: team_request(app_server).state == RequestState.ASSIGNED)
    home = open_home(app_server, SUPPORTERS[0])
    assert f"*Team support* for {UNIT} with <@{CALLER}>" in home
    assert Action.OPEN_CLOSE in home


def test_a_coordinators_home_fits_with_many_long_named_team_requests(
        app_server: AppServer) -> None:
    runtime = app_server.runtime
    now = runtime.clock.now()
    with runtime.sessions.begin() as session:
        for n in range(40):
            form = TeamForm(unit="&" * 78 + f"{n:02d}", size="31_plus", urgency="now",
                            group=True)
            request = teams.create_team(session, f"UCALL{n:05d}", form, seats=2, now=now)
            if n % 2:
                request.state, request.filled = RequestState.ASSIGNED, 2
    for user_id in (COORDINATOR, "UCALL00001"):
        with runtime.sessions() as session:
            home = build_home(session, user_id, roles=runtime.roles, library=runtime.library,
                              settings=runtime.settings, now=now)
        view = home_view(home)
        assert_within_limits(view["blocks"], max_blocks=VIEW_BLOCKS)
    text = json.dumps(view)
    assert "Unassigned or escalated requests:* 20" not in text  # the caller's own Home
    with runtime.sessions() as session:
        coordinator = json.dumps(home_view(build_home(
            session, COORDINATOR, roles=runtime.roles, library=runtime.library,
            settings=runtime.settings, now=now)))
    assert "Unassigned or escalated requests:* 20" in coordinator and " more" in coordinator
    assert "Team requests with their supporters:* 20" in coordinator
    assert "UCALL" not in coordinator
