"""Who may do what: requester (anyone), supporter (on the roster), coordinator and leader."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.infra.clock import Clock
from bot.infra.models import Supporter

log = logging.getLogger(__name__)
GROUP_CACHE = timedelta(minutes=5)


@dataclass(frozen=True)
class Roles:
    """One person's roles."""

    user_id: str
    supporter: bool = False
    coordinator: bool = False
    leader: bool = False


class NotPermitted(Exception):
    """A privileged action by someone without the role; the message says who may do it."""


class GroupMembers:
    """Members of Slack user groups, fetched through `fetch` and kept for a few minutes.

    If a refresh fails, the last known members are kept, so a Slack hiccup does not lock
    coordinators out; with nothing known yet the group counts as empty.
    """

    def __init__(self, fetch: Callable[[str], Iterable[str]], clock: Clock,
                 ttl: timedelta = GROUP_CACHE):
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[frozenset[str], datetime]] = {}
        self._lock = threading.Lock()

    def of(self, group_id: str) -> frozenset[str]:
        """The user ids in a group."""
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(group_id)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        try:
            members = frozenset(self._fetch(group_id))
        except Exception as error:  # noqa: BLE001 - keep serving the last known members
            log.warning("could not refresh user group %s: %s", group_id, type(error).__name__)
            return cached[0] if cached is not None else frozenset()
        with self._lock:
            self._cache[group_id] = (members, now)
        return members


class RoleResolver:
    """Resolves roles from settings, user groups and the roster."""

    def __init__(self, *, coordinators: Iterable[str], leaders: Iterable[str],
                 coordinator_group: str | None, leader_group: str | None,
                 groups: GroupMembers):
        self.coordinators = frozenset(coordinators)
        self.leaders = frozenset(leaders)
        self.coordinator_group = coordinator_group
        self.leader_group = leader_group
        self.groups = groups

    def _in(self, user_id: str, listed: frozenset[str], group: str | None) -> bool:
        return user_id in listed or (group is not None and user_id in self.groups.of(group))

    def of(self, session: Session, user_id: str) -> Roles:
        """All roles of one person."""
        return Roles(
            user_id=user_id,
            supporter=session.get(Supporter, user_id) is not None,
            coordinator=self._in(user_id, self.coordinators, self.coordinator_group),
            leader=self._in(user_id, self.leaders, self.leader_group),
        )

    def coordinator_ids(self) -> frozenset[str]:
        """Everyone who is a coordinator, by setting or by user group."""
        members = self.groups.of(self.coordinator_group) if self.coordinator_group else frozenset()
        return self.coordinators | members

    def require_coordinator(self, session: Session, user_id: str) -> Roles:
        """The person's roles, or NotPermitted if they are not a coordinator."""
        roles = self.of(session, user_id)
        if not roles.coordinator:
            raise NotPermitted("Only program coordinators can manage the roster. If you should "
                               "be one, ask whoever runs the app to add you to "
                               "PEERSUPPORT_COORDINATORS or the coordinators' user group.")
        return roles
