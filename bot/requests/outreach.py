"""Private outreach to each member of a team: one note each, kept up to date, and counts.

When the caller asked for each person to be offered private support, every member of the team
(the people they named, a user group's members, a channel's members) gets one private note,
and when the team's group conversation is later moved or called off, that same note is updated
in place. What is kept is counts only: how many were reached or skipped, how many asked for
personal support or opted in to check-ins (bot.requests.outreach_answers). Who received a note
lives only in the outbox's delivery rows (kept a week, like every delivery) and who clicked is
never recorded against the team: a member's personal request is an ordinary request, and a
member's check-ins are their own.

This module imports nothing that imports bot.requests.sessions, so the group conversation's
changes can refresh the notes (refresh_notes) in their own transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from bot.infra import duework, outbox
from bot.infra.models import (
    OutreachOptOut,
    OutreachState,
    RequestState,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.requests.service import seat_holders
from bot.requests.teams import _PERSON as PERSON

# The most people one team's outreach reaches. A "team" larger than this is almost surely the
# wrong channel (a hospital-wide one): nothing is sent, and the caller and supporters are told,
# rather than telling thousands that a team had a hard event, or an arbitrary part of them.
MAX_MEMBERS = 2000
# The timer that marks a team's outreach sent once every note is delivered or skipped.
FINISH = "team.outreach.finish"
# How often the finishing timer looks again while notes are still going out.
FINISH_EVERY = 30
# Notes (and their updates) fall due this long after the change that implied them: the clock's
# engine sends them (in batches, several at a time), not the one thread that happened to commit
# the change after a click.
NOTES_AFTER = timedelta(seconds=1)
# Where a team's outreach can be answered from, or refreshed: its notes are going out or have.
ANSWERABLE = (OutreachState.SENDING, OutreachState.SENT)


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
    channel (any of the three), and the caller, who must be in the group or channel named."""

    people: tuple[str, ...]
    usergroup_id: str | None
    channel_id: str | None
    caller: str | None


def note_key(request_id: int, user_id: str) -> str:
    """The outbox key of one member's note."""
    return f"outreach:{request_id}:{user_id}"


def update_key(request_id: int, user_id: str, version: int) -> str:
    """The outbox key of one member's note brought up to date with the group conversation's
    `version` (its session_version)."""
    return f"{note_key(request_id, user_id)}:v{version}"


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
    return Sources(tuple(team.people or ()), team.usergroup_id, team.channel_id,
                   request.requester_id)


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
    members = {m for m in found if isinstance(m, str) and PERSON.match(m)} - excluded
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


def count_one(session: Session, request_id: int, column: str) -> None:
    """One more in one of the team's counts (reached, skipped, asked_personal, opted_checkins),
    in the transaction of what it counts."""
    # One UPDATE adding one: exact whatever else runs at the same time, and undone with the
    # delivery's (or the click's) transaction if that fails.
    field = getattr(TeamRequest, column)
    session.execute(update(TeamRequest).where(TeamRequest.request_id == request_id)
                    .values({column: field + 1}).execution_options(synchronize_session=False))


def reached(session: Session, request_id: int) -> None:
    """Count one note delivered (in the delivery's transaction)."""
    count_one(session, request_id, "reached")


def skipped(session: Session, request_id: int) -> None:
    """Count one member not sent a note: deactivated, a bot, unreachable or opted out."""
    count_one(session, request_id, "skipped")


# -- who was sent a note, and bringing the notes up to date -----------------------------------

def noted_members(session: Session, request_id: int) -> list[str]:
    """Everyone a note of this team was recorded for, while its outbox row is kept (a week after
    delivery): the only record of who was sent one."""
    prefix = _notes_prefix(request_id)
    return sorted(key[len(prefix):] for key in
                  outbox.keys_like(session, Effect.TEAM_OUTREACH.value, prefix)
                  if PERSON.match(key[len(prefix):]))


def noted(session: Session, request_id: int, user_id: str) -> bool:
    """Whether a note of this team was recorded for `user_id` (while its row is kept)."""
    key = note_key(request_id, user_id)
    return key in outbox.keys_like(session, Effect.TEAM_OUTREACH.value, key)


def refresh_notes(session: Session, request_id: int, now: datetime) -> int:
    """Bring every member's note of this team up to date with its group conversation, after a
    time is picked, moved or called off: one update each, recorded in the caller's transaction
    and keyed by the team's session_version, whose delivery finds the member's note in their DM
    and replaces it in place (never a second message; a note never delivered is left alone).
    Returns how many were recorded.

    Members are found from their notes' outbox rows, which are kept a week after delivery like
    every delivery's (bot.infra.duework.FINISHED_RETENTION), since nothing else records who was
    sent a note: once those rows are gone, the notes are no longer refreshed."""
    team = session.scalars(select(TeamRequest).where(TeamRequest.request_id == request_id)
                           .execution_options(populate_existing=True)).first()
    if team is None or not team.group or team.outreach_state not in ANSWERABLE:
        return 0  # no note mentions a group conversation, or none was recorded
    members = noted_members(session, request_id)
    if members:
        version = team.session_version
        outbox.record_many(session, [
            (Effect.TEAM_OUTREACH.value, {"request_id": request_id, "user_id": member,
                                          "update": True, "version": version},
             update_key(request_id, member, version)) for member in members],
            now=now + NOTES_AFTER)
    return len(members)

