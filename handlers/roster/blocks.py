"""Messages for roster management and coverage warnings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.infra.models import Supporter
from bot.roster.duty import Gap, is_on_duty
from bot.roster.supporters import ROLE_LABELS
from handlers.common.blockkit import escape, notice, to_dicts
from handlers.home.blocks import gap_summary

SECTION_CHARS = 2900
MAX_SECTIONS = 40


def roster_changed(added: Sequence[str], changed: Sequence[str], unchanged: Sequence[str],
                   removed: Sequence[str] = (), missing: Sequence[str] = ()) -> dict:
    """What a roster add or remove did, person by person."""
    lines = []
    for label, ids in (("Added", added), ("Updated", changed), ("Already on the roster", unchanged),
                       ("Removed", removed), ("Not on the roster", missing)):
        if ids:
            lines.append(f"*{label}:* " + ", ".join(f"<@{uid}>" for uid in ids))
    return notice("\n".join(lines) or "Nothing changed.")


def roster_list(supporters: Sequence[Supporter], now: datetime) -> dict:
    """The roster by department, with who is on duty now; long rosters are cut, with a hint."""
    if not supporters:
        return notice("The roster is empty. Add supporters with `/peersupport roster add @name` "
                      "or `python -m bot roster import FILE.csv`.")
    sections: list[str] = []
    current = ""
    department = None
    shown = 0
    for supporter in supporters:
        line = (f"<@{supporter.user_id}> · {ROLE_LABELS.get(supporter.role, supporter.role)}"
                + (" · on duty" if is_on_duty(supporter, now) else ""))
        if supporter.department != department:
            department = supporter.department
            line = f"*{escape(department) or 'No department'}*\n{line}"
        if len(current) + len(line) + 1 > SECTION_CHARS:
            sections.append(current)
            current = ""
            if len(sections) == MAX_SECTIONS:
                break
        current = f"{current}\n{line}" if current else line
        shown += 1
    if current and len(sections) < MAX_SECTIONS:
        sections.append(current)
    blocks = [HeaderBlock(text=f"Peer supporters: {len(supporters)}")]
    blocks.extend(SectionBlock(text=MarkdownTextObject(text=s)) for s in sections)
    if shown < len(supporters):
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"{len(supporters) - shown} more not shown: export the whole roster with "
                 "`python -m bot roster export`.")]))
    return {"text": f"Peer supporters: {len(supporters)}", "blocks": to_dicts(blocks)}


def coverage_warning(gaps: Sequence[Gap], minimum: int, timezone: str, total: int) -> dict:
    """The daily DM to coordinators when the coming hours are short of supporters."""
    text = gap_summary(list(gaps), minimum, timezone)
    blocks = [HeaderBlock(text="Peer support coverage ahead"),
              SectionBlock(text=MarkdownTextObject(text=":warning: " + text)),
              ContextBlock(elements=[MarkdownTextObject(
                  text=f"{total} supporters on the roster. Ask supporters to set their hours "
                       "or availability in the app's Home tab.")])]
    return {"text": "Peer support coverage is short ahead", "blocks": to_dicts(blocks)}
