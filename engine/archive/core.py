"""Move the heavy parts of long-ended instances to the archive tables, in batches, and read them back.

One batch is one transaction: lock up to `batch` ended, unarchived instances older than the cut-off
(FOR UPDATE SKIP LOCKED on PostgreSQL, so two archivers take different instances), copy their state,
history rounds, steps and candidates with INSERT … SELECT, delete the hot rows, then mark the instances
(`archived_at`, state emptied, lock_version bumped so a save that loaded before us fails instead of
writing the state back). A crash anywhere in a batch rolls all of it back: nothing is lost, and as the
marker is written in the same transaction, nothing moves twice (the archive's primary keys refuse it too).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from engine import audit, clock
from engine.archive.mirror import table_of
from engine.db import is_postgres, session_scope
from engine.deadlines.models import DeadlineWatch
from engine.org.actors import SYSTEM, Actor
from engine.orm import UTCDateTime
from engine.runtime.models import ArchivedState, ProcessInstance, ProcessStateHistory, archived_history
from engine.tasks.models import HumanTask, TaskCandidate, archived_candidates, archived_tasks

log = logging.getLogger(__name__)

ENDED = ("completed", "terminated")
# hot table → its archive, in the order rows are copied (parents first).
MIRRORS: tuple[tuple[Table, Table], ...] = (
    (table_of(HumanTask), archived_tasks),
    (table_of(TaskCandidate), archived_candidates),
    (table_of(ProcessStateHistory), archived_history),
)


def cutoff(*, after_days: int, before: date | None = None, now: datetime | None = None) -> datetime | None:
    """Return the end time before which instances are archived: `before` (a day, from its midnight in
    Shanghai), else `after_days` ago; None when archiving is off (JZFLOW_ARCHIVE_AFTER_DAYS=0 and no day given).
    """
    if before is not None:
        return datetime.combine(before, time.min, tzinfo=clock.SHANGHAI).astimezone(UTC)
    if after_days <= 0:
        return None
    return (now or clock.now()) - timedelta(days=after_days)


def _due(before: datetime) -> Any:
    return select(ProcessInstance.id).where(ProcessInstance.status.in_(ENDED), ProcessInstance.archived_at.is_(None),
                                           ProcessInstance.ended_at.is_not(None), ProcessInstance.ended_at < before)


def count_due(session: Session, before: datetime) -> int:
    """Return how many instances the archiver would move (for --dry-run)."""
    return int(session.scalar(select(func.count()).select_from(_due(before).subquery())) or 0)


def archive_batch(session: Session, before: datetime, *, limit: int, now: datetime | None = None) -> list[int]:
    """Move up to `limit` instances in the caller's transaction; return their ids (empty: nothing left)."""
    query = _due(before).order_by(ProcessInstance.id).limit(limit)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if not ids:
        return []
    now = now or clock.now()
    session.execute(insert(ArchivedState).from_select(
        ["instance_id", "state", "serializer_version", "archived_at"],
        select(ProcessInstance.id, ProcessInstance.state, ProcessInstance.serializer_version,
               literal(now, UTCDateTime(timezone=True)))
        .where(ProcessInstance.id.in_(ids))))
    task_ids = select(HumanTask.id).where(HumanTask.instance_id.in_(ids)).scalar_subquery()
    for hot, cold in MIRRORS:
        names = [c.name for c in hot.columns]
        key = hot.c.task_id.in_(task_ids) if hot is MIRRORS[1][0] else hot.c.instance_id.in_(ids)
        session.execute(insert(cold).from_select(names, select(*[hot.c[n] for n in names]).where(key)))
    # Their deadline watches stop: the deadline sweep never wakes up for an archived step.
    session.execute(update(DeadlineWatch).where(DeadlineWatch.object_type == "task", DeadlineWatch.object_id.in_(task_ids))
                    .values(active=False, next_at=None).execution_options(synchronize_session=False))
    session.execute(delete(TaskCandidate).where(TaskCandidate.task_id.in_(task_ids))
                    .execution_options(synchronize_session=False))
    # Co-signer rows point at their parent step: one statement removes both (constraints hold at its end).
    session.execute(delete(HumanTask).where(HumanTask.instance_id.in_(ids)).execution_options(synchronize_session=False))
    session.execute(delete(ProcessStateHistory).where(ProcessStateHistory.instance_id.in_(ids))
                    .execution_options(synchronize_session=False))
    session.execute(update(ProcessInstance).where(ProcessInstance.id.in_(ids))
                    .values(archived_at=now, state="", lock_version=ProcessInstance.lock_version + 1)
                    .execution_options(synchronize_session=False))
    for instance_id in ids:
        audit.record(session, SYSTEM, "instance.archive", stream=f"instance:{instance_id}",
                     object_type="process_instance", object_id=instance_id,
                     after={"archived_at": now.isoformat(), "ended_before": before.isoformat()})
    session.flush()
    return ids


@dataclass(frozen=True)
class Report:
    before: datetime | None  # None: archiving is off
    due: int  # instances due when the run started
    moved: int  # instances moved by this run (0 on a dry run)
    batches: int
    dry_run: bool


def run(factory: sessionmaker[Session], *, after_days: int, batch: int, before: date | None = None,
        dry_run: bool = False, max_batches: int | None = None) -> Report:
    """Archive every due instance, one transaction per batch; safe to interrupt and to run twice at once."""
    cut = cutoff(after_days=after_days, before=before)
    if cut is None:
        return Report(before=None, due=0, moved=0, batches=0, dry_run=dry_run)
    with session_scope(factory) as session:
        due = count_due(session, cut)
    if dry_run:
        return Report(before=cut, due=due, moved=0, batches=0, dry_run=True)
    moved = batches = 0
    while max_batches is None or batches < max_batches:
        with session_scope(factory) as session:
            ids = archive_batch(session, cut, limit=batch)
        if not ids:
            break
        moved += len(ids)
        batches += 1
        log.info("archived %s instances (%s so far)", len(ids), moved)
    return Report(before=cut, due=due, moved=moved, batches=batches, dry_run=False)


# --- reading the archive ---------------------------------------------------------------------------------

def tasks_of(session: Session, instance_id: int) -> list[HumanTask]:
    """Return the instance's steps, hot and archived, oldest first (archived ones as detached, read-only rows)."""
    rows = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)))
    archived = session.execute(select(archived_tasks).where(archived_tasks.c.instance_id == instance_id)).mappings()
    rows += [HumanTask(**dict(row)) for row in archived]
    rows.sort(key=lambda t: (clock.as_utc(t.created_at), t.id))
    return rows


def task(session: Session, task_id: int) -> HumanTask | None:
    """Return one archived step as a detached, read-only row with its candidates (None: no archived step has the id)."""
    row = session.execute(select(archived_tasks).where(archived_tasks.c.id == task_id)).mappings().first()
    if row is None:
        return None
    found = HumanTask(**dict(row))
    candidates = [TaskCandidate(**dict(c)) for c in session.execute(
        select(archived_candidates).where(archived_candidates.c.task_id == task_id)).mappings()]
    set_committed_value(found, "candidates", candidates)  # as loaded, never to be written
    return found


def involved(instance_id: Any, actor: Actor) -> ColumnElement[bool]:
    """SQL: the actor held, handled, owned or could claim one of the instance's archived steps (visibility)."""
    uid = actor.user_id if actor.user_id is not None else -1
    candidate = exists().where(archived_candidates.c.task_id == archived_tasks.c.id).where(or_(
        archived_candidates.c.user_id == uid,
        archived_candidates.c.org_unit_id.in_(list(actor.org_unit_ids) or [-1]),
        archived_candidates.c.role_id.in_(list(actor.role_ids) or [-1])))
    return exists().where(archived_tasks.c.instance_id == instance_id).where(or_(
        archived_tasks.c.assignee_id == uid, archived_tasks.c.completed_by_id == uid,
        archived_tasks.c.owner_id == uid, candidate))


__all__ = ["ENDED", "MIRRORS", "Report", "archive_batch", "count_due", "cutoff", "involved", "run", "task", "tasks_of"]
