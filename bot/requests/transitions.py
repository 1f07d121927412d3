"""A request's state machine: the transition table, and the one guarded write that applies it.

Each event names the states it may start from, the state it leads to, and the messages it
implies (recorded in the outbox in the same transaction, see bot.infra.outbox). A transition is a
single conditional UPDATE that succeeds only while the request is still in one of the expected
states (and, where it matters, still with the expected supporter or wave): two clicks, a timer
and a click, or two processes can never both win, whichever database serves them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from bot.infra.models import OfferState, RequestState, SupportRequest
from bot.infra.outbox import Effect

OPEN, ESCALATED, ASSIGNED = RequestState.OPEN, RequestState.ESCALATED, RequestState.ASSIGNED
CLOSED, CANCELLED = RequestState.CLOSED, RequestState.CANCELLED


class Event(enum.StrEnum):
    OFFER = "offer"  # a wave of offers goes out
    ACCEPT = "accept"  # a supporter accepts their offer (of a team request: the last seat)
    JOIN = "join"  # a supporter takes a seat of a team request that needs more than them
    LEAVE = "leave"  # a seat holder of a team request not yet placed steps back
    DECLINE = "decline"  # a supporter declines their offer
    HAND_BACK = "hand_back"  # the supporter cannot continue
    OFFER_TIMEOUT = "offer_timeout"  # the wave's time ran out unanswered
    ESCALATE = "escalate"  # nobody eligible is left: coordinators are alerted
    TAKE = "take"  # a coordinator takes it themselves
    PICK = "pick"  # a coordinator offers it to one supporter
    REMIND = "remind"  # still unplaced: coordinators' alerts are refreshed
    CANCEL = "cancel"  # the person who asked withdraws it
    CLOSE = "close"  # the supporter closes the encounter
    EXPIRE = "expire"  # the person who asked left the workspace
    NOT_SAFE = "not_safe"  # the person who asked says they are not safe: alert a human now


@dataclass(frozen=True)
class Transition:
    """From which states an event may happen, where it leads, and what it says to whom."""

    sources: frozenset[str]
    target: str | None  # None: the state stays (the wave, offers or alerts change)
    effects: tuple[Effect, ...]


def _t(sources: tuple[str, ...], target: str | None, *effects: Effect) -> Transition:
    return Transition(frozenset(sources), target, effects)


TABLE: Mapping[Event, Transition] = {
    Event.OFFER: _t((OPEN, ESCALATED), None, Effect.OFFER_POST),
    Event.ACCEPT: _t((OPEN, ESCALATED), ASSIGNED, Effect.OFFER_END, Effect.INTRO, Effect.CASE,
                     Effect.STATUS, Effect.ALERT, Effect.TEAM_OUTREACH_START),
    Event.JOIN: _t((OPEN, ESCALATED), None, Effect.OFFER_END, Effect.STATUS, Effect.ALERT),
    Event.LEAVE: _t((OPEN, ESCALATED), None, Effect.NOTICE, Effect.STATUS, Effect.ALERT),
    Event.DECLINE: _t((OPEN, ESCALATED), None, Effect.OFFER_END),
    Event.HAND_BACK: _t((ASSIGNED,), OPEN, Effect.NOTICE, Effect.STATUS, Effect.ALERT),
    Event.OFFER_TIMEOUT: _t((OPEN,), None, Effect.OFFER_END),
    Event.ESCALATE: _t((OPEN,), ESCALATED, Effect.ALERT, Effect.STATUS),
    Event.TAKE: _t((OPEN, ESCALATED), ASSIGNED, Effect.OFFER_END, Effect.INTRO, Effect.CASE,
                   Effect.STATUS, Effect.ALERT, Effect.TEAM_OUTREACH_START),
    Event.PICK: _t((OPEN, ESCALATED), None, Effect.OFFER_POST),
    Event.REMIND: _t((ESCALATED,), None, Effect.ALERT),
    Event.CANCEL: _t((OPEN, ESCALATED, ASSIGNED), CANCELLED, Effect.OFFER_END, Effect.NOTICE,
                     Effect.STATUS, Effect.ALERT),
    Event.CLOSE: _t((ASSIGNED,), CLOSED, Effect.STATUS, Effect.NOTICE),
    Event.EXPIRE: _t((OPEN, ESCALATED, ASSIGNED), CANCELLED, Effect.OFFER_END, Effect.NOTICE,
                     Effect.ALERT),
    Event.NOT_SAFE: _t((OPEN, ESCALATED, ASSIGNED), None, Effect.ALERT, Effect.STATUS),
}

# Offers have their own small machine: which offer states each offer change may start from.
OFFER_SOURCES: Mapping[str, frozenset[str]] = {
    OfferState.ACCEPTED: frozenset({OfferState.PENDING}),
    OfferState.DECLINED: frozenset({OfferState.PENDING, OfferState.EXPIRED}),
    OfferState.EXPIRED: frozenset({OfferState.PENDING}),
    OfferState.TAKEN: frozenset({OfferState.PENDING, OfferState.EXPIRED}),
    OfferState.WITHDRAWN: frozenset({OfferState.PENDING, OfferState.EXPIRED}),
    OfferState.FAILED: frozenset({OfferState.PENDING}),
    OfferState.HANDED_BACK: frozenset({OfferState.ACCEPTED}),
    # A coordinator's pick makes an ended offer live again (never a handed-back one).
    OfferState.PENDING: frozenset({OfferState.EXPIRED, OfferState.DECLINED, OfferState.FAILED,
                                   OfferState.TAKEN}),
}


def apply(session: Session, request: SupportRequest, event: Event, *,
          expect: Mapping[str, Any] | None = None, also: Sequence[ColumnElement[bool]] = (),
          **values: Any) -> bool:
    """Apply `event` to `request` in one conditional UPDATE; True if this caller won.

    `expect` adds conditions on other columns (the supporter for a hand-back, the wave for a
    timeout), `also` any other condition (the case cap); `values` are written with the new
    state. The version is bumped on every win, so the messages and timers this transition
    implies get keys of their own. The request is refreshed either way, so the caller sees
    what actually happened.
    """
    transition = TABLE[event]
    conditions = [SupportRequest.id == request.id, SupportRequest.state.in_(transition.sources)]
    for name, value in (expect or {}).items():
        column = getattr(SupportRequest, name)
        conditions.append(column.is_(None) if value is None else column == value)
    conditions.extend(also)
    changes = dict(values, version=SupportRequest.version + 1)
    if transition.target is not None:
        changes["state"] = transition.target
    won = session.execute(update(SupportRequest).where(*conditions).values(**changes)
                          .execution_options(synchronize_session=False)).rowcount == 1
    session.refresh(request)
    return won


def table_markdown() -> str:
    """The transition table as Markdown, for docs/architecture.md (a test keeps them the same)."""
    lines = ["| Event | From | To | Messages |", "|---|---|---|---|"]
    for event, transition in TABLE.items():
        sources = ", ".join(sorted(transition.sources))
        target = transition.target or "(same)"
        effects = ", ".join(e.value.removeprefix("effect.") for e in transition.effects)
        lines.append(f"| {event.value} | {sources} | {target} | {effects} |")
    return "\n".join(lines)
