"""The App Home tab: one view per person, with sections for each of their roles."""

from __future__ import annotations

from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.home.service import CoordinatorPanel, Home, SupporterPanel
from bot.infra.clock import zone
from bot.infra.models import RequestKind, RequestState, SupportRequest, TeamRequest
from bot.requests.service import URGENCIES
from bot.requests.teams import SIZES
from bot.roster.duty import Gap
from bot.roster.supporters import ROLE_LABELS
from handlers.common.blockkit import escape, to_dicts
from handlers.common.ids import Action
from handlers.home.health_blocks import health_blocks
from handlers.library.blocks import surfacing_blocks
from handlers.pulses.blocks import insights_blocks, results_message
from handlers.requests.blocks import connection_label, team_label, team_state_line

DEPARTMENT_LINES = 20  # beyond this the Home summarises, so 1,000 supporters still fit
MAX_CASES = 10
MAX_WAITING = 15
MAX_MY_TEAMS = 3
SECTION_ROOM = 2900  # a section holds 3,000 characters: room for the "and N more" line


def _text(markdown: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=markdown))


def _context(markdown: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=markdown)])


def home_view(home: Home) -> dict:
    """The Home tab view for one person."""
    blocks: list[Block] = [
        HeaderBlock(text="Peer support"),
        _text("After a difficult event at work, talk with a trained peer supporter: a colleague "
              "who listens, in confidence. You never need to say what happened."),
        ActionsBlock(elements=[
            ButtonElement(text="Request support", style="primary",
                          action_id=Action.REQUEST_SUPPORT),
            ButtonElement(text="Support for my team", action_id=Action.REQUEST_TEAM_SUPPORT),
        ]),
        *_my_request(home),
    ]
    if home.supporter is not None:
        blocks.extend(_supporter_section(home.supporter))
    if home.coordinator is not None:
        blocks.extend(_coordinator_section(home.coordinator))
    if home.roles.leader:
        blocks.extend([DividerBlock(), HeaderBlock(text="For leaders"),
                       _text("Post an anonymous wellbeing prompt with `/peersupport pulse`; see "
                             "results with `/peersupport results`.")])
    view = {"type": "home", "blocks": to_dicts(blocks)}
    if home.prompt_results and home.insights is not None:  # leaders always get both
        view["blocks"].extend(results_message(list(home.prompt_results),
                                              home.insights.minimum)["blocks"][1:])
    if home.insights is not None:
        view["blocks"].extend([DividerBlock().to_dict(), *insights_blocks(home.insights)])
    view["blocks"].extend([DividerBlock().to_dict()] + surfacing_blocks(
        home.surfacing, resources_heading="From the peer support toolkit"))
    return View(**view).to_dict()


def _my_request(home: Home) -> list[Block]:
    blocks = _request_state(home) + _my_team_requests(home)
    if home.next_checkin is not None:
        local = home.next_checkin.due_at.astimezone(zone(home.checkin_tz))
        blocks.append(_context(f"*Next check-in:* {local:%A %d %B, %H:%M} · change or cancel "
                               "with `/peersupport checkins`"))
    return blocks


def _request_state(home: Home) -> list[Block]:
    request = home.my_request
    if request is None:
        return [_context("*Your request:* you have no open request.")]
    state = {"open": "we are finding a supporter for you.",
             "escalated": "a program coordinator is finding a supporter for you.",
             "assigned": f"<@{request.supporter_id}> is your supporter; see your group message."
             }[request.state]
    return [_text(f"*Your request:* {state}"), ActionsBlock(elements=[ButtonElement(
        text="Withdraw my request", action_id=Action.CANCEL_REQUEST, value=str(request.id))])]


def _my_team_requests(home: Home) -> list[Block]:
    blocks: list[Block] = []
    for request in home.my_team_requests[:MAX_MY_TEAMS]:
        blocks.append(SectionBlock(
            text=MarkdownTextObject(text=f"*Your request for {team_label(request)}:* "
                                         + team_state_line(request)),
            accessory=ButtonElement(text="Withdraw", action_id=Action.CANCEL_REQUEST,
                                    value=str(request.id))))
    return blocks


def _age(request: SupportRequest, now: datetime) -> str:
    minutes = int((now - request.created_at).total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def _supporter_section(panel: SupporterPanel) -> list[Block]:
    supporter = panel.supporter
    if panel.on_duty:
        status = ":large_green_circle: *Available and on duty now.* Requests may come to you."
    elif panel.available:
        status = ":white_circle: *Available, but outside your hours now.*"
    elif panel.away_until_local is not None:
        status = (f":double_vertical_bar: *Away until "
                  f"{panel.away_until_local:%a %d %b %H:%M} ({escape(supporter.tz)}).*")
    else:
        status = ":double_vertical_bar: *Away* until you say you are available."
    buttons = [
        ButtonElement(text="I'm available", action_id=Action.SET_AVAILABLE,
                      style=None if panel.available else "primary"),
        ButtonElement(text="I'm away", action_id=Action.SET_AWAY),
        ButtonElement(text="Away until…", action_id=Action.OPEN_AWAY_UNTIL),
        ButtonElement(text="Hours and limits", action_id=Action.OPEN_PREFERENCES),
    ]
    details = (f"*Hours* ({escape(supporter.tz)}): " + "; ".join(panel.hours)
               + f"\n*At most* {supporter.case_cap} active case"
               f"{'s' if supporter.case_cap != 1 else ''} at a time; "
               + (f"a {supporter.cooldown_hours}-hour rest after each case closes."
                  if supporter.cooldown_hours else "no rest period after a case."))
    department = escape(supporter.department) or "no department"
    return [
        DividerBlock(), HeaderBlock(text="Your availability as a supporter"),
        _text(status), ActionsBlock(elements=buttons), _text(details),
        _context(f"On the roster as {ROLE_LABELS.get(supporter.role, supporter.role)}, "
                 f"{department}."),
        *_offers_and_cases(panel),
    ]


def _offers_and_cases(panel: SupporterPanel) -> list[Block]:
    blocks: list[Block] = []
    if panel.offers:
        blocks.append(_text(f"*Offers waiting for you:* {len(panel.offers)}; answer them in "
                            "your direct messages from the app."))
    else:
        blocks.append(_text("*Offers waiting for you:* none."))
    if not panel.cases:
        blocks.append(_text("*Your active cases:* none."))
    for case in panel.cases[:MAX_CASES]:
        if case.kind != RequestKind.TEAM:
            what = f"*Active case* with <@{case.requester_id}> · {connection_label(case)}"
        elif case.state == RequestState.ASSIGNED:
            what = f"*Team support* for {team_label(case)} with <@{case.requester_id}>"
        else:  # a seat held before the last is taken: the introduction comes with the last
            what = (f"*Team support* for {team_label(case)} · {case.filled} of {case.seats} "
                    "supporters so far")
        blocks.append(SectionBlock(
            text=MarkdownTextObject(text=what),
            accessory=ButtonElement(text="Close", action_id=Action.OPEN_CLOSE,
                                    value=str(case.id))))
    return blocks


def _coordinator_section(panel: CoordinatorPanel) -> list[Block]:
    coverage = panel.coverage
    lines = [f"• {escape(d.department)}: {d.on_duty} on duty, {d.available} available, "
             f"{d.total} in all" for d in coverage.departments[:DEPARTMENT_LINES]]
    hidden = coverage.departments[DEPARTMENT_LINES:]
    if hidden:
        lines.append(f"• and {len(hidden)} more departments with "
                     f"{sum(d.total for d in hidden)} supporters")
    blocks: list[Block] = [
        DividerBlock(), HeaderBlock(text="Program coverage"),
        _text(f"*{coverage.on_duty}* on duty now · *{coverage.available}* available · "
              f"*{coverage.total}* on the roster"),
    ]
    if lines:
        blocks.append(_text("\n".join(lines)))
    if panel.gaps:
        blocks.append(_text(":warning: " + gap_summary(panel.gaps, panel.minimum,
                                                       panel.timezone)))
    waiting = panel.unassigned
    if waiting:
        blocks.append(_listing(f"*Unassigned or escalated requests:* {len(waiting)}",
                               [_waiting_line(r, panel) for r in waiting]))
    else:
        blocks.append(_text("*Unassigned or escalated requests:* none."))
    placed = panel.placed_teams
    if placed:
        blocks.append(_listing(
            f"*Team requests with their supporters:* {len(placed)}",
            [f"• {_team_facts(r, panel.teams.get(r.id))} · asked {_age(r, panel.now)} ago"
             for r in placed]))
    if panel.health is not None:
        blocks.extend(health_blocks(panel.health))
    if panel.refused or panel.delayed:
        problems = []
        if panel.refused:
            problems.append(f"{panel.refused} message{'s' if panel.refused != 1 else ''} Slack "
                            "kept refusing this week (they were not delivered)")
        if panel.delayed:
            problems.append(f"{panel.delayed} message{'s' if panel.delayed != 1 else ''} still "
                            "waiting to go out after five minutes")
        blocks.append(_text(":warning: *Slack delivery:* " + "; ".join(problems)
                            + ". Ask IT to check the app's logs and its Slack token."))
    return blocks


def _listing(head: str, lines: list[str]) -> SectionBlock:
    """A heading and up to MAX_WAITING lines, as many as fit one section (a unit's name can be
    long), then how many more there are."""
    shown = lines[:MAX_WAITING]
    while shown and len(head) + sum(len(line) + 1 for line in shown) > SECTION_ROOM:
        shown.pop()
    more = [f"• and {len(lines) - len(shown)} more"] if len(shown) < len(lines) else []
    return _text("\n".join([head, *shown, *more]))


def _team_facts(request: SupportRequest, team: TeamRequest | None) -> str:
    """A team request as coordinators see it: the unit, roughly how many, seats filled; never
    who called it."""
    size = f" · roughly {SIZES[team.size][0].lower()} people" \
        if team is not None and team.size in SIZES else ""
    return (f"Team: {team_label(request)}{size} · {request.filled} of {request.seats} "
            f"supporter{'s' if request.seats > 1 else ''}")


def _waiting_line(request: SupportRequest, panel: CoordinatorPanel) -> str:
    head = _team_facts(request, panel.teams.get(request.id)) + " · " \
        if request.kind == RequestKind.TEAM else ""
    return (f"• {head}{URGENCIES[request.urgency]} · waiting {_age(request, panel.now)}"
            + (" · *escalated*" if request.state == "escalated" else "")
            + (" · :rotating_light: not safe" if request.crisis else ""))


def gap_summary(gaps: list[Gap], minimum: int, timezone: str) -> str:
    """'Nobody on duty Tue 22:00–Wed 07:00 (America/New_York)' and the like, one per gap."""
    tz = zone(timezone)
    parts = []
    for gap in gaps[:8]:
        start, end = gap.start.astimezone(tz), gap.end.astimezone(tz)
        who = "Nobody" if gap.fewest == 0 else f"Only {gap.fewest}"
        parts.append(f"{who} on duty {start:%a %H:%M}–{end:%a %H:%M}")
    more = f" and {len(gaps) - 8} more gaps" if len(gaps) > 8 else ""
    return (f"*Fewer than {minimum} supporter{'s' if minimum != 1 else ''} on duty ahead* "
            f"({escape(timezone)}): " + "; ".join(parts) + more + ".")
