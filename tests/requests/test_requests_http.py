"""The request lifecycle end to end: signed requests, the loopback Slack stand-in, the due-work
engine on a manual clock."""

from __future__ import annotations

import itertools
import json
import logging
import threading

import pytest
from sqlalchemy import select

from bot.infra.models import (
    DueWork,
    Offer,
    OfferState,
    RequestState,
    SupporterStatus,
    SupportRequest,
    WorkState,
)
from bot.requests.timers import ESCALATION_REMINDER, OFFER_TIMEOUT
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from handlers.common.ids import Action, Block, Callback
from handlers.requests import listeners as requests_listeners
from handlers.requests.blocks import NOT_SAFE, WELCOME
from tests.conftest import AppServer, eventually, run_together

REQUESTER = "UCLIN00001"
COORDINATOR = "UCOORD0001"
SUPPORTERS = [f"USUPP0000{i}" for i in range(1, 6)]
_views = itertools.count(1)


def add_supporters(app_server: AppServer, *user_ids: str, **fields: object) -> None:
    with app_server.runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(u, "ICU", "nurse") for u in user_ids],
                      now=app_server.runtime.clock.now(), time_zones={},
                      default_case_cap=2, default_cooldown_hours=12)
        for user_id in user_ids:
            app_server.slack.fake.add_user(user_id)
            for name, value in fields.items():
                setattr(roster.get(session, user_id), name, value)


def choice(value: str) -> dict:
    return {Action.FIELD: {"type": "radio_buttons", "selected_option": {"value": value}}}


def checked(*values: str) -> dict:
    return {Action.FIELD: {"type": "checkboxes",
                           "selected_options": [{"value": v} for v in values]}}


def ask(app_server: AppServer, user_id: str = REQUESTER, *, urgency: str = "now",
        connection: str = "slack", crisis: bool = False, view_id: str | None = None):  # noqa: ANN201
    values = {Block.URGENCY: choice(urgency), Block.CONNECTION: choice(connection),
              Block.WHO: choice("anyone"), Block.ROLE_MATCH: choice("any"),
              Block.FOLLOWUPS: checked(WELCOME),
              Block.SAFETY: checked(NOT_SAFE) if crisis else checked()}
    return app_server.slack.view_submission(user_id, Callback.REQUEST, values,
                                            view_id=view_id or f"VREQ{next(_views):05d}")


def request_row(app_server: AppServer) -> SupportRequest | None:
    with app_server.runtime.sessions() as session:
        return session.scalars(select(SupportRequest).order_by(SupportRequest.id.desc())).first()


def current(app_server: AppServer, field: str) -> object:
    """A field of the newest request, or None while there is none yet."""
    row = request_row(app_server)
    return getattr(row, field) if row is not None else None


def offers(app_server: AppServer, request_id: int) -> list[Offer]:
    with app_server.runtime.sessions() as session:
        return list(session.scalars(select(Offer).where(Offer.request_id == request_id)
                                    .order_by(Offer.id)))


def dms_to(app_server: AppServer, user_id: str) -> list[dict]:
    """Messages the bot posted in its DM with one person."""
    fake = app_server.slack.fake
    channel = fake._conversations.get(frozenset([user_id]))
    return list(fake.messages.get(channel, [])) if channel else []


def posted_offers(app_server: AppServer, count: int) -> list[dict]:
    calls = app_server.slack.fake.wait_for(
        "chat.postMessage", lambda c: Action.ACCEPT_OFFER in json.dumps(c.args.get("blocks")),
        count=count)
    return [c.args for c in calls]


def offer_value(app_server: AppServer, supporter_id: str) -> str:
    request = request_row(app_server)
    offer = next(o for o in offers(app_server, request.id) if o.supporter_id == supporter_id)
    eventually(lambda: all(o.ts for o in offers(app_server, request.id)
                           if o.state != OfferState.FAILED))
    return str(offer.id)


def assert_never_dropped(app_server: AppServer) -> None:
    """The invariant: every request is assigned, cancelled or closed, or has a live timer."""
    with app_server.runtime.sessions() as session:
        for request in session.scalars(select(SupportRequest)):
            if request.state in (RequestState.OPEN, RequestState.ESCALATED):
                timers = session.scalars(select(DueWork).where(
                    DueWork.kind.in_([OFFER_TIMEOUT, ESCALATION_REMINDER]),
                    DueWork.state == WorkState.PENDING)).all()
                assert any(t.payload["request_id"] == request.id for t in timers), request.id


def alert_ts(fake, alert) -> str:  # noqa: ANN001
    """Where an alert's chat.postMessage call landed."""
    return next(m["ts"] for m in fake.messages[alert.args["channel"]]
                if Action.TAKE_REQUEST in json.dumps(m.get("blocks")))


def tick(app_server: AppServer, seconds: float) -> None:
    """Time passes and the clock runs, once the listeners already started have finished (a
    listener delivers what it recorded right after answering Slack)."""
    app_server.settle()
    app_server.runtime.clock.advance(seconds)
    app_server.runtime.duework().run_until_idle()


# -- asking ------------------------------------------------------------------------------------


def test_the_command_alone_opens_the_request_modal(app_server: AppServer) -> None:
    reply = app_server.slack.command(REQUESTER, "")
    assert reply.status == 200
    view = app_server.slack.fake.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == Callback.REQUEST
    elements = [b.get("element", {}).get("type") for b in view["blocks"] if b["type"] == "input"]
    assert "plain_text_input" not in elements, "there is no field for what happened"
    assert "never stores it" in json.dumps(view)


def test_the_command_is_answered_before_the_form_is_opened(
        app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = app_server.slack.fake
    release = threading.Event()
    opening = fake._api_views_open

    def held(args: dict) -> dict:
        release.wait(10)  # Slack slow to open it
        return opening(args)

    monkeypatch.setattr(fake, "_api_views_open", held)
    reply = app_server.slack.command(REQUESTER, "")
    assert (reply.status, reply.body) == (200, ""), "Slack has its answer"
    assert not release.is_set() and not fake.modals.get(REQUESTER), "the form is not open yet"
    release.set()
    app_server.settle()
    assert len(fake.modals[REQUESTER]) == 1, "and then it opens, once"


def test_a_form_that_fails_to_open_after_the_answer_is_logged_without_content(
        app_server: AppServer, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    quoted = "UCLIN00001 typed this"

    def broken(*_args: object) -> dict:
        raise RuntimeError(quoted)  # an error's message may quote what someone typed

    monkeypatch.setattr(requests_listeners, "personal_form", broken)
    reply = app_server.slack.command(REQUESTER, "")
    app_server.settle()
    assert reply.status == 200
    failures = [r for r in caplog.records if "after answering Slack" in r.getMessage()]
    assert len(failures) == 1 and "RuntimeError" in failures[0].getMessage()
    assert "typed this" not in failures[0].getMessage()
    assert app_server.slack.command(REQUESTER, "help").status == 200, "the server still answers"


def test_the_shortcut_and_home_button_open_it_too(app_server: AppServer) -> None:
    app_server.slack.shortcut(REQUESTER, Callback.REQUEST_SHORTCUT)
    app_server.slack.block_action(REQUESTER, Action.REQUEST_SUPPORT)
    views = app_server.slack.fake.wait_for("views.open", count=2)
    assert {v.args["view"]["callback_id"] for v in views} == {Callback.REQUEST}


def test_asking_acknowledges_then_offers_a_wave_and_tells_the_person(
        app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    reply = ask(app_server)
    assert reply.status == 200 and reply.body == ""
    offer_messages = posted_offers(app_server, 3)
    assert all(REQUESTER not in json.dumps(m) for m in offer_messages), "identity stays private"
    assert "As soon as possible" in json.dumps(offer_messages[0]["blocks"])
    status = eventually(lambda: dms_to(app_server, REQUESTER))
    text = json.dumps(status[0]["blocks"])
    assert "usually within 30 minutes" in text and "988" in text and "While you wait" in text
    request = request_row(app_server)
    assert (request.state, request.wave, request.followups) == (RequestState.OPEN, 1, True)
    assert_never_dropped(app_server)


def test_a_wave_of_offers_goes_out_together_not_one_after_another(
        app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    slow = 2.0
    app_server.slack.fake.fail("chat.postMessage", delay=slow, times=3)  # each answer is late
    ask(app_server)
    posted_offers(app_server, 3)
    starts = sorted(call.at for call in app_server.slack.fake.calls_to("chat.postMessage")
                    if Action.ACCEPT_OFFER in json.dumps(call.args.get("blocks")))
    # One after another, the third could only start once the first two had been answered.
    assert starts[2] < starts[0] + slow
    assert_never_dropped(app_server)


def test_a_second_request_shows_the_open_one(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    ask(app_server)
    eventually(lambda: request_row(app_server))
    app_server.slack.command(REQUESTER, "")
    view = app_server.slack.fake.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == Callback.OPEN_REQUEST
    assert Action.CANCEL_REQUEST in json.dumps(view)


def test_the_same_submission_delivered_twice_makes_one_request(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    ask(app_server, view_id="VSAME00001")
    eventually(lambda: request_row(app_server))
    second = ask(app_server, view_id="VSAME00001")
    assert second.json()["response_action"] == "update"
    with app_server.runtime.sessions() as session:
        assert len(session.scalars(select(SupportRequest)).all()) == 1


@pytest.mark.parametrize("same_form", [True, False], ids=["same form", "two forms"])
def test_forms_submitted_at_once_make_one_request_and_no_error(
        app_server: AppServer, same_form: bool, caplog: pytest.LogCaptureFixture) -> None:
    add_supporters(app_server, *SUPPORTERS)

    def submit(n: int, go) -> int:  # noqa: ANN001
        go()
        return ask(app_server, view_id="VTWICE0001" if same_form else f"VTWICE000{n}").status

    with caplog.at_level(logging.DEBUG):
        statuses = run_together(submit, [1, 2, 3])
    assert statuses == [200, 200, 200], "never a 500, whichever copy loses"
    app_server.settle()
    with app_server.runtime.sessions() as session:
        assert len(session.scalars(select(SupportRequest)).all()) == 1
    assert REQUESTER not in caplog.text, "no id reaches the log"


def test_a_replayed_submission_is_acknowledged_empty_and_makes_one_request(
        app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    assert ask(app_server).status == 200
    replay = app_server.slack.post_raw(app_server.slack.sent[-1],
                                       "application/x-www-form-urlencoded")
    assert (replay.status, replay.body) == (200, ""), "the copy just closes the form"
    app_server.settle()
    with app_server.runtime.sessions() as session:
        assert len(session.scalars(select(SupportRequest)).all()) == 1


# -- accepting ---------------------------------------------------------------------------------


def test_accept_introduces_the_two_and_thanks_the_others(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:3])
    ask(app_server, connection="phone")
    posted_offers(app_server, 3)
    winner = SUPPORTERS[1]
    reply = app_server.slack.block_action(winner, Action.ACCEPT_OFFER,
                                          offer_value(app_server, winner))
    assert reply.status == 200
    fake = app_server.slack.fake
    opened = fake.wait_for("conversations.open", lambda c: "," in c.args["users"])[0]
    assert set(opened.args["users"].split(",")) == {REQUESTER, winner}
    intro = fake.wait_for("chat.postMessage", lambda c: c.args["channel"].startswith("G"))[0]
    assert "would like a phone call" in intro.args["text"]
    tips = fake.wait_for("chat.postMessage", lambda c: "Before you meet" in json.dumps(
        c.args.get("blocks")))[0]
    assert Action.HAND_BACK in json.dumps(tips.args["blocks"])
    updates = fake.wait_for("chat.update", lambda c: "already taken" in c.args["text"], count=2)
    assert len(updates) == 2
    request = eventually(lambda: (r := request_row(app_server)) and r.intro_channel and r)
    assert (request.state, request.supporter_id) == (RequestState.ASSIGNED, winner)
    with app_server.runtime.sessions() as session:
        assert not session.scalars(select(DueWork).where(
            DueWork.kind == OFFER_TIMEOUT, DueWork.state == WorkState.PENDING)).all()


def test_concurrent_accept_clicks_assign_one_supporter(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    ask(app_server)
    posted_offers(app_server, 3)
    request = request_row(app_server)
    clickers = [o.supporter_id for o in offers(app_server, request.id)]
    values = {s: offer_value(app_server, s) for s in clickers}

    def click(supporter: str, go) -> None:  # noqa: ANN001
        go()
        app_server.slack.block_action(supporter, Action.ACCEPT_OFFER, values[supporter])

    run_together(click, clickers)
    late = app_server.slack.fake.wait_for_response(count=4)  # a note and an update each
    assert sum("already taken" in r.get("text", "") for r in late
               if not r.get("replace_original")) == 2
    assert eventually(lambda: current(app_server, "state") == RequestState.ASSIGNED)
    accepted = [o for o in offers(app_server, request.id) if o.state == OfferState.ACCEPTED]
    assert len(accepted) == 1


def test_a_forwarded_offer_cannot_be_accepted_by_someone_else(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:1])
    ask(app_server)
    posted_offers(app_server, 1)
    app_server.slack.block_action("UINTRUDER1", Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    reply = app_server.slack.fake.wait_for_response()[0]
    assert reply["text"].startswith("This offer was sent to someone else")
    assert request_row(app_server).state == RequestState.OPEN


@pytest.mark.parametrize("value", ["", "abc", "999999", "-1"])
def test_an_offer_button_with_a_bad_value_changes_nothing(app_server: AppServer,
                                                          value: str) -> None:
    add_supporters(app_server, *SUPPORTERS[:1])
    ask(app_server)
    posted_offers(app_server, 1)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER, value)
    assert app_server.slack.fake.wait_for_response()[0]["text"] == "This offer no longer exists."
    assert request_row(app_server).state == RequestState.OPEN


# -- declines, timeouts and escalation ---------------------------------------------------------


def test_declines_move_on_then_escalate_and_remind_until_taken(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:4])
    ask(app_server)
    posted_offers(app_server, 3)
    request = request_row(app_server)
    for offer in offers(app_server, request.id):
        app_server.slack.block_action(offer.supporter_id, Action.DECLINE_OFFER,
                                      offer_value(app_server, offer.supporter_id))
    posted_offers(app_server, 4)  # the whole first wave declined: the fourth is asked at once
    assert eventually(lambda: current(app_server, "wave") == 2)
    assert_never_dropped(app_server)

    tick(app_server, 600)  # the second wave times out and nobody eligible is left
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST in json.dumps(
        c.args.get("blocks")))[0]
    assert REQUESTER not in json.dumps(alert.args), "who asked stays private"
    assert request_row(app_server).state == RequestState.ESCALATED
    status = fake.wait_for("chat.update", lambda c: "program coordinator has been asked" in
                           c.args["text"])
    assert status
    assert_never_dropped(app_server)

    tick(app_server, 900)  # nobody acted: the one alert is refreshed and noticed again
    renotice = fake.wait_for("chat.postMessage", lambda c: "Still no supporter after 25 min"
                             in c.args["text"])[0]
    assert renotice.args["thread_ts"] == alert_ts(fake, alert)
    assert len([c for c in fake.calls_to("chat.postMessage")
                if Action.TAKE_REQUEST in json.dumps(c.args.get("blocks"))]) == 1
    assert_never_dropped(app_server)

    app_server.slack.block_action(COORDINATOR, Action.TAKE_REQUEST, str(request.id))
    intro = fake.wait_for("conversations.open", lambda c: "," in c.args["users"])[0]
    assert REQUESTER in intro.args["users"]
    assert eventually(lambda: current(app_server, "supporter_id") == COORDINATOR)
    fake.wait_for("chat.update", lambda c: "Placed:" in c.args["text"])


def test_an_empty_roster_escalates_at_once(app_server: AppServer) -> None:
    ask(app_server)
    app_server.slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"].startswith(
        "D") and Action.TAKE_REQUEST in json.dumps(c.args.get("blocks")))
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    assert_never_dropped(app_server)


def test_only_coordinators_can_take_or_pick(app_server: AppServer) -> None:
    ask(app_server)
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    request = request_row(app_server)
    app_server.slack.block_action("USOMEONE01", Action.TAKE_REQUEST, str(request.id))
    assert "Only program coordinators" in app_server.slack.fake.wait_for_response()[0]["text"]
    assert request_row(app_server).state == RequestState.ESCALATED


def test_a_coordinator_picks_a_supporter_who_then_accepts(app_server: AppServer) -> None:
    ask(app_server)
    eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    add_supporters(app_server, "UPICKED001", status=SupporterStatus.AWAY)
    request = request_row(app_server)
    pick(app_server, request.id, "UPICKED001")
    assert "Offered to <@UPICKED001>" in app_server.slack.fake.wait_for_response()[0]["text"]
    direct = posted_offers(app_server, 1)[0]
    assert "asked you personally" in json.dumps(direct["blocks"])
    app_server.slack.block_action("UPICKED001", Action.ACCEPT_OFFER,
                                  offer_value(app_server, "UPICKED001"))
    assert eventually(lambda: current(app_server, "supporter_id") == "UPICKED001")


# -- not safe ----------------------------------------------------------------------------------


def test_not_safe_shows_crisis_lines_alerts_at_once_and_asks_everyone(
        app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS)
    reply = ask(app_server, crisis=True)
    body = reply.json()
    assert body["response_action"] == "update" and "988" in json.dumps(body["view"])
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: "not safe" in json.dumps(
        c.args.get("blocks")) and Action.TAKE_REQUEST in json.dumps(c.args.get("blocks")))[0]
    assert f"<@{REQUESTER}>" in json.dumps(alert.args["blocks"]), "safety lifts confidentiality"
    posted_offers(app_server, 5)  # every available supporter, in one wave
    assert request_row(app_server).wave == 1


# -- hand back, cancel, close ------------------------------------------------------------------


def accept_first(app_server: AppServer, supporter: str) -> SupportRequest:
    ask(app_server)
    posted_offers(app_server, 1)
    app_server.slack.block_action(supporter, Action.ACCEPT_OFFER,
                                  offer_value(app_server, supporter))
    return eventually(lambda: (r := request_row(app_server)) and r.state ==
                      RequestState.ASSIGNED and r)


def test_hand_back_reoffers_without_them_and_tells_the_person_kindly(
        app_server: AppServer) -> None:
    add_supporters(app_server, SUPPORTERS[0])
    request = accept_first(app_server, SUPPORTERS[0])
    add_supporters(app_server, SUPPORTERS[1])
    app_server.slack.block_action(SUPPORTERS[0], Action.HAND_BACK, str(request.id))
    fake = app_server.slack.fake
    fake.wait_for("chat.postMessage", lambda c: "it is not about you" in c.args.get("text", ""))
    second = posted_offers(app_server, 2)[-1]
    assert second["channel"] == fake._conversations[frozenset([SUPPORTERS[1]])]
    assert eventually(lambda: current(app_server, "state") == RequestState.OPEN)


def test_cancel_withdraws_offers_and_stops_the_timers(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:2])
    ask(app_server)
    posted_offers(app_server, 2)
    request = request_row(app_server)
    offer_value(app_server, SUPPORTERS[0])
    app_server.slack.block_action(REQUESTER, Action.CANCEL_REQUEST, str(request.id))
    app_server.slack.fake.wait_for("chat.update", lambda c: "withdrew" in c.args["text"],
                                   count=2)
    assert eventually(lambda: current(app_server, "state") == RequestState.CANCELLED)
    tick(app_server, 3600)
    assert app_server.slack.fake.calls_to("chat.postMessage")[-1].args["channel"] != \
        COORDINATOR, "no escalation for a withdrawn request"
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    assert "withdrew" in app_server.slack.fake.wait_for_response()[0]["text"]


def test_someone_else_cannot_cancel(app_server: AppServer) -> None:
    ask(app_server)
    request = eventually(lambda: request_row(app_server))
    app_server.slack.block_action("USOMEONE01", Action.CANCEL_REQUEST, str(request.id))
    assert "not yours" in app_server.slack.fake.wait_for_response()[0]["text"]


def test_close_records_aggregate_answers_only(app_server: AppServer) -> None:
    add_supporters(app_server, SUPPORTERS[0])
    request = accept_first(app_server, SUPPORTERS[0])
    app_server.slack.block_action(SUPPORTERS[0], Action.OPEN_CLOSE, str(request.id))
    view = app_server.slack.fake.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == Callback.CLOSE_REQUEST
    assert "plain_text_input" not in json.dumps(view)
    reply = app_server.slack.view_submission(SUPPORTERS[0], Callback.CLOSE_REQUEST, {
        Block.DURATION: choice("30_60"), Block.REFERRED: choice("yes"),
        Block.NEED_MET: choice("partly")}, private_metadata=str(request.id))
    assert reply.status == 200
    closed = eventually(lambda: (r := request_row(app_server)) and r.state ==
                        RequestState.CLOSED and r)
    assert (closed.duration, closed.referred, closed.need_met) == ("30_60", True, "partly")
    app_server.slack.block_action(SUPPORTERS[0], Action.OPEN_CLOSE, str(request.id))
    assert "not open with you" in app_server.slack.fake.wait_for_response()[0]["text"]


def test_an_unreachable_supporter_is_skipped(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:3])
    app_server.slack.fake.users[SUPPORTERS[0]].deleted = True
    ask(app_server)
    posted_offers(app_server, 2)
    request = request_row(app_server)
    states = eventually(lambda: sorted(o.state for o in offers(app_server, request.id))
                        if any(o.state == OfferState.FAILED for o in offers(app_server,
                                                                             request.id))
                        else None)
    assert states == [OfferState.FAILED, OfferState.PENDING, OfferState.PENDING]


def test_when_every_offer_fails_the_next_wave_goes_at_once(app_server: AppServer) -> None:
    add_supporters(app_server, SUPPORTERS[0])
    app_server.slack.fake.users[SUPPORTERS[0]].deleted = True
    app_server.runtime.settings.__dict__["wave_size"] = 1
    ask(app_server)
    app_server.slack.fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST in
                                   json.dumps(c.args.get("blocks")))
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)


# -- the Home tab follows the request ----------------------------------------------------------


def home_of(app_server: AppServer, user_id: str) -> str:
    from bot.home.service import build_home
    from handlers.home.blocks import home_view

    runtime = app_server.runtime
    with runtime.sessions() as session:
        home = build_home(session, user_id, roles=runtime.roles, library=runtime.library,
                          settings=runtime.settings, now=runtime.clock.now())
        return json.dumps(home_view(home), ensure_ascii=False)


def test_each_home_shows_its_part_of_a_request(app_server: AppServer) -> None:
    add_supporters(app_server, SUPPORTERS[0], SUPPORTERS[1])
    ask(app_server, urgency="today")
    posted_offers(app_server, 2)
    assert "we are finding a supporter for you" in home_of(app_server, REQUESTER)
    assert "Offers waiting for you:* 1" in home_of(app_server, SUPPORTERS[0])
    coordinator = home_of(app_server, COORDINATOR)
    assert "Unassigned or escalated requests:* 1" in coordinator and "Today · waiting 0 min" \
        in coordinator
    assert REQUESTER not in coordinator, "coordinators see counts, never who asked"

    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    eventually(lambda: current(app_server, "state") == RequestState.ASSIGNED)
    assert f"<@{SUPPORTERS[0]}> is your supporter" in home_of(app_server, REQUESTER)
    supporter_home = home_of(app_server, SUPPORTERS[0])
    assert f"*Active case* with <@{REQUESTER}>" in supporter_home
    assert Action.OPEN_CLOSE in supporter_home
    assert "Unassigned or escalated requests:* none" in home_of(app_server, COORDINATOR)


def test_retention_runs_daily_on_the_clock(app_server: AppServer) -> None:
    from bot.requests.timers import RETENTION
    from handlers import bootstrap_jobs

    bootstrap_jobs(app_server.runtime)
    with app_server.runtime.sessions() as session:
        job = session.scalars(select(DueWork).where(DueWork.kind == RETENTION)).one()
    tick(app_server, (job.due_at - app_server.runtime.clock.now()).total_seconds())
    with app_server.runtime.sessions() as session:
        kinds = [(d.kind, d.state) for d in session.scalars(select(DueWork).where(
            DueWork.kind == RETENTION).order_by(DueWork.due_at))]
    assert kinds == [(RETENTION, WorkState.DONE), (RETENTION, WorkState.PENDING)]


def test_a_supporter_who_comes_on_duty_is_asked_at_the_next_reminder(
        app_server: AppServer) -> None:
    ask(app_server)
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    add_supporters(app_server, SUPPORTERS[0])  # someone joins the roster meanwhile
    tick(app_server, 900)
    posted_offers(app_server, 1)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    assert eventually(lambda: current(app_server, "supporter_id") == SUPPORTERS[0])


def test_privileged_reads_are_audited_without_content(app_server: AppServer) -> None:
    from bot.infra import audit

    ask(app_server, crisis=True)
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    request = request_row(app_server)
    app_server.slack.block_action(COORDINATOR, Action.TAKE_REQUEST, str(request.id))
    assert eventually(lambda: current(app_server, "supporter_id") == COORDINATOR)
    app_server.slack.command(COORDINATOR, "roster list")
    app_server.slack.command(COORDINATOR, "insights")
    app_server.slack.fake.wait_for_response(count=2)

    def events() -> list[tuple[str | None, str, str]]:
        with app_server.runtime.sessions() as session:
            return [(e.actor_id, e.action, e.subject) for e in audit.recent(session)]

    found = eventually(lambda: len(events()) == 4 and events())
    assert sorted(found, key=lambda e: e[1]) == [
        (COORDINATOR, "insights.view", ""), (None, "request.crisis_alert", str(request.id)),
        (COORDINATOR, "request.take", str(request.id)), (COORDINATOR, "roster.list", "")]
    assert REQUESTER not in json.dumps(found)


def test_a_request_ends_when_the_person_who_asked_leaves_and_coordinators_are_told(
        app_server: AppServer) -> None:
    ask(app_server)  # nobody on the roster: escalated at once, coordinators alerted
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST in json.dumps(
        c.args.get("blocks")))[0]
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    where = alert_ts(fake, alert)
    reply = app_server.slack.event({"type": "user_change", "event_ts": "1.2",
                                    "user": {"id": REQUESTER, "deleted": True}})
    assert reply.status == 200
    assert eventually(lambda: current(app_server, "state") == RequestState.CANCELLED)
    fake.wait_for("chat.update", lambda c: c.args["ts"] == where and "Withdrawn" in c.args["text"])
    tick(app_server, 7200)  # no reminder of it ever fires
    assert len([c for c in fake.calls_to("chat.postMessage") if c.args.get("thread_ts")]) == 0


def test_coordinators_get_one_daily_list_of_requests_still_waiting(app_server: AppServer) -> None:
    from handlers import bootstrap_jobs
    ask(app_server)  # nobody on the roster: escalated at once
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    bootstrap_jobs(app_server.runtime)
    fake = app_server.slack.fake
    tick(app_server, 18 * 3600)  # 08:00 the next morning, in the program's zone (UTC here)
    digests = [c for c in fake.calls_to("chat.postMessage")
               if "still without a supporter" in json.dumps(c.args.get("blocks"))]
    assert len(digests) == 1 and "waiting 18 h 0 min" in json.dumps(digests[0].args["blocks"])
    assert REQUESTER not in json.dumps(digests[0].args), "the list does not say who asked"
    tick(app_server, 3600)
    assert len([c for c in fake.calls_to("chat.postMessage")
                if "still without a supporter" in json.dumps(c.args.get("blocks"))]) == 1


def test_a_day_and_a_half_unplaced_is_one_alert_noticed_on_a_backing_off_cadence(
        app_server: AppServer) -> None:
    ask(app_server, urgency="today")  # nobody on the roster: escalated at once
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST in json.dumps(
        c.args.get("blocks")))[0]
    where = alert_ts(fake, alert)
    for _ in range(36 * 4):  # the clock ticks every 15 minutes for 36 hours
        tick(app_server, 900)
    posts = fake.calls_to("chat.postMessage")
    assert len([c for c in posts if Action.TAKE_REQUEST in json.dumps(c.args.get("blocks"))]) == 1
    notices = [c for c in posts if c.args.get("thread_ts") == where]
    # After 15 min, 30 min more, an hour more, then every two hours: 3 + 17 by 36 hours.
    assert len(notices) == 20, len(notices)
    assert "Still no supporter after 1 day 11 h" in notices[-1].args["text"]
    request = request_row(app_server)
    updates_before = len(fake.calls_to("chat.update"))
    app_server.slack.block_action(COORDINATOR, Action.TAKE_REQUEST, str(request.id))
    assert eventually(lambda: current(app_server, "supporter_id") == COORDINATOR)
    placed = fake.wait_for("chat.update", lambda c: "Placed:" in c.args["text"])
    app_server.settle()
    assert len(placed) == 1, "each alert is updated once when someone takes it"
    assert len([c for c in fake.calls_to("chat.update")[updates_before:]
                if c.args["ts"] == where]) == 1


def test_a_department_longer_than_any_on_the_list_is_refused_on_the_form(
        app_server: AppServer) -> None:
    values = {Block.URGENCY: choice("now"), Block.CONNECTION: choice("slack"),
              Block.WHO: choice("outside"), Block.ROLE_MATCH: choice("any"),
              Block.DEPARTMENT: {Action.FIELD: {"type": "static_select", "selected_option": {
                  "value": "Cardiology" * 20}}}}
    reply = app_server.slack.view_submission(REQUESTER, Callback.REQUEST, values,
                                             view_id="VLONG00001")
    assert reply.status == 200
    assert Block.DEPARTMENT in reply.json()["errors"]
    assert request_row(app_server) is None


def test_a_coordinator_can_pick_someone_whose_offer_ended_and_they_get_a_live_offer(
        app_server: AppServer) -> None:
    add_supporters(app_server, SUPPORTERS[0])
    ask(app_server)
    posted_offers(app_server, 1)
    app_server.slack.block_action(SUPPORTERS[0], Action.DECLINE_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    request = request_row(app_server)
    pick(app_server, request.id, SUPPORTERS[0])
    live = posted_offers(app_server, 2)[-1]  # a new message with Accept, not the old one
    assert "asked you personally" in json.dumps(live["blocks"])
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    assert eventually(lambda: current(app_server, "supporter_id") == SUPPORTERS[0])


def test_a_hand_back_puts_take_back_on_the_coordinators_alert(app_server: AppServer) -> None:
    add_supporters(app_server, SUPPORTERS[0])
    ask(app_server, crisis=True)  # coordinators are alerted at once
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST in json.dumps(
        c.args.get("blocks")))[0]
    where = alert_ts(fake, alert)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    fake.wait_for("chat.update", lambda c: c.args["ts"] == where and "Placed:" in c.args["text"])
    request = request_row(app_server)
    app_server.slack.block_action(SUPPORTERS[0], Action.HAND_BACK, str(request.id))
    fake.wait_for("chat.update", lambda c: c.args["ts"] == where
                  and Action.TAKE_REQUEST in json.dumps(c.args.get("blocks")))


def pick(app_server: AppServer, request_id: int, supporter: str) -> None:
    """A coordinator offers the request to one supporter from their alert."""
    action = {"type": "users_select", "action_id": Action.PICK_SUPPORTER,
              "block_id": f"alert:{request_id}", "selected_user": supporter, "action_ts": "1.2"}
    body = {"type": "block_actions", "team": {"id": "T0PEERSUP"}, "api_app_id": "A1",
            "user": {"id": COORDINATOR}, "trigger_id": "1.2.t", "token": "t",
            "response_url": app_server.slack.fake.response_url(), "actions": [action],
            "container": {"type": "message", "channel_id": "D1", "message_ts": "1.1"},
            "channel": {"id": "D1"}, "message": {"ts": "1.1"}}
    app_server.slack.post_payload(body)
    assert "Offered to" in app_server.slack.fake.wait_for_response()[-1]["text"]
