"""Delivering a team's private outreach: reading who is on the team, then one note each, and
bringing each note up to date when the group conversation changes.

The start reads the members from Slack and records one note per member in the outbox (see
bot.requests.outreach.start); each note is its own delivery, posted once (marked with its key
and looked for on a retry, as every outbox message is) and counted in the same transaction as
its delivery, so a retry after a crash, a timeout or a 429 neither posts nor counts twice. A
group or channel is used only when the caller is in it. An update of a note (recorded by
bot.requests.outreach.refresh_notes) finds that marked note and replaces it in place.
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
from handlers.requests.effects import MARK, MAX_ATTEMPTS, dm_once, guarded
from handlers.teams.outreach_blocks import member_note, not_used, too_large

log = logging.getLogger(__name__)
# Slack's answers when a user group is gone or disabled: its members cannot be read.
_NO_GROUP = frozenset({"no_such_subteam", "subteam_not_found"})
# What a note offers to read: peer support's own stories first, and the crisis lines.
TOPICS = ("second-victim", "recovery", "peer-support")
# How far back in a member's DM an update looks for their note: a week of check-ins and
# replies is far fewer messages than this.
NOTE_WITHIN = 200
# How long an update waits, when the member's note (or an earlier update of it) is still to go
# out, before looking again: run side by side, the older wording could land last.
NOTE_FIRST = 5


def resources(services: Services) -> Surfacing:
    """The library's resources and crisis lines for a team member's note."""
    return services.library.for_moment(Moment.REQUEST_WAITING, audience="clinician",
                                       topics=TOPICS)


def _group(services: Services, group_id: str) -> list[str] | None:
    """A user group's members; None when it cannot be read (gone or disabled)."""
    try:
        return services.messenger.usergroup_members(group_id)
    except SlackUnreachable:
        return None
    except SlackApiError as error:
        if error.response.get("error") not in _NO_GROUP:
            raise
        return None


def _channel(services: Services, channel_id: str) -> list[str] | None:
    """A channel's members (every page); None when it cannot be read."""
    try:
        return services.messenger.channel_members(channel_id)
    except SlackUnreachable:  # gone, or a private channel the app is not in
        return None


def _members(services: Services, sources: Sources) -> tuple[set[str], list[tuple[str, bool]]]:
    """Everyone the caller named, in their group and in their channel, and which of the group
    and channel were not used: (what, whether it could be read). One that could be read is
    used only when the caller is in it, so a channel chosen by mistake (a hospital-wide one)
    never sends notes to people outside the team."""
    found = set(sources.people)
    unused: list[tuple[str, bool]] = []
    for what, source, read in (("user group", sources.usergroup_id, _group),
                               ("channel", sources.channel_id, _channel)):
        if not source:
            continue
        members = read(services, source)
        if members is None:
            unused.append((what, False))
        elif sources.caller is None or sources.caller not in members:
            unused.append((what, True))
        else:
            found.update(members)
    return found, unused


def start_outreach(services: Services, ctx: JobContext) -> None:
    """TEAM_OUTREACH_START: resolve the members and record their notes, once."""
    db = ctx.session
    request_id = int(ctx.payload["request_id"])
    sources = outreach.sources(db, request_id)
    found, unused = _members(services, sources) if sources is not None else (set(), [])
    bot_id = str(services.messenger.auth_test().get("user_id") or "") \
        if sources is not None else None
    started = outreach.start(db, request_id, found, bot_id=bot_id, now=ctx.now)
    log.info("team request %d: outreach %s, %d to reach, %d source(s) not used", request_id,
             started.outcome.value, started.members, len(unused))
    team = db.get(TeamRequest, request_id)
    request = db.get(SupportRequest, request_id)
    if team is None or request is None:
        return
    if started.outcome == Start.TOO_LARGE:
        what = "too_large"
    elif started.outcome in (Start.STARTED, Start.NOBODY) and unused:
        what = "unreadable"
    else:
        return
    # The caller chose the team's group or channel; the supporters are with them.
    for user_id in dict.fromkeys(u for u in (request.requester_id, *seat_holders(db, request_id))
                                 if u):
        content = too_large(team, started.members) if what == "too_large" else not_used(
            team, unused, others=started.members > 0, to_caller=user_id == request.requester_id)
        outbox.message(db, user_id, content, key=f"outreachnotice:{request_id}:{what}:{user_id}",
                       now=ctx.now)


def send_note(services: Services, ctx: JobContext) -> None:
    """TEAM_OUTREACH: one member's private note, posted once and counted once; deactivated
    people, bots, the unreachable and anyone who opted out meanwhile are counted as skipped.
    An update of the note (its payload says so) is update_note."""
    if ctx.payload.get("update"):
        update_note(services, ctx)
        return
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


def update_note(services: Services, ctx: JobContext) -> None:
    """A member's note brought up to date with the group conversation as it stands now: the
    marked note found in their DM and replaced in place, never a second message. A note never
    delivered (skipped, unreachable) is left alone, and nothing is counted."""
    db = ctx.session
    request_id, user_id = int(ctx.payload["request_id"]), str(ctx.payload["user_id"])
    original = outreach.note_key(request_id, user_id)
    # The note, and any earlier update of it, first: the note's own key is the prefix of both.
    with db.get_bind().connect() as fresh:  # sees what others committed meanwhile
        if outbox.earlier_unfinished(fresh, Effect.TEAM_OUTREACH.value, original, ctx.item_id):
            raise RetryLater(NOTE_FIRST, "waiting for the member's note")
    team = db.get(TeamRequest, request_id)
    if team is None:
        return
    found = services.messenger.find_marked(services.messenger.open_conversation([user_id]), MARK,
                                           "effect", original, limit=NOTE_WITHIN)
    if found is None:
        return  # never delivered: there is nothing of it to bring up to date
    services.messenger.update_message(found.channel, found.ts,
                                      **member_note(team, resources(services), updated=True))


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
