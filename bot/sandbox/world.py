"""A whole workspace on this machine: the Slack stand-in, the real app over HTTP, SQLite in a
temporary directory, a seeded roster and a manual clock; people act in it by what they see
(a command, a button's label, a form field's label), as they would in Slack."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.app.runtime import Runtime, build_runtime
from bot.infra import health
from bot.infra.clock import ManualClock
from bot.infra.messaging import build_client
from bot.infra.models import DueWork, WorkState
from bot.infra.settings import Settings
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from bot.sandbox.driver import Reply
from bot.sandbox.render import buttons, element_line, render_blocks, render_view
from bot.sandbox.server import AppServer
from bot.sandbox.slack_api import FakeSlack
from bot.sandbox.spec import WebApiSpec

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, 09:00 in New York
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
PULSE_SECRET = "sandbox-pulse-secret-not-for-production-use"


@dataclass(frozen=True)
class Person:
    """Someone in the sandbox workspace."""

    id: str
    name: str
    part: str  # what they do in the story: clinician, supporter, coordinator, leader, staff
    department: str = ""
    role: str = "other"
    tz: str = "America/New_York"


PEOPLE = (
    Person("UCLIN00001", "Alex Rivera", "clinician", "ICU", "nurse"),
    Person("UCHARGE001", "Robin Park", "clinician", "ICU", "nurse"),
    Person("USUPP00001", "Dana Okafor", "supporter", "Emergency Department", "nurse"),
    Person("USUPP00002", "Sam Lee", "supporter", "ICU", "physician"),
    Person("USUPP00003", "Priya Shah", "supporter", "Pharmacy", "pharmacist", "America/Chicago"),
    Person("USUPP00004", "Tom Becker", "supporter", "Surgery", "nurse", "Europe/Berlin"),
    Person("UCOORD0001", "Jordan Blake", "coordinator"),
    Person("ULEAD00001", "Morgan Chen", "leader", "ICU"),
    *(Person(f"USTAFF000{n}", name, "staff", "ICU", "nurse") for n, name in enumerate(
        ("Casey Diaz", "Jamie Fox", "Riley Grant", "Avery Hughes", "Quinn Ito", "Taylor Jones"),
        start=1)),
)
CHANNELS = {"C0GENERAL1": "general", "C0ICU0001": "icu-team"}
# Who is in #icu-team: the charge nurse and six of her staff.
ICU_TEAM = ("UCHARGE001", *(f"USTAFF000{n}" for n in range(1, 7)))


FORM = "a form opens"  # where a form is shown on someone's screen


class SandboxError(Exception):
    """Something a person tried that cannot be done; nothing was sent or changed."""


def sandbox_settings(fake: FakeSlack, database_url: str, **overrides: str) -> Settings:
    """Settings as a deployment would give them, pointed at the stand-in and a database."""
    values = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "DATABASE_URL": database_url,
        "PEERSUPPORT_COORDINATORS": "UCOORD0001",
        "PEERSUPPORT_LISTENER_THREADS": "8",
        # One process plays every part here, with no clock process to hand messages to: each
        # is sent by the process that saved it, at once (tests of the hand-over ask for it).
        "PEERSUPPORT_DELIVERY": "web",
    }
    values.update(overrides)
    return Settings.from_mapping(values)


@dataclass
class Seen:
    """Something new on someone's screen: a message, an update to one, a modal, a file."""

    order: int
    who: str  # whose screen, or the channel
    where: str
    text: str


def _order(stamp: str) -> int:
    # The stand-in's timestamps and ids end in one shared counter, so they sort in time order.
    digits = re.findall(r"\d+", stamp)
    return int(digits[-1]) if digits else 0


class World:
    """The sandbox: start() it, act as people, read what they see, advance() the clock, stop()."""

    def __init__(self, *, people: tuple[Person, ...] = PEOPLE, spec: WebApiSpec | None = None,
                 start: datetime = START):
        self.people = {p.id: p for p in people}
        self.spec = spec
        self.clock = ManualClock(start)
        self._directory: Path | None = None
        self._forms: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
        self._seen: dict[tuple, str] = {}
        self.fake: FakeSlack
        self.runtime: Runtime
        self.server: AppServer

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> World:
        """Start the stand-in and the app on loopback, with SQLite in a temporary directory."""
        from handlers import bootstrap_jobs  # the composition root may know every layer

        self._directory = Path(tempfile.mkdtemp(prefix="peersupport-sandbox-"))
        self.fake = FakeSlack(self.spec).start()
        for person in self.people.values():
            self.fake.add_user(person.id, person.name, tz=person.tz)
        for channel_id, name in CHANNELS.items():
            self.fake.add_channel(channel_id, name)
        self.fake.set_members("C0ICU0001", list(ICU_TEAM))
        leaders = ",".join(p.id for p in self.people.values() if p.part == "leader")
        coordinators = ",".join(p.id for p in self.people.values() if p.part == "coordinator")
        settings = sandbox_settings(
            self.fake, f"sqlite:///{self._directory / 'sandbox.sqlite3'}",
            PEERSUPPORT_COORDINATORS=coordinators, PEERSUPPORT_LEADERS=leaders,
            PEERSUPPORT_PULSE_SECRET=PULSE_SECRET, PEERSUPPORT_TIMEZONE="America/New_York",
            # One post at a time, so offers appear in the same order on every run.
            PEERSUPPORT_SLACK_PARALLEL="1")
        self.runtime = build_runtime(settings, clock=self.clock,
                                     client=build_client(settings, timeout=10))
        self._seed_roster()
        bootstrap_jobs(self.runtime.services)
        self.server = AppServer(self.runtime, self.fake)
        self.news()  # what exists now is the starting point
        return self

    def _seed_roster(self) -> None:
        supporters = [p for p in self.people.values() if p.part == "supporter"]
        settings = self.runtime.settings
        with self.runtime.sessions.begin() as session:
            roster.upsert(session, [SupporterSpec(p.id, p.department, p.role) for p in supporters],
                          now=self.clock.now(), time_zones={p.id: p.tz for p in supporters},
                          default_case_cap=settings.default_case_cap,
                          default_cooldown_hours=settings.default_cooldown_hours)

    def stop(self) -> None:
        """Stop the app and the stand-in and remove the temporary database."""
        self.server.stop()
        self.fake.stop()
        self.runtime.engine.dispose()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- who is who --------------------------------------------------------------------------

    def name(self, identifier: str) -> str:
        """A person's or channel's name for an id (the id itself when unknown)."""
        if identifier in self.people:
            return self.people[identifier].name
        if identifier in self.fake.channels:
            return self.fake.channels[identifier]
        return "Peer Support (the bot)" if identifier == FakeSlack.bot_user_id else identifier

    def user(self, text: str) -> str:
        """The id of the person an id, a name or a first name means."""
        wanted = text.strip().lstrip("@").casefold()
        for person in self.people.values():
            if wanted in (person.id.casefold(), person.name.casefold()):
                return person.id
        matches = [p.id for p in self.people.values()
                   if p.name.casefold().split()[0] == wanted]
        if len(matches) == 1:
            return matches[0]
        raise SandboxError(f"no such user {text!r}; `users` lists everyone")

    def channel_id(self, text: str) -> str:
        """The id of a channel given as #name, name or id."""
        wanted = text.strip().lstrip("#").casefold()
        for channel_id, name in self.fake.channels.items():
            if wanted in (channel_id.casefold(), name.casefold()):
                return channel_id
        known = ", ".join(f"#{n}" for n in sorted(self.fake.channels.values()))
        raise SandboxError(f"no such channel {text!r}; the channels are {known}")

    # -- acting ------------------------------------------------------------------------------

    def command(self, user_id: str, text: str = "", command: str = "/peersupport") -> Reply:
        """`user_id` types a slash command; its immediate answer is shown to them alone."""
        reply = self.server.slack.command(user_id, text, command=command)
        answer = reply.json() if reply.body.startswith("{") else None
        if reply.status == 200 and answer:
            self.fake.show_ephemeral(user_id, answer)
        self.settle()
        return reply

    def click(self, user_id: str, label: str) -> str:
        """`user_id` clicks the newest button with this label they can see, their open form's
        own submit and close buttons first; says where it was."""
        footer = self.form_button(user_id, label)
        if footer == "close":
            self.close_form(user_id)
            return "the open form"
        if footer == "submit":
            errors = self.submit(user_id)
            if errors:
                raise SandboxError("the form was not sent: " + "; ".join(
                    f"{field}: {message}" for field, message in sorted(errors.items())))
            return "the open form"
        found = self._find_button(user_id, label)
        place, element, block_id, channel, ts, view = found
        if element.get("url") and not element.get("action_id"):
            return f"{place}: the button opens {element['url']}"
        driver = self.server.slack
        if view is not None:
            state = {"values": self._form(view)} if view.get("type") == "modal" else {}
            reply = driver.block_action(user_id, element.get("action_id", ""),
                                        element.get("value", ""), block_id=block_id,
                                        view={**view, "state": state})
        else:
            reply = driver.block_action(user_id, element.get("action_id", ""),
                                        element.get("value", ""), block_id=block_id,
                                        channel_id=channel or "", message_ts=ts or "")
        if reply.status != 200:
            raise SandboxError(f"the app answered HTTP {reply.status}")
        self.settle()
        return place

    def form_button(self, user_id: str, label: str) -> str | None:
        """"submit" or "close" when `label` names a button at the foot of `user_id`'s open form
        (exactly, or as the start of just one of them); otherwise None."""
        modal = self.fake.open_modal(user_id)
        wanted = label.strip().strip('"').casefold()
        if modal is None or not wanted:
            return None
        footer = {key: _plain(modal.get(key)).casefold() for key in ("submit", "close")
                  if modal.get(key)}
        exact = [key for key, text in footer.items() if text == wanted]
        loose = [key for key, text in footer.items() if text.startswith(wanted)]
        chosen = exact or (loose if len(loose) == 1 else [])
        return chosen[0] if chosen else None

    def local_now(self, user_id: str) -> datetime:
        """The sandbox clock in `user_id`'s time zone."""
        person = self.people.get(user_id)
        return self.clock.now().astimezone(ZoneInfo(person.tz if person else "UTC"))

    def _find_button(self, user_id: str, label: str) -> tuple:
        wanted = label.strip().strip('"').casefold()
        candidates = []  # (order, place, element, block_id, channel, ts, view)
        modal = self.fake.open_modal(user_id)
        if modal is not None:
            candidates += [(1 << 62, "the open form", e, b, None, None, modal)
                           for _, e, b in buttons(modal.get("blocks"))]
        for channel, ts, where, message in self._visible(user_id):
            candidates += [(_order(ts), where, e, b, channel, ts, None)
                           for _, e, b in buttons(message.get("blocks"))]
        home = self.fake.homes.get(user_id)
        if home is not None:
            candidates += [(-1, "the Home tab", e, b, None, None, home)
                           for _, e, b in buttons(home.get("blocks"))]
        labels = sorted({self._label(c[2]) for c in candidates}
                        | {_plain(modal.get(key)) for key in ("submit", "close")
                           if modal is not None and modal.get(key)})
        exact = [c for c in candidates if self._label(c[2]).casefold() == wanted]
        loose = [c for c in candidates if self._label(c[2]).casefold().startswith(wanted)]
        chosen = exact or loose
        if not chosen or not wanted:
            shown = ", ".join(f'"{name}"' for name in labels) or "none"
            raise SandboxError(f"{self.name(user_id)} sees no button labelled {label!r}; "
                               f"buttons they can see: {shown}")
        return max(chosen, key=lambda c: c[0])[1:]

    @staticmethod
    def _label(element: dict) -> str:
        return element_line(element).split(" -> ")[0].strip("[] ")

    def _visible(self, user_id: str) -> list[tuple[str, str, str, dict]]:
        """Every message `user_id` can read: (channel, ts, where, message), oldest first."""
        found = []
        for channel, members in self.fake.conversations_of(user_id).items():
            where = self._conversation_name(channel, members, user_id)
            found += [(channel, m["ts"], where, m) for m in self.fake.messages.get(channel, [])]
        for channel, name in self.fake.channels.items():
            found += [(channel, m["ts"], f"#{name}", m) for m in self.fake.messages.get(channel, [])]
        found += [(m.get("channel") or "", m["ts"], "only visible to you", m)
                  for m in self.fake.ephemeral.get(user_id, [])]
        return sorted(found, key=lambda item: _order(item[1]))

    def _conversation_name(self, channel: str, members: frozenset[str], viewer: str) -> str:
        if len(members) == 1:
            return "DM with the bot"
        others = sorted(self.name(m) for m in members if m != viewer)
        return "group DM with " + ", ".join(others) + " and the bot"

    def _form(self, view: dict) -> dict[str, dict[str, Any]]:
        """The values of a modal's inputs as Slack would submit them, starting from its initials."""
        known = self._forms.get(view["id"])
        if known is not None and known[0] == view.get("hash"):
            return known[1]
        values = {}
        for block in view.get("blocks", []):
            if block.get("type") == "input":
                element = block.get("element") or {}
                values[block.get("block_id", "")] = {
                    element.get("action_id", ""): _initial_state(element)}
        self._forms[view["id"]] = (str(view.get("hash")), values)
        return values

    def fill(self, user_id: str, label: str, value: str) -> str:
        """`user_id` fills the field with this label in their open form; says what it holds now."""
        modal = self.fake.open_modal(user_id)
        if modal is None:
            raise SandboxError(f"{self.name(user_id)} has no form open")
        inputs = [b for b in modal.get("blocks", []) if b.get("type") == "input"]
        wanted = label.strip().casefold()
        exact = [b for b in inputs if b["label"]["text"].casefold() == wanted]
        loose = [b for b in inputs if b["label"]["text"].casefold().startswith(wanted)]
        chosen = exact or (loose if len(loose) == 1 else [])
        if not chosen or not wanted:
            shown = ", ".join(f'"{b["label"]["text"]}"' for b in inputs)
            raise SandboxError(f"no field labelled {label!r} in this form; its fields: {shown}")
        block = chosen[0]
        element = block["element"]
        state = self._form(modal)[block.get("block_id", "")]
        state[element.get("action_id", "")] = self._filled(user_id, element, value)
        return block["label"]["text"]

    def _filled(self, user_id: str, element: dict, value: str) -> dict[str, Any]:
        kind = element.get("type", "")
        value = value.strip()
        if kind in ("radio_buttons", "static_select"):
            return {"type": kind, "selected_option": _option(element, value) if value else None}
        if kind == "checkboxes" and len(element.get("options", [])) == 1 \
                and value.casefold() in _YES | _NO:
            # A single checkbox reads as a yes-or-no question.
            ticked = element["options"] if value.casefold() in _YES else []
            return {"type": kind, "selected_options": [
                {"text": o["text"], "value": o["value"]} for o in ticked]}
        if kind in ("checkboxes", "multi_static_select"):
            parts = [] if value.casefold() in ("", "none") else value.split(",")
            return {"type": kind, "selected_options": [_option(element, p) for p in parts]}
        if kind in ("conversations_select", "channels_select"):
            key = "selected_conversation" if kind == "conversations_select" else "selected_channel"
            return {"type": kind, key: self.channel_id(value) if value else None}
        if kind == "users_select":
            return {"type": kind, "selected_user": self.user(value) if value else None}
        if kind == "multi_users_select":
            return {"type": kind, "selected_users": [self.user(p) for p in value.split(",") if p]}
        if kind == "timepicker":
            if value and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
                raise SandboxError("a time is written HH:MM, for example 18:00")
            return {"type": kind, "selected_time": value or None}
        if kind == "datetimepicker":
            return {"type": kind, "selected_date_time": self._moment(user_id, value)}
        if kind == "number_input" and value and not re.fullmatch(r"-?\d+(\.\d+)?", value):
            raise SandboxError("this field takes a number")
        return {"type": kind, "value": value or None}

    def _moment(self, user_id: str, value: str) -> int | None:
        if not value:
            return None
        try:
            local = datetime.strptime(value, "%Y-%m-%d %H:%M")
        except ValueError as error:
            raise SandboxError("a date and time is written YYYY-MM-DD HH:MM") from error
        zone = ZoneInfo(self.people[user_id].tz if user_id in self.people else "UTC")
        return int(local.replace(tzinfo=zone).timestamp())

    def submit(self, user_id: str) -> dict[str, str]:
        """`user_id` submits their open form; returns the app's field errors (empty if none)."""
        modal = self.fake.open_modal(user_id)
        if modal is None:
            raise SandboxError(f"{self.name(user_id)} has no form open")
        reply = self.server.slack.view_submission(
            user_id, modal.get("callback_id", ""), self._form(modal),
            private_metadata=modal.get("private_metadata", ""), view_id=modal["id"])
        if reply.status != 200:
            raise SandboxError(f"the app answered HTTP {reply.status}")
        answer = reply.json() or {}
        action = answer.get("response_action")
        if action == "errors":
            return dict(answer.get("errors") or {})
        if action == "update":
            self.fake.replace_view(modal["id"], answer["view"])
        else:
            self.fake.close_modal(user_id, everything=action == "clear")
        self.settle()
        return {}

    def form_text(self, user_id: str) -> str:
        """`user_id`'s open form, with what they filled in, as text."""
        modal = self.fake.open_modal(user_id)
        if modal is None:
            raise SandboxError(f"{self.name(user_id)} has no form open")
        return render_view(modal, self.name, self._form(modal))

    def close_form(self, user_id: str) -> None:
        """`user_id` closes their open form without submitting it."""
        if self.fake.open_modal(user_id) is None:
            raise SandboxError(f"{self.name(user_id)} has no form open")
        self.fake.close_modal(user_id)

    def open_home(self, user_id: str) -> str:
        """`user_id` opens the app's Home tab; returns it as text."""
        self.server.slack.event({"type": "app_home_opened", "user": user_id, "tab": "home",
                                 "channel": "D0HOME0001", "event_ts": "1.1"})
        self.settle()
        home = self.fake.homes.get(user_id)
        if home is None:
            raise SandboxError("the app did not publish a Home tab")
        return render_view(home, self.name)

    # -- time --------------------------------------------------------------------------------

    def settle(self) -> None:
        """Wait until the app has finished reacting to what was sent."""
        self.server.settle()

    def advance(self, delta: timedelta) -> int:
        """Move the clock forward, running due work at each moment it falls due (as the clock
        process would, with nothing late); returns how many items ran."""
        target = self.clock.now() + delta
        engine = self.runtime.duework("sandbox")
        ran = 0
        for _ in range(10_000):
            with self.runtime.sessions() as session:
                due = session.scalar(select(func.min(DueWork.due_at)).where(
                    DueWork.state == WorkState.PENDING))
            if due is not None and due.tzinfo is None:
                due = due.replace(tzinfo=UTC)
            if due is None or due > target:
                break
            self.clock.set(max(due, self.clock.now()))
            ran += engine.run_until_idle().done
            self.settle()
        self.clock.set(target)
        ran += engine.run_until_idle().done
        self.settle()
        with self.runtime.sessions.begin() as session:
            health.beat(session, "sandbox", self.clock.now())  # as the clock process's tick does
        return ran

    # -- seeing ------------------------------------------------------------------------------

    def conversation_text(self, user_id: str) -> str:
        """Every DM, group DM and private note `user_id` has, oldest first, as text."""
        lines = []
        for _, _, where, message in self._visible(user_id):
            if not where.startswith("#"):
                lines.append(f"--- {where} ---\n{self.message_text(message, user_id)}")
        return "\n".join(lines) or f"{self.name(user_id)} has no messages yet."

    def channel_text(self, channel_id: str) -> str:
        """A channel's messages, oldest first, as text."""
        messages = self.fake.messages.get(channel_id, [])
        return "\n".join(self.message_text(m) for m in messages) or "(no messages yet)"

    def message_text(self, message: dict, viewer: str | None = None) -> str:
        """One message as text (times in `viewer`'s own zone, as Slack shows them)."""
        names = self.name if viewer is None else lambda target: self._seen_by(target, viewer)
        return render_blocks(message.get("blocks"), message.get("text", ""), names)

    def _seen_by(self, target: str, viewer: str) -> str:
        """A name, or a Slack date token (`date^<epoch>^...`) as `viewer`'s clock shows it."""
        epoch = target.split("^")[1] if target.startswith("date^") else ""
        if not epoch.isdigit() or viewer not in self.people:
            return self.name(target)
        local = datetime.fromtimestamp(int(epoch), ZoneInfo(self.people[viewer].tz))
        return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M} {local.tzname()}"

    def news(self) -> list[Seen]:
        """What appeared or changed on anyone's screen since the last call, in time order."""
        now: dict[tuple, tuple[int, str, str, str]] = {}
        forms: dict[tuple, str] = {}  # a form is news when it opens or changes, not when filled
        for person in self.people.values():
            for channel, ts, where, message in self._visible(person.id):
                if not where.startswith("#"):
                    key = ("message", channel, ts, person.id)
                    now[key] = (_order(ts), person.name, where,
                                self.message_text(message, person.id))
            modal = self.fake.open_modal(person.id)
            if modal is not None:
                now[("form", person.id)] = (_order(modal["hash"]), person.name, FORM,
                                            self.form_text(person.id))
                forms[("form", person.id)] = f"{modal['id']} {modal['hash']}"
            home = self.fake.homes.get(person.id)
            if home is not None:
                now[("home", person.id)] = (_order(home["hash"]), person.name,
                                            "Home tab refreshed", "")
        for channel, name in sorted(self.fake.channels.items()):
            for message in self.fake.messages.get(channel, []):
                now[("channel", channel, message["ts"])] = (
                    _order(message["ts"]), f"#{name}", "channel", self.message_text(message))
        for file_id, stored in sorted(self.fake.files.items()):
            where = self._file_place(stored.get("channel"))
            now[("file", file_id)] = (_order(file_id), where, "file", (
                f"[file: {stored.get('filename')}, {len(stored.get('content') or b'')} bytes]"))
        fresh = []
        for key, (order, who, where, text) in now.items():
            previous = self._seen.get(key)
            if previous != forms.get(key, text):
                label = where if previous is None or key[0] != "message" else where + " (updated)"
                fresh.append(Seen(order, who, label, text))
        self._seen = {key: forms.get(key, value[3]) for key, value in now.items()}
        # A form answers the click that opened or changed it, so it comes first: the messages
        # the same click set off are posted meanwhile, in whatever order threads reach Slack.
        return sorted(fresh, key=lambda seen: (seen.where != FORM, seen.order, seen.who))

    def news_text(self) -> str:
        """news() as lines of text: who or where, then what they see, indented."""
        lines = []
        for seen in self.news():
            lines.append(f"  +-- {seen.who} · {seen.where}")
            lines.extend(f"  | {line}" for line in seen.text.splitlines())
        return "\n".join(lines)

    def _file_place(self, channel: str | None) -> str:
        for user_id in self.people:
            if channel and channel == self.fake.dm_channel([user_id]):
                return self.name(user_id)
        return self.name(channel or "")

    def file_content(self, filename_end: str) -> bytes | None:
        """The newest uploaded file whose name ends so, if any."""
        matching = [f for _, f in sorted(self.fake.files.items())
                    if str(f.get("filename", "")).endswith(filename_end)]
        return matching[-1]["content"] if matching else None


_YES = frozenset({"yes", "y", "true", "on"})
_NO = frozenset({"no", "n", "false", "off"})


def _plain(text: Any) -> str:
    """A plain_text object's (or a bare string's) text."""
    return str(text.get("text", "")) if isinstance(text, dict) else str(text or "")


def _initial_state(element: dict) -> dict[str, Any]:
    kind = element.get("type", "")
    state: dict[str, Any] = {"type": kind}
    if kind in ("radio_buttons", "static_select"):
        state["selected_option"] = element.get("initial_option")
    elif kind in ("checkboxes", "multi_static_select"):
        state["selected_options"] = list(element.get("initial_options") or [])
    elif kind == "conversations_select":
        state["selected_conversation"] = element.get("initial_conversation")
    elif kind == "channels_select":
        state["selected_channel"] = element.get("initial_channel")
    elif kind == "users_select":
        state["selected_user"] = element.get("initial_user")
    elif kind == "multi_users_select":
        state["selected_users"] = list(element.get("initial_users") or [])
    elif kind == "timepicker":
        state["selected_time"] = element.get("initial_time")
    elif kind == "datetimepicker":
        state["selected_date_time"] = element.get("initial_date_time")
    else:
        state["value"] = element.get("initial_value")
    return state


def _option(element: dict, text: str) -> dict:
    """The option whose label (or value) is `text`, or a unique one starting with it."""
    options = [o for group in element.get("option_groups", []) for o in group["options"]]
    options += element.get("options", [])
    wanted = text.strip().casefold()

    def label(option: dict) -> str:
        return str(option["text"]["text"]).casefold()

    exact = [o for o in options if wanted in (label(o), str(o.get("value")).casefold())]
    loose = [o for o in options if label(o).startswith(wanted)]
    chosen = exact or (loose if len(loose) == 1 else [])
    if not chosen:
        shown = " | ".join(o["text"]["text"] for o in options)
        raise SandboxError(f"{text!r} is not one of the choices: {shown}")
    return {"text": chosen[0]["text"], "value": chosen[0]["value"]}

