"""Buttons on a library page: filters and paging, answered by replacing the page in place."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.library.library import CATEGORIES
from handlers.common.ids import LIBRARY_ACTIONS
from handlers.library.blocks import AUDIENCE_LABELS, library_page

MAX_OFFSET = 10_000


def register(app: App) -> None:
    """Listen for every library navigation button."""
    app.action(LIBRARY_ACTIONS)(on_library_navigation)


def on_library_navigation(ack: Ack, action: dict[str, Any], respond: Respond,
                          context: dict[str, Any]) -> None:
    """Show the page the button asks for; a button with a state we did not write is ignored."""
    ack()
    state = parse_state(action.get("value"))
    if state is None:
        return
    library = context["services"].library
    page = library.find(state["q"], category=state["c"], audience=state["a"], offset=state["o"])
    respond(replace_original=True, response_type="ephemeral",
            **library_page(page, library.crisis_lines()))


def parse_state(value: Any) -> dict[str, Any] | None:
    """The list state a library button carries, or None if it is not one we could have made."""
    try:
        state = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if not isinstance(state, dict):
        return None
    query, category, audience, offset = (state.get(k) for k in ("q", "c", "a", "o"))
    if not isinstance(query, str) or len(query) > 200:
        return None
    if category is not None and category not in CATEGORIES:
        return None
    if audience is not None and audience not in AUDIENCE_LABELS:
        return None
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        return None
    return {"q": query, "c": category, "a": audience, "o": offset}
