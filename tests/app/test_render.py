"""The Block Kit renderer: what the demo and the sandbox print for a message, a form or a Home."""

from __future__ import annotations

from bot.sandbox.render import buttons, mrkdwn, render_blocks, render_view
from handlers.requests.blocks import request_modal

NAMES = {"UCLIN00001": "Alex Rivera", "C0ICU0001": "icu-team"}.get


def test_buttons_sections_and_contexts_read_as_text() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "An offer"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*When:* Today &amp; now"},
         "accessory": {"type": "button", "text": {"type": "plain_text", "text": "Details"},
                       "action_id": "details"}},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "for <@UCLIN00001>"},
                                         {"type": "plain_text", "text": "in <#C0ICU0001>"}]},
        {"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Accept"}, "action_id": "a"},
            {"type": "button", "text": {"type": "plain_text", "text": "Decline"}, "action_id": "d"},
        ]},
    ]
    text = render_blocks(blocks, names=NAMES)
    assert text.splitlines() == [
        "# An offer", "*When:* Today & now", "[ Details ]", "-" * 40,
        "  for @Alex Rivera  ·  in <#C0ICU0001>", "[ Accept ]  [ Decline ]"]
    assert [label for label, _, _ in buttons(blocks)] == ["Details", "Accept", "Decline"]


def test_links_mentions_and_text_only_messages() -> None:
    assert mrkdwn("See <https://988lifeline.org|the line> or <tel:988>", NAMES) == \
        "See the line (https://988lifeline.org) or 988"
    assert mrkdwn("<#C0ICU0001> <!here>", NAMES) == "#icu-team @here"
    assert render_blocks(None, "Plain fallback") == "Plain fallback"


def test_a_form_shows_its_fields_choices_and_what_was_filled_in() -> None:
    view = request_modal(departments=["ICU", "Pharmacy"])
    urgency = next(b for b in view["blocks"] if b.get("block_id") == "urgency")
    state = {"urgency": {urgency["element"]["action_id"]: {
        "type": "radio_buttons", "selected_option": {"value": "today"}}}}
    text = render_view(view, state=state)
    assert text.startswith("== Peer support ==")
    assert "How soon would you like to talk?:" in text
    assert "( ) As soon as possible" in text and "(*) Today" in text
    assert "[ Choose your department v ]  choices: ICU | Pharmacy" in text
    assert text.rstrip().endswith("[ Cancel ]  [ Ask for support ]")
