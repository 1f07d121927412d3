"""`python -m bot demo`: the whole program played in the sandbox with time compressed, showing
what each person sees. Everyone acts only by what is on their screen (a command, a button's label,
a form field's label), so the story exercises the real app exactly as Slack would."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.infra.models import (
    CheckIn,
    PulseAnswer,
    RequestKind,
    RequestState,
    SessionState,
    SupportRequest,
    TeamRequest,
)
from bot.requests.service import seat_holders
from bot.sandbox.spec import load_default_spec
from bot.sandbox.world import SandboxError, World

DEFAULT_CHART = "peersupport-demo-chart.png"
CLINICIAN, SUPPORTER, LEADER = "UCLIN00001", "USUPP00001", "ULEAD00001"
# How six ICU staff answer the prompt "How supported do you feel...", by the buttons' labels.
STAFF_ANSWERS = {"USTAFF0001": "Mostly", "USTAFF0002": "Somewhat", "USTAFF0003": "Fully",
                 "USTAFF0004": "Mostly", "USTAFF0005": "A little", "USTAFF0006": "Mostly"}
PROGRAM_ZONE = ZoneInfo("America/New_York")
CHARGE_NURSE = "UCHARGE001"
TEAM_SUPPORTERS = ("USUPP00001", "USUPP00004")  # Dana Okafor and Tom Becker (in Berlin)
ASKING_MEMBERS = ("USTAFF0002", "USTAFF0005")  # two of the six ask to talk, privately
MEMBER_SUPPORTERS = ("USUPP00003", "USUPP00004")  # Priya Shah and Tom Becker take one each


class Story:
    """Prints each step of the story and then what appeared on people's screens."""

    def __init__(self, world: World, out: TextIO, *, quiet: bool, pace: float, steps: int):
        self.world = world
        self.out = out
        self.quiet = quiet
        self.pace = pace
        self.steps = steps
        self.number = 0

    def say(self, text: str = "") -> None:
        """Print one line of narration."""
        print(text, file=self.out, flush=True)

    def step(self, title: str, action: Callable[[], object]) -> None:
        """Do one step of the story, then show what each person sees now."""
        self.number += 1
        when = self.world.clock.now().astimezone(PROGRAM_ZONE).strftime("%a %d %b %H:%M")
        self.say(f"\n[{self.number}/{self.steps}] {when}  {title}")
        action()
        news = self.world.news_text()
        if news and not self.quiet:
            self.say(news)
        if self.pace:
            time.sleep(self.pace)


def play(out: TextIO = sys.stdout, *, chart: Path = Path(DEFAULT_CHART), quiet: bool = False,
         pace: float = 0.0) -> int:
    """Play the story; write the prompt's results chart to `chart`. 0 when every outcome came
    about, 1 otherwise."""
    if not pace >= 0:  # also refuses nan; the command line checks this before calling
        raise ValueError(f"pace must be 0 or more seconds, got {pace}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    world = World(spec=load_default_spec()).start()
    try:
        return _play(world, Story(world, out, quiet=quiet, pace=pace, steps=22), chart)
    except SandboxError as error:
        print(f"\nThe demo stopped: {error}", file=out)
        return 1
    finally:
        world.stop()


def _play(world: World, story: Story, chart: Path) -> int:
    name = world.name
    story.say("Peer support demo: the real app, a local stand-in for Slack, an embedded SQLite "
              "database and a seeded roster.")
    story.say("No Slack workspace and no tokens are used. Time is compressed: days pass in "
              "moments. Buttons are shown as [ Label ].")
    story.say("Nothing here is a real event or patient: the request form has nowhere to describe "
              "one, and the bot never asks.")
    story.step(f"{name(CLINICIAN)}, a clinician, types /peersupport",
               lambda: world.command(CLINICIAN, ""))

    def ask() -> None:
        world.fill(CLINICIAN, "How soon", "Today")
        world.fill(CLINICIAN, "Check-ins", "I'd welcome a few check-ins over the next weeks")
        world.submit(CLINICIAN)

    story.step(f"{name(CLINICIAN)} chooses Today, welcomes check-ins, and clicks "
               "[ Ask for support ]", ask)
    story.step(f"{name(SUPPORTER)}, a supporter, clicks [ Accept ]",
               lambda: world.click(SUPPORTER, "Accept"))
    story.step(f"After they talk, {name(SUPPORTER)} clicks [ Close the conversation ]",
               lambda: world.click(SUPPORTER, "Close the conversation"))

    def close() -> None:
        world.fill(SUPPORTER, "Roughly how long", "30 to 60 minutes")
        world.fill(SUPPORTER, "Did you suggest professional help", "No")
        world.fill(SUPPORTER, "In your judgement", "Yes")
        world.submit(SUPPORTER)

    story.step(f"{name(SUPPORTER)} answers the three closing questions and clicks [ Close ]", close)
    story.step("A day passes", lambda: world.advance(timedelta(days=1)))
    story.step(f"{name(CLINICIAN)} clicks [ Doing better ]",
               lambda: world.click(CLINICIAN, "Doing better"))
    story.step(f"{name(LEADER)}, a leader, types /peersupport pulse",
               lambda: world.command(LEADER, "pulse"))

    def prompt() -> None:
        world.fill(LEADER, "Question", "How supported do you feel by the team")
        world.fill(LEADER, "Post in", "#icu-team")
        world.fill(LEADER, "Department label", "ICU")
        world.fill(LEADER, "Open for", "1 day")
        world.submit(LEADER)

    story.step(f"{name(LEADER)} picks a question, #icu-team, open for a day, and clicks [ Post ]",
               prompt)
    story.step("A minute later the clock posts the prompt",
               lambda: world.advance(timedelta(minutes=1)))

    def answer() -> None:
        for user_id, label in STAFF_ANSWERS.items():
            world.click(user_id, label)

    story.step(f"{len(STAFF_ANSWERS)} people in #icu-team click an answer "
               "(stored without who gave it)", answer)
    story.step("A day later the prompt closes and the results arrive",
               lambda: world.advance(timedelta(days=1)))
    _team_story(world, story)
    return _outcomes(world, story, chart)


def _team_story(world: World, story: Story) -> None:
    """A charge nurse asks for her team: two supporters answer together, the team picks a time
    for a group conversation, and each member is reached privately."""
    name = world.name
    story.step(f"{name(CHARGE_NURSE)}, a charge nurse, types /peersupport team after a hard "
               "night on the unit", lambda: world.command(CHARGE_NURSE, "team"))

    def call() -> None:
        world.fill(CHARGE_NURSE, "Which unit", "ICU")
        world.fill(CHARGE_NURSE, "Roughly how many", "6 to 15")
        world.fill(CHARGE_NURSE, "How soon", "Today")
        world.fill(CHARGE_NURSE, "What would help", "A group conversation at a time the team "
                   "picks, Each person offered private support")
        world.fill(CHARGE_NURSE, "…or the team's channel", "#icu-team")
        world.submit(CHARGE_NURSE)

    story.step(f"{name(CHARGE_NURSE)} chooses ICU, 6 to 15 people, a group conversation and "
               "private support for each person, names #icu-team, and sends it", call)

    def accept() -> None:
        for supporter in TEAM_SUPPORTERS:
            world.click(supporter, "Accept")

    story.step(" and ".join(name(s) for s in TEAM_SUPPORTERS) + " each click [ Accept ]: two "
               "supporters together, as for any group of six or more", accept)
    lead = TEAM_SUPPORTERS[0]
    story.step(f"{name(lead)} clicks [ Propose times ]", lambda: world.click(lead, "Propose"))

    def propose() -> None:
        day = world.local_now(lead).date() + timedelta(days=1)
        world.fill(lead, "A time", f"{day} 14:00")
        world.fill(lead, "Another time", f"{day} 16:30")
        world.fill(lead, "Where", "ICU family room, 4th floor")
        world.submit(lead)

    story.step(f"{name(lead)} proposes two times tomorrow and where", propose)
    story.step(f"{name(CHARGE_NURSE)} clicks [ Pick ] on the first time",
               lambda: world.click(CHARGE_NURSE, "Pick"))
    story.step("A minute later each of the six is sent one private note",
               lambda: world.advance(timedelta(minutes=1)))

    def talk() -> None:
        for member in ASKING_MEMBERS:
            world.click(member, "Talk to a peer supporter")

    story.step("Two of them click [ Talk to a peer supporter ] (nobody else learns who)", talk)

    def accept_personal() -> None:
        for supporter in MEMBER_SUPPORTERS:
            world.click(supporter, "Accept")

    story.step(" and ".join(name(s) for s in MEMBER_SUPPORTERS) + " each click [ Accept ] on "
               "one of the two new personal requests", accept_personal)
    story.step("Three days pass", lambda: world.advance(timedelta(days=3)))


def _outcomes(world: World, story: Story, chart: Path) -> int:
    """Print the story's outcomes as found in the database and the stand-in; 1 if any is missing."""
    with world.runtime.sessions() as session:
        request = session.scalars(select(SupportRequest).where(
            SupportRequest.requester_id == CLINICIAN)).one()
        answered = session.scalars(select(CheckIn.answer).where(CheckIn.answer.is_not(None))).all()
        answers = len(session.scalars(select(PulseAnswer)).all())
        team_request = session.scalars(select(SupportRequest).where(
            SupportRequest.kind == RequestKind.TEAM)).one()
        team = session.get(TeamRequest, team_request.id)
        seated = seat_holders(session, team_request.id)
        caller_checkins = session.scalars(select(CheckIn).where(
            CheckIn.request_id == team_request.id, CheckIn.user_id == CHARGE_NURSE,
            CheckIn.sent_at.is_not(None))).all()
    assert team is not None
    image = world.file_content(".png")
    group_dm = world.fake.dm_channel([CLINICIAN, SUPPORTER])
    written = ""
    if image is not None:
        try:
            chart.write_bytes(image)
        except OSError as error:  # the command line checked the path, but it can change since
            written = f" ({error.strerror})"
    outcomes = [
        (request.supporter_id is not None,
         f"request {request.state}, accepted by {world.name(request.supporter_id or '')}"),
        (group_dm is not None and bool(world.fake.messages.get(group_dm)),
         f"introduced in a group DM: {world.name(CLINICIAN)} and {world.name(SUPPORTER)}"),
        (answered == ["better"], f"check-in answered: {', '.join(answered) or 'none'}"),
        (answers == len(STAFF_ANSWERS), f"prompt answered by {answers} people"),
        (seated == list(TEAM_SUPPORTERS) and team_request.state == RequestState.ASSIGNED,
         f"team request {team_request.state}, supported by "
         + " and ".join(world.name(s) for s in seated)),
        (team.session_state == SessionState.SET, "group conversation time picked: "
         + (team.session_at.astimezone(PROGRAM_ZONE).strftime("%a %d %b %H:%M %Z")
            if team.session_at else "none")),
        (team.reached == 6 and team.skipped == 0,
         f"team members reached privately: {team.reached}"),
        (team.asked_personal == len(ASKING_MEMBERS),
         f"asked for personal support from the note: {team.asked_personal} (a count only)"),
        (len(caller_checkins) == 1, "check-in about the team sent to "
         + world.name(CHARGE_NURSE)),
        (image is not None and image.startswith(b"\x89PNG") and not written,
         f"results chart written to {chart} ({len(image or b'')} bytes)" if not written
         else f"results chart not written to {chart}{written}"),
        # Without the spec nothing proves the calls are ones Slack accepts, so it is no pass.
        (world.spec is not None and not world.fake.violations,
         "every Slack call matched Slack's published Web API" if world.spec is not None else
         "Slack calls not checked: the Web API spec is absent (it ships in "
         "bot/sandbox/slack_api_specs; SLACK_API_SPECS_DIR, if set, must hold it)"),
    ]
    story.say("\nOutcomes:")
    for ok, text in outcomes:
        story.say(f"  {'ok ' if ok else 'MISSING'} {text}")
    for problem in world.fake.violations:
        story.say(f"  MISSING Slack call: {problem}")
    story.say("\nTry it yourself: ./run sandbox. To connect a real workspace, follow the "
              "go-live checklist in README.md.")
    return 0 if all(ok for ok, _ in outcomes) else 1
