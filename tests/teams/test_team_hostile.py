"""Team support under attack, the way a hostile acceptance run tries it: signed HTTP requests to
the real app, the Slack stand-in that checks Slack's published spec, concurrent clicks on
PostgreSQL, deliveries killed or answered late, rate limits and refusals in the middle of a flow,
forged and stale buttons, and hostile text in the one field a caller types. Every message and
view the stand-in received must fit Block Kit's limits (checked after every test here)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

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
    SessionProposal,
    SessionState,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.requests import flows, outreach
from bot.requests import service as domain
from bot.requests.sessions import SESSION_REMINDER
from bot.requests.teams import TeamForm
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from bot.sandbox.slack_api import Call, FakeSlack
from handlers.common.ids import Action, Block, Callback
from handlers.requests.listeners import REFUSALS
from tests.blockkit import VIEW_BLOCKS, assert_within_limits
from tests.conftest import START, AppServer, eventually, run_together
from tests.requests.test_requests_http import COORDINATOR, checked, choice
from tests.requests.test_team_calling import team_values

CALLER = "UCALLHOST1"
OTHER_CALLER = "UCALLHOST2"
LEAD, SECOND = "USUPHOST01", "USUPHOST02"
SUPPORTERS = [LEAD, SECOND]
MEMBERS = [f"UMEMHOST{n:02d}" for n in range(8)]
TEAM_CHANNEL = "C0TEAMHOST"
BOT = FakeSlack.bot_user_id
# What a hostile caller types as the unit's name: Slack's mention and link syntax, mrkdwn,
# an HTML entity, an emoji and right-to-left letters; 78 characters, within the form's 80.
HOSTILE_UNIT = "<!channel> <@UVICTIM01> <#C0SECRET1> <https://x.test|go> *b* _i_ &amp; 🏥 חדר"
# ...and what a supporter types as the group conversation's place.
HOSTILE_PLACE = "<!here> <@UVICTIM02> Room 4 <https://x.test|join>"
RAW_MARKUP = ("<!channel>", "<@UVICTIM01>", "<#C0SECRET1>", "<https://x.test|go>", "<!here>",
              "<@UVICTIM02>", "<https://x.test|join>")
T1 = START + timedelta(days=2, hours=1)
T2 = START + timedelta(days=3, hours=1)
_views = iter(range(1, 100_000))


# -- every message and view sent in these tests fits Slack's limits ------------------------------

def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _elements(blocks: list[dict]) -> Iterator[dict]:
    for block in blocks:
        for element in [block.get("accessory"), block.get("element"),
                        *block.get("elements", [])]:
            if isinstance(element, dict):
                yield element


def _fits_beyond_the_basics(blocks: list[dict]) -> None:
    """Limits tests/blockkit.py does not check: block ids, accessories, inputs, options."""
    for block in blocks:
        assert len(block.get("block_id", "")) <= 255
        if block["type"] == "input":
            assert len(block["label"]["text"]) <= 2000
            assert len((block.get("hint") or {}).get("text", "")) <= 2000
    for element in _elements(blocks):
        if element.get("type") == "button":
            assert len(element["text"]["text"]) <= 75 and len(element.get("value", "")) <= 2000
        options = element.get("options") or []
        assert len(options) <= 100
        for option in options:
            assert len(option["text"]["text"]) <= 75 and len(option["value"]) <= 150
        assert len((element.get("placeholder") or {}).get("text", "")) <= 150


def assert_everything_fits(fake: FakeSlack) -> None:
    """Every message, update, view and response the app sent fits Block Kit's limits, and every
    message has a notification text."""
    with fake._lock:
        calls, responses = list(fake.calls), list(fake.responses)
    for call in calls:
        if call.method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            text = call.args.get("text") or ""
            assert text and len(text) <= 40_000, f"{call.method} needs a text of 1 to 40,000"
            blocks = _decoded(call.args.get("blocks")) or []
            assert_within_limits(blocks)
            _fits_beyond_the_basics(blocks)
        elif call.method in ("views.open", "views.update", "views.publish"):
            view = _decoded(call.args["view"])
            assert_within_limits(view["blocks"], max_blocks=VIEW_BLOCKS)
            _fits_beyond_the_basics(view["blocks"])
            if view.get("type") == "modal":
                for part in ("title", "submit", "close"):
                    assert len((view.get(part) or {}).get("text", "")) <= 24, part
            assert len(view.get("private_metadata", "")) <= 3000
    for body in responses:
        blocks = body.get("blocks") or []
        assert_within_limits(blocks)
        _fits_beyond_the_basics(blocks)


@pytest.fixture(autouse=True)
def _everything_sent_fits(request: pytest.FixtureRequest) -> Iterator[None]:
    fake = request.getfixturevalue("fake_slack") if "fake_slack" in request.fixturenames \
        else None
    yield
    if fake is not None:
        assert_everything_fits(fake)


# -- driving the app -------------------------------------------------------------------------------

def pg_only(server: AppServer) -> None:
    if server.runtime.engine.dialect.name != "postgresql":
        pytest.skip("real concurrency is proven on PostgreSQL (SQLite has one writer)")


def tick(server: AppServer, seconds: float) -> None:
    """Time passes and the clock runs, once the listeners already started have finished."""
    server.settle()
    server.runtime.clock.advance(seconds)
    server.runtime.duework().run_until_idle()


def read(server: AppServer, query: Callable[[Any], Any]) -> Any:
    with server.runtime.sessions() as session:
        return query(session)


def request_of(server: AppServer, request_id: int) -> SupportRequest:
    return read(server, lambda s: s.get(SupportRequest, request_id))


def team_of(server: AppServer, request_id: int) -> TeamRequest:
    return read(server, lambda s: s.get(TeamRequest, request_id))


def rows(server: AppServer, model: Any) -> list[Any]:
    return read(server, lambda s: list(s.scalars(select(model))))


def add_supporters(server: AppServer, *user_ids: str, cap: int = 5) -> None:
    with server.runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(u, "ICU", "nurse") for u in user_ids],
                      now=server.runtime.clock.now(), time_zones={}, default_case_cap=cap,
                      default_cooldown_hours=0)
    for user_id in user_ids:
        server.slack.fake.add_user(user_id)


def offer_ids(server: AppServer, request_id: int) -> dict[str, Offer]:
    """Each supporter's offer of the request, once its message is out."""
    def posted() -> dict[str, Offer] | None:
        found = read(server, lambda s: {o.supporter_id: o for o in s.scalars(
            select(Offer).where(Offer.request_id == request_id))})
        return found if found and all(o.ts for o in found.values()) else None
    offers = eventually(posted)
    if not offers:  # a busy machine: the clock delivers (or retries) what the listener did not
        tick(server, 60)
        offers = eventually(posted, timeout=20)
    assert offers, "the offers went out"
    return offers


def accept(server: AppServer, offer: Offer) -> None:
    """A supporter's Accept, clicked on their offer's own message."""
    server.slack.block_action(offer.supporter_id, Action.ACCEPT_OFFER, str(offer.id),
                              channel_id=offer.channel or "D0000001",
                              message_ts=offer.ts or "1700000000.000100")
    server.settle()


def call_team(server: AppServer, caller: str = CALLER, **form: Any) -> Any:
    """The team form submitted over signed HTTP; Slack's answer."""
    reply = server.slack.view_submission(caller, Callback.TEAM_REQUEST, team_values(**form),
                                         view_id=f"VHOST{next(_views):05d}")
    assert reply.status in (200, 400)
    shown = (reply.json() or {}).get("view") if reply.status == 200 and reply.body else None
    if shown is not None:  # the view Slack shows in place of the form
        assert_within_limits(shown["blocks"], max_blocks=VIEW_BLOCKS)
        _fits_beyond_the_basics(shown["blocks"])
    return reply


def place(server: AppServer, *, caller: str = CALLER, unit: str = "Ward 9", size: str = "6_15",
          group: bool = True, private: bool = False, people: tuple[str, ...] = (),
          channel: str | None = TEAM_CHANNEL, supporters: tuple[str, ...] = (LEAD, SECOND),
          ) -> int:
    """A team request recorded as the form's listener records it, then accepted through signed
    Accept clicks until it is placed, with its introduction posted."""
    fake = server.slack.fake
    for person in (caller, *people):
        if person not in fake.users:
            fake.add_user(person)
    add_supporters(server, *supporters)
    form = TeamForm(unit=unit, size=size, urgency="today", group=group, private=private,
                    people=people, channel=channel)
    runtime = server.runtime
    with runtime.sessions.begin() as session:
        request_id = flows.create_team(runtime.services, session, caller, form,
                                       source_key=None).id
    offers = offer_ids(server, request_id)
    for supporter in supporters[:request_of(server, request_id).seats]:
        accept(server, offers[supporter])
    placed = request_of(server, request_id)
    assert placed.state == RequestState.ASSIGNED, placed.state
    if not request_of(server, request_id).intro_channel:
        # On a busy machine the introduction may wait for the clock's next tick.
        tick(server, 5)
    assert eventually(lambda: request_of(server, request_id).intro_channel)
    server.settle()
    return request_id


def messages_in(fake: FakeSlack, channel: str | None) -> list[dict]:
    with fake._lock:
        return list(fake.messages.get(channel or "", []))


def dms_to(fake: FakeSlack, user_id: str) -> list[dict]:
    return messages_in(fake, fake.dm_channel([user_id]))


def told(fake: FakeSlack, user_id: str) -> list[str]:
    """What only `user_id` was shown (private replies), oldest first."""
    with fake._lock:
        return [m["text"] for m in fake.ephemeral.get(user_id, [])]


def with_action(messages: list[dict], action: str) -> list[dict]:
    return [m for m in messages if f'"action_id": "{action}"' in json.dumps(m.get("blocks"))]


def button(message: dict, action: str) -> tuple[str, str]:
    """The (value, block id) of the message's button with `action`."""
    for block in message.get("blocks") or []:
        for element in [block.get("accessory"), *block.get("elements", [])]:
            if isinstance(element, dict) and element.get("action_id") == action:
                return element["value"], block.get("block_id", "actions")
    raise AssertionError(f"no {action} button")


def click(server: AppServer, user_id: str, action: str, value: str, *,
          block_id: str = "actions", message: dict | None = None,
          channel: str | None = None) -> None:
    """A click on a button (of `message`, in `channel`), as Slack sends it."""
    reply = server.slack.block_action(
        user_id, action, value, block_id=block_id, channel_id=channel or "D0000001",
        message_ts=message["ts"] if message else "1700000000.000100")
    assert reply.status == 200
    server.settle()


def time_values(*times: Any) -> dict[str, Any]:
    return {f"{Block.SESSION_TIME}:{n}": {Action.FIELD: {
        "type": "datetimepicker", "selected_date_time": int(at.timestamp())}}
        for n, at in enumerate(times, start=1)}


def propose(server: AppServer, user_id: str, request_id: int, *times: Any,
            place: str | None = "Room 4") -> Any:
    values = time_values(*times)
    values[Block.SESSION_PLACE] = {Action.FIELD: {"type": "plain_text_input", "value": place}}
    reply = server.slack.view_submission(user_id, Callback.PROPOSE_TIMES, values,
                                         private_metadata=str(request_id))
    assert reply.status == 200
    server.settle()
    return reply.json()


def group_dm(fake: FakeSlack, request: SupportRequest) -> list[dict]:
    return messages_in(fake, request.intro_channel)


def pick_buttons(message: dict) -> list[str]:
    return [b["accessory"]["value"] for b in message["blocks"]
            if (b.get("accessory") or {}).get("action_id") == Action.PICK_TIME]


def proposals_of(server: AppServer, request_id: int) -> dict:
    request = request_of(server, request_id)
    found = with_action(group_dm(server.slack.fake, request), Action.PICK_TIME)
    assert len(found) == 1, "one message of proposals"
    return found[0]


def picked(server: AppServer, request_id: int, times: list, chosen: int = 0,
           place: str = "Room 4") -> None:
    assert propose(server, LEAD, request_id, *times, place=place) is None
    message = proposals_of(server, request_id)
    click(server, request_of(server, request_id).requester_id, Action.PICK_TIME,
          pick_buttons(message)[chosen], message=message,
          channel=request_of(server, request_id).intro_channel)
    assert team_of(server, request_id).session_state == SessionState.SET


def wrap_job(server: AppServer, name: str,
             wrapper: Callable[[Callable[[Any], None], Any], None]) -> None:
    """Run every item of one due-work kind through `wrapper(original, ctx)`."""
    jobs = server.runtime.jobs
    kind = jobs.kinds[name]
    jobs.kinds[name] = dataclasses.replace(kind, run=lambda ctx: wrapper(kind.run, ctx))


def fail_when(fake: FakeSlack, method: str, when: Callable[[dict], bool], *, error: str,
              status: int = 200, retry_after: int | None = None, times: int = 1) -> list[int]:
    """Make the next `times` calls of `method` whose arguments match `when` fail as Slack
    would (the stand-in's own faults match the method alone). Returns a counter of failures."""
    original = fake.handle
    failed = [0]
    lock = threading.Lock()

    def handle(name: str, args: dict, token: str | None) -> tuple[int, dict, dict]:
        with lock:
            hit = name == method and failed[0] < times and when(args)
            if hit:
                failed[0] += 1
        if not hit:
            return original(name, args, token)
        with fake._lock:
            fake.calls.append(Call(name, args, token))
            fake._lock.notify_all()
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        return status, {"ok": False, "error": error}, headers

    fake.handle = handle  # type: ignore[method-assign]
    return failed


def everything_sent(fake: FakeSlack) -> str:
    """Every argument of every Web API call and every response_url body, as one text."""
    with fake._lock:
        return json.dumps([c.args for c in fake.calls] + list(fake.responses),
                          ensure_ascii=False)


def notes_to(fake: FakeSlack, request_id: int) -> Counter:
    """How many of this team's outreach notes each person's DM holds (by the note's mark)."""
    with fake._lock:
        owner = {channel: next(iter(people)) for people, channel in fake._conversations.items()
                 if len(people) == 1}
        found: Counter = Counter()
        for channel, messages in fake.messages.items():
            for message in messages:
                effect = str(((message.get("metadata") or {}).get("event_payload") or {})
                             .get("effect", ""))
                if effect.startswith(f"outreach:{request_id}:"):
                    found[owner.get(channel, channel)] += 1
    return found


def run_out(server: AppServer, request_id: int, *, seconds: float = 60) -> None:
    """Let the clock run (Retry-After is kept in real seconds) until the outreach is sent."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick(server, 31)
        if team_of(server, request_id).outreach_state == OutreachState.SENT:
            return
        time.sleep(0.1)
    raise AssertionError("the outreach never finished")


def ticking_until(server: AppServer, done: Callable[[], Any], *, seconds: float = 30) -> None:
    """Let the clock run until `done()`: a 429's Retry-After is kept in real seconds, during
    which deliveries hold back."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "it never happened"
        tick(server, 120)
        time.sleep(0.1)


def nothing_created(server: AppServer) -> None:
    server.settle()
    assert rows(server, SupportRequest) == [] and rows(server, TeamRequest) == []
    assert server.slack.fake.calls_to("chat.postMessage") == []


# -- hostile team forms: a clear error on the right question, and nothing created -----------------

@pytest.mark.parametrize(("form", "block", "words"), [
    ({"unit_typed": "4 West\u200b"}, Block.TEAM_UNIT_TYPED, "no special characters"),
    ({"unit_typed": "\u202e4 West"}, Block.TEAM_UNIT_TYPED, "no special characters"),
    ({"unit_typed": "4\tWest"}, Block.TEAM_UNIT_TYPED, "no special characters"),
    ({"unit_typed": "4 West\x7f"}, Block.TEAM_UNIT_TYPED, "no special characters"),
    ({"unit_typed": "4 West\x1b[2J"}, Block.TEAM_UNIT_TYPED, "no special characters"),
    ({"unit_typed": "\u2028"}, Block.TEAM_UNIT_TYPED, "Say which unit"),
    ({"unit_typed": "<" * 81}, Block.TEAM_UNIT_TYPED, "up to 80"),
    ({"unit_typed": None, "unit": "ICU\u200b"}, Block.TEAM_UNIT, "no special characters"),
    ({"size": "6_15 "}, Block.TEAM_SIZE, "roughly how many"),
    ({"size": ""}, Block.TEAM_SIZE, "roughly how many"),
    ({"urgency": "NOW"}, Block.URGENCY, "how soon"),
    ({"helps": ("Visit", "GROUP")}, Block.TEAM_HELP, "at least one thing"),
    ({"people": ["D0DIRECT01"]}, Block.TEAM_PEOPLE, "from the list"),
    ({"people": ["T0PEERSUP"]}, Block.TEAM_PEOPLE, "from the list"),
    ({"people": [f"U{n:09d}" for n in range(101)]}, Block.TEAM_PEOPLE, "up to 100"),
    ({"usergroup": "U0PERSON01"}, Block.TEAM_USERGROUP, "group from the list"),
    ({"channel": "S0GROUP001"}, Block.TEAM_CHANNEL, "not a direct message"),
], ids=["zero-width space", "right-to-left override", "tab", "delete", "escape sequence",
        "line separator only", "81 angle brackets", "zero-width in the chosen unit",
        "size with a space", "no size", "urgency in capitals", "helps in other cases",
        "direct message as a person", "workspace as a person", "101 people",
        "person as a group", "group as a channel"])
def test_hostile_form_values_are_refused_on_their_question(
        app_server: AppServer, form: dict, block: str, words: str) -> None:
    add_supporters(app_server, LEAD)
    answer = call_team(app_server, **form).json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [block] and words in answer["errors"][block]
    nothing_created(app_server)


@pytest.mark.parametrize("values", [
    {},
    {Block.TEAM_UNIT_TYPED: {Action.FIELD: {"type": "plain_text_input", "value": "ICU"}}},
    {Block.TEAM_SIZE: choice("2_5"), Block.URGENCY: choice("today"),
     Block.TEAM_HELP: checked("group")},
    {"unknown_block": {"x": {"type": "plain_text_input", "value": "4 West"}}},
], ids=["no blocks", "only the unit", "no unit", "only a block the form never had"])
def test_a_team_form_with_missing_questions_creates_nothing(app_server: AppServer,
                                                            values: dict) -> None:
    reply = app_server.slack.view_submission(CALLER, Callback.TEAM_REQUEST, values,
                                             view_id="VHOSTMISS1")
    assert reply.status == 200
    answer = reply.json()
    assert answer["response_action"] == "errors" and len(answer["errors"]) == 1
    assert set(answer["errors"]) <= {Block.TEAM_UNIT_TYPED, Block.TEAM_SIZE, Block.URGENCY,
                                     Block.TEAM_HELP}
    nothing_created(app_server)


@pytest.mark.parametrize(("callback", "values", "block"), [
    (Callback.PROPOSE_TIMES, {}, f"{Block.SESSION_TIME}:1"),
    (Callback.CLOSE_TEAM_REQUEST, {}, Block.PEOPLE_PRESENT),
    (Callback.CLOSE_TEAM_REQUEST, {Block.PEOPLE_PRESENT: choice("6_15")}, Block.DURATION),
], ids=["proposal without times", "close without answers", "close with only the range"])
def test_the_other_team_forms_with_missing_questions_change_nothing(
        app_server: AppServer, callback: str, values: dict, block: str) -> None:
    request_id = place(app_server)
    reply = app_server.slack.view_submission(LEAD, callback, values,
                                             private_metadata=str(request_id))
    assert reply.status == 200
    assert list(reply.json()["errors"]) == [block]
    app_server.settle()
    request, team = request_of(app_server, request_id), team_of(app_server, request_id)
    assert (request.state, team.session_state, team.people_present) == (
        RequestState.ASSIGNED, SessionState.NONE, None)
    assert rows(app_server, SessionProposal) == []


@pytest.mark.parametrize("body", [
    {"unit_typed": "4 West\x00"},
    {"unit_typed": "4 West\ud800"},
], ids=["NUL", "lone surrogate"])
def test_text_a_database_cannot_store_is_refused_before_anything_reads_it(
        app_server: AppServer, body: dict) -> None:
    payload = {
        "type": "view_submission", "team": {"id": "T0PEERSUP", "domain": "hospital"},
        "user": {"id": CALLER, "username": "caller", "team_id": "T0PEERSUP"},
        "api_app_id": "APEERSUP1", "token": "legacy-verification-token",
        "trigger_id": "1.1.trigger",
        "view": {"id": "VHOSTNUL01", "type": "modal", "callback_id": Callback.TEAM_REQUEST,
                 "private_metadata": "", "state": {"values": team_values(**body)},
                 "team_id": "T0PEERSUP", "hash": "1.abc"}}
    # json.dumps writes the surrogate as \ud800, as a hostile sender would.
    reply = app_server.slack.post_form({"payload": json.dumps(payload)})
    assert reply.status == 400
    nothing_created(app_server)


def test_a_forged_private_metadata_on_the_team_form_is_ignored(app_server: AppServer) -> None:
    first = place(app_server, caller=OTHER_CALLER)
    before = request_of(app_server, first)
    for metadata in (str(first), json.dumps({"request_id": first, "user": OTHER_CALLER}),
                     "x" * 3000):
        reply = app_server.slack.view_submission(
            CALLER, Callback.TEAM_REQUEST, team_values(unit_typed=f"Ward {len(metadata)}"),
            private_metadata=metadata, view_id=f"VHOSTMETA{len(metadata)}")
        assert reply.json()["response_action"] == "update"
    app_server.settle()
    mine = [r for r in rows(app_server, SupportRequest) if r.requester_id == CALLER]
    assert len(mine) == 3 and all(r.kind == RequestKind.TEAM for r in mine), \
        "each submission is the submitter's own new request"
    after = request_of(app_server, first)
    assert (after.state, after.version, after.requester_id) == (
        before.state, before.version, OTHER_CALLER), "the other caller's request is untouched"


def test_people_named_twice_the_bot_the_caller_and_a_supporter_reach_each_member_once(
        app_server: AppServer) -> None:
    fake = app_server.slack.fake
    a, b = MEMBERS[:2]
    people = (a, a, BOT, CALLER, b, LEAD, b)
    fake.add_user(BOT).is_bot = True
    answer = call_team(app_server, people=list(people), helps=("private",), size="2_5").json()
    assert answer["response_action"] == "update"
    [request] = rows(app_server, SupportRequest)
    assert team_of(app_server, request.id).people == sorted({a, b, BOT, CALLER, LEAD})
    for person in (a, b):
        fake.add_user(person)
    add_supporters(app_server, LEAD)
    tick(app_server, 3600)  # escalated with nobody on the roster; the reminder asks LEAD
    accept(app_server, offer_ids(app_server, request.id)[LEAD])
    run_out(app_server, request.id)
    assert notes_to(fake, request.id) == Counter({a: 1, b: 1}), \
        "not the bot, the caller or the supporter; nobody twice"
    team = team_of(app_server, request.id)
    assert (team.reached, team.skipped) == (2, 0)


# -- a hostile unit's name is escaped wherever it is shown, and can ping nobody --------------------

def _is_note(call: Call) -> bool:
    effect = str(((call.args.get("metadata") or {}).get("event_payload") or {}).get("effect", ""))
    return call.method == "chat.postMessage" and effect.startswith("outreach:")


def _posts(fake: FakeSlack, where: str | None = None, *, having: str = "") -> list[str]:
    """Each chat.postMessage / chat.update (in `where`) holding `having`, as JSON."""
    found = []
    for call in fake.calls_to("chat.postMessage") + fake.calls_to("chat.update"):
        text = json.dumps(call.args, ensure_ascii=False)
        if (where is None or call.args.get("channel") == where) and having in text:
            found.append(text)
    return found


def escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The longest unit the form takes, all of it characters mrkdwn escapes (five times as long then).
LONGEST_UNIT = "<>&" * 26 + "<>"


def hostile_team_placed(server: AppServer, unit: str = HOSTILE_UNIT) -> tuple[int, int]:
    """Two team requests for HOSTILE_UNIT: one nobody can take yet (escalated, in the daily
    list), and one placed with LEAD and SECOND, its time picked and its invitation posted in
    the team's channel, with each member offered private support."""
    from handlers import bootstrap_jobs

    fake = server.slack.fake
    for person in (CALLER, OTHER_CALLER, *MEMBERS[:2]):
        fake.add_user(person)
    waiting = call_team(server, OTHER_CALLER, unit_typed=unit, helps=("visit",)).json()
    assert escaped(unit) in json.dumps(waiting["view"], ensure_ascii=False)
    bootstrap_jobs(server.runtime)
    tick(server, 18 * 3600)  # the coordinators' daily list, at 08:00
    add_supporters(server, LEAD, SECOND)
    answer = call_team(server, CALLER, unit_typed=unit, size="6_15",
                       helps=("group", "private"), people=MEMBERS[:2],
                       channel=TEAM_CHANNEL).json()
    assert answer["response_action"] == "update"
    unplaced, request_id = sorted(r.id for r in rows(server, SupportRequest))
    offers = offer_ids(server, request_id)
    for supporter in (LEAD, SECOND):
        accept(server, offers[supporter])
    if not request_of(server, request_id).intro_channel:
        # On a busy machine the introduction may wait for the clock's next tick.
        tick(server, 5)
    assert eventually(lambda: request_of(server, request_id).intro_channel)
    server.runtime.clock.set(START + timedelta(days=1))
    picked(server, request_id, [T1], place=HOSTILE_PLACE)
    invitation = next(m for m in dms_to(fake, CALLER) if "invitation" in m["text"])
    value, block_id = button(invitation, Action.POST_INVITATION)
    click(server, CALLER, Action.POST_INVITATION, value, block_id=block_id, message=invitation)
    run_out(server, request_id)
    for person in (CALLER, LEAD, COORDINATOR):
        server.slack.event({"type": "app_home_opened", "user": person, "tab": "home",
                            "channel": "D0HOME0001", "event_ts": "1.1"})
    server.settle()
    server.slack.command(COORDINATOR, "insights")
    server.settle()
    server.runtime.clock.set(T1 - timedelta(hours=1))
    server.runtime.duework().run_until_idle()
    return unplaced, request_id


@pytest.mark.parametrize("unit", [HOSTILE_UNIT, LONGEST_UNIT], ids=["markup", "longest"])
def test_a_hostile_unit_is_escaped_everywhere_it_is_shown(app_server: AppServer,
                                                          unit: str) -> None:
    server, fake = app_server, app_server.slack.fake
    _unplaced, request_id = hostile_team_placed(server, unit)
    request = request_of(server, request_id)
    shown = {
        "offer": _posts(fake, fake.dm_channel([LEAD]), having=Action.ACCEPT_OFFER),
        "coordinator's alert": _posts(fake, fake.dm_channel([COORDINATOR]),
                                      having=Action.TAKE_REQUEST),
        "daily list": _posts(fake, fake.dm_channel([COORDINATOR]),
                             having="still without a supporter"),
        "caller's status": _posts(fake, fake.dm_channel([CALLER]),
                                  having="Support for your team"),
        "introduction": _posts(fake, request.intro_channel, having="trained peer supporter"),
        "case": _posts(fake, fake.dm_channel([LEAD]), having="You are supporting a team"),
        "invitation": _posts(fake, fake.dm_channel([CALLER]), having="invitation"),
        "channel post": _posts(fake, TEAM_CHANNEL),
        "reminder": _posts(fake, fake.dm_channel([SECOND]), having="Reminder:"),
        "unreadable channel": _posts(fake, fake.dm_channel([CALLER]),
                                     having="could not reach the members"),
        "member's note": [json.dumps(c.args["blocks"], ensure_ascii=False)
                          for c in fake.calls_to("chat.postMessage") if _is_note(c)],
        "Homes": [json.dumps(c.args["view"], ensure_ascii=False)
                  for c in fake.calls_to("views.publish")],
        "insights": [text for text in (json.dumps(r, ensure_ascii=False)
                                       for r in fake.wait_for_response())
                     if "By unit" in text],
    }
    for surface, texts in shown.items():
        assert texts, f"no {surface} was sent"
        assert all(escaped(unit) in text for text in texts), surface
    assert len(shown["Homes"]) == 3 and len(shown["member's note"]) == 2
    for surface in ("invitation", "channel post", "reminder", "member's note"):
        assert all(escaped(HOSTILE_PLACE) in text for text in shown[surface]), surface
    # Nothing sent anywhere carries the unit's or the place's markup raw.
    sent = everything_sent(fake)
    assert [raw for raw in (*RAW_MARKUP, unit) if raw in sent] == []


def test_a_members_note_text_escapes_the_unit(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    request_id = place(app_server, unit=HOSTILE_UNIT, group=False, private=True,
                       people=tuple(MEMBERS[:2]), channel=None)
    run_out(app_server, request_id)
    notes = [c for c in fake.calls_to("chat.postMessage") if _is_note(c)]
    assert len(notes) == 2
    assert all(escaped(HOSTILE_UNIT) in json.dumps(c.args["blocks"], ensure_ascii=False)
               for c in notes)
    texts = [c.args["text"] for c in notes]
    assert [raw for raw in RAW_MARKUP if any(raw in text for text in texts)] == [], \
        "the notification text shows <!channel>, a mention or a link live"


# -- concurrent clicks over HTTP, on PostgreSQL --------------------------------------------------------

TAKEN_TEXT = "Another supporter has already taken this request. Thank you for being there."


def _offer_message(fake: FakeSlack, offer: Offer) -> dict:
    return next(m for m in messages_in(fake, offer.channel) if m["ts"] == offer.ts)


def _group_posts(fake: FakeSlack) -> list[Call]:
    return [c for c in fake.calls_to("chat.postMessage") if c.args["channel"].startswith("G")]


def _cases(fake: FakeSlack) -> Counter:
    return Counter(c.args["channel"] for c in fake.calls_to("chat.postMessage")
                   if c.args.get("text") == "You are supporting a team")


def test_twenty_accepts_at_once_over_http_seat_exactly_two(app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    racers = [f"USUPRACE{n:02d}" for n in range(20)]
    object.__setattr__(server.runtime.settings, "wave_size", len(racers))
    add_supporters(server, *racers)
    fake.add_user(CALLER)
    with server.runtime.sessions.begin() as session:
        request_id = flows.create_team(server.runtime.services, session, CALLER, TeamForm(
            unit="Ward 9", size="16_30", urgency="today", group=True), source_key=None).id
    offers = offer_ids(server, request_id)
    assert len(offers) == len(racers)

    def press(supporter: str, go: Callable[[], Any]) -> int:
        offer = offers[supporter]
        go()
        return server.slack.block_action(supporter, Action.ACCEPT_OFFER, str(offer.id),
                                         channel_id=offer.channel or "", message_ts=offer.ts
                                         or "").status

    assert run_together(press, racers) == [200] * len(racers)
    server.settle()
    for _ in range(3):  # what waited for an earlier post goes on the clock's next ticks
        tick(server, 2)
    request = request_of(server, request_id)
    holders = read(server, lambda s: domain.seat_holders(s, request_id))
    assert (request.state, request.filled, len(holders)) == (RequestState.ASSIGNED, 2, 2)
    intros = _group_posts(fake)
    assert len(intros) == 1 and intros[0].args["channel"] == fake.dm_channel([CALLER, *holders])
    assert _cases(fake) == Counter({fake.dm_channel([h]): 1 for h in holders}), \
        "one case message for each seat holder"
    for supporter in racers:
        shown = _offer_message(fake, offers[supporter])
        assert Action.ACCEPT_OFFER not in json.dumps(shown.get("blocks")), supporter
        if supporter in holders:
            assert "You accepted this request" in shown["text"]
        else:
            assert told(fake, supporter).count(TAKEN_TEXT) == 1, supporter
            assert shown["text"] == TAKEN_TEXT
    status = dms_to(fake, CALLER)
    assert len(status) == 1 and "Two supporters have accepted" in status[0]["text"]
    with server.runtime.sessions() as session:
        for effect, count in ((Effect.INTRO, 1), (Effect.CASE, 2)):
            assert session.scalar(select(func.count()).select_from(DueWork).where(
                DueWork.kind == effect.value)) == count


WITHDRAWN_TEXT = "The person who asked for their team's support has withdrawn it. Thank you."


@pytest.mark.parametrize("attempt", range(3))
def test_a_withdraw_racing_the_second_accept_leaves_nobody_uninformed(
        app_server: AppServer, attempt: int) -> None:
    pg_only(app_server)
    server, fake = app_server, app_server.slack.fake
    add_supporters(server, LEAD, SECOND)
    fake.add_user(CALLER)
    with server.runtime.sessions.begin() as session:
        request_id = flows.create_team(server.runtime.services, session, CALLER, TeamForm(
            unit="Ward 9", size="6_15", urgency="today", visit=True), source_key=None).id
    offers = offer_ids(server, request_id)
    accept(server, offers[LEAD])
    assert request_of(server, request_id).filled == 1
    status = dms_to(fake, CALLER)[0]

    def act(who: str, go: Callable[[], Any]) -> int:
        go()
        if who == CALLER:
            return server.slack.block_action(CALLER, Action.CANCEL_REQUEST, str(request_id),
                                             channel_id=fake.dm_channel([CALLER]) or "",
                                             message_ts=status["ts"]).status
        offer = offers[SECOND]
        return server.slack.block_action(SECOND, Action.ACCEPT_OFFER, str(offer.id),
                                         channel_id=offer.channel or "",
                                         message_ts=offer.ts or "").status

    assert run_together(act, [CALLER, SECOND]) == [200, 200]
    tick(server, 60)
    request = request_of(server, request_id)
    assert request.state == RequestState.CANCELLED, "the caller's withdraw always holds"
    assert read(server, lambda s: domain.seat_holders(s, request_id)) == []
    second_won = read(server, lambda s: s.get(Offer, offers[SECOND].id).state) == "accepted"
    for supporter, seated in ((LEAD, True), (SECOND, second_won)):
        notices = [m for m in dms_to(fake, supporter) if m["text"] == WITHDRAWN_TEXT]
        assert len(notices) == (1 if seated else 0), (supporter, seated)
    if not second_won:
        assert REFUSALS[domain.Outcome.CANCELLED] in told(fake, SECOND)
    assert len(_group_posts(fake)) <= 1
    assert sum(_cases(fake).values()) in (0, 2)
    assert "You withdrew this request for your team" in dms_to(fake, CALLER)[0]["text"]


STALE_WORDS = "out of date"
GONE_WORDS = "That time is no longer on offer"


@pytest.mark.parametrize("attempt", range(3))
def test_a_pick_racing_a_reschedule_one_wins_and_the_outreach_follows_it(
        app_server: AppServer, attempt: int) -> None:
    pg_only(app_server)
    server, fake = app_server, app_server.slack.fake
    request_id = place(server, private=True, people=tuple(MEMBERS[:2]))
    assert team_of(server, request_id).outreach_state == OutreachState.WAITING
    assert propose(server, LEAD, request_id, T1, T2) is None
    message = proposals_of(server, request_id)
    channel = request_of(server, request_id).intro_channel
    pick_value = pick_buttons(message)[0]
    again_value, again_block = button(message, Action.RESCHEDULE_SESSION)

    def act(who: str, go: Callable[[], Any]) -> int:
        go()
        if who == CALLER:
            return server.slack.block_action(CALLER, Action.PICK_TIME, pick_value,
                                             channel_id=channel, message_ts=message["ts"]).status
        return server.slack.block_action(SECOND, Action.RESCHEDULE_SESSION, again_value,
                                         block_id=again_block, channel_id=channel,
                                         message_ts=message["ts"]).status

    assert run_together(act, [CALLER, SECOND]) == [200, 200]
    server.settle()
    team = team_of(server, request_id)
    assert team.session_version == 2, "exactly one change won"
    with server.runtime.sessions() as session:
        reminders = session.scalars(select(DueWork).where(DueWork.kind == SESSION_REMINDER)).all()
        starts = session.scalars(select(DueWork.key).where(
            DueWork.kind == Effect.TEAM_OUTREACH_START.value)).all()
    texts = [json.dumps(m.get("blocks")) for m in messages_in(fake, channel)]
    invitations = [m for m in dms_to(fake, CALLER) if "invitation" in m["text"]]
    if team.session_state == SessionState.SET:
        assert team.session_at == T1 and len(reminders) == 1 and len(invitations) == 1
        assert starts == [f"outreach:{request_id}:start"], "the pick starts the outreach"
        assert sum("is set* for" in t for t in texts) == 1
        assert not any(Action.PROPOSE_TIMES in t for t in texts), "no call for new times"
        assert STALE_WORDS in told(fake, SECOND)[-1]
    else:
        assert team.session_state == SessionState.NONE and team.session_at is None
        assert reminders == [] and invitations == [] and starts == []
        assert team_of(server, request_id).outreach_state == OutreachState.WAITING
        assert sum(Action.PROPOSE_TIMES in t for t in texts) == 1, "one call for new times"
        assert not any("is set* for" in t for t in texts)
        assert told(fake, CALLER)[-1].startswith(GONE_WORDS)


def test_both_supporters_closing_at_once_close_it_once(app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = place(server)
    ranges = {LEAD: "6_15", SECOND: "16_30"}

    def close(who: str, go: Callable[[], Any]) -> dict | None:
        values = {Block.PEOPLE_PRESENT: choice(ranges[who]), Block.DURATION: choice("30_60"),
                  Block.REFERRED: choice("no"), Block.NEED_MET: choice("yes")}
        go()
        reply = server.slack.view_submission(who, Callback.CLOSE_TEAM_REQUEST, values,
                                             private_metadata=str(request_id))
        assert reply.status == 200
        return reply.json()

    answers = dict(zip((LEAD, SECOND), run_together(close, [LEAD, SECOND]), strict=True))
    tick(server, 60)
    closers = [who for who, answer in answers.items() if answer is None]
    assert len(closers) == 1, answers
    [closer] = closers
    [other] = [s for s in SUPPORTERS if s != closer]
    assert request_of(server, request_id).state == RequestState.CLOSED
    assert team_of(server, request_id).people_present == ranges[closer]
    notes = [m for m in dms_to(fake, other) if "other supporter has closed" in m["text"]]
    assert len(notes) == 1 and not [m for m in dms_to(fake, closer)
                                    if "other supporter has closed" in m["text"]]
    assert answers[other]["response_action"] == "errors", "the late form stays open, refused"


def test_closing_what_a_colleague_just_closed_says_it_is_closed(app_server: AppServer) -> None:
    request_id = place(app_server)
    values = {Block.PEOPLE_PRESENT: choice("6_15"), Block.DURATION: choice("30_60"),
              Block.REFERRED: choice("no"), Block.NEED_MET: choice("yes")}
    first = app_server.slack.view_submission(LEAD, Callback.CLOSE_TEAM_REQUEST, values,
                                             private_metadata=str(request_id))
    assert (first.status, first.body) == (200, "")
    late = app_server.slack.view_submission(SECOND, Callback.CLOSE_TEAM_REQUEST, values,
                                            private_metadata=str(request_id)).json()
    assert late["response_action"] == "errors"
    refusal = " ".join(late["errors"].values())
    assert "not with you" not in refusal and "closed" in refusal, refusal


# -- the same races with their worst interleaving forced, on both databases -------------------------
# A click arrives between a change's read and its guarded write. PostgreSQL's row lock makes it
# wait for the change to commit; on SQLite (which a deployment may use, with several processes)
# nothing holds it back, so the change must not act on what it read before its write.

def _meanwhile(click_: Callable[[], Any], landed: Callable[[], bool]) -> None:
    """Send a click from another thread and give it up to two seconds to commit (a row lock
    holds it back on PostgreSQL: it then lands once the change in progress commits)."""
    threading.Thread(target=click_, daemon=True).start()
    deadline = time.monotonic() + 2
    while not landed() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_an_accept_landing_inside_a_withdraw_is_told_it_was_withdrawn(
        app_server: AppServer, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    server, fake = app_server, app_server.slack.fake
    add_supporters(server, LEAD, SECOND)
    fake.add_user(CALLER)
    with server.runtime.sessions.begin() as session:
        request_id = flows.create_team(server.runtime.services, session, CALLER, TeamForm(
            unit="Ward 9", size="6_15", urgency="today", visit=True), source_key=None).id
    offers = offer_ids(server, request_id)
    accept(server, offers[LEAD])
    second = offers[SECOND]
    original = domain._helping
    armed = [True]

    def helping_then_an_accept(session: Any, request_: SupportRequest) -> list[str]:
        found = original(session, request_)
        if armed and request_.id == request_id:
            armed.clear()
            _meanwhile(lambda: server.slack.block_action(
                SECOND, Action.ACCEPT_OFFER, str(second.id), channel_id=second.channel or "",
                message_ts=second.ts or ""), lambda: read(
                server, lambda s: s.get(Offer, second.id).state) == "accepted")
        return found

    monkeypatch.setattr(domain, "_helping", helping_then_an_accept)
    click(server, CALLER, Action.CANCEL_REQUEST, str(request_id))
    tick(server, 60)
    assert not armed, "the withdraw read who was helping"
    assert request_of(server, request_id).state == RequestState.CANCELLED
    assert read(server, lambda s: domain.seat_holders(s, request_id)) == []
    second_seated = read(server, lambda s: s.get(Offer, second.id).state) == "accepted"
    if not second_seated:
        assert REFUSALS[domain.Outcome.CANCELLED] in told(fake, SECOND)
    for supporter, seated in ((LEAD, True), (SECOND, second_seated)):
        notices = [m for m in dms_to(fake, supporter) if m["text"] == WITHDRAWN_TEXT]
        assert len(notices) == (1 if seated else 0), \
            f"{supporter} held a seat ({seated}) and was told {len(notices)} times"


def test_a_reschedule_landing_inside_a_pick_tells_the_caller_what_happened(
        app_server: AppServer, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    from bot.requests import sessions

    server, fake = app_server, app_server.slack.fake
    request_id = place(server)
    assert propose(server, LEAD, request_id, T1) is None
    message = proposals_of(server, request_id)
    channel = request_of(server, request_id).intro_channel
    again_value, again_block = button(message, Action.RESCHEDULE_SESSION)
    original = sessions._locked
    armed = [True]

    def read_then_a_reschedule(session: Any, request_id_: int) -> Any:
        found = original(session, request_id_)
        if armed:
            armed.clear()
            _meanwhile(lambda: server.slack.block_action(
                SECOND, Action.RESCHEDULE_SESSION, again_value, block_id=again_block,
                channel_id=channel, message_ts=message["ts"]),
                lambda: team_of(server, request_id).session_version == 2)
        return found

    monkeypatch.setattr(sessions, "_locked", read_then_a_reschedule)
    click(server, CALLER, Action.PICK_TIME, pick_buttons(message)[0], message=message,
          channel=channel)
    tick(server, 1)
    assert not armed
    team = team_of(server, request_id)
    assert team.session_version == 2, "exactly one change won"
    if team.session_state == SessionState.SET:  # the pick went first; the reschedule came after
        assert STALE_WORDS in told(fake, SECOND)[-1]
        return
    assert (team.session_state, team.session_version) == (SessionState.NONE, 2)
    answer = told(fake, CALLER)[-1]
    assert "already set" not in answer, f"the caller is told the time is set: {answer}"
    assert answer.startswith(GONE_WORDS)


# -- rate limits, refusals, lost answers and crashes in the middle of a flow --------------------------

@pytest.mark.parametrize("method", ["users.info", "conversations.open"])
def test_a_rate_limit_in_the_middle_of_the_notes_loses_and_doubles_none(
        app_server: AppServer, method: str) -> None:
    server, fake = app_server, app_server.slack.fake
    members = tuple(f"UMEMRATE{n:02d}" for n in range(24))
    seen = iter(range(1, 10_000))

    def slack_slows_down(original: Callable[[Any], None], ctx: Any) -> None:
        if next(seen) == 8:  # from the eighth note on, Slack says 429 until it recovers
            fake.fail(method, status=429, retry_after=1, times=100_000)
        original(ctx)

    wrap_job(server, Effect.TEAM_OUTREACH.value, slack_slows_down)
    request_id = place(server, group=False, private=True, people=members, channel=None)
    tick(server, 2)
    sent = sum(notes_to(fake, request_id).values())
    assert 0 < sent < len(members), "the rate limit came in the middle of the notes"
    fake.recover()
    run_out(server, request_id)
    assert notes_to(fake, request_id) == Counter(dict.fromkeys(members, 1))
    team = team_of(server, request_id)
    assert (team.reached, team.skipped) == (len(members), 0), "a 429 is not a skip"
    with server.runtime.sessions() as session:
        waited = session.scalar(select(func.count()).select_from(DueWork).where(
            DueWork.kind == Effect.TEAM_OUTREACH.value,
            DueWork.last_error == "slack: ratelimited"))
    assert waited > 0


@pytest.mark.parametrize("error", ["user_disabled", "channel_not_found", "cannot_dm_bot"])
def test_a_member_slack_will_not_deliver_to_is_skipped_once_and_the_rest_reached(
        app_server: AppServer, error: str) -> None:
    server, fake = app_server, app_server.slack.fake
    members = tuple(MEMBERS[:6])
    victim = members[2]
    fail_when(fake, "chat.postMessage", lambda args: args.get("channel") in (
        victim, fake.dm_channel([victim])), error=error, times=100)
    request_id = place(server, group=False, private=True, people=members, channel=None)
    run_out(server, request_id)
    assert notes_to(fake, request_id) == Counter({m: 1 for m in members if m != victim})
    team = team_of(server, request_id)
    assert (team.reached, team.skipped) == (len(members) - 1, 1)
    tick(server, 3600)
    attempts = [c for c in fake.calls_to("chat.postMessage")
                if c.args["channel"] in (victim, fake.dm_channel([victim]))]
    assert len(attempts) == 1, "refused for good: not retried"


def test_a_page_of_the_teams_channel_rate_limited_is_read_again_whole(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    reached = ["UMEMPAGE01", "UMEMPAGE02", "UMEMPAGE03"]
    crowd = [f"UOPTOUT{n:04d}" for n in range(1000)]  # opted out: read, then left out
    now = server.runtime.clock.now()
    with server.runtime.sessions.begin() as session:
        session.add_all([OutreachOptOut(user_id=u, created_at=now) for u in crowd])
    # Two pages of conversations.members; the caller is in the channel they named.
    fake.set_members(TEAM_CHANNEL, [*crowd, *reached, CALLER])
    for person in reached:
        fake.add_user(person)
    failed = fail_when(fake, "conversations.members", lambda args: bool(args.get("cursor")),
                       error="ratelimited", status=429, retry_after=1, times=3)
    request_id = place(server, group=False, private=True)
    run_out(server, request_id)
    assert failed == [3], "the second page was refused until slack_sdk gave up"
    assert notes_to(fake, request_id) == Counter(dict.fromkeys(reached, 1))
    team = team_of(server, request_id)
    assert (team.reached, team.skipped) == (3, 0)
    with server.runtime.sessions() as session:
        start = session.scalars(select(DueWork).where(
            DueWork.kind == Effect.TEAM_OUTREACH_START.value)).one()
    assert start.last_error == "slack: ratelimited", "the start waited for Slack, then ran again"


def _late_answer(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first post in a group DM is made, but its answer comes after the app's timeout."""
    original = fake._api_chat_postMessage
    slowed: list[str] = []

    def posted_then_late(args: dict) -> dict:
        answer = original(args)
        if str(args["channel"]).startswith("G") and not slowed:
            slowed.append(str(args["channel"]))
            time.sleep(6)  # the client gives up after 5 seconds (tests/conftest.py runtime)
        return answer

    monkeypatch.setattr(fake, "_api_chat_postMessage", posted_then_late)
    return slowed


@pytest.mark.parametrize("trouble", ["answer lost", "group DM rate limited", "server error"])
def test_an_introduction_that_fails_once_is_posted_once(
        app_server: AppServer, monkeypatch: pytest.MonkeyPatch, trouble: str) -> None:
    server, fake = app_server, app_server.slack.fake
    if trouble == "answer lost":
        slowed = _late_answer(fake, monkeypatch)
    elif trouble == "group DM rate limited":
        slowed = fail_when(fake, "conversations.open", lambda args: "," in args["users"],
                           error="ratelimited", status=429, retry_after=1, times=3)
    else:
        slowed = fail_when(fake, "chat.postMessage", lambda args: args["channel"][:1] == "G",
                           error="fatal_error", status=500, times=2)
    add_supporters(server, LEAD, SECOND)
    fake.add_user(CALLER)
    with server.runtime.sessions.begin() as session:
        request_id = flows.create_team(server.runtime.services, session, CALLER, TeamForm(
            unit="Ward 9", size="6_15", urgency="today", group=True), source_key=None).id
    offers = offer_ids(server, request_id)
    for supporter in (LEAD, SECOND):
        accept(server, offers[supporter])
    assert slowed, "the trouble happened"
    ticking_until(server, lambda: request_of(server, request_id).intro_channel
                  and len(_cases(fake)) == 2)
    tick(server, 3600)
    channel = fake.dm_channel([CALLER, LEAD, SECOND])
    intros = [m for m in messages_in(fake, channel) if "trained peer supporters" in m["text"]]
    assert len(intros) == 1
    assert request_of(server, request_id).intro_channel == channel
    assert _cases(fake) == Counter({fake.dm_channel([LEAD]): 1, fake.dm_channel([SECOND]): 1})
    if trouble == "answer lost":
        assert [c for c in fake.calls_to("conversations.history")
                if c.args["channel"] == channel], "the retry looked for its own post first"


CRASHING = (Effect.INTRO, Effect.CASE, Effect.STATUS, Effect.TEAM_SESSION,
            Effect.TEAM_INVITATION)


def test_a_process_killed_after_each_post_never_posts_it_twice(app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    crashed: Counter = Counter()

    def killed_after_posting(kind: str) -> Callable[[Callable[[Any], None], Any], None]:
        def run(original: Callable[[Any], None], ctx: Any) -> None:
            original(ctx)
            if not crashed[kind]:
                crashed[kind] += 1
                raise RuntimeError("the process died before its commit")
        return run

    for effect in CRASHING:
        wrap_job(server, effect.value, killed_after_posting(effect.value))
    add_supporters(server, LEAD, SECOND)
    fake.add_user(CALLER)
    with server.runtime.sessions.begin() as session:
        request_id = flows.create_team(server.runtime.services, session, CALLER, TeamForm(
            unit="Ward 9", size="6_15", urgency="today", group=True, channel=TEAM_CHANNEL),
            source_key=None).id
    offers = offer_ids(server, request_id)
    for supporter in (LEAD, SECOND):
        accept(server, offers[supporter])
    tick(server, 120)
    assert request_of(server, request_id).intro_channel
    picked(server, request_id, [T1, T2])
    tick(server, 120)
    invitation = next(m for m in dms_to(fake, CALLER) if "invitation" in m["text"])
    value, block_id = button(invitation, Action.POST_INVITATION)
    click(server, CALLER, Action.POST_INVITATION, value, block_id=block_id, message=invitation)
    tick(server, 120)
    assert set(crashed) == {e.value for e in CRASHING} and set(crashed.values()) == {1}
    group = messages_in(fake, fake.dm_channel([CALLER, LEAD, SECOND]))
    assert len([m for m in group if "trained peer supporters" in m["text"]]) == 1
    assert len(with_action(group, Action.PICK_TIME)) + len(
        [m for m in group if m["text"].startswith("Picked:")]) == 1, "one proposals message"
    assert len([m for m in group if "is set* for" in json.dumps(m["blocks"])]) == 1
    assert _cases(fake) == Counter({fake.dm_channel([LEAD]): 1, fake.dm_channel([SECOND]): 1})
    assert len([m for m in dms_to(fake, CALLER) if m["text"].startswith("Support for your team")]) \
        == 1, "one status message, updated in place"
    assert len([m for m in dms_to(fake, CALLER) if "invitation" in m["text"]]) == 1
    assert len(messages_in(fake, TEAM_CHANNEL)) == 1


# -- stale and forged buttons ---------------------------------------------------------------------------

def test_a_pick_naming_another_teams_proposal_changes_neither(app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    mine = place(server, unit="Ward 9")
    theirs = place(server, caller=OTHER_CALLER, unit="Ward 10")
    assert propose(server, LEAD, mine, T1) is None
    assert propose(server, LEAD, theirs, T2) is None
    my_message, their_message = proposals_of(server, mine), proposals_of(server, theirs)
    [my_pick], [their_pick] = pick_buttons(my_message), pick_buttons(their_message)
    my_channel = request_of(server, mine).intro_channel
    # Each caller forges the other's proposal id onto their own message's Pick button.
    click(server, CALLER, Action.PICK_TIME, their_pick, message=my_message, channel=my_channel)
    assert told(fake, CALLER)[-1].startswith(GONE_WORDS)
    click(server, OTHER_CALLER, Action.PICK_TIME, my_pick, message=their_message,
          channel=request_of(server, theirs).intro_channel)
    assert told(fake, OTHER_CALLER)[-1].startswith(GONE_WORDS)
    for request_id in (mine, theirs):
        team = team_of(server, request_id)
        assert (team.session_state, team.session_version) == (SessionState.PROPOSED, 1)
    assert not [m for m in dms_to(fake, CALLER) + dms_to(fake, OTHER_CALLER)
                if "invitation" in m["text"]]
    # The real buttons still work.
    click(server, CALLER, Action.PICK_TIME, my_pick, message=my_message, channel=my_channel)
    assert (team_of(server, mine).session_state, team_of(server, theirs).session_state) == (
        SessionState.SET, SessionState.PROPOSED)


def _counts(team: TeamRequest) -> tuple[int, int]:
    return team.asked_personal or 0, team.opted_checkins or 0


def two_teams_reached(server: AppServer) -> tuple[int, int]:
    """Two team requests whose notes went out: MEMBERS[:3] on the first, MEMBERS[3:6] on the
    second."""
    first = place(server, group=False, private=True, people=tuple(MEMBERS[:3]), channel=None)
    second = place(server, caller=OTHER_CALLER, unit="Ward 10", group=False, private=True,
                   people=tuple(MEMBERS[3:6]), channel=None)
    for request_id in (first, second):
        run_out(server, request_id)
    return first, second


def test_a_members_click_naming_another_team_counts_for_neither(app_server: AppServer) -> None:
    server = app_server
    first, second = two_teams_reached(server)
    fake = server.slack.fake
    outsider = MEMBERS[0]  # on the first team only
    for action in (Action.TEAM_TALK, Action.TEAM_CHECKINS):
        click(server, outsider, action, str(second))
        assert told(fake, outsider), "told privately why nothing happened"
    server.settle()
    assert _counts(team_of(server, second)) == (0, 0), "the other team's counts are untouched"
    assert read(server, lambda s: s.scalars(select(CheckIn).where(
        CheckIn.user_id == outsider)).all()) == [], "no check-ins were planned for them"
    assert [r for r in rows(server, SupportRequest) if r.requester_id == outsider] == []
    # A member of the second team, from their own note, is counted there (and only there).
    for action in (Action.TEAM_TALK, Action.TEAM_CHECKINS):
        click(server, MEMBERS[3], action, str(second))
    server.settle()
    assert (_counts(team_of(server, first)), _counts(team_of(server, second))) == (
        (0, 0), (1, 1))


def test_a_note_button_naming_a_personal_request_or_nothing_changes_nothing(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    first, _second = two_teams_reached(server)
    member = MEMBERS[1]
    with server.runtime.sessions.begin() as session:
        personal = flows.create(server.runtime.services, session, "UPERSONAL1",
                                domain.RequestForm(urgency="today", connection="slack"),
                                source_key=None).id
    before = (read(server, lambda s: s.scalar(select(func.count()).select_from(SupportRequest))),
              len(rows(server, CheckIn)))
    for value in (str(personal), "0", str(2**31 - 1), "", f"{first} ", f"+{first}"):
        for action in (Action.TEAM_TALK, Action.TEAM_CHECKINS):
            click(server, member, action, value)
            assert "no longer active" in told(fake, member)[-1], (action, value)
    assert (read(server, lambda s: s.scalar(select(func.count()).select_from(SupportRequest))),
            len(rows(server, CheckIn))) == before
    assert _counts(team_of(server, first)) == (0, 0)


def test_buttons_of_a_withdrawn_team_request_change_nothing_more(app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = place(server)
    picked(server, request_id, [T1, T2])
    set_message = [m for m in group_dm(fake, request_of(server, request_id))
                   if "is set* for" in json.dumps(m.get("blocks"))][-1]
    proposals = proposals_of_any(server, request_id)
    invitation = next(m for m in dms_to(fake, CALLER) if "invitation" in m["text"])
    click(server, CALLER, Action.CANCEL_REQUEST, str(request_id))
    tick(server, 60)
    assert request_of(server, request_id).state == RequestState.CANCELLED
    team_before = team_of(server, request_id)
    sent_before = len(fake.calls_to("chat.postMessage"))
    channel = request_of(server, request_id).intro_channel
    again, again_block = button(set_message, Action.RESCHEDULE_SESSION)
    off, off_block = button(set_message, Action.CANCEL_SESSION)
    post, post_block = button(invitation, Action.POST_INVITATION)
    for who, action, value, block_id, message in (
            (CALLER, Action.CANCEL_SESSION, off, off_block, set_message),
            (LEAD, Action.CANCEL_SESSION, off, off_block, set_message),
            (SECOND, Action.RESCHEDULE_SESSION, again, again_block, set_message),
            (CALLER, Action.POST_INVITATION, post, post_block, invitation),
            (CALLER, Action.PICK_TIME, proposals[-1], "actions", None),
            (LEAD, Action.PROPOSE_TIMES, str(request_id), "actions", None)):
        heard = len(told(fake, who))
        click(server, who, action, value, block_id=block_id, message=message,
              channel=channel if message is set_message else None)
        assert len(told(fake, who)) == heard + 1, f"{who} is told why {action} did nothing"
    tick(server, 60)
    team = team_of(server, request_id)
    assert (team.session_state, team.session_version, team.session_at, team.invitation_posted) \
        == (team_before.session_state, team_before.session_version, team_before.session_at,
            False)
    assert len(fake.calls_to("chat.postMessage")) == sent_before, "nothing more is said"
    assert messages_in(fake, TEAM_CHANNEL) == []
    assert fake.calls_to("views.open") == [], "no proposal form opens"
    with server.runtime.sessions() as session:
        assert session.scalars(select(DueWork).where(
            DueWork.kind == Effect.TEAM_OUTREACH_START.value)).all() == []


def proposals_of_any(server: AppServer, request_id: int) -> list[str]:
    """The ids of every time proposed for the request, as its Pick buttons carry them."""
    return [str(p.id) for p in read(server, lambda s: s.scalars(select(SessionProposal).where(
        SessionProposal.request_id == request_id).order_by(SessionProposal.id)).all())]


def test_closing_with_another_requests_id_closes_nothing(app_server: AppServer) -> None:
    server = app_server
    mine = place(server)
    theirs = place(server, caller=OTHER_CALLER, unit="Ward 10", supporters=("USUPHOST03",
                                                                             "USUPHOST04"))
    with server.runtime.sessions.begin() as session:
        personal = flows.create(server.runtime.services, session, "UPERSONAL1",
                                domain.RequestForm(urgency="today", connection="slack"),
                                source_key=None)
        offer = domain.offer_to(session, personal, LEAD, now=server.runtime.clock.now())
        personal_id, offer_id = personal.id, offer.id
    with server.runtime.sessions.begin() as session:
        assert domain.accept(session, offer_id, LEAD, now=server.runtime.clock.now()).outcome \
            == domain.Outcome.ACCEPTED
    team_answers = {Block.PEOPLE_PRESENT: choice("6_15"), Block.DURATION: choice("30_60"),
                    Block.REFERRED: choice("no"), Block.NEED_MET: choice("yes")}
    personal_answers = {k: v for k, v in team_answers.items() if k != Block.PEOPLE_PRESENT}
    for callback, metadata, values in (
            (Callback.CLOSE_TEAM_REQUEST, str(theirs), team_answers),
            (Callback.CLOSE_TEAM_REQUEST, str(personal_id), team_answers),
            (Callback.CLOSE_REQUEST, str(mine), personal_answers),
            (Callback.CLOSE_TEAM_REQUEST, f"{mine},{theirs}", team_answers),
            (Callback.CLOSE_TEAM_REQUEST, "-1", team_answers)):
        reply = server.slack.view_submission(LEAD, callback, values, private_metadata=metadata)
        assert reply.status == 200 and reply.json()["response_action"] == "errors", metadata
    server.settle()
    assert [request_of(server, r).state for r in (mine, theirs, personal_id)] == [
        RequestState.ASSIGNED] * 3
    assert team_of(server, mine).people_present is None


# -- two processes delivering the same outreach start ---------------------------------------------------

def test_a_start_retaken_by_a_second_clock_mid_delivery_records_the_notes_once(
        app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server, fake = app_server, app_server.slack.fake
    members = tuple(f"UMEMTWIN{n:02d}" for n in range(12))
    for person in members:
        fake.add_user(person)
    runtime = server.runtime
    second_clock = DueWorkEngine(make_sessions(runtime.engine), runtime.jobs, runtime.clock,
                                 worker_id="clock-b")
    real_start = outreach.start
    overtaken: list[str] = []

    def start_after_being_overtaken(session: Any, request_id: int, found: Any,
                                    **kwargs: Any) -> Any:
        # The first clock has read the team and its members from Slack, then stalls past its
        # lease; the second clock retakes the start and delivers it whole, first.
        if not overtaken:
            overtaken.append("first")
            runtime.clock.advance(timedelta(minutes=6))
            assert second_clock.tick().claimed >= 1
            overtaken.append("second finished")
        return real_start(session, request_id, found, **kwargs)

    monkeypatch.setattr(outreach, "start", start_after_being_overtaken)
    with runtime.sessions.begin() as session:
        add_supporters(server, LEAD)
        fake.add_user(CALLER)
        request_id = flows.create_team(runtime.services, session, CALLER, TeamForm(
            unit="Ward 9", size="2_5", urgency="today", private=True, people=members),
            source_key=None).id
    accept(server, offer_ids(server, request_id)[LEAD])
    assert overtaken == ["first", "second finished"]
    run_out(server, request_id)
    assert notes_to(fake, request_id) == Counter(dict.fromkeys(members, 1))
    assert team_of(server, request_id).reached == len(members)
    with runtime.sessions() as session:
        keys = session.scalars(select(DueWork.key).where(
            DueWork.kind == Effect.TEAM_OUTREACH.value)).all()
        finishers = session.scalars(select(DueWork.key).where(
            DueWork.kind == outreach.FINISH)).all()
    assert sorted(keys) == sorted(outreach.note_key(request_id, m) for m in members)
    assert finishers == [f"outreach:{request_id}:finish"]


def test_two_clicks_of_post_this_in_the_channel_at_once_post_it_once(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = place(server)
    picked(server, request_id, [T1])
    invitation = next(m for m in dms_to(fake, CALLER) if "invitation" in m["text"])
    value, block_id = button(invitation, Action.POST_INVITATION)

    def press(_n: int, go: Callable[[], Any]) -> int:
        go()
        return server.slack.block_action(CALLER, Action.POST_INVITATION, value,
                                         block_id=block_id, channel_id=invitation.get(
                                             "channel") or "D0000001",
                                         message_ts=invitation["ts"]).status

    assert run_together(press, [1, 2, 3]) == [200, 200, 200]
    tick(server, 60)
    assert len(messages_in(fake, TEAM_CHANNEL)) == 1
    assert team_of(server, request_id).invitation_posted is True
    assert sum("already posted" in t for t in told(fake, CALLER)) == 2


# -- a form Slack will not open right now --------------------------------------------------------------

@pytest.mark.parametrize("how", ["command", "Home button", "Propose times"])
def test_a_form_slack_will_not_open_now_says_so(app_server: AppServer, how: str) -> None:
    server, fake = app_server, app_server.slack.fake
    who = CALLER
    if how == "Propose times":
        request_id = place(server)
        who = LEAD
    fake.add_user(who)
    fake.fail("views.open", status=429, retry_after=1, times=3)  # beyond slack_sdk's retries
    heard = len(told(fake, who)) + len(dms_to(fake, who))
    if how == "command":
        server.slack.command(who, "team")
    elif how == "Home button":
        server.slack.block_action(who, Action.REQUEST_TEAM_SUPPORT)
    else:
        server.slack.block_action(who, Action.PROPOSE_TIMES, str(request_id))
    server.settle()
    assert len(fake.calls_to("views.open")) == 3, "Slack refused the form"
    assert len(told(fake, who)) + len(dms_to(fake, who)) > heard, \
        "the person is told the form could not open, and to try again"


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2009"],
                         ids=["no-break space", "narrow no-break space", "thin space"])
def test_a_unit_pasted_with_an_unusual_space_is_taken_as_typed_with_a_plain_one(
        app_server: AppServer, space: str) -> None:
    answer = call_team(app_server, unit_typed=f"4{space}West").json()
    assert answer["response_action"] == "update", answer.get("errors")
    assert [r.requester_department for r in rows(app_server, SupportRequest)] == ["4 West"]


@pytest.mark.parametrize(("container", "value"), [
    ("view", "teams"), ("view", "Team"), ("view", ""), ("view", None), ("message", "team"),
], ids=["unknown choice", "choice in capitals", "empty choice", "no choice", "from a message"])
def test_a_forged_for_me_or_my_team_switch_changes_no_form(app_server: AppServer,
                                                           container: str,
                                                           value: str | None) -> None:
    action: dict[str, Any] = {"type": "radio_buttons", "action_id": Action.REQUEST_FOR,
                              "block_id": Block.REQUEST_FOR, "action_ts": "1.1"}
    if value is not None:
        action["selected_option"] = {"value": value}
    payload: dict[str, Any] = {
        "type": "block_actions", "team": {"id": "T0PEERSUP", "domain": "hospital"},
        "user": {"id": CALLER, "username": "caller", "team_id": "T0PEERSUP"},
        "api_app_id": "APEERSUP1", "token": "legacy-verification-token",
        "trigger_id": "1.1.trigger", "actions": [action]}
    if container == "view":
        payload["container"] = {"type": "view", "view_id": "V0FORM0001"}
        payload["view"] = {"id": "V0FORM0001", "type": "modal",
                           "callback_id": Callback.REQUEST, "private_metadata": "",
                           "state": {"values": {}}, "hash": "1.a"}
    else:
        payload["container"] = {"type": "message", "message_ts": "1.1",
                                "channel_id": "D0000001", "is_ephemeral": False}
        payload["response_url"] = app_server.slack.fake.response_url(CALLER)
    assert app_server.slack.post_payload(payload).status == 200
    app_server.settle()
    fake = app_server.slack.fake
    assert fake.calls_to("views.update") == [] and fake.calls_to("views.open") == []
    nothing_created(app_server)


THIRD = "USUPHOST03"


def test_the_old_group_conversations_buttons_after_a_hand_back_change_nothing(
        app_server: AppServer) -> None:
    server, fake = app_server, app_server.slack.fake
    request_id = place(server)
    picked(server, request_id, [T1, T2])
    old_dm = request_of(server, request_id).intro_channel
    old_set = [m for m in messages_in(fake, old_dm) if "is set* for" in json.dumps(m["blocks"])][-1]
    old_invitation = next(m for m in dms_to(fake, CALLER) if "invitation" in m["text"])
    old_case = next(m for m in dms_to(fake, LEAD) if m["text"] == "You are supporting a team")
    old_proposals = proposals_of_any(server, request_id)
    add_supporters(server, THIRD)
    click(server, LEAD, Action.HAND_BACK, str(request_id))
    tick(server, 1)
    accept(server, offer_ids(server, request_id)[THIRD])
    tick(server, 1)
    assert read(server, lambda s: domain.seat_holders(s, request_id)) == [SECOND, THIRD]
    new_dm = fake.dm_channel([CALLER, SECOND, THIRD])
    assert new_dm and request_of(server, request_id).intro_channel == new_dm
    before = team_of(server, request_id)
    assert before.session_state == SessionState.NONE
    posts = len(fake.calls_to("chat.postMessage"))
    off, off_block = button(old_set, Action.CANCEL_SESSION)
    again, again_block = button(old_set, Action.RESCHEDULE_SESSION)
    post, post_block = button(old_invitation, Action.POST_INVITATION)
    for who, action, value, block_id, message in (
            (LEAD, Action.CANCEL_SESSION, off, off_block, old_set),  # no longer on it
            (LEAD, Action.PROPOSE_TIMES, button(old_case, Action.PROPOSE_TIMES)[0], "actions",
             old_case),
            (CALLER, Action.CANCEL_SESSION, off, off_block, old_set),  # an older version
            (SECOND, Action.RESCHEDULE_SESSION, again, again_block, old_set),
            (CALLER, Action.PICK_TIME, old_proposals[1], "actions", None),
            (CALLER, Action.POST_INVITATION, post, post_block, old_invitation)):
        heard = len(told(fake, who))
        click(server, who, action, value, block_id=block_id, message=message,
              channel=old_dm if message is old_set else None)
        assert len(told(fake, who)) == heard + 1, f"{who} is told why {action} did nothing"
    tick(server, 60)
    after = team_of(server, request_id)
    assert (after.session_state, after.session_version, after.session_at) == (
        before.session_state, before.session_version, None)
    assert len(fake.calls_to("chat.postMessage")) == posts, "nothing more is said"
    assert fake.calls_to("views.open") == []
    # The newcomer's own buttons work: times proposed in the new group DM, none in the old.
    assert propose(server, THIRD, request_id, T2) is None
    assert len(with_action(messages_in(fake, new_dm), Action.PICK_TIME)) == 1
    assert with_action(messages_in(fake, old_dm), Action.PICK_TIME) == []


def test_many_waiting_teams_with_the_longest_units_still_fit_every_screen(
        app_server: AppServer) -> None:
    from handlers import bootstrap_jobs

    server, fake = app_server, app_server.slack.fake
    fake.add_user(CALLER)
    for number in range(30):  # nobody on the roster: every one waits for a coordinator
        unit = LONGEST_UNIT[:-2] + f"{number:02d}"
        assert call_team(server, unit_typed=unit).json()["response_action"] == "update"
    bootstrap_jobs(server.runtime)
    tick(server, 18 * 3600)
    for person in (CALLER, COORDINATOR):
        server.slack.event({"type": "app_home_opened", "user": person, "tab": "home",
                            "channel": "D0HOME0001", "event_ts": "1.1"})
    server.settle()
    homes = {c.args["user_id"]: json.dumps(c.args["view"]) for c in fake.calls_to("views.publish")}
    assert set(homes) == {CALLER, COORDINATOR}
    digest = _posts(fake, fake.dm_channel([COORDINATOR]), having="still without a supporter")
    for text in (homes[CALLER], homes[COORDINATOR], *digest):
        assert escaped(LONGEST_UNIT[:-2]) in text and LONGEST_UNIT[:-2] not in text
    assert len(digest) == 1
    # (every view and message is checked against Slack's limits after the test)
