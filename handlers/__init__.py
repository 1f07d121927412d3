"""The Slack side of every feature: listeners and Block Kit in one package per feature.

`register(app)` adds every listener; `register_jobs` and `bootstrap_jobs` do the same for each
feature's timers. Only the composition root (bot.app) imports this package.
"""

from __future__ import annotations

from slack_bolt import App

from bot.infra.duework import JobRegistry
from bot.requests import flows as request_flows
from handlers import teams
from handlers.checkins import jobs as checkin_jobs
from handlers.checkins import listeners as checkins
from handlers.commands import listeners as commands
from handlers.common import fallback, handover
from handlers.common.services import Services
from handlers.dm import listeners as dm
from handlers.home import listeners as home
from handlers.library import listeners as library
from handlers.pulses import jobs as pulse_jobs
from handlers.pulses import listeners as pulses
from handlers.requests import jobs as request_jobs
from handlers.requests import listeners as requests
from handlers.roster import jobs as roster_jobs


def register(app: App) -> None:
    """Register every listener. Bolt tries them in order, and each tried costs every request
    behind it: the clicks that come by the thousand (handed to the clock) go first; the
    catch-all fallbacks go last so they only see the unmatched."""
    handover.register(app)
    commands.register(app)
    library.register(app)
    home.register(app)
    requests.register(app)
    teams.register(app)
    checkins.register(app)
    pulses.register(app)
    dm.register(app)
    fallback.register(app)


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register every feature's due-work kinds with `jobs`."""
    request_flows.register_jobs(jobs, services)
    request_jobs.register_jobs(jobs, services)
    teams.register_jobs(jobs, services)
    checkin_jobs.register_jobs(jobs, services)
    pulse_jobs.register_jobs(jobs, services)
    roster_jobs.register_jobs(jobs, services)
    handover.register_jobs(jobs, services)


def bootstrap_jobs(services: Services) -> None:
    """Schedule the recurring work at clock start; safe to repeat, and from several processes."""
    now = services.clock.now()
    with services.sessions.begin() as session:
        roster_jobs.bootstrap(services, session, after=now)
        request_flows.bootstrap(services, session, after=now)
        request_jobs.bootstrap(services, session, after=now)
