"""What one person's App Home shows, composed by role; plain data, rendered by a builder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.checkins import service as checkins
from bot.infra import health, outbox
from bot.infra.clock import zone
from bot.infra.models import (
    CheckIn,
    ContactHours,
    Offer,
    RequestKind,
    Supporter,
    SupportRequest,
    TeamRequest,
)
from bot.infra.roles import RoleResolver, Roles
from bot.infra.settings import Settings
from bot.insights import service as program
from bot.library import Library, Moment, Surfacing
from bot.pulses import service as pulses
from bot.requests import service as domain
from bot.requests import teams
from bot.roster import duty
from bot.roster import supporters as roster
from bot.roster.duty import Coverage, Gap


@dataclass(frozen=True)
class SupporterPanel:
    """A supporter's own availability, as they should see it."""

    supporter: Supporter
    available: bool
    on_duty: bool
    hours: list[str]
    away_until_local: datetime | None
    offers: tuple[Offer, ...] = ()
    cases: tuple[SupportRequest, ...] = ()


@dataclass(frozen=True)
class CoordinatorPanel:
    """Coverage now and the gaps ahead."""

    coverage: Coverage
    gaps: list[Gap]
    minimum: int
    timezone: str
    now: datetime
    unassigned: tuple[SupportRequest, ...] = ()
    placed_teams: tuple[SupportRequest, ...] = ()  # team requests with every seat held
    # What each team request shown asked for (its unit and size; never who called it).
    teams: Mapping[int, TeamRequest] = field(default_factory=dict)
    refused: int = 0  # messages Slack kept refusing, in the past week
    delayed: int = 0  # messages still waiting to go out after five minutes
    health: health.Health | None = None  # the clock and what Slack refuses


@dataclass(frozen=True)
class Home:
    """Everything one person's Home tab shows."""

    user_id: str
    roles: Roles
    surfacing: Surfacing
    my_request: SupportRequest | None = None
    my_team_requests: tuple[SupportRequest, ...] = ()  # team requests this person called
    next_checkin: CheckIn | None = None
    checkin_tz: str = "UTC"
    insights: program.Insights | None = None
    prompt_results: tuple[pulses.PulseResults, ...] = ()
    supporter: SupporterPanel | None = None
    coordinator: CoordinatorPanel | None = None


def supporter_panel(session: Session, supporter: Supporter, now: datetime) -> SupporterPanel:
    """A supporter's availability at `now` (away-until in their own zone), offers and cases."""
    away_until = (supporter.away_until.astimezone(zone(supporter.tz))
                  if supporter.away_until and supporter.away_until > now else None)
    return SupporterPanel(
        supporter=supporter, available=duty.is_available(supporter, now),
        on_duty=duty.is_on_duty(supporter, now), hours=duty.describe_hours(supporter.hours),
        away_until_local=away_until,
        offers=tuple(domain.pending_offers(session, supporter.user_id)),
        cases=tuple(domain.active_cases(session, supporter.user_id)))


def coordinator_panel(session: Session, settings: Settings, now: datetime) -> CoordinatorPanel:
    """Coverage now, and where the coming window falls below the minimum on duty."""
    supporters = duty.on_call(session)
    unassigned = tuple(domain.unassigned(session))
    placed = tuple(teams.placed(session))
    return CoordinatorPanel(
        coverage=duty.coverage(supporters, now),
        gaps=duty.coverage_gaps(supporters, now, settings.coverage_window_hours,
                                settings.min_on_duty),
        minimum=settings.min_on_duty, timezone=settings.program_timezone,
        unassigned=unassigned, placed_teams=placed, now=now,
        teams=teams.of_requests(session, (r.id for r in (*unassigned, *placed)
                                          if r.kind == RequestKind.TEAM)),
        refused=outbox.refused(session, since=now - timedelta(days=7)),
        delayed=outbox.backlog(session, now=now), health=health.overview(session, settings, now))


def build_home(session: Session, user_id: str, *, roles: RoleResolver, library: Library,
               settings: Settings, now: datetime) -> Home:
    """Compose the Home for one person from their roles."""
    who = roles.of(session, user_id)
    supporter = roster.get(session, user_id) if who.supporter else None
    return Home(
        user_id=user_id, roles=who,
        surfacing=library.for_moment(Moment.HOME),
        my_request=domain.open_request_of(session, user_id),
        my_team_requests=tuple(teams.called_by(session, user_id)),
        next_checkin=next(iter(checkins.upcoming(session, user_id)), None),
        checkin_tz=getattr(session.get(ContactHours, user_id), "tz", settings.program_timezone),
        supporter=supporter_panel(session, supporter, now) if supporter is not None else None,
        coordinator=coordinator_panel(session, settings, now) if who.coordinator else None,
        insights=program.compute(session, minimum=settings.min_group)
        if who.coordinator or who.leader else None,
        prompt_results=tuple(pulses.results(session, p, minimum=settings.min_group)
                             for p in pulses.leader_pulses(session, user_id)[:3])
        if who.leader else (),
    )
