"""The app's health as coordinators see it: the Health section of their Home, and the DMs that
tell them the clock stopped and that it is back."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.infra.health import ClockStatus, Health
from handlers.common.blockkit import date_token, escape, to_dicts

WAITING = ("check-ins, reminders to supporters, the next waves of offers and escalations to "
           "coordinators are waiting")
ASK = "Ask whoever runs the app to restart its clock process."


def _text(markdown: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=markdown))


def _last_run(clock: ClockStatus) -> str:
    if clock.ticked_at is not None:
        return f"last ran {date_token(clock.ticked_at)}"
    if clock.since is not None:
        return f"has not run since {date_token(clock.since)}"
    return "has not run yet"


def clock_line(clock: ClockStatus) -> str:
    """One line on the clock: running, stopped, or not run yet."""
    if clock.stale:
        return (f":warning: *The app's clock has stopped* ({_last_run(clock)}): {WAITING}. "
                f"New requests still go out to supporters. {ASK}")
    if clock.ticked_at is None:
        return (":hourglass: The app's clock has not run yet. If this lasts more than a few "
                "minutes, ask whoever runs the app to start its clock process.")
    return (f":white_check_mark: The app's clock is running ({_last_run(clock)}): check-ins, "
            "reminders and escalations go out on time.")


def health_blocks(health: Health) -> list[Block]:
    """The Health section of a coordinator's Home: the clock, and messages Slack refuses."""
    blocks: list[Block] = [DividerBlock(), HeaderBlock(text="Health"), _text(clock_line(health.clock))]
    held = health.refusals.held_back
    if held:
        errors = ", ".join(f"`{escape(error)}`" for error in health.refusals.errors[:5])
        blocks.append(_text(
            f":warning: *Slack is refusing the app:* {held} message{'s' if held != 1 else ''} "
            f"held back ({errors}). They go out once the app's token or permissions are fixed: "
            "ask whoever runs the app to run `python -m bot doctor`."))
    return blocks


def clock_stopped_message(clock: ClockStatus) -> dict:
    """The DM telling a coordinator the clock has stopped."""
    title = "The peer support app's clock has stopped"
    blocks = [
        _text(f":warning: *{title}.* It {_last_run(clock)}.\nUntil it runs again, {WAITING}. "
              "New requests still go out to supporters, so keep an eye on waiting requests in "
              "the app's Home tab."),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"{ASK} You will get a message here when it is running again.")]),
    ]
    return {"text": title, "blocks": to_dicts(blocks)}


def clock_back_message(clock: ClockStatus) -> dict:
    """The DM telling a coordinator the clock is running again."""
    title = "The peer support app's clock is running again"
    ran = f" (it ran {date_token(clock.ticked_at)})" if clock.ticked_at is not None else ""
    blocks = [_text(f":white_check_mark: *{title}*{ran}. Check-ins, reminders and escalations "
                    "are back on time, and what fell due while it was stopped is being caught up.")]
    return {"text": title, "blocks": to_dicts(blocks)}
