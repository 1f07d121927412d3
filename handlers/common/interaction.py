"""Reading what people submitted in Slack, and answering them privately: shared by listeners."""

from __future__ import annotations

from typing import Any

from slack_bolt import Respond

# The largest whole number read from a request: PostgreSQL's INTEGER, the type of every row id.
MAX_WHOLE_NUMBER = 2**31 - 1
_MAX_DIGITS = len(str(MAX_WHOLE_NUMBER))
# The keys under which Slack puts an input element's value, by element type.
_VALUE_KEYS = ("selected_date_time", "selected_conversation", "selected_user", "selected_time",
               "value")


def submitted(values: dict[str, Any], block: str) -> Any:
    """The value of the single element in a modal's input block: an option's value, a list of
    values for checkboxes, a date-time, a conversation, a time, or typed text; None if absent."""
    elements = values.get(block)
    element = next(iter(elements.values()), None) if isinstance(elements, dict) else None
    if not isinstance(element, dict):
        return None
    if "selected_options" in element:
        return [o.get("value") for o in element["selected_options"] or [] if isinstance(o, dict)]
    selected = element.get("selected_option")
    if isinstance(selected, dict):
        return selected.get("value")
    return next((element[key] for key in _VALUE_KEYS if element.get(key) is not None), None)


def whole_number(value: Any) -> int | None:
    """A button value or number input as an int from 0 to MAX_WHOLE_NUMBER, or None."""
    # Plain ASCII digits only: int() would also take "+7", " 7 ", "1_000" and other scripts'
    # digits, and an id beyond PostgreSQL's INTEGER would fail in the database instead of finding
    # nothing. 0 is kept: it is a first choice, a midnight, a Monday.
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() \
            or len(value) > _MAX_DIGITS:
        return None
    number = int(value)
    return number if number <= MAX_WHOLE_NUMBER else None


def reply_privately(respond: Respond, text: str) -> None:
    """A note only the clicker sees, leaving the message they clicked as it was."""
    respond(response_type="ephemeral", replace_original=False, text=text)
