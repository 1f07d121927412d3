"""Block Kit for the resource library: result pages, single entries, crisis lines and tips."""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.library import Entry, ResultsPage, Surfacing
from bot.library.library import CATEGORIES
from handlers.common.blockkit import escape, to_dicts
from handlers.common.ids import PEERSUPPORT_COMMAND, Action
from handlers.common.ids import Block as BlockId

AUDIENCE_LABELS = {"clinician": "Clinicians", "supporter": "Supporters", "leader": "Leaders",
                   "coordinator": "Coordinators"}
TYPE_LABELS = {"research": "Research", "story": "Story", "tool": "Tool"}


def _link(url: str, text: str) -> str:
    # Inside <url|text>, a '|' or '>' in the text would end the link early.
    return f"<{url}|{escape(text).replace('|', '¦')}>"


def _site(url: str) -> str:
    return urlsplit(url).netloc.removeprefix("www.")


def entry_text(entry: Entry) -> str:
    """The mrkdwn for one entry: linked title, summary, and where to find it."""
    title = _link(entry.address, entry.title) if entry.address and not entry.site_only \
        else escape(entry.title)
    if entry.kind == "crisis":
        return f"{crisis_line(entry)}\n{escape(entry.summary)}"
    lines = [f"*{title}*", escape(entry.summary)]
    if entry.site_only and entry.address:
        lines.append(f"On {_link(entry.address, _site(entry.address))}. "
                     f"{escape(entry.where or '')}".rstrip())
    return "\n".join(line for line in lines if line)


def crisis_line(entry: Entry) -> str:
    """One line saying how to reach a crisis or professional-help service."""
    reach = [f"*{escape(entry.phone)}*" if entry.phone else "",
             escape(entry.hours) if entry.hours else "",
             _link(entry.address, _site(entry.address)) if entry.address else ""]
    return f"*{escape(entry.title)}*: " + " · ".join(part for part in reach if part)


def entry_context(entry: Entry) -> str:
    """A short line under an entry: its type, audience and source."""
    parts = []
    if entry.types:
        parts.append(" · ".join(TYPE_LABELS[t] for t in entry.types))
    parts.append("For " + ", ".join(AUDIENCE_LABELS[a].lower() for a in entry.audience))
    if entry.source:
        parts.append(escape(entry.source))
    return "  |  ".join(parts)


def entry_blocks(entry: Entry) -> list[Block]:
    """One entry as a section with a context line under it."""
    return [SectionBlock(text=MarkdownTextObject(text=entry_text(entry))),
            ContextBlock(elements=[MarkdownTextObject(text=entry_context(entry))])]


def _state(page: ResultsPage, **changes: object) -> str:
    state = {"q": page.query[:200], "c": page.category, "a": page.audience, "o": page.offset}
    state.update(changes)
    return json.dumps(state, separators=(",", ":"))


def library_page(page: ResultsPage, crisis: Sequence[Entry] = ()) -> dict:
    """An ephemeral page of search or browse results, with filters and paging."""
    blocks: list[Block] = []
    if page.query:
        shown = page.query if len(page.query) <= 60 else page.query[:57] + "..."
        blocks.append(HeaderBlock(text=f"Resources for “{shown}”"))
    else:
        heading = CATEGORIES.get(page.category or "", "Toolkit resources")
        if page.audience:
            heading += f" for {AUDIENCE_LABELS[page.audience].lower()}"
        blocks.append(HeaderBlock(text=heading))
        blocks.extend(_filters(page))
    if not page.entries:
        hint = (f"Try other words, or browse with `{PEERSUPPORT_COMMAND} resources`."
                if page.query else "Nothing here yet.")
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"Nothing found. {hint}")))
    for entry in page.entries:
        blocks.extend(entry_blocks(entry))
    navigation = []
    if page.has_previous:
        navigation.append(ButtonElement(
            text="Previous", action_id=Action.LIBRARY_PREVIOUS,
            value=_state(page, o=max(0, page.offset - page.limit))))
    if page.has_more:
        start = page.offset + page.limit + 1
        end = min(page.total, page.offset + 2 * page.limit)
        navigation.append(ButtonElement(
            text=f"More ({start}–{end} of {page.total})", action_id=Action.LIBRARY_NEXT,
            value=_state(page, o=page.offset + page.limit)))
    if navigation:
        blocks.append(ActionsBlock(block_id=BlockId.LIBRARY_NAVIGATION, elements=navigation))
    if crisis:
        first = crisis[0]
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"Not safe right now? {escape(first.title)}: "
                 f"*{escape(first.phone or _site(first.address or ''))}*"
                 f"{', ' + escape(first.hours) if first.hours else ''}.")]))
    count = f"{page.total} result{'s' if page.total != 1 else ''}"
    return {"text": f"Peer support resources: {count}", "blocks": to_dicts(blocks)}


def _filters(page: ResultsPage) -> list[Block]:
    categories = [ButtonElement(
        text=f"{label} ({page.counts.get(name, 0)})", action_id=f"{Action.LIBRARY_CATEGORY}:{name}",
        value=_state(page, c=name, o=0), style="primary" if name == page.category else None)
        for name, label in CATEGORIES.items()]
    audiences = [ButtonElement(
        text=f"For {label.lower()}", action_id=f"{Action.LIBRARY_AUDIENCE}:{name}",
        value=_state(page, a=None if name == page.audience else name, o=0),
        style="primary" if name == page.audience else None)
        for name, label in AUDIENCE_LABELS.items()]
    return [ActionsBlock(block_id=BlockId.LIBRARY_CATEGORIES, elements=categories),
            ActionsBlock(block_id=BlockId.LIBRARY_AUDIENCES, elements=audiences),
            DividerBlock()]


def crisis_blocks(entries: Sequence[Entry], heading: str = "If you need help now") -> list[dict]:
    """Crisis and professional-help lines, for DMs, the Home tab and check-in answers."""
    if not entries:
        return []
    text = f"*{escape(heading)}*\n" + "\n".join("• " + crisis_line(entry) for entry in entries)
    return to_dicts([SectionBlock(text=MarkdownTextObject(text=text))])


def tips_blocks(tips: Sequence[Entry]) -> list[dict]:
    """Just-in-time tips for a supporter, one short section each."""
    blocks: list[Block] = []
    for tip in tips:
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=f"*{escape(tip.title)}*\n{escape(tip.summary)}")))
    return to_dicts(blocks)


def surfacing_blocks(surfacing: Surfacing, *, resources_heading: str = "You may find these useful"
                     ) -> list[dict]:
    """Everything one moment offers: tips, guidance, resources, then crisis lines."""
    blocks: list[dict] = []
    if surfacing.tips:
        blocks.extend(to_dicts([HeaderBlock(text="Before you meet")]))
        blocks.extend(tips_blocks(surfacing.tips))
    if surfacing.guidance:
        blocks.extend(to_dicts([HeaderBlock(text="What helps teams after a medical error")]))
        for entry in surfacing.guidance:
            blocks.extend(to_dicts([SectionBlock(text=MarkdownTextObject(
                text=f"*{escape(entry.title)}*\n{escape(entry.summary)}"))]))
    if surfacing.resources:
        blocks.extend(to_dicts([SectionBlock(text=MarkdownTextObject(
            text=f"*{escape(resources_heading)}*"))]))
        for entry in surfacing.resources:
            blocks.extend(to_dicts(entry_blocks(entry)))
    blocks.extend(crisis_blocks(surfacing.crisis))
    return blocks
