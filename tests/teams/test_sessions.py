"""A team's group conversation: supporters propose times, the caller picks one, the caller's
invitation and its post in the team's channel, the reminder an hour before, rescheduling and
calling off. End to end through signed HTTP, the Slack stand-in and the manual clock, on SQLite
and PostgreSQL; the races on PostgreSQL with real concurrent sessions."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.infra.db import make_sessions
from bot.infra.models import (
    DueWork,
    Offer,
    RequestState,
    SessionProposal,
    SessionState,
    SupportRequest,
    TeamRequest,
    WorkState,
)
from bot.infra.outbox import Effect
from bot.requests import flows, sessions
from bot.requests import service as requests
from bot.requests import teams as team_domain
from bot.requests.sessions import SESSION_REMINDER, Posting, SessionError
from bot.requests.teams import TeamForm
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from handlers.common.ids import Action, Block, Callback
from handlers.teams import session_blocks as blocks
from tests.blockkit import VIEW_BLOCKS, assert_within_limits
from tests.conftest import START, AppServer, Database, run_together
from tests.requests.test_request_races import in_own_session

CALLER = "UCALLER001"  # in Sydney
NY = "USUPNY0001"  # a supporter in New York
LDN = "USUPLDN001"  # a supporter in London
OUTSIDER = "UOUTSIDE01"
TEAM_CHANNEL = "C0TEAMICU1"
PLACE = "Family room, level 4"
ZONES = {CALLER: "Australia/Sydney", NY: "America/New_York", LDN: "Europe/London"}
# Each straddles a change of clocks: the US's (8 March), the EU's (29 March), Sydney's (5 April).
STRADDLING = [datetime(2026, 3, 8, 7, 30, tzinfo=UTC),   # New York 03:30 EDT, an hour after 01:30 EST
              datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # London 02:30 BST, an hour after 00:30 GMT
              datetime(2026, 4, 4, 16, 30, tzinfo=UTC)]  # Sydney 02:30 AEST, an hour after 02:30 AEDT
CALLER_SEES = ["Sun 8 Mar 2026, 18:30 AEDT", "Sun 29 Mar 2026, 12:30 AEDT",
               "Sun 5 Apr 2026, 02:30 AEST"]
SUPPORTERS_SEE = [{NY: "03:30 EDT", LDN: "07:30 GMT"}, {NY: "21:30 EDT", LDN: "02:30 BST"},
                  {NY: "12:30 EDT", LDN: "17:30 BST"}]
TOKEN = re.compile(r"<!date\^(\d+)\^\{date_short_pretty\} at \{time\}\|[^>]+>")
T1, T2, T3 = (START + timedelta(days=d, hours=1) for d in (2, 3, 4))


# -- setting up a placed team request ----------------------------------------------------------

def add_people(server: AppServer) -> None:
    for user_id, tz in ZONES.items():
        server.slack.fake.add_user(user_id, tz=tz)
    with server.runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(u, "ICU", "nurse") for u in (NY, LDN)],
                      now=server.runtime.clock.now(), time_zones={}, default_case_cap=3,
                      default_cooldown_hours=0)


def placed(server: AppServer, *, channel: str | None = TEAM_CHANNEL) -> int:
    """A team request for a group conversation, called by CALLER and accepted by NY and LDN
    through the Accept button: placed, with its group DM."""
    add_people(server)
    form = TeamForm(unit="Paediatric ICU", size="6_15", urgency="today", group=True,
                    channel=channel)
    with server.runtime.sessions.begin() as session:
        request_id = flows.create_team(server.runtime.services, session, CALLER, form,
                                       source_key=None).id
    with server.runtime.sessions() as session:
        offered = {o.supporter_id: o.id for o in session.scalars(
            select(Offer).where(Offer.request_id == request_id))}
    for supporter in (NY, LDN):
        server.slack.block_action(supporter, Action.ACCEPT_OFFER, str(offered[supporter]))
        server.settle()
    assert request_of(server, request_id).state == RequestState.ASSIGNED
    if not group_dm(server):
        # On a busy machine the introduction may have handed itself to the clock (it waits a
        # moment for the status message's first post): the clock's next tick sends it.
        run_clock_at(server, server.runtime.clock.now() + timedelta(seconds=5))
    assert group_dm(server), "the introduction is in the group DM"
    return request_id


def request_of(server: AppServer, request_id: int) -> SupportRequest:
    with server.runtime.sessions() as session:
        return session.get(SupportRequest, request_id)


def team_of(server: AppServer, request_id: int) -> TeamRequest:
    with server.runtime.sessions() as session:
        return session.get(TeamRequest, request_id)


def group_channel(server: AppServer) -> str:
    channel = server.slack.fake.dm_channel([CALLER, NY, LDN])
    assert channel is not None
    return channel


def group_dm(server: AppServer) -> list[dict]:
    channel = server.slack.fake.dm_channel([CALLER, NY, LDN])
    return list(server.slack.fake.messages.get(channel, [])) if channel else []


def dms_to(server: AppServer, user_id: str) -> list[dict]:
    channel = server.slack.fake.dm_channel([user_id])
    return list(server.slack.fake.messages.get(channel, [])) if channel else []


def reminders_to(server: AppServer, user_id: str) -> list[dict]:
    return [m for m in dms_to(server, user_id) if m["text"].startswith("Reminder:")]


def everything(message: dict) -> str:
    return message["text"] + json.dumps(message.get("blocks"))


def shown(message: dict) -> str:
    """What the message's blocks show (its text is the notification's copy of it)."""
    return json.dumps(message.get("blocks"))


def with_action(messages: list[dict], action: str) -> list[dict]:
    return [m for m in messages if f'"action_id": "{action}"' in json.dumps(m.get("blocks"))]


def button(message: dict, action: str) -> tuple[str, str]:
    """The (value, block id) of the message's button with `action`."""
    for block in message.get("blocks") or []:
        for element in [block.get("accessory"), *block.get("elements", [])]:
            if isinstance(element, dict) and element.get("action_id") == action:
                return element["value"], block.get("block_id", "actions")
    raise AssertionError(f"no {action} button")


def instants(text: str) -> list[datetime]:
    return [datetime.fromtimestamp(int(epoch), UTC) for epoch in TOKEN.findall(text)]


def time_values(*times: datetime | int | str | None) -> dict[str, Any]:
    return {f"{Block.SESSION_TIME}:{number}": {Action.FIELD: {
        "type": "datetimepicker",
        "selected_date_time": int(at.timestamp()) if isinstance(at, datetime) else at}}
        for number, at in enumerate(times, start=1)}


def propose(server: AppServer, user_id: str, request_id: int | str, *times: datetime | int | str
            | None, place: str | None = PLACE) -> dict | None:
    """The proposal form submitted; Slack's answer (errors), or None once it closed."""
    values = time_values(*times)
    values[Block.SESSION_PLACE] = {Action.FIELD: {"type": "plain_text_input", "value": place}}
    reply = server.slack.view_submission(user_id, Callback.PROPOSE_TIMES, values,
                                         private_metadata=str(request_id))
    assert reply.status == 200
    server.settle()
    return reply.json()


def proposals_message(server: AppServer) -> dict:
    found = with_action(group_dm(server), Action.PICK_TIME)
    assert len(found) == 1, "one message of proposals"
    return found[0]


def pick_values(message: dict) -> list[str]:
    return [b["accessory"]["value"] for b in message["blocks"]
            if (b.get("accessory") or {}).get("action_id") == Action.PICK_TIME]


def click(server: AppServer, user_id: str, action: str, value: str, block_id: str = "actions",
          message: dict | None = None, channel: str | None = None) -> None:
    """A click on a button of `message` (in `channel`), as Slack sends it."""
    server.slack.block_action(user_id, action, value, block_id=block_id,
                              channel_id=channel or "D0000001",
                              message_ts=message["ts"] if message else "1700000000.000100")
    server.settle()


def pick(server: AppServer, user_id: str, value: str) -> None:
    click(server, user_id, Action.PICK_TIME, value, message=proposals_message(server),
          channel=group_channel(server))


def told(server: AppServer, user_id: str) -> list[str]:
    """What only `user_id` was shown (private replies)."""
    return [m["text"] for m in server.slack.fake.ephemeral.get(user_id, [])]


def run_clock_at(server: AppServer, moment: datetime) -> None:
    server.settle()
    server.runtime.clock.set(moment)
    server.runtime.duework().run_until_idle()


def set_message(server: AppServer) -> dict:
    found = [m for m in group_dm(server) if "is set* for" in json.dumps(m.get("blocks"))]
    return found[-1]


def proposed_and_picked(server: AppServer, request_id: int, times: list[datetime],
                        chosen: int, by: str = NY) -> datetime:
    assert propose(server, by, request_id, *times) is None
    message = with_action(group_dm(server), Action.PICK_TIME)[-1]
    click(server, CALLER, Action.PICK_TIME, pick_values(message)[chosen], message=message,
          channel=group_channel(server))
    return times[chosen]


# -- the whole way, across the changes of clocks ------------------------------------------------

@pytest.mark.parametrize("chosen", range(3), ids=["US change", "EU change", "Sydney change"])
def test_propose_pick_share_and_remind_across_the_changes_of_clocks(
        app_server: AppServer, chosen: int) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)

    # A supporter opens the form from their case message and proposes three times.
    click(server, NY, Action.PROPOSE_TIMES, str(request_id))
    view = fake.wait_for("views.open")[0].args["view"]
    assert (view["callback_id"], view["private_metadata"]) == (Callback.PROPOSE_TIMES,
                                                               str(request_id))
    pickers = [b for b in view["blocks"] if b.get("element", {}).get("type") == "datetimepicker"]
    assert [b["optional"] for b in pickers] == [False, True, True]
    assert propose(server, NY, request_id, *STRADDLING) is None, "the form closes"
    assert team_of(server, request_id).session_state == SessionState.PROPOSED

    # The group DM shows each as Slack's date token (each reader's own zone), with Pick.
    message = proposals_message(server)
    assert instants(shown(message)) == STRADDLING
    for zone_of, expected in SUPPORTERS_SEE[chosen].items():
        local = STRADDLING[chosen].astimezone(ZoneInfo(ZONES[zone_of]))
        assert f"{local:%H:%M} {local.tzname()}" == expected
    assert PLACE in everything(message) and len(pick_values(message)) == 3
    assert not fake.messages.get(TEAM_CHANNEL), "nothing in the team's channel"

    # The caller picks one: the group DM says so, the Pick buttons go.
    pick(server, CALLER, pick_values(message)[chosen])
    at = STRADDLING[chosen]
    team = team_of(server, request_id)
    assert (team.session_state, team.session_at) == (SessionState.SET, at)
    settled = set_message(server)
    assert instants(shown(settled)) == [at]
    assert Action.RESCHEDULE_SESSION in json.dumps(settled["blocks"])
    assert Action.CANCEL_SESSION in json.dumps(settled["blocks"])
    assert with_action(group_dm(server), Action.PICK_TIME) == [], "the proposals lost Pick"

    # The caller's invitation: their own wall time with its abbreviation, the token, where,
    # and what it is; nobody's name in it.
    invitation = next(m for m in dms_to(server, CALLER) if "invitation" in m["text"])
    text = invitation["blocks"][1]["text"]["text"]
    assert CALLER_SEES[chosen] in text and instants(text) == [at]
    assert PLACE in text and "voluntary" in text and "nothing to prepare" in text
    assert "not a review of what happened" in text
    assert not {CALLER, NY, LDN} & set(re.findall(r"U[A-Z0-9]{8,}", text))
    value, block_id = button(invitation, Action.POST_INVITATION)
    assert not fake.messages.get(TEAM_CHANNEL), "posted only when the caller asks"

    # Posted in the channel on the caller's click, once however often they click.
    click(server, CALLER, Action.POST_INVITATION, value, block_id, invitation)
    click(server, CALLER, Action.POST_INVITATION, value, block_id, invitation)
    posts = fake.messages.get(TEAM_CHANNEL, [])
    assert len(posts) == 1
    assert instants(shown(posts[0])) == [at] and PLACE in posts[0]["text"]
    assert not re.findall(r"<@", everything(posts[0])), "nobody is named in the channel"
    assert "already posted" in told(server, CALLER)[-1]

    # The reminder: an hour before in absolute time, to the caller and both supporters, once.
    run_clock_at(server, at - timedelta(hours=1, seconds=1))
    assert all(reminders_to(server, u) == [] for u in (CALLER, NY, LDN))
    run_clock_at(server, at - timedelta(hours=1))
    for user_id in (CALLER, NY, LDN):
        sent = reminders_to(server, user_id)
        assert len(sent) == 1 and instants(sent[0]["text"]) == [at], user_id
    run_clock_at(server, at - timedelta(minutes=20))
    assert all(len(reminders_to(server, u)) == 1 for u in (CALLER, NY, LDN))


def test_a_time_less_than_an_hour_away_is_reminded_at_once(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server)
    soon = server.runtime.clock.now() + timedelta(minutes=40)
    proposed_and_picked(server, request_id, [soon], 0)
    server.runtime.duework().run_until_idle()
    assert all(len(reminders_to(server, u)) == 1 for u in (CALLER, NY, LDN))


def test_the_callers_zone_falls_back_to_the_programs(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server, channel=None)
    server.slack.fake.users.pop(CALLER)  # Slack cannot say where the caller is
    object.__setattr__(server.runtime.settings, "program_timezone", "Europe/London")
    proposed_and_picked(server, request_id, STRADDLING, 1)
    invitation = next(m for m in dms_to(server, CALLER) if "invitation" in m["text"])
    assert "Sun 29 Mar 2026, 02:30 BST" in invitation["text"]
    assert Action.POST_INVITATION not in json.dumps(invitation["blocks"]), "no channel named"


# -- rescheduling and calling off --------------------------------------------------------------

def test_reschedule_and_call_off_tell_everyone_and_old_reminders_never_fire(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1, T2], 0, by=LDN)
    invitation = next(m for m in dms_to(server, CALLER) if "invitation" in m["text"])
    click(server, CALLER, Action.POST_INVITATION, *button(invitation, Action.POST_INVITATION),
          invitation)
    assert len(fake.messages[TEAM_CHANNEL]) == 1

    # A supporter reschedules from the group DM: everyone there is told, the supporters are
    # asked for new times, and the channel's invitation no longer shows the old time.
    old = set_message(server)
    old_value, old_block = button(old, Action.RESCHEDULE_SESSION)
    click(server, NY, Action.RESCHEDULE_SESSION, old_value, old_block, old, group_channel(server))
    assert team_of(server, request_id).session_state == SessionState.NONE
    asked = with_action(group_dm(server), Action.PROPOSE_TIMES)
    assert len(asked) == 1 and f"<@{NY}> asked for other times" in asked[0]["text"]
    assert f"<@{LDN}>" in asked[0]["text"] and button(asked[0], Action.PROPOSE_TIMES)[0] == \
        str(request_id)
    channel_post = fake.messages[TEAM_CHANNEL][0]
    assert "moving to another time" in channel_post["text"] and not instants(channel_post["text"])

    # The old message's buttons are stale: a clear reply, and nothing changes.
    click(server, CALLER, Action.CANCEL_SESSION, old_value, old_block, None)
    assert "out of date" in told(server, CALLER)[-1]
    assert team_of(server, request_id).session_state == SessionState.NONE

    # New times, a new pick; then the caller calls it off.
    proposed_and_picked(server, request_id, [T3], 0)
    current = set_message(server)
    click(server, CALLER, Action.CANCEL_SESSION, *button(current, Action.CANCEL_SESSION),
          current, group_channel(server))
    assert team_of(server, request_id).session_state == SessionState.CANCELLED
    assert any(f"<@{CALLER}> called off" in m["text"] for m in group_dm(server))

    # Neither the first time's reminder nor the second's ever fires.
    for at in (T1, T3):
        run_clock_at(server, at - timedelta(minutes=30))
    assert all(reminders_to(server, u) == [] for u in (CALLER, NY, LDN))
    with server.runtime.sessions() as session:
        assert session.scalars(select(DueWork).where(
            DueWork.kind == SESSION_REMINDER, DueWork.state == WorkState.DONE)).all() == []


def posted_invitation(server: AppServer) -> dict:
    """The caller posts the invitation in the team's channel; the post."""
    invitation = next(m for m in dms_to(server, CALLER) if "invitation" in m["text"])
    click(server, CALLER, Action.POST_INVITATION, *button(invitation, Action.POST_INVITATION),
          invitation)
    posts = server.slack.fake.messages[TEAM_CHANNEL]
    assert len(posts) == 1 and instants(shown(posts[0]))
    return invitation


def end_request(server: AppServer, request_id: int, ending: str) -> None:
    """The caller withdraws from their DM, or a seat holder closes it with the close form."""
    if ending == "withdrawn":
        click(server, CALLER, Action.CANCEL_REQUEST, str(request_id))
    else:
        answers = {Block.PEOPLE_PRESENT: "6_15", Block.DURATION: "30_60", Block.REFERRED: "no",
                   Block.NEED_MET: "yes"}
        reply = server.slack.view_submission(
            NY, Callback.CLOSE_TEAM_REQUEST, {block: {Action.FIELD: {
                "type": "radio_buttons", "selected_option": {"value": value}}}
                for block, value in answers.items()}, private_metadata=str(request_id))
        assert (reply.status, reply.body) == (200, "")
    run_clock_at(server, server.runtime.clock.now())


@pytest.mark.parametrize("ending", ["withdrawn", "closed"])
def test_a_team_request_that_ends_calls_off_its_group_conversation(
        app_server: AppServer, ending: str) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1], 0)
    invitation = posted_invitation(server)

    end_request(server, request_id, ending)
    assert request_of(server, request_id).state in (RequestState.CANCELLED, RequestState.CLOSED)
    assert team_of(server, request_id).session_state == SessionState.CANCELLED
    # The group DM is told why, and that the channel's post says so.
    last = group_dm(server)[-1]["text"]
    assert ending in last and "will not go ahead" in last and f"<#{TEAM_CHANNEL}>" in last
    # The post in #channel no longer promises anyone will be there, and shows no time.
    posts = fake.messages[TEAM_CHANNEL]
    assert len(posts) == 1 and "called off" in posts[0]["text"]
    assert not instants(everything(posts[0])) and "will be there" not in everything(posts[0])

    # No reminder ever fires, and the old buttons change nothing.
    run_clock_at(server, T1 - timedelta(minutes=30))
    assert all(reminders_to(server, u) == [] for u in (CALLER, NY, LDN))
    current = set_message(server)
    click(server, CALLER, Action.RESCHEDULE_SESSION, *button(current, Action.RESCHEDULE_SESSION),
          current, group_channel(server))
    assert ending in told(server, CALLER)[-1]
    click(server, CALLER, Action.POST_INVITATION, *button(invitation, Action.POST_INVITATION),
          invitation)
    assert ending in told(server, CALLER)[-1]
    assert len(fake.messages[TEAM_CHANNEL]) == 1
    assert team_of(server, request_id).session_state == SessionState.CANCELLED


def test_closing_after_the_time_leaves_what_took_place(app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1], 0)
    posted_invitation(server)
    run_clock_at(server, T1 + timedelta(hours=1))
    said = len(group_dm(server))
    end_request(server, request_id, "closed")
    team = team_of(server, request_id)
    assert (team.session_state, team.session_at) == (SessionState.SET, T1)
    assert len(group_dm(server)) == said, "nothing called off: it took place"
    assert instants(shown(fake.messages[TEAM_CHANNEL][0])) == [T1]


def test_withdrawing_while_times_are_proposed_calls_it_off(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server, channel=None)
    assert propose(server, NY, request_id, T1, T2) is None
    values = pick_values(proposals_message(server))
    end_request(server, request_id, "withdrawn")
    assert team_of(server, request_id).session_state == SessionState.CANCELLED
    last = group_dm(server)[-1]["text"]
    assert "withdrawn" in last and "<#" not in last, "no channel post to speak of"
    click(server, CALLER, Action.PICK_TIME, values[0], channel=group_channel(server))
    assert "withdrawn" in told(server, CALLER)[-1]
    with server.runtime.sessions() as session:
        assert session.scalars(select(DueWork).where(DueWork.kind == SESSION_REMINDER)).all() \
            == []


# -- a supporter handing back ------------------------------------------------------------------

SYD = "USUPSYD001"  # a supporter who joins after a hand-back


def test_a_hand_back_sets_the_time_aside_and_the_new_supporter_proposes_afresh(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1], 0)
    posted_invitation(server)
    fake.add_user(SYD, tz="Australia/Sydney")
    with server.runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(SYD, "ICU", "nurse")],
                      now=server.runtime.clock.now(), time_zones={}, default_case_cap=3,
                      default_cooldown_hours=0)

    # NY steps back: the old group DM (NY still in it) is told, without naming anyone, and
    # the channel's post no longer shows the old time.
    click(server, NY, Action.HAND_BACK, str(request_id))
    run_clock_at(server, server.runtime.clock.now())
    team = team_of(server, request_id)
    assert (team.session_state, team.session_at) == (SessionState.NONE, None)
    last = group_dm(server)[-1]["text"]
    assert "step back" in last and "new times will be proposed" in last
    assert "<@" not in last and f"<#{TEAM_CHANNEL}>" in last
    post = fake.messages[TEAM_CHANNEL][0]
    assert "moving to another time" in post["text"] and not instants(everything(post))
    assert "person who arranged it will share" in post["text"]
    # The one who stayed is told to wait for the newcomer rather than that times are out.
    click(server, LDN, Action.PROPOSE_TIMES, str(request_id))
    assert "Another supporter is being found" in told(server, LDN)[-1]

    # SYD accepts: a new group DM; SYD's Propose times opens the form, and a new time is set.
    with server.runtime.sessions() as session:
        offer = session.scalars(select(Offer).where(Offer.request_id == request_id,
                                                    Offer.supporter_id == SYD)).one()
    server.slack.block_action(SYD, Action.ACCEPT_OFFER, str(offer.id))
    server.settle()
    new_dm = fake.dm_channel([CALLER, LDN, SYD])
    assert new_dm is not None and fake.messages.get(new_dm)
    opened = len(fake.calls_to("views.open"))
    click(server, SYD, Action.PROPOSE_TIMES, str(request_id))
    assert len(fake.calls_to("views.open")) == opened + 1, "the form opens for the newcomer"
    assert propose(server, SYD, request_id, T2) is None
    proposals = with_action(fake.messages[new_dm], Action.PICK_TIME)
    assert len(proposals) == 1 and instants(shown(proposals[0])) == [T2]
    click(server, CALLER, Action.PICK_TIME, pick_values(proposals[0])[0], message=proposals[0],
          channel=new_dm)
    assert (team_of(server, request_id).session_state,
            team_of(server, request_id).session_at) == (SessionState.SET, T2)

    # Only the new time is reminded, to the people now on it.
    run_clock_at(server, T1 - timedelta(minutes=30))
    assert all(reminders_to(server, u) == [] for u in (CALLER, NY, LDN, SYD))
    run_clock_at(server, T2 - timedelta(minutes=30))
    assert [len(reminders_to(server, u)) for u in (CALLER, NY, LDN, SYD)] == [1, 0, 1, 1]


# -- the channel's post and its correction -------------------------------------------------------

def work_id(server: AppServer, key: str) -> int:
    with server.runtime.sessions() as session:
        return session.scalars(select(DueWork.id).where(DueWork.key == key)).one()


def test_a_correction_waits_for_the_post_still_going_out(app_server: AppServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1], 0)
    now = server.runtime.clock.now()
    version = team_of(server, request_id).session_version
    clock_only = make_sessions(server.runtime.engine)  # what it records waits for the clock
    with clock_only.begin() as session:
        sessions.post_invitation(session, request_id, CALLER, version, now=now)
    post = work_id(server, sessions.invitation_key(request_id, version, Posting.POST))

    # The post's delivery has read the time and is on its way to Slack when the time moves.
    messenger = server.runtime.services.messenger
    original = messenger.post_message
    on_its_way, go = threading.Event(), threading.Event()

    def held(channel: str, *args: Any, **kwargs: Any) -> Any:
        if channel == TEAM_CHANNEL:
            on_its_way.set()
            go.wait(10)
        return original(channel, *args, **kwargs)

    monkeypatch.setattr(messenger, "post_message", held)
    posting = threading.Thread(target=server.runtime.duework().run_now, args=([post],))
    posting.start()
    try:
        assert on_its_way.wait(10)
        with clock_only.begin() as session:
            sessions.reschedule(session, request_id, NY, version, now=now)
        server.runtime.duework().run_now(
            [work_id(server, sessions.invitation_key(request_id, version, Posting.MOVED))])
    finally:
        go.set()
        posting.join(10)
    run_clock_at(server, now + timedelta(minutes=1))
    posts = fake.messages[TEAM_CHANNEL]
    assert len(posts) == 1 and "moving to another time" in posts[0]["text"]
    assert not instants(everything(posts[0])), "the old time is not left standing"


# -- who may do what, and input that cannot be accepted ----------------------------------------

def nothing_proposed(server: AppServer, request_id: int) -> None:
    team = team_of(server, request_id)
    assert (team.session_state, team.session_version) == (SessionState.NONE, 0)
    with server.runtime.sessions() as session:
        assert session.scalars(select(SessionProposal)).all() == []
        assert session.scalars(select(DueWork).where(
            DueWork.kind == Effect.TEAM_SESSION.value)).all() == []


@pytest.mark.parametrize(("who", "forged", "times", "place", "block", "words"), [
    (OUTSIDER, None, [T1], PLACE, "session_time:1", "not with you"),
    (CALLER, None, [T1], PLACE, "session_time:1", "not with you"),
    (NY, "", [T1], PLACE, "session_time:1", "not with you"),
    (NY, "abc", [T1], PLACE, "session_time:1", "not with you"),
    (NY, "999999", [T1], PLACE, "session_time:1", "not with you"),
    (NY, "99999999999999999999", [T1], PLACE, "session_time:1", "not with you"),
    (NY, None, [START - timedelta(hours=2)], PLACE, "session_time:1", "has passed"),
    (NY, None, [START + timedelta(minutes=10)], PLACE, "session_time:1", "30 minutes"),
    (NY, None, [START + timedelta(days=61)], PLACE, "session_time:1", "60 days"),
    (NY, None, [T1, T2, T1], PLACE, "session_time:3", "chose this time already"),
    (NY, None, [T1, START - timedelta(days=1)], PLACE, "session_time:2", "has passed"),
    (NY, None, [None, T2], PLACE, "session_time:1", "at least one time"),
    (NY, None, ["soon"], PLACE, "session_time:1", "picker"),
    (NY, None, [-5], PLACE, "session_time:1", "picker"),
    (NY, None, [T1], "x" * 201, "session_place", "200 characters"),
    (NY, None, [T1], "Room 4\x07", "session_place", "special characters"),
    (NY, None, [T1], "Room\n4", "session_place", "special characters"),
], ids=["outsider", "the caller", "no id", "letters", "no such request", "huge id", "past",
        "too soon", "too far", "twice", "second past", "first empty", "not a time",
        "negative", "long place", "bell in place", "newline in place"])
def test_a_proposal_that_cannot_be_accepted_changes_nothing(
        app_server: AppServer, who: str, forged: str | None, times: list, place: str,
        block: str, words: str) -> None:
    server = app_server
    request_id = placed(server)
    answer = propose(server, who, request_id if forged is None else forged, *times,
                     place=place)
    assert answer is not None and answer["response_action"] == "errors"
    assert list(answer["errors"]) == [block] and words in answer["errors"][block]
    nothing_proposed(server, request_id)


def test_only_a_seat_holder_can_open_the_form(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server)
    for user_id, value in ((OUTSIDER, str(request_id)), (CALLER, str(request_id)),
                           (NY, "999999"), (NY, "abc")):
        click(server, user_id, Action.PROPOSE_TIMES, value)
        assert "not with you" in told(server, user_id)[-1]
    assert server.slack.fake.calls_to("views.open") == []


def test_a_second_proposal_is_told_times_are_already_out(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server)
    assert propose(server, NY, request_id, T1) is None
    answer = propose(server, LDN, request_id, T2)
    assert "colleague has just proposed" in answer["errors"]["session_time:1"]
    click(server, LDN, Action.PROPOSE_TIMES, str(request_id))
    assert "colleague has just proposed" in told(server, LDN)[-1]
    with server.runtime.sessions() as session:
        assert [p.starts_at for p in session.scalars(select(SessionProposal))] == [T1]


def test_only_the_caller_picks_and_only_once(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server)
    propose(server, NY, request_id, T1, T2)
    first, second = pick_values(proposals_message(server))
    pick(server, LDN, first)
    assert told(server, LDN)[-1].startswith(f"Only <@{CALLER}> picks the time")
    for value in (first, "", "abc", "999999"):
        pick(server, OUTSIDER, value)
        assert told(server, OUTSIDER)[-1] == "That time is no longer on offer."
    assert team_of(server, request_id).session_state == SessionState.PROPOSED

    pick(server, CALLER, first)
    assert with_action(group_dm(server), Action.PICK_TIME) == [], "Pick is gone"
    click(server, CALLER, Action.PICK_TIME, second, channel=group_channel(server))
    assert "already set" in told(server, CALLER)[-1]
    team = team_of(server, request_id)
    assert (team.session_state, team.session_at) == (SessionState.SET, T1)
    assert len([m for m in group_dm(server) if "is set* for" in json.dumps(m["blocks"])]) == 1


def test_the_invitation_is_the_callers_to_post_and_only_for_the_current_time(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1], 0)
    invitation = next(m for m in dms_to(server, CALLER) if "invitation" in m["text"])
    value, block_id = button(invitation, Action.POST_INVITATION)
    click(server, NY, Action.POST_INVITATION, value, block_id)
    assert "not yours to post" in told(server, NY)[-1]
    click(server, CALLER, Action.POST_INVITATION, value, "team_session:v1")
    assert "earlier time" in told(server, CALLER)[-1]
    click(server, CALLER, Action.POST_INVITATION, value, "forged")
    assert "earlier time" in told(server, CALLER)[-1]
    assert not fake.messages.get(TEAM_CHANNEL)
    assert team_of(server, request_id).invitation_posted is False


def test_a_channel_the_app_cannot_post_in_lets_the_caller_try_again(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1], 0)
    invitation = next(m for m in dms_to(server, CALLER) if "invitation" in m["text"])
    fake.fail("chat.postMessage", "not_in_channel")
    click(server, CALLER, Action.POST_INVITATION, *button(invitation, Action.POST_INVITATION),
          invitation)
    assert any("could not post the invitation" in m["text"] for m in dms_to(server, CALLER))
    assert team_of(server, request_id).invitation_posted is False
    click(server, CALLER, Action.POST_INVITATION, *button(invitation, Action.POST_INVITATION),
          invitation)
    assert len(fake.messages[TEAM_CHANNEL]) == 1


def test_the_callers_double_pick_sets_one_time_and_says_it_once(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server)
    propose(server, NY, request_id, T1, T2)
    message = proposals_message(server)
    values = pick_values(message)

    def press(value: str, go: Callable[[], Any]) -> None:
        go()
        server.slack.block_action(CALLER, Action.PICK_TIME, value,
                                  channel_id=group_channel(server), message_ts=message["ts"])

    run_together(press, [values[0], values[0], values[1]])
    server.settle()
    assert sum("already set" in t for t in told(server, CALLER)) == 2
    assert len([m for m in group_dm(server) if "is set* for" in json.dumps(m["blocks"])]) == 1
    assert len([m for m in dms_to(server, CALLER) if "invitation" in m["text"]]) == 1
    with server.runtime.sessions() as session:
        assert len(session.scalars(select(DueWork).where(
            DueWork.kind == SESSION_REMINDER)).all()) == 1


# -- the domain on its own: races on PostgreSQL, the timer's guard, the outreach -----------------

NOW = START


def domain_placed(db: Database, *, private: bool = False) -> int:
    with db.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(u, "", "nurse") for u in (NY, LDN)], now=NOW,
                      time_zones={}, default_case_cap=3, default_cooldown_hours=0)
        form = TeamForm(unit="ED", size="6_15", urgency="today", group=True, private=private,
                        people=("UMEMBER001", "UMEMBER002") if private else ())
        request = team_domain.create_team(session, CALLER, form, seats=2, now=NOW)
        offers = requests.next_wave(session, request, now=NOW, wave_size=2)
        request_id = request.id
    for offer in offers:
        with db.sessions.begin() as session:
            requests.accept(session, offer.id, offer.supporter_id, now=NOW)
    return request_id


def effect_keys(db: Database, effect: Effect) -> list[str]:
    with db.sessions() as session:
        return sorted(session.scalars(select(DueWork.key).where(DueWork.kind == effect.value)))


@pytest.mark.parametrize("attempt", range(4))
def test_two_supporters_proposing_at_once_one_wins(pg_database: Database, attempt: int) -> None:
    db = pg_database
    request_id = domain_placed(db)
    times = {NY: [T1, T2], LDN: [T3]}

    def submit(user_id: str, go: Callable[[], Any]) -> Any:
        return in_own_session(db, lambda s: sessions.propose(
            s, request_id, user_id, times[user_id], None, now=NOW), go)

    results = run_together(submit, [NY, LDN])
    refused = [r for r in results if isinstance(r, SessionError)]
    assert len(refused) == 1 and "colleague has just proposed" in str(refused[0])
    winner = NY if isinstance(results[1], SessionError) else LDN
    with db.sessions() as session:
        team = session.get(TeamRequest, request_id)
        kept = session.scalars(select(SessionProposal)).all()
    assert (team.session_state, team.session_version) == (SessionState.PROPOSED, 1)
    assert sorted(p.starts_at for p in kept) == times[winner]
    assert {p.proposed_by for p in kept} == {winner}
    assert effect_keys(db, Effect.TEAM_SESSION) == [f"teamsession:{request_id}:v1:group"]


@pytest.mark.parametrize("attempt", range(4))
def test_the_callers_picks_at_once_set_one_time(pg_database: Database, attempt: int) -> None:
    db = pg_database
    request_id = domain_placed(db)
    with db.sessions.begin() as session:
        ids = [p.id for p in sessions.propose(session, request_id, NY, [T1, T2], None, now=NOW)]

    def press(proposal_id: int, go: Callable[[], Any]) -> Any:
        return in_own_session(db, lambda s: sessions.pick(s, proposal_id, CALLER, now=NOW)
                              .team.session_at, go)

    results = run_together(press, [ids[0], ids[0], ids[1]])
    won = [r for r in results if isinstance(r, datetime)]
    assert len(won) == 1
    assert all("already set" in str(r) for r in results if isinstance(r, SessionError))
    with db.sessions() as session:
        team = session.get(TeamRequest, request_id)
        timers = session.scalars(select(DueWork).where(DueWork.kind == SESSION_REMINDER)).all()
    assert (team.session_state, team.session_at, team.session_version) == (
        SessionState.SET, won[0], 2)
    assert effect_keys(db, Effect.TEAM_SESSION) == sorted([
        f"teamsession:{request_id}:v1:group", f"teamsession:{request_id}:v2:group",
        f"teamsession:{request_id}:v2:{CALLER}:invitation"])
    assert [t.due_at for t in timers] == [won[0] - timedelta(hours=1)]


def test_an_old_reminder_is_a_no_op_even_if_it_runs(database: Database) -> None:
    request_id = domain_placed(database)
    with database.sessions.begin() as session:
        proposal = sessions.propose(session, request_id, NY, [T1], None, now=NOW)[0]
        sessions.pick(session, proposal.id, CALLER, now=NOW)
    with database.sessions.begin() as session:
        assert sorted(sessions.reminder_due(session, request_id, 2, now=NOW)) == sorted(
            [CALLER, NY, LDN])
        sessions.reschedule(session, request_id, LDN, 2, now=NOW)
    with database.sessions.begin() as session:
        assert sessions.reminder_due(session, request_id, 2, now=NOW) == []
        with pytest.raises(SessionError, match="out of date"):
            sessions.cancel(session, request_id, CALLER, 2, now=NOW)
    with database.sessions.begin() as session:
        assert sessions.reminder_due(session, request_id, 3, now=NOW) == []  # nothing set
        proposal = sessions.propose(session, request_id, NY, [T2], None, now=NOW)[0]
        sessions.pick(session, proposal.id, CALLER, now=NOW)
    with database.sessions.begin() as session:
        assert sessions.reminder_due(session, request_id, 5, now=T2) == [], "the time passed"


def test_the_private_outreach_waits_for_the_pick(database: Database) -> None:
    request_id = domain_placed(database, private=True)
    start = [f"outreach:{request_id}:start"]
    assert effect_keys(database, Effect.TEAM_OUTREACH_START) == []
    with database.sessions.begin() as session:
        proposal = sessions.propose(session, request_id, NY, [T1], None, now=NOW)[0]
    assert effect_keys(database, Effect.TEAM_OUTREACH_START) == []
    with database.sessions.begin() as session:
        sessions.pick(session, proposal.id, CALLER, now=NOW)
    assert effect_keys(database, Effect.TEAM_OUTREACH_START) == start


def test_calling_it_off_starts_the_private_outreach(database: Database) -> None:
    request_id = domain_placed(database, private=True)
    with database.sessions.begin() as session:
        sessions.cancel(session, request_id, CALLER, 0, now=NOW)
    assert effect_keys(database, Effect.TEAM_OUTREACH_START) == [f"outreach:{request_id}:start"]
    with database.sessions() as session:
        assert session.get(TeamRequest, request_id).session_state == SessionState.CANCELLED


def session_payloads(db: Database) -> dict[str, dict]:
    with db.sessions() as session:
        return {w.key: w.payload for w in session.scalars(select(DueWork).where(
            DueWork.kind == Effect.TEAM_SESSION.value))}


def test_ending_with_the_request_is_only_for_an_ended_request_and_a_time_ahead(
        database: Database) -> None:
    request_id = domain_placed(database)
    with database.sessions.begin() as session:
        proposal = sessions.propose(session, request_id, NY, [T1], None, now=NOW)[0]
        sessions.pick(session, proposal.id, CALLER, now=NOW)
    with database.sessions.begin() as session:
        assert sessions.end_with_request(session, request_id, NOW) is False, "still open"
        assert sessions.end_with_request(session, 999999, NOW) is False
        requests.close(session, request_id, NY, now=T1, duration="30_60", referred=False,
                       need_met="yes", people_present="6_15")
        assert sessions.end_with_request(session, request_id, T1) is False, "it took place"
    with database.sessions() as session:
        team = session.get(TeamRequest, request_id)
    assert (team.session_state, team.session_version) == (SessionState.SET, 2)
    assert len(session_payloads(database)) == 3  # proposed, set, the caller's invitation


def test_a_hand_back_while_times_are_proposed_sets_them_aside(database: Database) -> None:
    request_id = domain_placed(database)
    with database.sessions.begin() as session:
        proposal = sessions.propose(session, request_id, NY, [T1], None, now=NOW)[0]
        session.get(SupportRequest, request_id).intro_channel = "G0GROUPDM1"
    with database.sessions.begin() as session:
        requests.hand_back(session, request_id, LDN, now=NOW)
        assert sessions.reset_for_new_supporters(session, request_id, NOW) is True
        assert sessions.reset_for_new_supporters(session, request_id, NOW) is False, "once"
    with database.sessions() as session:
        team = session.get(TeamRequest, request_id)
    assert (team.session_state, team.session_version) == (SessionState.NONE, 2)
    said = session_payloads(database)[f"teamsession:{request_id}:v2:group"]
    assert (said["change"], said["channel"], said["posted"]) == (
        "stepped_back", "G0GROUPDM1", False)
    with pytest.raises(SessionError, match="supporters will propose new times"), \
            database.sessions.begin() as session:
        sessions.pick(session, proposal.id, CALLER, now=NOW)
    with pytest.raises(SessionError, match="Another supporter is being found"), \
            database.sessions.begin() as session:
        sessions.propose(session, request_id, NY, [T2], None, now=NOW)


# -- the builders, at their longest ------------------------------------------------------------

def test_every_message_fits_slacks_limits_at_its_longest() -> None:
    request = SupportRequest(id=2**31 - 1, requester_id=CALLER, seats=2)
    team = TeamRequest(request_id=request.id, unit="Ü" * 80, session_place="<@U1>&" * 33,
                       session_at=T1, session_version=10**6, channel_id=TEAM_CHANNEL)
    proposals = [SessionProposal(id=2**31 - 1 - n, starts_at=T1 + timedelta(hours=n))
                 for n in range(3)]
    messages = [blocks.proposals_message(request, team, proposals, NY),
                blocks.session_set(request, team), blocks.rescheduled(request, NY, [NY, LDN]),
                blocks.called_off(NY), blocks.caller_invitation(request, team, "Asia/Kolkata"),
                blocks.channel_invitation(request, team), blocks.channel_update(team, True),
                blocks.channel_update(team, False), blocks.reminder(request, team),
                blocks.picked_note(T1), blocks.set_aside_note(NY, True),
                blocks.ended_with_request("closed", TEAM_CHANNEL),
                blocks.stepped_back(request, TEAM_CHANNEL)]
    for message in messages:
        assert_within_limits(message["blocks"])
        assert "<@U1>" not in json.dumps(message), "a typed place cannot mention anyone"
    assert_within_limits(blocks.propose_modal(request.id)["blocks"], max_blocks=VIEW_BLOCKS)
    assert "IST" in blocks.caller_invitation(request, team, "Asia/Kolkata")["text"]
    assert blocks.version_of(blocks.versioned(7)) == 7
    assert [blocks.version_of(v) for v in ("team_session:v", "team_session:vx", "other:v1",
                                           None, "team_session:v" + "9" * 12)] == [None] * 5


def test_someone_outside_the_conversation_cannot_change_it(app_server: AppServer) -> None:
    server = app_server
    request_id = placed(server)
    proposed_and_picked(server, request_id, [T1], 0)
    current = set_message(server)
    _value, block_id = button(current, Action.RESCHEDULE_SESSION)
    for action in (Action.RESCHEDULE_SESSION, Action.CANCEL_SESSION):
        for value in (str(request_id), "abc", "", "999999"):
            click(server, OUTSIDER, action, value, block_id)
            assert told(server, OUTSIDER)[-1] == sessions.NOT_YOURS
    team = team_of(server, request_id)
    assert (team.session_state, team.session_at) == (SessionState.SET, T1)
