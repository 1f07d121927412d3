"""Delivering the outbox: how each kind of message a request's change implies reaches Slack.

Each effect is a due-work item (bot.infra.outbox). Its delivery reads the database as it is now, so a
message always shows the latest state; it marks what it posts with its own id (message
metadata) and, when it runs again after a crash or a timeout, looks for that message before
posting, so nothing is posted twice. A message that posts once and is then updated (an offer, a
status DM, an alert) waits for any earlier effect of the same message, so two never both post.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.infra import outbox
from bot.infra.duework import JobContext, JobKind, JobRegistry, RetryLater
from bot.infra.messaging import APP_PROBLEM_RETRY, Posted, SlackAppProblem, SlackUnreachable, retry_after
from bot.infra.models import (
    UNASSIGNED_STATES,
    CoordinatorAlert,
    Offer,
    OfferState,
    RequestKind,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.library import Moment
from bot.requests import flows as request_flow
from bot.requests import service as domain
from bot.requests import teams
from handlers.common.services import Services
from handlers.requests.blocks import (
    NOTICES,
    TEAM_NOTICES,
    alert_outcome,
    alert_renotice,
    alert_resolved,
    coordinator_alert,
    introduction,
    offer_ended,
    offer_message,
    requester_status,
    supporter_case,
    team_case,
)

log = logging.getLogger(__name__)
MARK = "peersupport_effect"
# How long a delivery waits in place for an earlier one of the same message that is going out
# now (usually a Slack round trip from done; longer on a busy machine or a slow Slack) before
# handing itself back to the clock, and how often it looks.
WAIT_FOR_EARLIER = 10.0
WAIT_FOR_EARLIER_POLL = (0.02, 0.05, 0.1, 0.2)
# Failures (not rate limits) a message may have before it is shown to coordinators as refused:
# with the engine's doubling pause, about three hours of Slack failing.
MAX_ATTEMPTS = 10

Deliver = Callable[["Services", JobContext], None]


def _mark(ctx: JobContext) -> dict[str, Any]:
    """Metadata naming this effect on the message it posts."""
    return {"event_type": MARK, "event_payload": {"effect": _effect_id(ctx)}}


def _effect_id(ctx: JobContext) -> str:
    # The key names the change that implied the message (its version is in it), and stays the
    # same across every retry, whatever time the retry was set for. Keys name ids only.
    return ctx.key or str(ctx.item_id)


def post_once(services: Services, ctx: JobContext, channel: str, content: dict[str, Any],
               *, thread_ts: str | None = None) -> Posted:
    """Post `content` in `channel` unless an earlier attempt of this effect already did."""
    if ctx.attempt > 1:
        found = services.messenger.find_marked(channel, MARK, "effect", _effect_id(ctx),
                                              thread_ts=thread_ts)
        if found is not None:
            return found
    return services.messenger.post_message(channel, metadata=_mark(ctx), thread_ts=thread_ts,
                                          **content)


def dm_once(services: Services, ctx: JobContext, user_id: str, content: dict[str, Any]) -> Posted:
    return post_once(services, ctx, services.messenger.open_conversation([user_id]), content)


def wait_for_earlier(ctx: JobContext, kind: Effect, prefix: str) -> None:
    """Return once no earlier effect of `kind` under `prefix` is unfinished; else hand back to
    the clock."""
    deadline = time.monotonic() + WAIT_FOR_EARLIER
    pauses = itertools.chain(WAIT_FOR_EARLIER_POLL, itertools.repeat(WAIT_FOR_EARLIER_POLL[-1]))
    while True:
        with ctx.session.get_bind().connect() as fresh:  # sees what others committed meanwhile
            if not outbox.earlier_unfinished(fresh, kind.value, prefix, ctx.item_id):
                return
            later = outbox.handed_back_until(fresh, kind.value, prefix, ctx.item_id,
                                             now=ctx.now)
        if later is not None:
            # The earlier one waits for a later tick: waiting here would only hold a thread.
            seconds = max(1, math.ceil((later - ctx.now).total_seconds()))
            raise RetryLater(seconds, "waiting for the message's first post")
        if time.monotonic() >= deadline:
            raise RetryLater(1, "waiting for the message's first post")
        time.sleep(next(pauses))


def _slack_trouble(error: Exception) -> Exception:
    """How a Slack failure is retried: a rate limit after Retry-After, never counted as a
    failure; the app's own token or scopes in five minutes; anything else (a 5xx after
    slack_sdk's retries, a refused message) counts towards failing for good, where coordinators
    see it."""
    if isinstance(error, SlackAppProblem):
        return RetryLater(APP_PROBLEM_RETRY, f"slack: {error.error}")
    if isinstance(error, SlackApiError) and error.response.get("error") == "ratelimited":
        return RetryLater(retry_after(error), "slack: ratelimited")
    return error


def _held_back(services: Services) -> RetryLater | None:
    """While Slack's last Retry-After runs, wait for it instead of meeting the limit again (and
    instead of holding a listener's thread in slack_sdk's retry sleeps)."""
    wait = services.messenger.slowed_for()
    return RetryLater(wait, "slack: ratelimited") if wait > 0 else None


def guarded(deliver: Deliver, services: Services) -> Callable[[JobContext], None]:
    def run(ctx: JobContext) -> None:
        held = _held_back(services)
        if held is not None:
            raise held
        try:
            deliver(services, ctx)
        except SlackUnreachable:
            return  # the person or channel is gone: there is nobody left to tell
        except (SlackAppProblem, SlackApiError) as error:
            raise _slack_trouble(error) from None

    return run


# -- offers ------------------------------------------------------------------------------------

def post_offers(services: Services, batch: Sequence[JobContext]) -> dict[int, Exception]:
    """Offer DMs that fell due together, posted a few at a time; an offer whose supporter cannot
    be reached fails, and a wave left with nobody moves on at once."""
    if not batch:
        return {}
    held = _held_back(services)
    if held is not None:
        return {ctx.item_id: held for ctx in batch}
    db = batch[0].session
    failures: dict[int, Exception] = {}
    todo: list[tuple[JobContext, Offer, SupportRequest]] = []
    # A wave's offers and their request in two queries, not two per offer.
    offers = {o.id: o for o in db.scalars(select(Offer).where(
        Offer.id.in_([int(ctx.payload["offer_id"]) for ctx in batch])))}
    requests = {r.id: r for r in db.scalars(select(SupportRequest).where(
        SupportRequest.id.in_({o.request_id for o in offers.values()})))}
    for ctx in batch:
        offer = offers.get(int(ctx.payload["offer_id"]))
        request = requests.get(offer.request_id) if offer is not None else None
        if offer is None or request is None or offer.ts or offer.state != OfferState.PENDING \
                or request.state not in UNASSIGNED_STATES:
            continue  # placed, withdrawn or expired before it went out: nothing to show
        todo.append((ctx, offer, request))
    asked = teams.of_requests(db, (r.id for _c, _o, r in todo if r.kind == RequestKind.TEAM))

    def post(entry: tuple[JobContext, Offer, SupportRequest]) -> Posted | None | Exception:
        ctx, offer, request = entry
        try:
            return dm_once(services, ctx, offer.supporter_id or "", offer_message(
                request, offer.id, direct=offer.direct, team=asked.get(request.id)))
        except SlackUnreachable:
            return None
        except Exception as error:  # noqa: BLE001 - one offer's failure is retried alone
            return _slack_trouble(error)

    # A wave of fifty posted one after another would take seconds: a few at a time.
    results = services.messenger.in_parallel(post, todo)
    posted: list[tuple[Offer, Posted]] = []
    unreachable: list[tuple[JobContext, Offer]] = []
    for (ctx, offer, _request), result in zip(todo, results, strict=True):
        if isinstance(result, Exception):
            failures[ctx.item_id] = result
        elif result is None:
            unreachable.append((ctx, offer))
        else:
            posted.append((offer, result))
    # Lock order matters: every change to a request takes its row before its offers' rows (an
    # accept does), so the requests of unreachable offers are settled before any offer row here
    # is written, in request order.
    settled: set[int] = set()
    for ctx, offer in sorted(unreachable, key=lambda pair: (pair[1].request_id, pair[1].id)):
        request = domain.offer_failed(db, offer.id, now=ctx.now)
        if request is not None:
            settled.add(request.id)
    for request_id in sorted(settled):
        request = db.get(SupportRequest, request_id)
        # Nobody in this wave could be reached: move on now instead of at the timeout.
        request_flow.advance(services, db, request, request.wave)
    for offer, where in posted:
        offer.channel, offer.ts = where.channel, where.ts
    return failures


def end_offer(services: Services, ctx: JobContext) -> None:
    """An offer DM replaced by how it ended (accepted, taken, withdrawn, declined, expired)."""
    offer = ctx.session.get(Offer, int(ctx.payload["offer_id"]))
    if offer is None:
        return
    if not offer.ts:
        wait_for_earlier(ctx, Effect.OFFER_POST, f"offer:{offer.id}:")
        ctx.session.refresh(offer)
        if not offer.ts:
            return  # it never went out: nothing to replace
    services.messenger.update_message(offer.channel or "", offer.ts,
                                     **offer_ended(str(ctx.payload["how"])))


# -- the person who asked, and their supporter --------------------------------------------------

def sync_status(services: Services, ctx: JobContext) -> None:
    """The requester's status DM: posted once, then updated in place with the latest state."""
    request = ctx.session.get(SupportRequest, int(ctx.payload["request_id"]))
    if request is None or not request.requester_id:
        return
    if not request.status_ts:
        wait_for_earlier(ctx, Effect.STATUS, f"status:{request.id}:")
        ctx.session.refresh(request)
    content = requester_status(request, services.library.for_moment(
        Moment.REQUEST_WAITING, audience="clinician"))
    if request.status_channel and request.status_ts:
        services.messenger.update_message(request.status_channel, request.status_ts, **content)
        return
    posted = dm_once(services, ctx, request.requester_id, content)
    request.status_channel, request.status_ts = posted.channel, posted.ts


def _team(db: Session, request: SupportRequest) -> TeamRequest | None:
    """What a team request asked for (None for a personal request)."""
    return db.get(TeamRequest, request.id) if request.kind == RequestKind.TEAM else None


def _still_assigned(ctx: JobContext) -> SupportRequest | None:
    request = ctx.session.get(SupportRequest, int(ctx.payload["request_id"]))
    if request is None or request.state != "assigned" or not request.requester_id:
        return None  # handed back or withdrawn before this went out
    if request.kind == RequestKind.TEAM:
        # Placed again since (one stepped back, another took the seat): that placement speaks.
        return request if int(ctx.payload.get("version") or request.version) == request.version \
            else None
    return request if request.supporter_id == ctx.payload["supporter_id"] else None


def introduce(services: Services, ctx: JobContext) -> None:
    """The group DM that introduces the person who asked and their supporter."""
    request = _still_assigned(ctx)
    if request is None:
        return
    supporters = [str(s) for s in ctx.payload.get("supporter_ids") or [request.supporter_id]]
    channel = services.messenger.open_conversation([request.requester_id or "", *supporters])
    post_once(services, ctx, channel, introduction(request, supporters, _team(ctx.session, request)))
    request.intro_channel = channel


def send_case(services: Services, ctx: JobContext) -> None:
    """The supporter's own message for the case: tips, and Hand back / Close (of a team
    request: the team's facts, and Propose times when a group conversation was asked for)."""
    request = _still_assigned(ctx)
    if request is None:
        return
    supporter_id = str(ctx.payload["supporter_id"] or "")
    if request.kind != RequestKind.TEAM:
        dm_once(services, ctx, supporter_id, supporter_case(request, services.library.for_moment(
            Moment.SUPPORTER_ACCEPTED, audience="supporter")))
        return
    team = ctx.session.get(TeamRequest, request.id)
    # Tips about group conversations first, when the library has them and one was asked for.
    surfacing = services.library.for_moment(
        Moment.SUPPORTER_ACCEPTED, audience="supporter",
        topics=("group", "team") if team is not None and team.group else ("team",))
    dm_once(services, ctx, supporter_id, team_case(
        request, team, domain.seat_holders(ctx.session, request.id), surfacing))


def send_notice(services: Services, ctx: JobContext) -> None:
    """A fixed note to one person (their supporter handed back; the person withdrew; the other
    seat holder closed a team's support)."""
    notice = str(ctx.payload["notice"])
    request = ctx.session.get(SupportRequest, int(ctx.payload.get("request_id") or 0))
    text = TEAM_NOTICES.get(notice) if request is not None and \
        request.kind == RequestKind.TEAM else None
    dm_once(services, ctx, str(ctx.payload["user_id"]), {"text": text or NOTICES[notice]})


def send_message(services: Services, ctx: JobContext) -> None:
    """A prepared message to one person (a coverage warning, the daily digest, a nudge)."""
    message = dict(ctx.payload["message"])
    dm_once(services, ctx, str(ctx.payload["user_id"]),
             {"text": str(message.get("text", "")), "blocks": message.get("blocks")})


# -- coordinators ------------------------------------------------------------------------------

def sync_alert(services: Services, ctx: JobContext) -> None:
    """One coordinator's alert for one request: posted once, updated in place as the wait goes
    on and once the request is placed or withdrawn; a re-notice is a reply in its thread."""
    db = ctx.session
    request = db.get(SupportRequest, int(ctx.payload["request_id"]))
    coordinator = str(ctx.payload["coordinator_id"])
    if request is None:
        return
    alert = _alert_of(db, request.id, coordinator)
    if alert is None:
        wait_for_earlier(ctx, Effect.ALERT, f"alert:{request.id}:{coordinator}:")
        alert = _alert_of(db, request.id, coordinator)
    unplaced = request.state in UNASSIGNED_STATES
    if alert is None and not unplaced:
        return  # placed or withdrawn before the alert went out: nobody needs to hear of it
    waited = ctx.now - request.created_at
    content = coordinator_alert(request, waited=waited, asked=_asked(db, request),
                                team=_team(db, request)) if unplaced \
        else _outcome(db, request)
    if alert is None:
        posted = dm_once(services, ctx, coordinator, content)
        db.add(CoordinatorAlert(request_id=request.id, coordinator_id=coordinator,
                                channel=posted.channel, ts=posted.ts, created_at=ctx.now))
        return
    services.messenger.update_message(alert.channel, alert.ts, **content)
    if unplaced and int(ctx.payload.get("renotify") or 0) > 0:
        post_once(services, ctx, alert.channel, alert_renotice(waited), thread_ts=alert.ts)


def _outcome(db: Session, request: SupportRequest) -> dict[str, Any]:
    holders = domain.seat_holders(db, request.id) if request.kind == RequestKind.TEAM else []
    return alert_resolved(alert_outcome(request, holders))


def _alert_of(db: Session, request_id: int, coordinator: str) -> CoordinatorAlert | None:
    return db.scalars(select(CoordinatorAlert).where(
        CoordinatorAlert.request_id == request_id,
        CoordinatorAlert.coordinator_id == coordinator)
        .execution_options(populate_existing=True)).first()


def _asked(db: Session, request: SupportRequest) -> int:
    return len(db.scalars(select(Offer.id).where(
        Offer.request_id == request.id, Offer.state != OfferState.FAILED)).all())


def register_effects(jobs: JobRegistry, services: Services) -> None:
    """Register how each kind of effect is delivered. Effects run however late: a message a
    change implies is never dropped for being late."""
    singles: dict[Effect, Deliver] = {
        Effect.OFFER_END: end_offer, Effect.STATUS: sync_status, Effect.INTRO: introduce,
        Effect.CASE: send_case, Effect.ALERT: sync_alert, Effect.NOTICE: send_notice,
        Effect.MESSAGE: send_message,
    }
    for effect, deliver in singles.items():
        jobs.register(JobKind(effect.value, guarded(deliver, services),
                                      always_run=True, max_attempts=MAX_ATTEMPTS))

    def offers_one(ctx: JobContext) -> None:
        failures = post_offers(services, [ctx])
        if ctx.item_id in failures:
            raise failures[ctx.item_id]

    jobs.register(JobKind(Effect.OFFER_POST.value, offers_one, always_run=True,
                                  max_attempts=MAX_ATTEMPTS,
                                  run_batch=lambda batch: post_offers(services, batch)))
