"""Block Kit as readable terminal text: sections, contexts, inputs, and buttons shown as [ Label ]."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

Names = Callable[[str], str]

_MENTION = re.compile(r"<([@#!])([^>|]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto|tel):[^>|]+)(?:\|([^>]*))?>")


def _plain_name(identifier: str) -> str:
    return identifier


def mrkdwn(text: str, names: Names = _plain_name) -> str:
    """Slack's mrkdwn as plain text: links as `label (address)`, mentions as @Name and #channel."""

    def mention(match: re.Match[str]) -> str:
        sigil, target, label = match.groups()
        if sigil == "!" and target.startswith("date^"):
            # A time in the reader's own zone, when `names` knows the reader; else its fallback.
            shown = names(target)
            return shown if shown != target else (label or target)
        if sigil == "!":
            return f"@{label or target.split('^')[0]}"
        return f"{sigil}{label or names(target)}"

    def link(match: re.Match[str]) -> str:
        address, label = match.groups()
        shown = address.removeprefix("mailto:").removeprefix("tel:")
        return f"{label} ({shown})" if label and label != shown else shown

    return html.unescape(_MENTION.sub(mention, _LINK.sub(link, text)))


def _text(obj: Any, names: Names) -> str:
    if isinstance(obj, str):
        return mrkdwn(obj, names)
    if not isinstance(obj, Mapping):
        return ""
    if obj.get("type") == "plain_text":
        return html.unescape(str(obj.get("text", "")))
    return mrkdwn(str(obj.get("text", "")), names)


def _option_text(option: Mapping[str, Any], names: Names) -> str:
    return _text(option.get("text"), names)


def element_line(element: Mapping[str, Any], names: Names = _plain_name) -> str:
    """One interactive element on one line: a button as [ Label ], a menu as [ choice v ]."""
    kind = element.get("type")
    if kind == "button":
        label = _text(element.get("text"), names)
        return f"[ {label} ]" + (f" -> {element['url']}" if element.get("url") else "")
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("mrkdwn", "plain_text"):
        return _text(element, names)
    if kind == "overflow":
        return "[ ... ]"
    chosen = element.get("initial_option")
    shown = _option_text(chosen, names) if chosen else _text(element.get("placeholder"), names)
    return f"[ {shown or 'choose'} v ]"


def _input_lines(block: Mapping[str, Any], names: Names,
                 state: Mapping[str, Any] | None) -> list[str]:
    element = block.get("element") or {}
    label = _text(block.get("label"), names) + ("" if not block.get("optional") else " (optional)")
    lines = [f"{label}:"]
    current = next(iter((state or {}).values()), None) or {}
    kind = element.get("type")
    if kind in ("radio_buttons", "checkboxes"):
        if current:
            picked = current.get("selected_options") or [current.get("selected_option")]
        else:
            picked = element.get("initial_options") or [element.get("initial_option")]
        values = {o.get("value") for o in picked if isinstance(o, Mapping)}
        marks = ("( )", "(*)") if kind == "radio_buttons" else ("[ ]", "[x]")
        for option in element.get("options", []):
            lines.append(f"  {marks[option.get('value') in values]} {_option_text(option, names)}")
    elif kind in ("static_select", "multi_static_select"):
        chosen = current.get("selected_option") or element.get("initial_option")
        shown = _option_text(chosen, names) if chosen else _text(element.get("placeholder"), names)
        options = [o for group in element.get("option_groups", []) for o in group["options"]]
        options += element.get("options", [])
        lines.append(f"  [ {shown or 'choose'} v ]  choices: "
                     + " | ".join(_option_text(o, names) for o in options))
    else:
        value = next((v for k, v in current.items() if k != "type" and v not in (None, "", [])),
                     None) if current else None
        value = value if value is not None else next(
            (element[k] for k in element if k.startswith("initial_")), None)
        placeholder = _text(element.get("placeholder"), names)
        if isinstance(value, str) and value.startswith(("U", "C")) and kind != "plain_text_input":
            value = names(value)
        lines.append(f"  [ {value if value not in (None, '') else placeholder or '______'} ]")
    if block.get("hint"):
        lines.append(f"  ({_text(block['hint'], names)})")
    return lines


def render_blocks(blocks: Any, text: str = "", names: Names = _plain_name,
                  state: Mapping[str, Any] | None = None) -> str:
    """Blocks as lines of text; the message's `text` when it has no blocks."""
    if not blocks:
        return mrkdwn(text or "", names)
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"# {_text(block.get('text'), names)}")
        elif kind == "section":
            if block.get("text"):
                lines.append(_text(block["text"], names))
            lines.extend(_text(field, names) for field in block.get("fields", []))
            if block.get("accessory"):
                lines.append(element_line(block["accessory"], names))
        elif kind == "context":
            lines.append("  " + "  ·  ".join(element_line(e, names) for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append("-" * 40)
        elif kind == "actions":
            lines.append("  ".join(element_line(e, names) for e in block.get("elements", [])))
        elif kind == "input":
            lines.extend(_input_lines(block, names, (state or {}).get(block.get("block_id", ""))))
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "rich_text":
            lines.append(_rich_text(block))
        else:
            lines.append(f"[{kind} block]")
    return "\n".join(lines)


def _rich_text(node: Any) -> str:
    if isinstance(node, Mapping):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        return "".join(_rich_text(child) for child in node.get("elements", []))
    return ""


def render_view(view: Mapping[str, Any], names: Names = _plain_name,
                state: Mapping[str, Any] | None = None) -> str:
    """A modal or Home tab: its title, its blocks (with what has been filled in), its buttons."""
    lines = []
    if view.get("title"):
        lines.append(f"== {_text(view['title'], names)} ==")
    lines.append(render_blocks(view.get("blocks"), names=names, state=state))
    footer = [f"[ {_text(view[key], names)} ]" for key in ("close", "submit") if view.get(key)]
    if footer:
        lines.append("  ".join(footer))
    return "\n".join(lines)


def buttons(blocks: Any) -> list[tuple[str, Mapping[str, Any], str]]:
    """Every button in these blocks as (label, element, block_id), in reading order."""
    found = []
    for block in blocks or []:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") == "button":
                found.append((_text(element.get("text"), _plain_name), element,
                              block.get("block_id", "")))
    return found
