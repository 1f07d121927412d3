"""SQLAlchemy 2 typed models. Nothing here ever holds what happened to anyone, or a patient detail."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (SQLite has none) and always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class WorkState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DueWork(Base):
    """Something that must happen at a given time: a follow-up, an offer timeout, a recurring prompt.

    The payload holds ids and settings only, never anything a person typed.
    """

    __tablename__ = "due_work"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=WorkState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
    rescheduled: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_due_work_state_due_at", "state", "due_at"),
                      # The outbox looks up a request's unfinished messages of one kind.
                      Index("ix_due_work_kind_state", "kind", "state"))


class SupporterStatus(enum.StrEnum):
    AVAILABLE = "available"
    AWAY = "away"


class Supporter(Base):
    """A trained peer supporter on the roster: who they are in Slack, and when they can help.

    Department and role category are what requesters may ask to match or avoid; nothing
    about anyone's cases is kept here.
    """

    __tablename__ = "supporters"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    department: Mapped[str] = mapped_column(String(80), default="")
    role: Mapped[str] = mapped_column(String(32), default="other")
    status: Mapped[str] = mapped_column(String(16), default=SupporterStatus.AVAILABLE)
    away_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    case_cap: Mapped[int] = mapped_column(default=2)
    cooldown_hours: Mapped[int] = mapped_column(default=12)
    last_offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkin_reminders: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    hours: Mapped[list[DutyHours]] = relationship(
        back_populates="supporter", cascade="all, delete-orphan", order_by="DutyHours.weekday",
        lazy="selectin")


class DutyHours(Base):
    """One weekday's on-duty window in the supporter's own time zone; end <= start runs overnight."""

    __tablename__ = "duty_hours"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("supporters.user_id", ondelete="CASCADE"), primary_key=True)
    weekday: Mapped[int] = mapped_column(primary_key=True)  # Monday is 0
    start_minute: Mapped[int]
    end_minute: Mapped[int]

    supporter: Mapped[Supporter] = relationship(back_populates="hours")


class RequestState(enum.StrEnum):
    OPEN = "open"  # looking for a supporter: offers are out
    ESCALATED = "escalated"  # nobody eligible accepted: coordinators are alerted
    ASSIGNED = "assigned"  # a supporter accepted
    CLOSED = "closed"  # the supporter closed the encounter
    CANCELLED = "cancelled"  # the requester withdrew it


ACTIVE_STATES = (RequestState.OPEN, RequestState.ESCALATED, RequestState.ASSIGNED)
UNASSIGNED_STATES = (RequestState.OPEN, RequestState.ESCALATED)
# The database itself keeps one active request per person: two forms at once make one request.
# A team request is a call for others, so it does not count as the caller's own.
_ACTIVE_SQL = ("state IN ('open', 'escalated', 'assigned') AND requester_id IS NOT NULL "
               "AND kind = 'personal'")


class RequestKind(enum.StrEnum):
    PERSONAL = "personal"  # one person asks for themselves; one supporter
    TEAM = "team"  # someone asks for their team; `seats` supporters answer together


class SupportRequest(Base):
    """A request for peer support: preferences only, never what happened or any patient detail."""

    __tablename__ = "support_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    requester_id: Mapped[str | None] = mapped_column(String(32), index=True)
    urgency: Mapped[str] = mapped_column(String(16))
    connection: Mapped[str] = mapped_column(String(16))
    outside_department: Mapped[bool] = mapped_column(default=False)
    same_role: Mapped[bool] = mapped_column(default=False)
    requester_department: Mapped[str | None] = mapped_column(String(80))
    requester_role: Mapped[str | None] = mapped_column(String(32))
    followups: Mapped[bool] = mapped_column(default=False)
    crisis: Mapped[bool] = mapped_column(default=False)
    preferred_supporter_id: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=RequestState.OPEN, index=True)
    wave: Mapped[int] = mapped_column(default=0)
    # Bumped by every transition: names the messages and timers that transition implies.
    version: Mapped[int] = mapped_column(default=0)
    # How many times it was escalated: names each escalation's reminders.
    escalations: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(String(8), default=RequestKind.PERSONAL,
                                      server_default=RequestKind.PERSONAL.value)
    # How many supporters answer it together, and how many have so far (team requests).
    seats: Mapped[int] = mapped_column(default=1, server_default="1")
    filled: Mapped[int] = mapped_column(default=0, server_default="0")
    # The supporter of a personal request; of a team request, the first to accept.
    supporter_id: Mapped[str | None] = mapped_column(String(32), index=True)
    status_channel: Mapped[str | None] = mapped_column(String(32))
    status_ts: Mapped[str | None] = mapped_column(String(32))
    intro_channel: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration: Mapped[str | None] = mapped_column(String(16))
    referred: Mapped[bool | None] = mapped_column()
    need_met: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("uq_support_requests_one_active", "requester_id", unique=True,
              sqlite_where=text(_ACTIVE_SQL), postgresql_where=text(_ACTIVE_SQL)),
    )


class SeatState(enum.StrEnum):
    HELD = "held"
    LEFT = "left"  # handed back, or the request ended


class Seat(Base):
    """One supporter's place on a team request; a team request is placed when every seat is
    held. Personal requests have none (their supporter is the request's own)."""

    __tablename__ = "request_seats"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("support_requests.id", ondelete="CASCADE"), index=True)
    supporter_id: Mapped[str | None] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(8), default=SeatState.HELD)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SessionState(enum.StrEnum):
    NONE = "none"  # no group conversation asked for, or not yet proposed
    PROPOSED = "proposed"  # times proposed, waiting for the caller to pick
    SET = "set"  # a time picked
    CANCELLED = "cancelled"


class OutreachState(enum.StrEnum):
    NONE = "none"  # not asked for, or nobody named
    WAITING = "waiting"  # waits for the group time to be picked, so each note carries it
    SENDING = "sending"  # members resolved and their notes recorded in the outbox
    SENT = "sent"


class TeamRequest(Base):
    """What a team request asks for: the unit, roughly how many people, and what would help.
    Never what happened, and never who on the team replied to anything."""

    __tablename__ = "team_requests"

    request_id: Mapped[int] = mapped_column(
        ForeignKey("support_requests.id", ondelete="CASCADE"), primary_key=True)
    unit: Mapped[str] = mapped_column(String(80))
    size: Mapped[str] = mapped_column(String(8))  # a range's key, e.g. "6_15"
    visit: Mapped[bool] = mapped_column(default=False)  # a supporter comes to the unit
    group: Mapped[bool] = mapped_column(default=False)  # a group conversation at a set time
    private: Mapped[bool] = mapped_column(default=False)  # each member offered private support
    # Who is on the team, when the caller said (any of the three): their own list of people, a
    # user group, or a channel whose members are the team. Forgotten with the request's ids.
    people: Mapped[list[str] | None] = mapped_column(JSON)
    usergroup_id: Mapped[str | None] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    # The group conversation: proposed times (session_proposals), the one picked, and where.
    session_state: Mapped[str] = mapped_column(String(16), default=SessionState.NONE,
                                               server_default=SessionState.NONE)
    session_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    session_place: Mapped[str | None] = mapped_column(String(200))
    # Bumped by every proposal, pick, reschedule and cancel: names the reminder's timer and the
    # messages each change implies, so an old one never fires for a new time.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    invitation_posted: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Private outreach to each member: counts only, never who received or replied to what.
    outreach_state: Mapped[str] = mapped_column(String(16), default=OutreachState.NONE,
                                                server_default=OutreachState.NONE)
    reached: Mapped[int] = mapped_column(default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(default=0, server_default="0")
    asked_personal: Mapped[int] = mapped_column(default=0, server_default="0")
    opted_checkins: Mapped[int] = mapped_column(default=0, server_default="0")
    # Closing answers beyond a personal request's: roughly how many took part (a range's key).
    people_present: Mapped[str | None] = mapped_column(String(8))
    # "The team could use another session": the team request this one follows.
    previous_id: Mapped[int | None] = mapped_column(
        ForeignKey("support_requests.id", ondelete="SET NULL"))


class SessionProposal(Base):
    """A time a team's supporters proposed for the group conversation (UTC; shown in each
    viewer's own zone). `version` is the team request's session_version it was proposed in."""

    __tablename__ = "session_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("support_requests.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    proposed_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutreachOptOut(Base):
    """Someone who asked not to be sent notes about their team's hard events."""

    __tablename__ = "outreach_optouts"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OfferState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    TAKEN = "taken"  # someone else accepted first
    WITHDRAWN = "withdrawn"  # the requester cancelled
    HANDED_BACK = "handed_back"
    FAILED = "failed"  # the DM could not be delivered


class Offer(Base):
    """One supporter asked to take one request; each supporter is asked once per request."""

    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("support_requests.id", ondelete="CASCADE"), index=True)
    supporter_id: Mapped[str | None] = mapped_column(String(32))
    wave: Mapped[int]
    direct: Mapped[bool] = mapped_column(default=False)  # sent by a coordinator's pick
    state: Mapped[str] = mapped_column(String(16), default=OfferState.PENDING)
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("request_id", "supporter_id",
                                       name="uq_offers_request_id_supporter_id"),)


class CoordinatorAlert(Base):
    """The one escalation DM per request per coordinator, updated in place as the wait goes on
    and once someone acts."""

    __tablename__ = "coordinator_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("support_requests.id", ondelete="CASCADE"), index=True)
    coordinator_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("request_id", "coordinator_id",
                                       name="uq_coordinator_alerts_request_coordinator"),)


class CheckInState(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"  # claimed and about to be posted: never posted twice, see checkins.py
    SENT = "sent"
    ANSWERED = "answered"
    CANCELLED = "cancelled"


class CheckIn(Base):
    """A planned follow-up message to someone who was supported; the answer is one word."""

    __tablename__ = "checkins"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("support_requests.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(String(32), index=True)
    number: Mapped[int]
    planned_for: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(default=0)  # bumped by each move, names its timer
    state: Mapped[str] = mapped_column(String(16), default=CheckInState.SCHEDULED)
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answer: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ContactHours(Base):
    """When a person is happy to get check-ins, in their own time zone."""

    __tablename__ = "contact_hours"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    start_minute: Mapped[int] = mapped_column(default=9 * 60)
    end_minute: Mapped[int] = mapped_column(default=18 * 60)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Pulse(Base):
    """A leader's anonymous wellbeing prompt: the question, where it goes, and when."""

    __tablename__ = "pulses"

    id: Mapped[int] = mapped_column(primary_key=True)
    leader_id: Mapped[str | None] = mapped_column(String(32), index=True)
    question: Mapped[str] = mapped_column(String(300))
    scale: Mapped[str] = mapped_column(String(16))  # five_point or options
    options: Mapped[list[str]] = mapped_column(JSON)
    channel_id: Mapped[str] = mapped_column(String(32))
    department: Mapped[str] = mapped_column(String(80), default="")
    recurrence: Mapped[str] = mapped_column(String(16))  # once, weekly, biweekly, monthly
    weekday: Mapped[int] = mapped_column(default=0)
    minute: Mapped[int] = mapped_column(default=9 * 60)
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    open_hours: Mapped[int] = mapped_column(default=72)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PulseRun(Base):
    """One posting of a prompt, open for answers until it closes."""

    __tablename__ = "pulse_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    pulse_id: Mapped[int] = mapped_column(ForeignKey("pulses.id", ondelete="CASCADE"),
                                          index=True)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open, closed, failed
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))


class PulseAnswer(Base):
    """An answer with no identity: a keyed hash stands in for the person, and only the day."""

    __tablename__ = "pulse_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pulse_runs.id", ondelete="CASCADE"),
                                        index=True)
    responder: Mapped[str] = mapped_column(String(64))
    choice: Mapped[int]
    day: Mapped[date]

    __table_args__ = (UniqueConstraint("run_id", "responder",
                                       name="uq_pulse_answers_run_id_responder"),)


class SeenDelivery(Base):
    """A Slack delivery already handled (an event_id, or an interaction's trigger_id), kept for
    a day so a retry reaching any process changes nothing."""

    __tablename__ = "seen_deliveries"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEvent(Base):
    """A privileged read: who saw what kind of thing, never its content."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ClockHeartbeat(Base):
    """The clock's last tick, in one row (id 1): every clock process updates it each tick, and
    web processes read it to notice that no clock runs. It also says whether coordinators were
    told the clock stopped, so several web processes tell them once per stop, not once each."""

    __tablename__ = "clock_heartbeat"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: never ticked yet
    process: Mapped[str] = mapped_column(String(100), default="")  # host:pid that last ticked
    # When a clock or a web process first found the row missing: a clock that never ticked is
    # late from then on.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stop_told_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set while told stopped
    stops: Mapped[int] = mapped_column(default=0)  # stops told so far; names each episode
    # When a clock last said it listens for messages to send (bot.infra.wakeup); None: none does.
    listener_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
