"""Delivering a group conversation's messages (Effect.TEAM_SESSION, Effect.TEAM_INVITATION).

As for a request's messages (handlers/requests/effects.py): each delivery reads the database as
it is now and says nothing once its change was overtaken (a later version, a closed or
withdrawn request), marks what it posts with its effect's key, and on a retry looks for that
message before posting, so nothing is posted twice.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import SlackUnreachable
from bot.infra.models import RequestState, SessionState, SupportRequest, TeamRequest
from bot.infra.outbox import Effect
from bot.requests import service as requests
from bot.requests import sessions as domain
from bot.requests.sessions import Change, Posting
from handlers.common.services import Services
from handlers.requests.effects import (
    MARK,
    MAX_ATTEMPTS,
    dm_once,
    guarded,
    post_once,
    wait_for_earlier,
)
from handlers.teams.session_blocks import (
    called_off,
    caller_invitation,
    channel_invitation,
    channel_update,
    ended_with_request,
    proposals_message,
    reminder,
    rescheduled,
    session_set,
    stepped_back,
)


def _group_channel(services: Services, ctx: JobContext, request: SupportRequest) -> str:
    """The team's group DM: the one the change named (a hand-back's, before a new one is
    introduced), the introduction's, or the same conversation opened again."""
    named = ctx.payload.get("channel")
    if isinstance(named, str) and named:
        return named
    if request.intro_channel:
        return request.intro_channel
    people = [request.requester_id or "", *requests.seat_holders(ctx.session, request.id)]
    return services.messenger.open_conversation([p for p in people if p])


def _time_zone(services: Services, user_id: str) -> str:
    """The person's own zone from Slack, else the program's."""
    try:
        tz = services.messenger.user_info(user_id).get("tz")
    except SlackUnreachable:
        tz = None
    return tz if isinstance(tz, str) and tz else services.settings.program_timezone


def _set_aside(ctx: JobContext, request: SupportRequest, team: TeamRequest, change: Change
               ) -> dict:
    """What the group DM is told when the time it had is given up, and why."""
    by = str(ctx.payload.get("by") or "")
    posted_in = team.channel_id if ctx.payload.get("posted") is True else None
    if change == Change.STEPPED_BACK:
        return stepped_back(request, posted_in)
    if change == Change.RESCHEDULED:
        return rescheduled(request, by, requests.seat_holders(ctx.session, request.id))
    ended = ctx.payload.get("ended")
    return ended_with_request(str(ended), posted_in) if ended else called_off(by)


def deliver_session(services: Services, ctx: JobContext) -> None:
    """One group-conversation message: in the team's group DM, or to one person."""
    db = ctx.session
    request_id, version = int(ctx.payload["request_id"]), int(ctx.payload["version"])
    change = Change(str(ctx.payload["change"]))
    request = db.get(SupportRequest, request_id)
    team = db.get(TeamRequest, request_id)
    if request is None or team is None or not request.requester_id:
        return
    if change in (Change.RESCHEDULED, Change.CANCELLED, Change.STEPPED_BACK):
        # Always said: even overtaken, it tells everyone what happened to the time they had.
        post_once(services, ctx, _group_channel(services, ctx, request),
                  _set_aside(ctx, request, team, change))
        return
    if change == Change.PROPOSED:
        if team.session_version != version or team.session_state != SessionState.PROPOSED \
                or request.state != RequestState.ASSIGNED:
            return  # picked, set aside or ended before it went out: the newer message speaks
        content = proposals_message(request, team, domain.proposals_of(db, team),
                                    str(ctx.payload.get("by") or ""))
        post_once(services, ctx, _group_channel(services, ctx, request), content)
        return
    if domain.current(db, request_id, version) is None:
        return  # the time was changed or called off, or the request ended: nothing to say
    if change == Change.SET:
        post_once(services, ctx, _group_channel(services, ctx, request),
                   session_set(request, team))
    elif change == Change.INVITATION:
        caller = request.requester_id
        dm_once(services, ctx, caller, caller_invitation(
            request, team, _time_zone(services, caller)))
    elif change == Change.REMINDER:
        dm_once(services, ctx, str(ctx.payload["user_id"]), reminder(request, team))


def deliver_invitation(services: Services, ctx: JobContext) -> None:
    """The invitation in the team's channel, once the caller asked; or that post updated once
    its time is given up."""
    db = ctx.session
    request_id, version = int(ctx.payload["request_id"]), int(ctx.payload["version"])
    posting = Posting(str(ctx.payload["posting"]))
    request = db.get(SupportRequest, request_id)
    team = db.get(TeamRequest, request_id)
    if request is None or team is None or not team.channel_id:
        return
    if posting != Posting.POST:
        post_key = domain.invitation_key(request_id, version, Posting.POST)
        # A post still going out (it may have read the old time just before the change) is
        # waited for, so it is found here and corrected rather than left showing the old time.
        wait_for_earlier(ctx, Effect.TEAM_INVITATION, post_key)
        posted = services.messenger.find_marked(team.channel_id, MARK, "effect", post_key)
        if posted is not None:
            services.messenger.update_message(posted.channel, posted.ts, **channel_update(
                team, called=posting == Posting.CALLED_OFF))
        return
    if domain.current(db, request_id, version) is None:
        return  # changed or called off before it went out: the old time must not be posted
    try:
        post_once(services, ctx, team.channel_id, channel_invitation(request, team))
    except SlackUnreachable:
        # The app cannot post there (a private channel it is not in): the caller may try
        # again once it is added, or copy the invitation instead.
        domain.invitation_not_posted(db, request_id, version)
        if request.requester_id:
            dm_once(services, ctx, request.requester_id, {"text": (
                f"I could not post the invitation in <#{team.channel_id}>: the app may need "
                "to be added to that channel first. You can copy the invitation instead, or "
                "add the app and press the button again.")})


def register_effects(jobs: JobRegistry, services: Services) -> None:
    """Register how the group conversation's messages are delivered: however late (a message
    a change implies is never dropped for being late)."""
    singles: dict[Effect, Callable[[Services, JobContext], None]] = {
        Effect.TEAM_SESSION: deliver_session, Effect.TEAM_INVITATION: deliver_invitation}
    for effect, deliver in singles.items():
        jobs.register(JobKind(effect.value, guarded(deliver, services), always_run=True,
                              max_attempts=MAX_ATTEMPTS))
