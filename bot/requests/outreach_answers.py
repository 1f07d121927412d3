"""What a team member chooses from their private note: to talk with a peer supporter, a few
check-ins, or no more notes like this.

Each is known to the team only as one more in a count (bot.requests.outreach), and only a person
a note was recorded for can add to one. A member's personal request is an ordinary request, and
their check-ins are their own, kept to their own time zone. Kept apart from bot.requests.outreach
because placing a request needs bot.requests.flows, which the group conversation's module is
imported by: the notes must stay importable from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from bot.checkins import flows as checkin_flows
from bot.checkins import service as checkins
from bot.infra.db import after_commit, insert_for
from bot.infra.models import OutreachOptOut, RequestKind, SupportRequest, TeamRequest
from bot.requests import flows, outreach
from bot.requests.service import AlreadyOpen, RequestForm, seat_holders

# Personal support a member asks for from their note: gentle defaults, changeable by nobody but
# the supporter and the member talking.
TALK_FORM = RequestForm(urgency="today", connection="slack")
NO_LONGER_ACTIVE = ("This note is no longer active. You can still ask for support at any time: "
                    "type `/peersupport`.")
NOT_A_MEMBER = "This note was meant for a member of the team."
# Who was sent a note is kept only as long as its delivery's record, about a week.
NOT_SENT_TO_YOU = ("This note's buttons work only for the person it was sent to, for about a "
                   "week after it was sent. Support is still here whenever you want it: type "
                   "`/peersupport`.")


class OutreachError(ValueError):
    """A click on a note that cannot be done; the message is for the person who clicked."""


@dataclass(frozen=True)
class Asked:
    """A member's "Talk to a peer supporter": their request, and whether it is a new one."""

    request: SupportRequest
    created: bool


def _answerable(session: Session, request_id: int | None, user_id: str) -> TeamRequest:
    """The team request a note's button names, if its notes went out and one was recorded for
    the person who clicked."""
    team = session.get(TeamRequest, request_id) if request_id is not None else None
    request = session.get(SupportRequest, request_id) if team is not None else None
    if team is None or request is None or request.kind != RequestKind.TEAM \
            or team.outreach_state not in outreach.ANSWERABLE:
        raise OutreachError(NO_LONGER_ACTIVE)
    if user_id in (request.requester_id, request.supporter_id) or \
            user_id in seat_holders(session, request.id):
        raise OutreachError(NOT_A_MEMBER)
    if not outreach.noted(session, request.id, user_id):
        raise OutreachError(NOT_SENT_TO_YOU)
    return team


def ask_personal(services: flows.Needs, session: Session, request_id: int | None,
                 user_id: str) -> Asked:
    """A member asks to talk with a peer supporter: a personal request of their own, placed as
    any other, linked to the team only by one more in its count. Someone with a request open
    already (a repeated click too) is shown theirs, and counted once."""
    team = _answerable(session, request_id, user_id)
    try:
        request = flows.create(services, session, user_id, TALK_FORM, source_key=None)
    except AlreadyOpen as existing:
        return Asked(existing.request, created=False)
    outreach.count_one(session, team.request_id, "asked_personal")
    return Asked(request, created=True)


def plan_checkins(services: flows.Needs, session: Session, request_id: int | None,
                  user_id: str) -> bool:
    """A member opts in to a few check-ins, inside their own hours in their own time zone (read
    from Slack once committed): True when they were planned now, False when the member had them
    planned already (counted once)."""
    team = _answerable(session, request_id, user_id)
    # Take the team's row first: two clicks at once then plan (and count) once, the second
    # finding the first's plan.
    session.execute(update(TeamRequest).where(TeamRequest.request_id == team.request_id)
                    .values(opted_checkins=TeamRequest.opted_checkins)
                    .execution_options(synchronize_session=False))
    planned = checkins.plan_person(session, team.request_id, user_id,
                                   now=services.clock.now(),
                                   offsets_days=services.settings.checkin_days,
                                   default_tz=services.settings.program_timezone)
    if not planned:
        return False
    outreach.count_one(session, team.request_id, "opted_checkins")
    # Planned in the program's zone until Slack says the member's own (as any check-ins are).
    after_commit(session, lambda: checkin_flows.refresh_time_zone(services, user_id))
    return True


def opt_out(session: Session, user_id: str, *, now: datetime) -> bool:
    """The person asks for no more notes like this; True the first time (a repeat is a no-op)."""
    added = session.execute(insert_for(session, OutreachOptOut).values(user_id=user_id, created_at=now)
                            .on_conflict_do_nothing().returning(OutreachOptOut.user_id)).first()
    return added is not None


def opt_in(session: Session, user_id: str) -> bool:
    """The person wants team notes again after all; True when they had opted out."""
    return session.execute(delete(OutreachOptOut).where(OutreachOptOut.user_id == user_id)
                           .execution_options(synchronize_session=False)).rowcount > 0
