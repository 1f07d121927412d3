"""Calling team support from Slack, end to end: the command, the Home button and the form's
"for my team" choice; the team form and its refusals; offers, seats and the one introduction;
the caller's status; closing with aggregate answers; and coordinators' alerts, which name the
unit but never the caller. Signed HTTP, the Slack stand-in, the manual clock."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.infra.models import Offer, RequestKind, RequestState, SupportRequest, TeamRequest
from bot.library import Moment, load_library
from bot.requests.teams import MAX_PEOPLE
from handlers.common.ids import Action, Block, Callback
from handlers.requests.blocks import (
    FOR_ME,
    FOR_TEAM,
    coordinator_alert,
    introduction,
    offer_message,
    requester_status,
    team_case,
    team_close_modal,
    team_request_modal,
    team_request_view,
    unplaced_digest,
)
from tests.blockkit import VIEW_BLOCKS, assert_within_limits
from tests.conftest import AppServer, eventually, run_together
from tests.requests.test_requests_http import (
    COORDINATOR,
    add_supporters,
    ask,
    checked,
    choice,
    dms_to,
    posted_offers,
    tick,
)

CALLER = "UCHARGE001"
SUPPORTERS = [f"USUPT0000{i}" for i in range(1, 6)]
UNIT = "4 West"


def typed(value: str) -> dict:
    return {Action.FIELD: {"type": "plain_text_input", "value": value}}


def selected(value: str) -> dict:
    return {Action.FIELD: {"type": "static_select", "selected_option": {"value": value}}}


def team_values(*, unit_typed: str | None = UNIT, unit: str | None = None, size: str = "2_5",
                urgency: str = "today", helps: tuple[str, ...] = ("group",),
                people: list[Any] | None = None, usergroup: str | None = None,
                channel: str | None = None) -> dict:
    """The team form's state.values as Slack sends them."""
    values: dict[str, Any] = {
        Block.REQUEST_FOR: {Action.REQUEST_FOR: {"type": "radio_buttons",
                                                 "selected_option": {"value": FOR_TEAM}}},
        Block.TEAM_SIZE: choice(size), Block.URGENCY: choice(urgency),
        Block.TEAM_HELP: checked(*helps),
        Block.TEAM_UNIT_TYPED: typed(unit_typed) if unit_typed is not None else
        {Action.FIELD: {"type": "plain_text_input", "value": None}},
    }
    if unit is not None:
        values[Block.TEAM_UNIT] = selected(unit)
    if people is not None:
        values[Block.TEAM_PEOPLE] = {Action.FIELD: {"type": "multi_users_select",
                                                    "selected_users": people}}
    if usergroup is not None:
        values[Block.TEAM_USERGROUP] = selected(usergroup)
    if channel is not None:
        values[Block.TEAM_CHANNEL] = {Action.FIELD: {"type": "conversations_select",
                                                     "selected_conversation": channel}}
    return values


_views = iter(range(1, 10_000))


def call_team(app_server: AppServer, user_id: str = CALLER, *, view_id: str | None = None,
              **form: Any):  # noqa: ANN201
    return app_server.slack.view_submission(user_id, Callback.TEAM_REQUEST, team_values(**form),
                                            view_id=view_id or f"VTEAM{next(_views):05d}")


def team_rows(app_server: AppServer) -> list[SupportRequest]:
    with app_server.runtime.sessions() as session:
        return list(session.scalars(select(SupportRequest).where(
            SupportRequest.kind == RequestKind.TEAM).order_by(SupportRequest.id)))


def row(app_server: AppServer, request_id: int) -> SupportRequest:
    with app_server.runtime.sessions() as session:
        request = session.get(SupportRequest, request_id)
        assert request is not None
        return request


def team_of(app_server: AppServer, request_id: int) -> TeamRequest:
    with app_server.runtime.sessions() as session:
        team = session.get(TeamRequest, request_id)
        assert team is not None
        return team


def offer_of(app_server: AppServer, request_id: int, supporter: str) -> str:
    """The offer's id, once its message is out."""
    def posted() -> Offer | None:
        with app_server.runtime.sessions() as session:
            return session.scalars(select(Offer).where(
                Offer.request_id == request_id, Offer.supporter_id == supporter,
                Offer.ts.is_not(None))).first()
    offer = eventually(posted)
    assert offer is not None, f"no offer reached {supporter}"
    return str(offer.id)


def accept_in_turn(app_server: AppServer, request_id: int, *supporters: str) -> None:
    """Each supporter accepts their offer once the one before has its seat (clicks seconds
    apart, as people make them)."""
    for supporter in supporters:
        filled = row(app_server, request_id).filled
        app_server.slack.block_action(supporter, Action.ACCEPT_OFFER,
                                      offer_of(app_server, request_id, supporter))
        assert eventually(lambda n=filled + 1: row(app_server, request_id).filled == n), supporter


def block_ids(view: dict) -> list[str]:
    return [b.get("block_id", "") for b in view["blocks"]]


def choose(app_server: AppServer, user_id: str, view: dict, value: str) -> None:
    """The person picks "For me" or "For my team" at the top of an open form: Slack sends a
    block_actions for the radio (the driver's block_action only sends buttons)."""
    app_server.slack.post_payload({
        "type": "block_actions", "team": {"id": "T0PEERSUP", "domain": "hospital"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": "T0PEERSUP"},
        "api_app_id": "APEERSUP1", "token": "legacy-verification-token",
        "trigger_id": f"{time.time_ns()}.1.trigger",
        "container": {"type": "view", "view_id": view["id"]},
        "view": {"id": view["id"], "type": "modal", "callback_id": view["callback_id"],
                 "private_metadata": "", "state": {"values": {}}, "hash": view["hash"]},
        "actions": [{"type": "radio_buttons", "action_id": Action.REQUEST_FOR,
                     "block_id": Block.REQUEST_FOR, "selected_option": {"value": value},
                     "action_ts": f"{time.time():.6f}"}]})


def view_of(call: Any) -> dict:
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def shown_to(app_server: AppServer, view_id: str, callback: str) -> dict:
    """The modal `view_id` once the app has replaced it with the form `callback`."""
    fake = app_server.slack.fake
    fake.wait_for("views.update", lambda c: c.args["view_id"] == view_id
                  and view_of(c)["callback_id"] == callback)
    return fake.views[view_id]


# -- calling it ------------------------------------------------------------------------------


def test_the_command_opens_the_team_form_asking_only_what_it_needs(
        app_server: AppServer) -> None:
    add_supporters(app_server, SUPPORTERS[0])  # the roster's one department: ICU
    fake = app_server.slack.fake
    fake.add_usergroup("S0NIGHTS1", "icu-nights", [SUPPORTERS[0]])
    assert app_server.slack.command(CALLER, "team").status == 200
    view = view_of(fake.wait_for("views.open")[0])
    assert view["callback_id"] == Callback.TEAM_REQUEST
    assert_within_limits(view["blocks"], max_blocks=VIEW_BLOCKS)
    assert block_ids(view)[0] == Block.REQUEST_FOR
    first = view["blocks"][0]
    assert first["dispatch_action"] is True
    assert first["element"]["initial_option"]["value"] == FOR_TEAM
    by_id = {b.get("block_id"): b for b in view["blocks"]}
    assert [o["value"] for o in by_id[Block.TEAM_UNIT]["element"]["options"]] == ["ICU"]
    assert by_id[Block.TEAM_UNIT_TYPED]["element"]["max_length"] == 80
    assert [o["value"] for o in by_id[Block.TEAM_USERGROUP]["element"]["options"]] == \
        ["S0NIGHTS1"]
    assert by_id[Block.TEAM_PEOPLE]["element"]["max_selected_items"] == MAX_PEOPLE
    assert by_id[Block.TEAM_CHANNEL]["element"]["filter"]["include"] == ["public", "private"]
    helps = by_id[Block.TEAM_HELP]["element"]["options"]
    assert [o["value"] for o in helps] == ["visit", "group", "private"]
    typed_inputs = [b["block_id"] for b in view["blocks"] if b["type"] == "input"
                    and b["element"]["type"] == "plain_text_input"]
    assert typed_inputs == [Block.TEAM_UNIT_TYPED], "nothing free-text beyond the unit's name"
    text = json.dumps(view)
    assert "nowhere here to describe the event or any patient" in text
    assert "voluntary" in text and "not a review" in text


def test_help_lists_the_team_command(app_server: AppServer) -> None:
    reply = app_server.slack.command(CALLER, "help").json()
    listing = next(b for b in reply["blocks"] if b.get("block_id") == Block.HELP)
    assert "`/peersupport team`  Ask for support for your team" in listing["text"]["text"]


def test_without_user_groups_the_form_leaves_that_question_out(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    fake.add_usergroup("S0NIGHTS1", "icu-nights", [])
    fake.fail("usergroups.list", "missing_scope")
    app_server.slack.command(CALLER, "team")
    view = view_of(fake.wait_for("views.open")[0])
    assert Block.TEAM_USERGROUP not in block_ids(view)
    assert Block.TEAM_UNIT not in block_ids(view), "no roster yet: the unit is typed"
    assert Block.TEAM_UNIT_TYPED in block_ids(view)


def test_the_home_button_opens_the_team_form(app_server: AppServer) -> None:
    app_server.slack.block_action(CALLER, Action.REQUEST_TEAM_SUPPORT)
    view = view_of(app_server.slack.fake.wait_for("views.open")[0])
    assert view["callback_id"] == Callback.TEAM_REQUEST


def test_choosing_for_my_team_switches_the_form_and_back_and_sends_from_it(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    app_server.slack.command(CALLER, "")
    fake.wait_for("views.open")
    personal = fake.open_modal(CALLER)
    assert personal["callback_id"] == Callback.REQUEST
    assert block_ids(personal)[0] == Block.REQUEST_FOR
    assert personal["blocks"][0]["element"]["initial_option"]["value"] == FOR_ME

    choose(app_server, CALLER, personal, FOR_TEAM)
    team_form = shown_to(app_server, personal["id"], Callback.TEAM_REQUEST)
    choose(app_server, CALLER, team_form, FOR_ME)
    back = shown_to(app_server, personal["id"], Callback.REQUEST)
    assert back["blocks"][0]["element"]["initial_option"]["value"] == FOR_ME
    choose(app_server, CALLER, back, FOR_TEAM)
    shown_to(app_server, personal["id"], Callback.TEAM_REQUEST)

    reply = call_team(app_server, view_id=personal["id"])
    assert reply.json()["response_action"] == "update"
    [request] = team_rows(app_server)
    assert (request.requester_id, request.requester_department) == (CALLER, UNIT)


def test_someone_with_their_own_request_open_can_still_call_for_their_team(
        app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:2])
    ask(app_server, CALLER)
    eventually(lambda: dms_to(app_server, CALLER))
    fake = app_server.slack.fake
    app_server.slack.command(CALLER, "")  # their own request is shown instead of a form
    fake.wait_for("views.open")
    mine = fake.open_modal(CALLER)
    assert mine["callback_id"] == Callback.OPEN_REQUEST
    assert Action.REQUEST_TEAM_SUPPORT in json.dumps(mine)
    app_server.slack.block_action(CALLER, Action.REQUEST_TEAM_SUPPORT, view=mine)
    shown_to(app_server, mine["id"], Callback.TEAM_REQUEST)
    call_team(app_server, view_id=mine["id"])
    with app_server.runtime.sessions() as session:
        kinds = sorted(r.kind for r in session.scalars(select(SupportRequest)))
    assert kinds == [RequestKind.PERSONAL, RequestKind.TEAM]


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(("form", "block", "words"), [
    ({"unit_typed": None}, Block.TEAM_UNIT_TYPED, "Say which unit or team"),
    ({"unit_typed": "   "}, Block.TEAM_UNIT_TYPED, "Say which unit or team"),
    ({"unit": "ICU", "unit_typed": "Pharmacy"}, Block.TEAM_UNIT_TYPED, "not both"),
    ({"unit_typed": "W" * 81}, Block.TEAM_UNIT_TYPED, "up to 80"),
    ({"unit": "W" * 81, "unit_typed": None}, Block.TEAM_UNIT, "up to 80"),
    ({"unit_typed": "4 West\x07night"}, Block.TEAM_UNIT_TYPED, "no special characters"),
    ({"unit_typed": "4 West\nnight"}, Block.TEAM_UNIT_TYPED, "no special characters"),
    ({"helps": ()}, Block.TEAM_HELP, "at least one thing"),
    ({"helps": ("therapy",)}, Block.TEAM_HELP, "at least one thing"),
    ({"size": "1000"}, Block.TEAM_SIZE, "roughly how many"),
    ({"urgency": "yesterday"}, Block.URGENCY, "how soon"),
    ({"people": ["C0CHANNEL1"]}, Block.TEAM_PEOPLE, "from the list"),
    ({"people": ["UOK0000001", "S0GROUP001"]}, Block.TEAM_PEOPLE, "from the list"),
    ({"people": [f"U{n:09d}" for n in range(MAX_PEOPLE + 1)]}, Block.TEAM_PEOPLE,
     f"up to {MAX_PEOPLE} people"),
    ({"channel": "D0DIRECT01"}, Block.TEAM_CHANNEL, "not a direct message"),
    ({"channel": "U0PERSON01"}, Block.TEAM_CHANNEL, "not a direct message"),
    ({"usergroup": "C0CHANNEL1"}, Block.TEAM_USERGROUP, "group from the list"),
], ids=["no unit", "blank unit", "both units", "typed too long", "chosen too long", "bell",
        "newline", "nothing helps", "unknown help", "size", "urgency", "channel as person",
        "group as person", "too many people", "direct message", "person as channel",
        "channel as group"])
def test_a_bad_team_form_says_what_is_wrong_where_and_creates_nothing(
        app_server: AppServer, form: dict, block: str, words: str) -> None:
    add_supporters(app_server, SUPPORTERS[0])
    reply = call_team(app_server, **form)
    assert reply.status == 200
    answer = reply.json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [block], answer["errors"]
    assert words in answer["errors"][block]
    app_server.settle()
    with app_server.runtime.sessions() as session:
        assert session.scalars(select(SupportRequest)).all() == []
        assert session.scalars(select(TeamRequest)).all() == []
    assert app_server.slack.fake.calls_to("chat.postMessage") == []


def test_an_id_not_shaped_like_slacks_is_refused_before_anything_reads_it(
        app_server: AppServer) -> None:
    reply = call_team(app_server, people=["u-not-an-id"])
    assert reply.status == 400
    assert team_rows(app_server) == []


def test_the_same_unit_chosen_and_typed_is_one_unit(app_server: AppServer) -> None:
    assert call_team(app_server, unit="ICU", unit_typed="ICU").json()["response_action"] == \
        "update"
    assert [r.requester_department for r in team_rows(app_server)] == ["ICU"]


def test_a_double_submit_makes_one_request_and_shows_it(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:3])
    first = call_team(app_server, view_id="VSAMETEAM1").json()
    second = call_team(app_server, view_id="VSAMETEAM1").json()
    for answer in (first, second):
        assert answer["response_action"] == "update"
        assert f"Your request for {UNIT} is in" in json.dumps(answer["view"])
        assert Action.CANCEL_REQUEST in json.dumps(answer["view"])
    assert len(team_rows(app_server)) == 1
    posted_offers(app_server, 3)
    app_server.settle()
    assert len([c for c in app_server.slack.fake.calls_to("chat.postMessage")
                if Action.ACCEPT_OFFER in json.dumps(c.args.get("blocks"))]) == 3


def test_submits_at_once_make_one_request(app_server: AppServer) -> None:
    def submit(_n: int, go) -> int:  # noqa: ANN001
        go()
        return call_team(app_server, view_id="VRACETEAM1").status

    assert run_together(submit, [1, 2, 3]) == [200, 200, 200]
    app_server.settle()
    assert len(team_rows(app_server)) == 1


# -- offered, accepted, introduced -------------------------------------------------------------


def test_a_small_team_gets_one_supporter_introduced_with_the_caller(
        app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:3])
    answer = call_team(app_server, size="2_5", helps=("visit", "group")).json()
    assert "We are finding a supporter for your team" in json.dumps(answer["view"])
    [request] = team_rows(app_server)
    assert request.seats == 1
    offers = posted_offers(app_server, 3)
    text = json.dumps(offers[0]["blocks"])
    assert "A team has asked for support" in text and UNIT in text
    assert "*Roughly:* 2 to 5 people" in text and "A group conversation" in text
    assert all(CALLER not in json.dumps(o) for o in offers), "who called it stays private"

    fake = app_server.slack.fake
    status = eventually(lambda: dms_to(app_server, CALLER))
    assert "We are finding a supporter for your team" in status[0]["text"]
    winner = SUPPORTERS[1]
    app_server.slack.block_action(winner, Action.ACCEPT_OFFER,
                                  offer_of(app_server, request.id, winner))
    opened = fake.wait_for("conversations.open", lambda c: "," in c.args["users"])
    assert [set(c.args["users"].split(",")) for c in opened] == [{CALLER, winner}]
    intro = fake.wait_for("chat.postMessage", lambda c: c.args["channel"].startswith("G"))[0]
    assert f"<@{winner}> is a trained peer supporter" in intro.args["text"]
    assert "a supporter comes to the unit" in intro.args["text"]
    assert "voluntary" in intro.args["text"] and "not a review" in intro.args["text"]
    case = fake.wait_for("chat.postMessage", lambda c: Action.PROPOSE_TIMES in json.dumps(
        c.args.get("blocks")))[0]
    assert case.args["channel"] == fake.dm_channel([winner])
    buttons = {e["action_id"]: e.get("value") for b in case.args["blocks"]
               if b["type"] == "actions" for e in b["elements"]}
    assert buttons == {Action.PROPOSE_TIMES: str(request.id), Action.OPEN_CLOSE: str(request.id),
                       Action.HAND_BACK: str(request.id)}
    assert "988" in json.dumps(case.args["blocks"]), "the referral lines, as for one person"
    fake.wait_for("chat.update", lambda c: "A supporter has accepted and will be in touch"
                  in c.args["text"])
    assert eventually(lambda: row(app_server, request.id).intro_channel)


def test_a_larger_team_gets_two_supporters_in_one_group_message(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:3])
    call_team(app_server, size="6_15", helps=("visit", "private"))
    [request] = team_rows(app_server)
    assert request.seats == 2  # 6 or more people: settings.team_pair_from
    posted_offers(app_server, 3)
    first, second = SUPPORTERS[0], SUPPORTERS[2]
    fake = app_server.slack.fake
    accept_in_turn(app_server, request.id, first)
    fake.wait_for("chat.update", lambda c: "One supporter has accepted; we are finding the "
                  "second" in c.args["text"])
    assert not [c for c in fake.calls_to("conversations.open") if "," in c.args["users"]]
    accept_in_turn(app_server, request.id, second)
    fake.wait_for("chat.update", lambda c: "Two supporters have accepted" in c.args["text"])
    opened = fake.wait_for("conversations.open", lambda c: "," in c.args["users"])
    assert [set(c.args["users"].split(",")) for c in opened] == [{CALLER, first, second}]
    intros = fake.wait_for("chat.postMessage", lambda c: c.args["channel"].startswith("G"))
    assert len(intros) == 1
    assert f"<@{first}> and <@{second}> are trained peer supporters" in intros[0].args["text"]
    assert "each person offered private support" in intros[0].args["text"]
    cases = fake.wait_for("chat.postMessage", lambda c: "You are supporting a team" in
                          c.args.get("text", ""), count=2)
    assert {c.args["channel"] for c in cases} == {fake.dm_channel([first]),
                                                   fake.dm_channel([second])}
    assert all(Action.PROPOSE_TIMES not in json.dumps(c.args["blocks"]) for c in cases), \
        "no group conversation was asked for"
    app_server.settle()
    assert len([c for c in fake.calls_to("chat.postMessage")
                if c.args["channel"].startswith("G")]) == 1


def test_the_caller_can_withdraw_and_every_seat_holder_is_told(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:2])
    call_team(app_server, size="6_15")
    [request] = team_rows(app_server)
    posted_offers(app_server, 2)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_of(app_server, request.id, SUPPORTERS[0]))
    eventually(lambda: row(app_server, request.id).filled == 1)
    app_server.slack.block_action(CALLER, Action.CANCEL_REQUEST, str(request.id))
    fake = app_server.slack.fake
    fake.wait_for("chat.update", lambda c: "You withdrew this request for your team" in
                  c.args["text"])
    note = fake.wait_for("chat.postMessage", lambda c: "withdrawn it" in c.args["text"])[0]
    assert note.args["channel"] == fake.dm_channel([SUPPORTERS[0]])
    assert row(app_server, request.id).state == RequestState.CANCELLED


# -- closing ---------------------------------------------------------------------------------


def placed_pair(app_server: AppServer) -> SupportRequest:
    add_supporters(app_server, *SUPPORTERS[:2])
    call_team(app_server, size="16_30", helps=("group",))
    [request] = team_rows(app_server)
    posted_offers(app_server, 2)
    accept_in_turn(app_server, request.id, *SUPPORTERS[:2])
    return eventually(lambda: (r := row(app_server, request.id)).state ==
                      RequestState.ASSIGNED and r)


def close_values(**answers: str) -> dict:
    return {block: choice(value) for block, value in answers.items()}


def test_closing_a_team_records_aggregate_answers_and_tells_the_other_supporter(
        app_server: AppServer) -> None:
    request = placed_pair(app_server)
    fake = app_server.slack.fake
    closer, other = SUPPORTERS[1], SUPPORTERS[0]
    app_server.slack.block_action(closer, Action.OPEN_CLOSE, str(request.id))
    view = view_of(fake.wait_for("views.open")[0])
    assert view["callback_id"] == Callback.CLOSE_TEAM_REQUEST
    assert Block.PEOPLE_PRESENT in block_ids(view)
    assert "plain_text_input" not in json.dumps(view)
    assert_within_limits(view["blocks"], max_blocks=VIEW_BLOCKS)

    answers = {Block.DURATION: "over_60", Block.REFERRED: "no", Block.NEED_MET: "partly"}
    for present in (None, "40_60"):
        given = dict(answers, **({Block.PEOPLE_PRESENT: present} if present else {}))
        reply = app_server.slack.view_submission(closer, Callback.CLOSE_TEAM_REQUEST,
                                                 close_values(**given),
                                                 private_metadata=str(request.id))
        assert list(reply.json()["errors"]) == [Block.PEOPLE_PRESENT]
        assert row(app_server, request.id).state == RequestState.ASSIGNED

    stranger = app_server.slack.view_submission(
        "USTRANGER1", Callback.CLOSE_TEAM_REQUEST,
        close_values(**answers, **{Block.PEOPLE_PRESENT: "6_15"}),
        private_metadata=str(request.id))
    assert "not with you" in json.dumps(stranger.json()["errors"])

    reply = app_server.slack.view_submission(
        closer, Callback.CLOSE_TEAM_REQUEST,
        close_values(**answers, **{Block.PEOPLE_PRESENT: "6_15"}),
        private_metadata=str(request.id))
    assert (reply.status, reply.body) == (200, "")
    closed = row(app_server, request.id)
    assert (closed.state, closed.duration, closed.referred, closed.need_met) == (
        RequestState.CLOSED, "over_60", False, "partly")
    assert team_of(app_server, request.id).people_present == "6_15"
    note = fake.wait_for("chat.postMessage", lambda c: "other supporter has closed" in
                         c.args["text"])
    assert [c.args["channel"] for c in note] == [fake.dm_channel([other])]
    fake.wait_for("chat.update", lambda c: "Your team's support is closed" in c.args["text"])
    app_server.slack.block_action(other, Action.OPEN_CLOSE, str(request.id))
    assert "not open with you" in fake.wait_for_response()[0]["text"]


# -- coordinators --------------------------------------------------------------------------


def test_the_coordinators_alert_names_the_unit_and_size_never_the_caller(
        app_server: AppServer) -> None:
    call_team(app_server, size="6_15", helps=("group", "private"))  # nobody on the roster
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST in json.dumps(
        c.args.get("blocks")))[0]
    text = json.dumps(alert.args["blocks"])
    assert f"A team request for {UNIT} (roughly 6 to 15 people) has no supporters yet" in text
    assert "Seats filled:* 0 of 2" in text
    assert CALLER not in json.dumps(alert.args), "who called it stays private"
    [request] = team_rows(app_server)
    fake.wait_for("chat.update", lambda c: "a program coordinator has been asked to find "
                  "supporters for your team" in c.args["text"])

    app_server.slack.block_action(COORDINATOR, Action.TAKE_REQUEST, str(request.id))
    assert eventually(lambda: row(app_server, request.id).filled == 1)
    assert row(app_server, request.id).state == RequestState.ESCALATED
    tick(app_server, 900)  # the next notice refreshes the alert in place
    fake.wait_for("chat.update", lambda c: "Seats filled:* 1 of 2" in json.dumps(
        c.args.get("blocks")) and "Take a seat myself" in json.dumps(c.args.get("blocks")))


def test_the_daily_list_names_team_requests_by_unit_and_size() -> None:
    from datetime import UTC, datetime

    request = SupportRequest(id=7, kind=RequestKind.TEAM, seats=2, filled=1, urgency="now",
                             requester_id=CALLER, requester_department="Paediatric ICU",
                             crisis=False, state=RequestState.ESCALATED,
                             created_at=datetime(2026, 3, 2, tzinfo=UTC))
    team = TeamRequest(request_id=7, unit="Paediatric ICU", size="16_30", visit=True,
                       group=False, private=False)
    digest = unplaced_digest([(request, timedelta(hours=3))], {7: team})
    text = json.dumps(digest)
    assert "A team request for Paediatric ICU (roughly 16 to 30 people) has no supporters " \
        "yet" in text and "seats filled 1 of 2" in text
    assert CALLER not in text
    assert_within_limits(digest["blocks"])


# -- every message and view built for a team fits Slack's limits -----------------------------


def test_every_team_view_and_message_fits_slacks_limits() -> None:
    from datetime import UTC, datetime

    library = load_library()
    long_unit = "Ü&<" * 26 + "ab"
    departments = [f"Department {n} " + "x" * 80 for n in range(150)]
    groups = [(f"S{n:08d}", "handle-" + "y" * 90) for n in range(150)]
    form = team_request_modal(departments, groups)
    assert_within_limits(form["blocks"], max_blocks=VIEW_BLOCKS)
    by_id = {b.get("block_id"): b for b in form["blocks"]}
    for block in (Block.TEAM_UNIT, Block.TEAM_USERGROUP):
        options = by_id[block]["element"]["options"]
        assert len(options) == 100 and all(len(o["text"]["text"]) <= 75 for o in options)
    for state in RequestState:
        request = SupportRequest(id=2**31 - 1, kind=RequestKind.TEAM, seats=2, filled=1,
                                 urgency="week", requester_id=CALLER, supporter_id="USUP1",
                                 requester_department=long_unit, crisis=False, state=state,
                                 created_at=datetime(2026, 3, 2, tzinfo=UTC))
        team = TeamRequest(request_id=request.id, unit=long_unit, size="31_plus", visit=True,
                           group=True, private=True)
        surfacing = library.for_moment(Moment.SUPPORTER_ACCEPTED, audience="supporter",
                                       topics=("group",))
        for message in (
                requester_status(request, library.for_moment(Moment.REQUEST_WAITING)),
                offer_message(request, 2**31 - 1, team=team),
                offer_message(request, 1, direct=True, team=team),
                introduction(request, ["USUP1", "USUP2"], team),
                team_case(request, team, ["USUP1", "USUP2"], surfacing),
                coordinator_alert(request, waited=timedelta(days=3), asked=40, team=team)):
            assert message["text"]
            assert_within_limits(message["blocks"])
            assert "&<" not in json.dumps(message), "the unit is escaped"
        for view in (team_request_view(request), team_close_modal(request.id)):
            assert_within_limits(view["blocks"], max_blocks=VIEW_BLOCKS)
