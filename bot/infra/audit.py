"""The audit log: privileged reads (a coordinator handed a request, an export, insights)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bot.infra.models import AuditEvent

ACTIONS = {
    "request.take": "a coordinator took a request (and so learned who asked)",
    "request.pick": "a coordinator offered a request to a supporter they picked",
    "request.crisis_alert": "coordinators were told who said they were not safe",
    "roster.list": "a coordinator listed the roster",
    "roster.export": "the roster was exported",
    "results.view": "a leader viewed prompt results (and got the CSV)",
    "insights.view": "program insights were viewed",
}


def record(session: Session, actor_id: str | None, action: str, subject: str = "", *,
           now: datetime) -> None:
    """Note a privileged read; `subject` is an id such as a request number, never content."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    session.add(AuditEvent(actor_id=actor_id, action=action, subject=subject[:64], at=now))


def recent(session: Session, limit: int = 100) -> list[AuditEvent]:
    """The newest audit events."""
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.at.desc(),
                                                            AuditEvent.id.desc()).limit(limit)))


def forget_old(session: Session, *, now: datetime, retention_days: int) -> int:
    """Drop audit events older than the retention period."""
    cutoff = now - timedelta(days=retention_days)
    return session.execute(delete(AuditEvent).where(AuditEvent.at < cutoff)).rowcount
