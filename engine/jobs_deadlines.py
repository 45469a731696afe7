"""Celery jobs of deadlines: the SLA/escalation sweep (thin, idempotent, acks_late).

Time: beat calls `sweep_deadlines()` with no argument and the sweep reads engine.clock like every
other job. A caller may pass `now` (ISO 8601 with a time zone) to sweep "as of" another instant —
what an operator does to replay a missed night, and how the worker tests move a real worker's time
forward without any test hook in the worker itself. Passing a time does not freeze anything: it only
decides which steps are due.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import clock
from engine.celery_app import celery
from engine.db import session_scope
from engine.deadlines import escalation, sla
from engine.jobs import session_factory

log = logging.getLogger(__name__)
BATCH = 500


def _now(now: str | None) -> datetime:
    if not now:
        return clock.now()
    at = datetime.fromisoformat(now)
    if at.tzinfo is None:
        raise ValueError(f"sweep time must carry a time zone: {now!r}")
    return clock.as_utc(at)


def run_sweep(factory: sessionmaker[Session], *, now: datetime, batch: int = BATCH, max_batches: int = 10_000) -> \
        escalation.SweepResult:
    """Watch new deadlines, then apply due steps one batch per transaction until none is left.

    Two workers running this at once share the rows (SKIP LOCKED on PostgreSQL); a batch that meets a
    concurrent writer of the same audit stream is rolled back and taken again.
    """
    policies = sla.load_policies()
    result = escalation.SweepResult()
    for attempt in range(3):
        try:
            with session_scope(factory) as session:
                sla.watch_all(session, now=now, policies=policies)
            break
        except IntegrityError:  # another worker added the same rows at the same moment
            if attempt == 2:
                raise
    org = None
    for _ in range(max_batches):
        try:
            with session_scope(factory) as session:
                org = org or escalation.Org.load(session)
                rows = escalation.claim(session, now=now, limit=batch)
                if not rows:
                    break
                steps = escalation.process(escalation.Batch(session, now, org, policies), rows)
        except IntegrityError:
            log.warning("deadline sweep batch met a concurrent writer; taking it again", exc_info=True)
            continue
        result.watched += len(rows)
        result.steps += steps
    return result


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_deadlines(now: str | None = None) -> int:
    """Apply yellow/red lights and the escalation ladder to everything whose time has come."""
    result = run_sweep(session_factory(), now=_now(now))
    log.info("deadline sweep: %s rows, %s steps", result.watched, result.steps)
    return result.steps
