"""A team's group conversation: its supporters propose times, the caller picks one, everyone
is reminded an hour before, and it can be rescheduled or called off. It is called off when its
request is withdrawn or closed before the time, and set aside when a supporter hands back (the
next group DM starts afresh).

Every change is taken under the request's lock and made by one guarded UPDATE of the team
request on its session_version (which every change bumps), so two proposals, two picks or a
pick and a reschedule can never both win. Each records the messages it implies in the same
transaction (Effect.TEAM_SESSION in the team's group DM or to one person, Effect.TEAM_INVITATION
in the team's channel; handlers/teams/session_effects.py delivers them, reading the database for
their text). The reminder's timer is named by the version it was set for: any later change makes
it a no-op. Only times and a short place are kept, never anything about the event.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.infra import duework, outbox
from bot.infra.models import (
    ACTIVE_STATES,
    UNASSIGNED_STATES,
    RequestKind,
    RequestState,
    SessionProposal,
    SessionState,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.requests import outreach
from bot.requests.service import RequestError, begin_outreach, fits, seat_holders

SESSION_REMINDER = "team_session_reminder"
MIN_NOTICE = timedelta(minutes=30)  # a proposed time is at least this far ahead...
MAX_AHEAD = timedelta(days=60)  # ...and at most this far
REMIND_BEFORE = timedelta(hours=1)
MAX_TIMES = 3
PLACE_LENGTH = 200

NOT_YOURS = "This group conversation is not one you are part of."
GONE = "That time is no longer on offer."
STALE = ("This button is out of date: the group conversation has changed since. The newest "
         "message in your group conversation shows where it stands.")


class Change(enum.StrEnum):
    """What a TEAM_SESSION message says (its payload names it; the text is read at delivery)."""

    PROPOSED = "proposed"  # the proposals, each with Pick, in the group DM
    SET = "set"  # the time picked, with Reschedule and Call off, in the group DM
    INVITATION = "invitation"  # the caller's ready-to-share invitation, in their DM
    RESCHEDULED = "rescheduled"  # back to proposing, in the group DM
    CANCELLED = "cancelled"  # called off (by someone, or as the request ended), in the group DM
    STEPPED_BACK = "stepped_back"  # a supporter handed back: set aside until another joins
    REMINDER = "reminder"  # an hour before, to one person


class Posting(enum.StrEnum):
    """What a TEAM_INVITATION does in the team's channel."""

    POST = "post"  # the invitation, once the caller asked for it
    MOVED = "moved"  # the posted invitation updated: its time is being changed
    CALLED_OFF = "called_off"  # the posted invitation updated: it is called off


class SessionError(RequestError):
    """A group-conversation change that cannot be made; the message is for the person who
    tried, and `field` names the form field it is about (None: the form as a whole)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Moved:
    """A change that won: the request and its team row as they now stand."""

    request: SupportRequest
    team: TeamRequest


# -- names -------------------------------------------------------------------------------------

def reminder_key(request_id: int, version: int) -> str:
    """The one reminder timer of one set time."""
    return f"{SESSION_REMINDER}:{request_id}:{version}"


def session_key(request_id: int, version: int, whom: str) -> str:
    """A TEAM_SESSION message of one version, to `whom` ("group", or a person and what)."""
    return f"teamsession:{request_id}:v{version}:{whom}"


def invitation_key(request_id: int, version: int, posting: Posting) -> str:
    """A TEAM_INVITATION of one set time: its post, or the update of that post."""
    return f"teaminvite:{request_id}:v{version}:{posting.value}"


def _say(session: Session, team: TeamRequest, change: Change, whom: str, now: datetime,
         **payload: Any) -> None:
    outbox.record(session, Effect.TEAM_SESSION.value,
                  {"request_id": team.request_id, "version": team.session_version,
                   "change": change.value, **payload},
                  key=session_key(team.request_id, team.session_version, whom), now=now)


def _tell_channel(session: Session, team: TeamRequest, version: int, posting: Posting,
                  now: datetime) -> None:
    outbox.record(session, Effect.TEAM_INVITATION.value,
                  {"request_id": team.request_id, "version": version, "posting": posting.value},
                  key=invitation_key(team.request_id, version, posting), now=now)


# -- reading and guarding ----------------------------------------------------------------------

def _locked(session: Session, request_id: int) -> tuple[SupportRequest | None, TeamRequest | None]:
    """The team request and its team row, read fresh under the request's lock: every change to
    one request takes that lock first (bot.requests.service), so they queue, never deadlock."""
    request = session.scalars(select(SupportRequest).where(SupportRequest.id == request_id)
                              .with_for_update().execution_options(populate_existing=True)).first()
    if request is None or request.kind != RequestKind.TEAM:
        return None, None
    team = session.scalars(select(TeamRequest).where(TeamRequest.request_id == request_id)
                           .execution_options(populate_existing=True)).first()
    return request, team


def _move(session: Session, team: TeamRequest, sources: Sequence[str], **values: Any) -> bool:
    """The one guarded write: from `sources`, at the version read, bumping it; True if won."""
    won = session.execute(update(TeamRequest).where(
        TeamRequest.request_id == team.request_id,
        TeamRequest.session_version == team.session_version,
        TeamRequest.session_state.in_(list(sources)))
        .values(session_version=team.session_version + 1, **values)
        .execution_options(synchronize_session=False)).rowcount == 1
    session.refresh(team)
    return won


def _supporting(session: Session, request_id: int | None, user_id: str, *, lock: bool
                ) -> tuple[SupportRequest, TeamRequest]:
    """A team request whose group conversation `user_id` may propose times for."""
    if lock:
        request, team = _locked(session, request_id or 0)
    else:
        request = session.get(SupportRequest, request_id or 0)
        team = session.get(TeamRequest, request_id or 0) if request is not None else None
    if request is None or team is None or user_id not in seat_holders(session, request.id):
        raise SessionError("This team request is not with you, so you cannot propose times "
                           "for it.")
    if request.state in UNASSIGNED_STATES:
        raise SessionError("Another supporter is being found for this team: times can be "
                           "proposed once they join.")
    if request.state != RequestState.ASSIGNED:
        raise SessionError("This team request is not open with you any more.")
    if not team.group:
        raise SessionError("This team did not ask for a group conversation.")
    if team.session_state == SessionState.PROPOSED:
        raise SessionError(_already_proposed(session, team, user_id))
    if team.session_state == SessionState.SET:
        raise SessionError("The time is already set: to change it, use Reschedule in your "
                           "group conversation.")
    if team.session_state == SessionState.CANCELLED:
        raise SessionError("The group conversation was called off.")
    return request, team


def _already_proposed(session: Session, team: TeamRequest, user_id: str) -> str:
    by = session.scalars(select(SessionProposal.proposed_by).where(
        SessionProposal.request_id == team.request_id,
        SessionProposal.version == team.session_version)).first()
    if by == user_id:
        return "You have already proposed times: they are in your group conversation."
    return ("Your colleague has just proposed times: they are in your group conversation, for "
            "the person who asked to pick one. To offer others, use Ask for other times there.")


def _involved(session: Session, request: SupportRequest | None, user_id: str) -> bool:
    return request is not None and (user_id == request.requester_id
                                    or user_id in seat_holders(session, request.id))


def _still_on(request: SupportRequest) -> None:
    if request.state == RequestState.CANCELLED:
        raise SessionError("This team request was withdrawn, so its group conversation is off.")
    if request.state not in ACTIVE_STATES:
        raise SessionError("This team request is closed, so its group conversation is too.")


# -- proposing ---------------------------------------------------------------------------------

def check_can_propose(session: Session, request_id: int | None, user_id: str) -> None:
    """Raise SessionError unless `user_id` may propose times now (before opening the form)."""
    _supporting(session, request_id, user_id, lock=False)


def _checked_times(times: Sequence[datetime | None], now: datetime) -> list[datetime]:
    if len(times) > MAX_TIMES:
        raise SessionError(f"Propose up to {MAX_TIMES} times.")
    if not times or times[0] is None:
        raise SessionError("Choose at least one time.", "time:1")
    chosen: list[datetime] = []
    for number, at in enumerate(times, start=1):
        if at is None:
            continue
        field = f"time:{number}"
        if at < now:
            raise SessionError("That time has passed: choose one at least 30 minutes from now.",
                               field)
        if at < now + MIN_NOTICE:
            raise SessionError("Choose a time at least 30 minutes from now, so people can "
                               "plan to come.", field)
        if at > now + MAX_AHEAD:
            raise SessionError("Choose a time within the next 60 days.", field)
        if at in chosen:
            raise SessionError("You chose this time already: choose another, or leave it "
                               "empty.", field)
        chosen.append(at)
    return chosen


def _checked_place(place: str | None) -> str | None:
    place = (place or "").strip() or None
    if not fits(place, PLACE_LENGTH):
        raise SessionError(f"Say where in up to {PLACE_LENGTH} characters, without special "
                           "characters: a room, or a Slack huddle link.", "place")
    return place


def propose(session: Session, request_id: int | None, supporter_id: str,
            times: Sequence[datetime | None], place: str | None, *, now: datetime
            ) -> list[SessionProposal]:
    """A seat holder proposes one to three times (and where); the caller is asked to pick one
    in the group DM. Two supporters proposing at once: one wins, the other is told."""
    _request, team = _supporting(session, request_id, supporter_id, lock=True)
    chosen = _checked_times(times, now)
    where = _checked_place(place)
    if not _move(session, team, (SessionState.NONE,), session_state=SessionState.PROPOSED,
                 session_at=None, session_place=where, invitation_posted=False):
        raise SessionError(_already_proposed(session, team, supporter_id))
    proposals = [SessionProposal(request_id=team.request_id, version=team.session_version,
                                 starts_at=at, proposed_by=supporter_id, created_at=now)
                 for at in chosen]
    session.add_all(proposals)
    session.flush()
    _say(session, team, Change.PROPOSED, "group", now, by=supporter_id)
    return proposals


def proposals_of(session: Session, team: TeamRequest) -> list[SessionProposal]:
    """The times proposed in the team's current version, earliest first."""
    return list(session.scalars(select(SessionProposal).where(
        SessionProposal.request_id == team.request_id,
        SessionProposal.version == team.session_version)
        .order_by(SessionProposal.starts_at, SessionProposal.id)))


# -- picking -----------------------------------------------------------------------------------

def pick(session: Session, proposal_id: int | None, user_id: str, *, now: datetime) -> Moved:
    """The caller picks a proposed time: it is set, the group DM says so, the caller gets an
    invitation to share, everyone's reminder is planned, and the team's private outreach (if
    any) starts. A double click or two picks at once: one wins, the other is told."""
    proposal = session.get(SessionProposal, proposal_id or 0)
    request, team = _locked(session, proposal.request_id) if proposal is not None \
        else (None, None)
    if proposal is None or team is None or not _involved(session, request, user_id):
        raise SessionError(GONE)
    assert request is not None
    if request.requester_id != user_id:
        raise SessionError(f"Only <@{request.requester_id}> picks the time, since they know "
                           "the team's shifts best. They will see these times too.")
    _still_on(request)
    session.refresh(proposal)
    if team.session_state == SessionState.SET:
        raise SessionError("The time is already set: it is in your group conversation.")
    if team.session_state != SessionState.PROPOSED or proposal.version != team.session_version:
        raise SessionError(GONE + " " + _where_it_stands(team))
    if proposal.starts_at <= now:
        raise SessionError("That time has passed. Choose another, or use Ask for other times.")
    if not _move(session, team, (SessionState.PROPOSED,), session_state=SessionState.SET,
                 session_at=proposal.starts_at, invitation_posted=False):
        # Another change won meanwhile (SQLite reads without the row lock): say which.
        session.refresh(team)
        if team.session_state == SessionState.SET:
            raise SessionError("The time is already set: it is in your group conversation.")
        raise SessionError(GONE + " " + _where_it_stands(team))
    _say(session, team, Change.SET, "group", now)
    _say(session, team, Change.INVITATION, f"{user_id}:invitation", now, user_id=user_id)
    due = max(now, proposal.starts_at - REMIND_BEFORE)
    duework.schedule(session, SESSION_REMINDER, due, now=now,
                     payload={"request_id": team.request_id, "version": team.session_version},
                     key=reminder_key(team.request_id, team.session_version))
    begin_outreach(session, team.request_id, now)
    outreach.refresh_notes(session, team.request_id, now)
    return Moved(request, team)


def _where_it_stands(team: TeamRequest) -> str:
    if team.session_state == SessionState.NONE:
        return "The supporters will propose new times."
    if team.session_state == SessionState.CANCELLED:
        return "The group conversation was called off."
    return "The newest times are in your group conversation."


# -- rescheduling and calling off --------------------------------------------------------------

def _changing(session: Session, request_id: int | None, user_id: str, version: int | None,
              sources: Sequence[str]) -> tuple[SupportRequest, TeamRequest]:
    request, team = _locked(session, request_id or 0)
    if team is None or not _involved(session, request, user_id):
        raise SessionError(NOT_YOURS)
    assert request is not None
    _still_on(request)
    if version is None or version != team.session_version or team.session_state not in sources:
        raise SessionError(STALE)
    return request, team


def _end_invitation(session: Session, team: TeamRequest, posted: bool, version: int,
                    posting: Posting, now: datetime) -> None:
    """What follows a set time that is given up: its reminder is dropped (it would be a no-op
    anyway), and a posted invitation is updated so nobody comes at the old time."""
    duework.cancel(session, now=now, key=reminder_key(team.request_id, version))
    if posted:
        _tell_channel(session, team, version, posting, now)


def reschedule(session: Session, request_id: int | None, user_id: str, version: int | None, *,
               now: datetime) -> Moved:
    """The caller or a supporter asks for other times (from proposed or set): back to
    proposing, and everyone is told in the group DM."""
    request, team = _changing(session, request_id, user_id, version,
                              (SessionState.PROPOSED, SessionState.SET))
    was, posted = team.session_version, team.invitation_posted
    if not _move(session, team, (SessionState.PROPOSED, SessionState.SET),
                 session_state=SessionState.NONE, session_at=None, invitation_posted=False):
        raise SessionError(STALE)
    _say(session, team, Change.RESCHEDULED, "group", now, by=user_id)
    _end_invitation(session, team, posted, was, Posting.MOVED, now)
    outreach.refresh_notes(session, team.request_id, now)
    return Moved(request, team)


def cancel(session: Session, request_id: int | None, user_id: str, version: int | None, *,
           now: datetime) -> Moved:
    """The caller or a supporter calls the group conversation off: everyone is told, and the
    team's private outreach (if any) no longer waits for a time."""
    request, team = _changing(session, request_id, user_id, version,
                              (SessionState.NONE, SessionState.PROPOSED, SessionState.SET))
    was, posted = team.session_version, team.invitation_posted
    if not _move(session, team, (SessionState.NONE, SessionState.PROPOSED, SessionState.SET),
                 session_state=SessionState.CANCELLED, session_at=None,
                 invitation_posted=False):
        raise SessionError(STALE)
    _say(session, team, Change.CANCELLED, "group", now, by=user_id)
    _end_invitation(session, team, posted, was, Posting.CALLED_OFF, now)
    begin_outreach(session, team.request_id, now)
    outreach.refresh_notes(session, team.request_id, now)
    return Moved(request, team)


# -- when the request itself changes ----------------------------------------------------------

def end_with_request(session: Session, request_id: int, now: datetime) -> bool:
    """A team request was withdrawn (or expired) or closed: a group conversation still proposed
    or set is called off, the group DM is told why, and a posted invitation says it is off so
    nobody comes. Of a closed request, a time already past stands: it took place. True if it
    was called off."""
    request, team = _locked(session, request_id)
    if request is None or team is None or request.state in ACTIVE_STATES:
        return False
    if request.state == RequestState.CLOSED and team.session_at is not None \
            and team.session_at <= now:
        return False
    was, posted = team.session_version, team.invitation_posted
    if not _move(session, team, (SessionState.PROPOSED, SessionState.SET),
                 session_state=SessionState.CANCELLED, session_at=None,
                 invitation_posted=False):
        return False
    _say(session, team, Change.CANCELLED, "group", now, ended=str(request.state),
         channel=request.intro_channel, posted=posted)
    _end_invitation(session, team, posted, was, Posting.CALLED_OFF, now)
    outreach.refresh_notes(session, team.request_id, now)
    return True


def reset_for_new_supporters(session: Session, request_id: int, now: datetime) -> bool:
    """A seat holder handed a team request back: a time proposed or set with them is set
    aside (its reminder and buttons no longer count), the group DM they were in is told, and
    a posted invitation says the time is moving. Whoever joins is introduced in a new group
    DM that invites new times. True if a time was set aside."""
    request, team = _locked(session, request_id)
    if request is None or team is None or request.state not in ACTIVE_STATES:
        return False
    was, posted = team.session_version, team.invitation_posted
    if not _move(session, team, (SessionState.PROPOSED, SessionState.SET),
                 session_state=SessionState.NONE, session_at=None, invitation_posted=False):
        return False
    # The DM the times were in, named now: a re-placement introduces a new one.
    _say(session, team, Change.STEPPED_BACK, "group", now, channel=request.intro_channel,
         posted=posted)
    _end_invitation(session, team, posted, was, Posting.MOVED, now)
    outreach.refresh_notes(session, team.request_id, now)
    return True


# -- the invitation in the team's channel -------------------------------------------------------

def post_invitation(session: Session, request_id: int | None, user_id: str,
                    version: int | None, *, now: datetime) -> Moved:
    """The caller asks for the invitation to be posted in the team's channel: once per set
    time, however often they click."""
    request, team = _locked(session, request_id or 0)
    if team is None or request is None or request.requester_id != user_id:
        raise SessionError("This invitation is not yours to post.")
    _still_on(request)
    if not team.channel_id:
        raise SessionError("Your team has no channel to post in: copy the invitation instead.")
    if version is None or version != team.session_version \
            or team.session_state != SessionState.SET:
        raise SessionError("This invitation is for an earlier time, so it was not posted. The "
                           "newest message in your group conversation shows where it stands.")
    if team.invitation_posted:
        raise SessionError(f"It is already posted in <#{team.channel_id}>.")
    posted = session.execute(update(TeamRequest).where(
        TeamRequest.request_id == team.request_id, TeamRequest.session_version == version,
        TeamRequest.session_state == SessionState.SET, TeamRequest.invitation_posted.is_(False))
        .values(invitation_posted=True).execution_options(synchronize_session=False)
    ).rowcount == 1
    session.refresh(team)
    if not posted:
        raise SessionError(f"It is already posted in <#{team.channel_id}>.")
    _tell_channel(session, team, version, Posting.POST, now)
    return Moved(request, team)


def invitation_not_posted(session: Session, request_id: int, version: int) -> None:
    """The channel refused the post (the app is not in it): the caller may try again."""
    session.execute(update(TeamRequest).where(
        TeamRequest.request_id == request_id, TeamRequest.session_version == version)
        .values(invitation_posted=False).execution_options(synchronize_session=False))


# -- the reminder ------------------------------------------------------------------------------

def current(session: Session, request_id: int, version: int
            ) -> tuple[SupportRequest, TeamRequest] | None:
    """The request and its set time, if the time set in `version` still stands (not moved on,
    called off, or the request closed or withdrawn); None otherwise."""
    request = session.get(SupportRequest, request_id)
    team = session.get(TeamRequest, request_id) if request is not None else None
    if request is None or team is None or request.state not in ACTIVE_STATES \
            or team.session_state != SessionState.SET or team.session_version != version:
        return None
    return request, team


def reminder_due(session: Session, request_id: int, version: int, *, now: datetime
                 ) -> list[str]:
    """The reminder's timer: a reminder to the caller and each seat holder, if the time set in
    `version` still stands and is still ahead; returns who is reminded."""
    found = current(session, request_id, version)
    if found is None:
        return []
    request, team = found
    if team.session_at is None or team.session_at <= now:
        return []  # the clock was down past the time itself: a reminder would only confuse
    people = list(dict.fromkeys(p for p in (request.requester_id,
                                            *seat_holders(session, request_id)) if p))
    for user_id in people:
        _say(session, team, Change.REMINDER, f"{user_id}:reminder", now, user_id=user_id)
    return people
