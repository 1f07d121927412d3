"""The /peersupport slash command: one entry point, dispatched by its first word."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltResponse, Respond

from handlers.checkins.listeners import checkins_command
from handlers.commands.help import help_message
from handlers.common.ids import PEERSUPPORT_COMMAND
from handlers.common.invocation import Invocation
from handlers.common.middleware import AFTER_ANSWER, in_transaction, transactional
from handlers.library.blocks import library_page
from handlers.pulses.listeners import insights_command, pulse_command, results_command
from handlers.requests.listeners import open_request, open_team_request
from handlers.roster.listeners import available_command, away_command, roster_command


@dataclass(frozen=True)
class Subcommand:
    """A word after /peersupport, what it does, and the function that does it."""

    name: str
    usage: str
    summary: str
    run: Callable[[Invocation], None]


def _help(call: Invocation) -> None:
    call.ack(response_type="ephemeral", **help_message(_listing()))


def _resources(call: Invocation) -> None:
    # The library is in memory and a lookup takes well under a millisecond, so the answer
    # travels with the acknowledgement itself: one round trip, nothing after it.
    library = call.context["services"].library
    call.ack(response_type="ephemeral",
             **library_page(library.find(call.args), library.crisis_lines()))


def _team(call: Invocation) -> None:
    # As the command alone does for one person: the form opens at once.
    call.ack()
    open_team_request(call.context["services"], call.context["db"], call.user_id,
                      call.trigger_id)


SUBCOMMANDS: dict[str, Subcommand] = {
    sub.name: sub
    for sub in (
        Subcommand("team", "team",
                   "Ask for support for your team after a hard event: one or two peer "
                   "supporters come alongside the team.", _team),
        Subcommand("resources", "resources [words]",
                   "Find toolkit resources, or browse them all by type and audience.", _resources),
        Subcommand("checkins", "checkins",
                   "See, move or cancel your coming check-ins, and choose their hours.",
                   checkins_command),
        Subcommand("available", "available",
                   "Supporters: take requests again from now.", available_command),
        Subcommand("away", "away [until tomorrow | friday 18:00 | 3d]",
                   "Supporters: stop requests, until you return or until a time.", away_command),
        Subcommand("roster", "roster add|remove|list",
                   "Coordinators: manage the peer supporter roster.", roster_command),
        Subcommand("pulse", "pulse", "Leaders: post an anonymous wellbeing prompt.",
                   pulse_command),
        Subcommand("results", "results",
                   "Leaders: your prompts' results (chart and CSV by DM).", results_command),
        Subcommand("insights", "insights",
                   "Coordinators and leaders: program figures.", insights_command),
        Subcommand("help", "help", "Show this list.", _help),
    )
}


# The command alone is the one most people need, so it leads the list.
ASK = ("", "Ask for support: a trained peer supporter gets in touch with you, privately.")


def _listing() -> list[tuple[str, str]]:
    return [ASK, *((sub.usage, sub.summary) for sub in SUBCOMMANDS.values())]


def register(app: App) -> None:
    """Listen for /peersupport."""
    app.command(PEERSUPPORT_COMMAND, middleware=[open_after_answering])(on_peersupport)


def open_after_answering(body: dict[str, Any], context: dict[str, Any],
                         next: Callable[[], None]) -> BoltResponse | None:  # noqa: A002 - Bolt's
    """The command alone opens the form. Where the transport runs work once Slack has its
    answer (HTTP), answer at once and open the form then, in the same thread: no listener
    thread, no wait for an ack(), and the thread stays busy until the form is open, so a burst
    of commands cannot outrun the forms they open. Anything else runs the listener as usual."""
    run_after = context.get(AFTER_ANSWER)
    if run_after is None or _words(body)[0]:
        next()
        return None
    run_after(lambda: in_transaction(context["db"], lambda: _open_form(body, context)))
    return BoltResponse(status=200, body="")


def _words(command: dict[str, Any]) -> tuple[str, str]:
    """The command's first word (empty when it came alone) and the rest."""
    word, _, rest = str(command.get("text") or "").strip().partition(" ")
    return word, rest


def _open_form(command: dict[str, Any], context: dict[str, Any]) -> None:
    open_request(context["services"], context["db"], str(command.get("user_id", "")),
                 str(command.get("trigger_id", "")))


@transactional
def on_peersupport(ack: Ack, respond: Respond, command: dict[str, Any],
                   context: dict[str, Any]) -> None:
    """Alone, /peersupport asks for support; otherwise dispatch by its first word, and an
    unknown word gets the help list."""
    word, rest = _words(command)
    if not word:
        # The command alone asks for support: the modal opens at once.
        ack()
        _open_form(command, context)
        return
    sub = SUBCOMMANDS.get(word.lower())
    if sub is None:
        ack(response_type="ephemeral", **help_message(_listing(), unknown=word))
        return
    sub.run(Invocation(
        ack=ack, respond=respond, user_id=str(command.get("user_id", "")),
        channel_id=str(command.get("channel_id", "")),
        trigger_id=str(command.get("trigger_id", "")), args=rest.strip(), context=context,
    ))
