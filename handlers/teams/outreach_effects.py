"""Delivering a team's private outreach: reading who is on the team, then one note each.

The start reads the members from Slack and records one note per member in the outbox (see
bot.requests.outreach.start); each note is its own delivery, posted once (marked with its key
and looked for on a retry, as every outbox message is) and counted in the same transaction as
its delivery, so a retry after a crash, a timeout or a 429 neither posts nor counts twice.
Logs name request ids and counts, never a member.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot.infra import outbox
from bot.infra.duework import JobContext, JobKind, JobRegistry, RetryLater
from bot.infra.messaging import SlackUnreachable
from bot.infra.models import SupportRequest, TeamRequest
from bot.infra.outbox import Effect
from bot.library import Moment, Surfacing
from bot.requests import outreach
from bot.requests.outreach import Sources, Start
from bot.requests.service import seat_holders
from handlers.common.services import Services

# The shared delivery rules of every outbox message (handlers/requests/effects.py): a 429 makes
# the delivery wait for Retry-After process-wide, and a retry looks for its message first.
from handlers.requests.effects import MAX_ATTEMPTS, dm_once, guarded
from handlers.teams.outreach_blocks import member_note, too_large, unreadable

log = logging.getLogger(__name__)
# Slack's answers when a user group is gone or disabled: its members cannot be read.
_NO_GROUP = frozenset({"no_such_subteam", "subteam_not_found"})
# What a note offers to read: peer support's own stories first, and the crisis lines.
TOPICS = ("second-victim", "recovery", "peer-support")


def resources(services: Services) -> Surfacing:
    """The library's resources and crisis lines for a team member's note."""
    return services.library.for_moment(Moment.REQUEST_WAITING, audience="clinician",
                                       topics=TOPICS)


def _members(services: Services, sources: Sources) -> tuple[set[str], list[str]]:
    """Everyone the caller named, in their group and in their channel (every page), and which of
    the group and channel could not be read."""
    found = set(sources.people)
    missing: list[str] = []
    if sources.usergroup_id:
        try:
            found.update(services.messenger.usergroup_members(sources.usergroup_id))
        except SlackUnreachable:
            missing.append("user group")
        except SlackApiError as error:
            if error.response.get("error") not in _NO_GROUP:
                raise
            missing.append("user group")
    if sources.channel_id:
        try:
            found.update(services.messenger.channel_members(sources.channel_id))
        except SlackUnreachable:  # gone, or a private channel the app is not in
            missing.append("channel")
    return found, missing


def start_outreach(services: Services, ctx: JobContext) -> None:
    """TEAM_OUTREACH_START: resolve the members and record their notes, once."""
    db = ctx.session
    request_id = int(ctx.payload["request_id"])
    sources = outreach.sources(db, request_id)
    found, missing = _members(services, sources) if sources is not None else (set(), [])
    bot_id = str(services.messenger.auth_test().get("user_id") or "") \
        if sources is not None else None
    started = outreach.start(db, request_id, found, bot_id=bot_id, now=ctx.now)
    log.info("team request %d: outreach %s, %d to reach", request_id, started.outcome.value,
             started.members)
    team = db.get(TeamRequest, request_id)
    request = db.get(SupportRequest, request_id)
    if team is None or request is None:
        return
    if started.outcome == Start.TOO_LARGE:
        content, what = too_large(team, started.members), "too_large"
    elif started.outcome in (Start.STARTED, Start.NOBODY) and missing:
        content = unreadable(team, " and ".join(missing), others=started.members > 0)
        what = "unreadable"
    else:
        return
    # The caller chose the team's group or channel; the supporters are with them.
    for user_id in dict.fromkeys(u for u in (request.requester_id, *seat_holders(db, request_id))
                                 if u):
        outbox.message(db, user_id, content, key=f"outreachnotice:{request_id}:{what}:{user_id}",
                       now=ctx.now)


def send_note(services: Services, ctx: JobContext) -> None:
    """TEAM_OUTREACH: one member's private note, posted once and counted once; deactivated
    people, bots, the unreachable and anyone who opted out meanwhile are counted as skipped."""
    db = ctx.session
    request_id, user_id = int(ctx.payload["request_id"]), str(ctx.payload["user_id"])
    team = outreach.note_to_send(db, request_id, user_id)
    if team is None:
        return  # the request was withdrawn meanwhile: nothing more is sent
    if outreach.opted_out(db, user_id):
        outreach.skipped(db, request_id)
        return
    try:
        user = services.messenger.user_info(user_id)
        if user.get("deleted") or user.get("is_bot"):
            outreach.skipped(db, request_id)
            return
        dm_once(services, ctx, user_id, member_note(team, resources(services)))
    except SlackUnreachable:
        outreach.skipped(db, request_id)
        return
    outreach.reached(db, request_id)


def finish(ctx: JobContext) -> None:
    """The finishing timer: the outreach is sent once every note is delivered or skipped."""
    if outreach.finish(ctx.session, int(ctx.payload["request_id"]), ctx.item_id) is None:
        raise RetryLater(outreach.FINISH_EVERY, "notes still going out")


def register_effects(jobs: JobRegistry, services: Services) -> None:
    """Register the outreach's start, each note, and the finishing timer. They run however late:
    a note is never dropped for being late."""
    for effect, deliver in ((Effect.TEAM_OUTREACH_START, start_outreach),
                            (Effect.TEAM_OUTREACH, send_note)):
        jobs.register(JobKind(effect.value, guarded(deliver, services), always_run=True,
                              max_attempts=MAX_ATTEMPTS))
    jobs.register(JobKind(outreach.FINISH, finish, always_run=True))
