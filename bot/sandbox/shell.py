"""`python -m bot sandbox`: act as anyone in the sandbox workspace from the terminal."""

from __future__ import annotations

import cmd
import logging
import re
import sys
from datetime import timedelta
from typing import TextIO

from bot.sandbox.spec import load_default_spec
from bot.sandbox.world import PEOPLE, SandboxError, World

HELP = """Commands (you act as one person at a time; the prompt shows who):
  users                       everyone in the workspace, with their part in the program
  as NAME                     act as someone: an id (UCLIN00001), a full or first name (alex)
  /peersupport [words]        type the slash command, e.g. /peersupport pulse
  click LABEL                 click the newest button with that label you can see (form, messages,
                              Home), e.g. click Accept; a form's own buttons too, e.g. click Cancel
  fill LABEL = VALUE          fill a field of your open form by its label, e.g. fill How soon = Today
                              (a choice by its label; several checkboxes separated by commas,
                              a single one as yes or no; a channel as #name; a person by name;
                              a time as HH:MM)
  form                        show your open form with what you filled in
  submit                      submit your open form
  close                       close your open form without submitting
  dms [NAME]                  read your (or someone's) DMs, group DMs and private notes
  home [NAME]                 open your (or someone's) Home tab
  channel #NAME               read a channel (#general, #icu-team)
  advance DURATION            move the clock on (1d, 3h, 30m, 1d12h) and run what falls due
  help                        this list
  quit                        leave (also Ctrl-D)
After each action the shell shows what appeared on anyone's screen. The prompt shows the time
where the person you act as is."""

_DURATION = re.compile(r"(\d+)\s*([dhms])")
_QUOTED_LABEL = re.compile(r"""^(["'])(.+?)\1\s*=?\s*(.*)$""")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """'1d', '3h', '1d12h', '90s' as a timedelta."""
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise SandboxError(f"{text!r} is not a duration; write it like 1d, 3h, 30m or 1d12h")
    return sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())


class SandboxShell(cmd.Cmd):
    """The interactive session: one line, one action, then what changed on people's screens."""

    intro = ("Peer support sandbox: the real app with a local stand-in for Slack; no workspace, "
             "no tokens.\nType help for the commands, users for who is here.")

    def __init__(self, world: World, stdin: TextIO | None = None, stdout: TextIO | None = None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.use_rawinput = stdin is None and sys.stdin.isatty()
        self.world = world
        self.me = PEOPLE[0].id
        self._set_prompt()

    def _set_prompt(self) -> None:
        local = self.world.local_now(self.me)
        self.prompt = f"({self.world.name(self.me)}, {local:%a %H:%M %Z}) > "

    def say(self, text: str) -> None:
        """Print a line to the session."""
        self.stdout.write(text + "\n")

    def onecmd(self, line: str) -> bool:
        """Run one command; a sandbox error is shown plainly and nothing changes."""
        try:
            stop = super().onecmd(line)
        except SandboxError as error:
            self.say(f"! {error}")
            return False
        news = self.world.news_text()
        if news:
            self.say(news)
        self._set_prompt()  # the clock may have moved
        return bool(stop)

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        if line.startswith("/"):
            command, _, text = line.partition(" ")
            self.world.command(self.me, text.strip(), command=command)
            return False
        if line == "EOF":
            return True
        word = line.split()[0]
        self.say(f"! unknown command {word!r}; type help for the list")
        return False

    def do_help(self, arg: str) -> None:
        """Show the commands."""
        self.say(HELP)

    def do_users(self, arg: str) -> None:
        """List everyone."""
        for person in self.world.people.values():
            detail = ", ".join(x for x in (person.part, person.department, person.tz) if x)
            self.say(f"  {person.id}  {person.name:<14} {detail}")

    def do_as(self, arg: str) -> None:
        """Act as someone else."""
        self.me = self.world.user(arg)
        self._set_prompt()
        self.say(f"You are now {self.world.name(self.me)}.")

    def do_click(self, arg: str) -> None:
        """Click a button by its label; a form's submit or close label submits or closes it."""
        label = _unquote(arg)
        footer = self.world.form_button(self.me, label)
        if footer == "submit":
            self.do_submit("")
            return
        if footer == "close":
            self.do_close("")
            return
        place = self.world.click(self.me, label)
        self.say(f"(clicked in {place})")

    def do_fill(self, arg: str) -> None:
        """Fill a form field: fill LABEL = VALUE, or fill "LABEL" VALUE."""
        quoted = _QUOTED_LABEL.match(arg.strip())
        if quoted:
            label, value = quoted.group(2), quoted.group(3)
        elif "=" in arg:
            label, _, value = arg.partition("=")
        else:
            raise SandboxError("write fill LABEL = VALUE, e.g. fill How soon = Today")
        field = self.world.fill(self.me, _unquote(label), _unquote(value))
        self.say(f"(filled {field!r})")

    def do_form(self, arg: str) -> None:
        """Show the open form."""
        self.say(self.world.form_text(self.me))

    def do_submit(self, arg: str) -> None:
        """Submit the open form."""
        errors = self.world.submit(self.me)
        for field, message in sorted(errors.items()):
            self.say(f"! the form was not sent: {field}: {message}")
        if not errors:
            self.say("(form sent)")

    def do_close(self, arg: str) -> None:
        """Close the open form."""
        self.world.close_form(self.me)
        self.say("(form closed)")

    def do_dms(self, arg: str) -> None:
        """Read DMs."""
        self.say(self.world.conversation_text(self.world.user(arg) if arg.strip() else self.me))

    def do_home(self, arg: str) -> None:
        """Open a Home tab."""
        self.say(self.world.open_home(self.world.user(arg) if arg.strip() else self.me))
        self.world.news()  # the Home was just shown in full

    def do_channel(self, arg: str) -> None:
        """Read a channel."""
        self.say(self.world.channel_text(self.world.channel_id(arg)))

    def do_advance(self, arg: str) -> None:
        """Move the clock on."""
        ran = self.world.advance(parse_duration(arg))
        now = self.world.local_now(self.me).strftime("%a %d %b %Y %H:%M %Z")
        self.say(f"(it is now {now} for {self.world.name(self.me)}; {ran} timed item(s) ran)")

    def do_quit(self, arg: str) -> bool:
        """Leave."""
        return True

    do_exit = do_quit
    do_EOF = do_quit  # noqa: N815 - cmd's name for end of input


def _unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" else text


def run_shell(stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Start the sandbox and the interactive session until quit or end of input."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with World(spec=load_default_spec()) as world:
        shell = SandboxShell(world, stdin, stdout)
        shell.cmdloop()
        if not shell.use_rawinput:
            shell.say("")
    return 0
