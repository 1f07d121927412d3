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

from bot.infra.models import CheckIn, PulseAnswer, SupportRequest
from bot.sandbox.spec import load_default_spec
from bot.sandbox.world import SandboxError, World

DEFAULT_CHART = "peersupport-demo-chart.png"
CLINICIAN, SUPPORTER, LEADER = "UCLIN00001", "USUPP00001", "ULEAD00001"
# How six ICU staff answer the prompt "How supported do you feel...", by the buttons' labels.
STAFF_ANSWERS = {"USTAFF0001": "Mostly", "USTAFF0002": "Somewhat", "USTAFF0003": "Fully",
                 "USTAFF0004": "Mostly", "USTAFF0005": "A little", "USTAFF0006": "Mostly"}
PROGRAM_ZONE = ZoneInfo("America/New_York")


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
        return _play(world, Story(world, out, quiet=quiet, pace=pace, steps=12), chart)
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
    return _outcomes(world, story, chart)


def _outcomes(world: World, story: Story, chart: Path) -> int:
    """Print the story's outcomes as found in the database and the stand-in; 1 if any is missing."""
    with world.runtime.sessions() as session:
        request = session.scalars(select(SupportRequest)).one()
        answered = session.scalars(select(CheckIn.answer).where(CheckIn.answer.is_not(None))).all()
        answers = len(session.scalars(select(PulseAnswer)).all())
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
