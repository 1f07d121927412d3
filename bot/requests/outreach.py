"""Private outreach to each member of a team: one note each, and counts of what they chose.

When the caller asked for each person to be offered private support, every member of the team
(the people they named, a user group's members, a channel's members) gets one private note.
What is kept is counts only: how many were reached or skipped, how many asked for personal
support or opted in to check-ins. Who received a note lives only in the outbox's delivery rows
(kept a week, like every delivery) and who clicked is never recorded against the team: a
member's personal request is an ordinary request, and a member's check-ins are their own.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.checkins import service as checkins
from bot.infra import duework, outbox
from bot.infra.aggregate import suppress
from bot.infra.models import (
    OutreachOptOut,
    OutreachState,
    RequestKind,
    RequestState,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.requests import flows
from bot.requests.service import AlreadyOpen, RequestForm, seat_holders

# The most people one team's outreach reaches. A "team" larger than this is almost surely the
# wrong channel (a hospital-wide one): nothing is sent, and the caller and supporters are told,
# rather than telling thousands that a team had a hard event, or an arbitrary part of them.
MAX_MEMBERS = 2000
# The timer that marks a team's outreach sent once every note is delivered or skipped.
FINISH = "team.outreach.finish"
# How often the finishing timer looks again while notes are still going out.
FINISH_EVERY = 30
# Notes fall due this long after the start: the clock's engine sends them (in batches, several
# at a time), not the one thread that happened to commit the start after a click.
NOTES_AFTER = timedelta(seconds=1)
# The form of a Slack user id; anything else a channel or group listing held is left out.
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,31}$")
# Personal support a member asks for from their note: gentle defaults, changeable by nobody but
# the supporter and the member talking.
TALK_FORM = RequestForm(urgency="today", connection="slack")
# Where a team's outreach can be answered from: its notes are going out or have gone.
_ANSWERABLE = (OutreachState.SENDING, OutreachState.SENT)


class OutreachError(ValueError):
    """A click on a note that cannot be done; the message is for the person who clicked."""


class Start(enum.StrEnum):
    """What starting a team's outreach did."""

    STARTED = "started"  # the notes are recorded
    NOBODY = "nobody"  # nobody is left to reach once the caller, supporters and opt-outs are out
    TOO_LARGE = "too_large"  # more than MAX_MEMBERS: nothing sent
    CANCELLED = "cancelled"  # the request was withdrawn first: nothing sent
    NOT_DUE = "not_due"  # not waiting to start (already started, or never asked for)


@dataclass(frozen=True)
class Started:
    """The outcome of a start, and how many members it concerned (a count, never who)."""

    outcome: Start
    members: int = 0


@dataclass(frozen=True)
class Sources:
    """Where a team's members are read from: the people the caller named, a user group and a
    channel (any of the three)."""

    people: tuple[str, ...]
    usergroup_id: str | None
    channel_id: str | None


@dataclass(frozen=True)
class OutreachCounts:
    """What a team's outreach came to, each figure None while below the minimum group."""

    reached: int | None
    skipped: int | None
    asked_personal: int | None
    opted_checkins: int | None


@dataclass(frozen=True)
class Asked:
    """A member's "Talk to a peer supporter": their request, and whether it is a new one."""

    request: SupportRequest
    created: bool


def note_key(request_id: int, user_id: str) -> str:
    """The outbox key of one member's note."""
    return f"outreach:{request_id}:{user_id}"


def _notes_prefix(request_id: int) -> str:
    return f"outreach:{request_id}:"


def sources(session: Session, request_id: int) -> Sources | None:
    """Where to read the team's members from, when its outreach is waiting to start and the
    request was not withdrawn; None otherwise (nothing to resolve)."""
    team = session.get(TeamRequest, request_id)
    request = session.get(SupportRequest, request_id)
    if team is None or request is None or team.outreach_state != OutreachState.WAITING \
            or request.state == RequestState.CANCELLED:
        return None
    return Sources(tuple(team.people or ()), team.usergroup_id, team.channel_id)


def _move(session: Session, request_id: int, frm: OutreachState, to: OutreachState, *,
          unless_cancelled: bool = False) -> bool:
    """The guarded step of the outreach's state: True for the one caller that made it."""
    statement = update(TeamRequest).where(TeamRequest.request_id == request_id,
                                          TeamRequest.outreach_state == frm)
    if unless_cancelled:
        statement = statement.where(exists().where(
            SupportRequest.id == request_id, SupportRequest.state != RequestState.CANCELLED))
    result = session.execute(statement.values(outreach_state=to)
                             .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _to_reach(session: Session, request: SupportRequest, found: Iterable[str],
              bot_id: str | None) -> list[str]:
    """The members to send a note to: everyone found, once, but the bot, the caller, the
    request's supporters and anyone who asked for no more notes like this."""
    excluded = {bot_id, request.requester_id, request.supporter_id,
                *seat_holders(session, request.id)}
    members = {m for m in found if isinstance(m, str) and _USER_ID.match(m)} - excluded
    if not members:
        return []
    # The opt-outs are a short list: read whole rather than matched against thousands of ids.
    opted = set(session.scalars(select(OutreachOptOut.user_id)))
    return sorted(members - opted)


def start(session: Session, request_id: int, found: Iterable[str], *, bot_id: str | None,
          now: datetime, cap: int | None = None) -> Started:
    """Start a team's outreach with the members read from Slack: one note each recorded in the
    outbox, in the transaction of the guarded step waiting -> sending, so a rerun (or a second
    process) records nothing. A withdrawn request, or a team larger than `cap` (MAX_MEMBERS),
    gets none."""
    cap = MAX_MEMBERS if cap is None else cap
    request = session.get(SupportRequest, request_id)
    team = session.get(TeamRequest, request_id)
    if request is None or team is None or team.outreach_state != OutreachState.WAITING:
        return Started(Start.NOT_DUE)
    if request.state == RequestState.CANCELLED:
        moved = _move(session, request_id, OutreachState.WAITING, OutreachState.NONE)
        return Started(Start.CANCELLED if moved else Start.NOT_DUE)
    members = _to_reach(session, request, found, bot_id)
    if len(members) > cap:
        moved = _move(session, request_id, OutreachState.WAITING, OutreachState.NONE,
                      unless_cancelled=True)
        return Started(Start.TOO_LARGE if moved else Start.NOT_DUE, len(members))
    if not members:
        moved = _move(session, request_id, OutreachState.WAITING, OutreachState.SENT,
                      unless_cancelled=True)
        return Started(Start.NOBODY if moved else Start.NOT_DUE)
    if not _move(session, request_id, OutreachState.WAITING, OutreachState.SENDING,
                 unless_cancelled=True):
        return Started(Start.NOT_DUE)
    outbox.record_many(session, [
        (Effect.TEAM_OUTREACH.value, {"request_id": request_id, "user_id": member},
         note_key(request_id, member)) for member in members], now=now + NOTES_AFTER)
    # Scheduled after the notes, so its id is above theirs (see finish).
    duework.schedule(session, FINISH, now + NOTES_AFTER, now=now,
                     payload={"request_id": request_id}, key=f"outreach:{request_id}:finish")
    return Started(Start.STARTED, len(members))


def finish(session: Session, request_id: int, item_id: int) -> bool | None:
    """The finishing timer (`item_id`, scheduled after the notes): True once the outreach is
    marked sent, None while notes are still going out (look again later), False when there
    was nothing to mark."""
    if outbox.earlier_unfinished(session, Effect.TEAM_OUTREACH.value, _notes_prefix(request_id),
                                 item_id):
        return None
    return _move(session, request_id, OutreachState.SENDING, OutreachState.SENT)


# -- one member's note -------------------------------------------------------------------------

def note_to_send(session: Session, request_id: int, user_id: str) -> TeamRequest | None:
    """The team whose note to `user_id` is still to go out; None when the request was withdrawn
    meanwhile or is gone (nothing is sent, nothing counted)."""
    team = session.get(TeamRequest, request_id)
    request = session.get(SupportRequest, request_id)
    if team is None or request is None or request.state == RequestState.CANCELLED:
        return None
    return team


def opted_out(session: Session, user_id: str) -> bool:
    """Whether the person asked for no more notes like this."""
    return session.get(OutreachOptOut, user_id) is not None


def _bump(session: Session, request_id: int, column: str) -> None:
    # One UPDATE adding one: exact whatever else runs at the same time, and undone with the
    # delivery's transaction if that fails.
    field = getattr(TeamRequest, column)
    session.execute(update(TeamRequest).where(TeamRequest.request_id == request_id)
                    .values({column: field + 1}).execution_options(synchronize_session=False))


def reached(session: Session, request_id: int) -> None:
    """Count one note delivered (in the delivery's transaction)."""
    _bump(session, request_id, "reached")


def skipped(session: Session, request_id: int) -> None:
    """Count one member not sent a note: deactivated, a bot, unreachable or opted out."""
    _bump(session, request_id, "skipped")


# -- what members choose, known only as counts ---------------------------------------------------

def _answerable(session: Session, request_id: int | None, user_id: str) -> TeamRequest:
    """The team request a note's button names, if its notes went out and the clicker could have
    been sent one."""
    team = session.get(TeamRequest, request_id) if request_id is not None else None
    request = session.get(SupportRequest, request_id) if team is not None else None
    if team is None or request is None or request.kind != RequestKind.TEAM \
            or team.outreach_state not in _ANSWERABLE:
        raise OutreachError("This note is no longer active. You can still ask for support at "
                            "any time: type `/peersupport`.")
    if user_id in (request.requester_id, request.supporter_id) or \
            user_id in seat_holders(session, request.id):
        raise OutreachError("This note was meant for a member of the team.")
    return team


def ask_personal(services: flows.Needs, session: Session, request_id: int | None,
                 user_id: str) -> Asked:
    """A member asks to talk with a peer supporter: a personal request of their own, placed as
    any other, linked to the team only by one more in its count. Someone with a request open
    already (a repeated click too) is shown theirs, and counted once."""
    _answerable(session, request_id, user_id)
    assert request_id is not None
    try:
        request = flows.create(services, session, user_id, TALK_FORM, source_key=None)
    except AlreadyOpen as existing:
        return Asked(existing.request, created=False)
    _bump(session, request_id, "asked_personal")
    return Asked(request, created=True)


def plan_checkins(session: Session, request_id: int | None, user_id: str, *, now: datetime,
                  offsets_days: tuple[float, ...], default_tz: str) -> bool:
    """A member opts in to a few check-ins: True when they were planned now, False when the
    member had them planned already (counted once)."""
    _answerable(session, request_id, user_id)
    assert request_id is not None
    # Take the team's row first: two clicks at once then plan (and count) once, the second
    # finding the first's plan.
    session.execute(update(TeamRequest).where(TeamRequest.request_id == request_id)
                    .values(opted_checkins=TeamRequest.opted_checkins)
                    .execution_options(synchronize_session=False))
    planned = checkins.plan_person(session, request_id, user_id, now=now,
                                   offsets_days=offsets_days, default_tz=default_tz)
    if not planned:
        return False
    _bump(session, request_id, "opted_checkins")
    return True


def opt_out(session: Session, user_id: str, *, now: datetime) -> bool:
    """The person asks for no more notes like this; True the first time (a repeat is a no-op)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    added = session.execute(insert(OutreachOptOut).values(user_id=user_id, created_at=now)
                            .on_conflict_do_nothing().returning(OutreachOptOut.user_id)).first()
    return added is not None


def opt_in(session: Session, user_id: str) -> bool:
    """The person wants team notes again after all; True when they had opted out."""
    return session.execute(delete(OutreachOptOut).where(OutreachOptOut.user_id == user_id)
                           .execution_options(synchronize_session=False)).rowcount > 0


def counts(team: TeamRequest, minimum: int) -> OutreachCounts:
    """The outreach's figures for others to show, each hidden (None) below the minimum group."""
    figures = suppress({"reached": team.reached or 0, "skipped": team.skipped or 0,
                        "asked_personal": team.asked_personal or 0,
                        "opted_checkins": team.opted_checkins or 0}, minimum,
                       with_total=False).groups
    return OutreachCounts(**figures)
