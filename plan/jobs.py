"""Celery jobs of the plan: the monthly 七步工作法 period, slow-project warnings, 周调度/月通报 reports.

Thin, idempotent and acks_late like the engine's jobs (engine/jobs.py); beat's entries for them are
registered by `plan.app.install`.
"""
from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import clock
from engine.celery_app import celery
from engine.db import session_scope
from engine.errors import ProcessNotFound
from engine.jobs import session_factory
from engine.org.actors import SYSTEM
from plan import investment, meetings, reports
from plan.projects import slow_projects

log = logging.getLogger(__name__)


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def start_investment_period() -> int | None:
    """Start last month's 七步工作法 instance unless it exists (beat runs this daily)."""
    with session_scope(session_factory()) as session:
        try:
            started = investment.start_period(session, investment.period_due(clock.now()), SYSTEM)
        except ProcessNotFound:
            log.warning("investment_loop is not deployed; no period started")
            return None
        return started.instance_id


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def flag_slow_projects() -> int:
    """Raise a ledger issue for every project behind its planned dates (beat runs this daily)."""
    with session_scope(session_factory()) as session:
        try:
            return len(slow_projects.flag_slow_projects(session, clock.now(), SYSTEM))
        except ProcessNotFound:
            log.warning("issue_ledger is not deployed; slow projects not flagged")
            return 0


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def generate_report(run_id: int) -> str:
    """Generate one report run (周调度 / 月通报); a finished run is left alone."""
    return reports.run(session_factory(), run_id)


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def prepare_review_meeting() -> int | None:
    """Build the next 项目推进暨评审会议's agenda when it is due (idempotent; beat runs this daily)."""
    with session_scope(session_factory()) as session:
        meeting = meetings.ensure_meeting(session, now=clock.now())
        return meeting.id if meeting is not None else None


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def scheduled_reports() -> int:
    """Produce the 周调度/月通报 due by escalation.yaml's `reports:` and deliver them (beat: every 10 minutes)."""
    factory = session_factory()
    with session_scope(factory) as session:
        ids = reports.ensure_runs(session, now=clock.now())
    _generate_each(factory, ids)
    return len(ids)


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def pending_reports() -> int:
    """Generate report runs left pending (their request's kick was lost, e.g. while the broker was down)."""
    factory = session_factory()
    with session_scope(factory) as session:
        ids = reports.stale_runs(session, now=clock.now())
    _generate_each(factory, ids)
    return len(ids)


def _generate_each(factory: sessionmaker[Session], ids: list[int]) -> None:
    """Generate runs in turn: one that fails is marked failed by `reports.run` and the next is still generated.

    Raising out of the loop left every run after a failing one ungenerated for as long as it failed (the beat asks
    again in id or kind order, and meets it first). A lost database connection still raises, for the job's retry.
    """
    for run_id in ids:
        try:
            reports.run(factory, run_id)
        except OperationalError:
            raise
        except Exception:
            log.exception("report run %s failed; generating the rest", run_id)
