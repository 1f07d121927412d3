"""Modals a supporter uses to say when they can help, and the answers they read back."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ContextBlock,
    DateTimePickerElement,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.infra.models import Supporter
from bot.roster.duty import WEEKDAYS, clock_text
from bot.roster.supporters import CASE_CAP_RANGE, COOLDOWN_CHOICES
from handlers.common.blockkit import escape
from handlers.common.ids import Action, Block, Callback

HALF_HOURS = list(range(0, 24 * 60, 30))
OFF = "off"


def hours_block_id(weekday: int, edge: str) -> str:
    """The block_id of one weekday's start or end select."""
    return f"{Block.HOURS}:{weekday}:{edge}"


def _time_options() -> list[Option]:
    return [Option(value=OFF, text="Off duty")] + [
        Option(value=str(minute), text=clock_text(minute)) for minute in HALF_HOURS]


def _initial(options: list[Option], value: str) -> Option | None:
    return next((o for o in options if o.value == value), None)


def away_until_modal(initial_epoch: int, tz: str) -> dict:
    """Ask until when a supporter is away, in their own time zone."""
    return View(
        type="modal", callback_id=Callback.AWAY_UNTIL, title="Away until",
        submit="Save", close="Cancel",
        blocks=[
            InputBlock(block_id=Block.AWAY_UNTIL, label="Back on",
                       element=DateTimePickerElement(action_id=Action.AWAY_UNTIL,
                                                     initial_date_time=initial_epoch)),
            ContextBlock(elements=[MarkdownTextObject(
                text=f"Times are in your Slack time zone ({escape(tz)}). You will not be "
                     "offered requests until then.")]),
        ]).to_dict()


def preferences_modal(supporter: Supporter) -> dict:
    """Weekly hours, the most cases at once, and the rest after a case."""
    options = _time_options()
    by_day = {h.weekday: h for h in supporter.hours}
    blocks: list = [SectionBlock(text=MarkdownTextObject(
        text=f"Set the hours you can take requests, in your time zone ({escape(supporter.tz)}). "
             "Leave every day off duty to be on duty whenever you are available. An end "
             "earlier than the start runs overnight."))]
    for weekday, name in enumerate(WEEKDAYS):
        window = by_day.get(weekday)
        for edge, label in (("start", f"{name}: from"), ("end", f"{name}: until")):
            value = OFF if window is None else str(
                window.start_minute if edge == "start" else window.end_minute)
            blocks.append(InputBlock(
                block_id=hours_block_id(weekday, edge), label=label, optional=True,
                element=StaticSelectElement(
                    action_id=Action.HOURS_START if edge == "start" else Action.HOURS_END,
                    options=options, initial_option=_initial(options, value))))
    low, high = CASE_CAP_RANGE
    cooldowns = [Option(value=str(h), text="No rest" if h == 0 else f"{h} hours")
                 for h in COOLDOWN_CHOICES]
    blocks.extend([
        InputBlock(block_id=Block.CASE_CAP, label="Most active cases at once",
                   element=NumberInputElement(action_id=Action.CASE_CAP, is_decimal_allowed=False,
                                              min_value=str(low), max_value=str(high),
                                              initial_value=str(supporter.case_cap))),
        InputBlock(block_id=Block.COOLDOWN, label="Rest after a case closes",
                   element=StaticSelectElement(
                       action_id=Action.COOLDOWN, options=cooldowns,
                       initial_option=_initial(cooldowns, str(supporter.cooldown_hours)))),
    ])
    return View(type="modal", callback_id=Callback.PREFERENCES, title="Hours and limits",
                submit="Save", close="Cancel", blocks=blocks).to_dict()

