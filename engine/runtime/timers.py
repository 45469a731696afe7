"""Fire due BPMN timers: find instances by next_timer_at, then refresh_timers + do_engine_steps."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine import audit
from engine.db import is_postgres
from engine.org.actors import SYSTEM
from engine.runtime import core as runtime
from engine.runtime.models import Incident, ProcessInstance


def due_ids(session: Session, *, now: datetime, limit: int = 100) -> list[int]:
    """Return ids of running instances whose next timer is due (an index scan)."""
    return list(session.scalars(select(ProcessInstance.id)
                                .where(ProcessInstance.status == "running", ProcessInstance.next_timer_at <= now)
                                .order_by(ProcessInstance.next_timer_at, ProcessInstance.id).limit(limit)))


def mark_failed(session: Session, instance_id: int, exc: BaseException, *, lock_version: int) -> bool:
    """Stop an instance whose timer could not be fired with an incident, so the sweep moves on (flushes); False when
    it changed since the failing run read it at `lock_version` (someone saved it: the next sweep tries that state).

    A compare-and-set on lock_version: a save committed after the failed run is neither followed by an incident
    about the state before it nor given back its own lock_version (its next save would overwrite the incident).
    """
    taken = session.execute(update(ProcessInstance).where(
        ProcessInstance.id == instance_id, ProcessInstance.status == "running",
        ProcessInstance.lock_version == lock_version)
        .values(status="incident", next_timer_at=None, lock_version=lock_version + 1)
        .execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return False
    message = f"{type(exc).__name__}: {exc}"[:4000]
    session.add(Incident(instance_id=instance_id, kind="timer_error", message=message))
    session.flush()
    audit.record(session, SYSTEM, "instance.incident", stream=f"instance:{instance_id}",
                 object_type="process_instance", object_id=instance_id, after={"kind": "timer_error",
                                                                               "message": message[:500]})
    return True


def take_due(session: Session, instance_id: int, *, now: datetime) -> int | None:
    """Return the lock_version of an instance whose timer is due, under a row lock; None if not due (already fired
    or taken by another worker: SKIP LOCKED)."""
    q = select(ProcessInstance.lock_version).where(ProcessInstance.id == instance_id,
                                                   ProcessInstance.status == "running",
                                                   ProcessInstance.next_timer_at <= now)
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    return session.scalar(q)


def fire_taken(session: Session, instance_id: int) -> None:
    """Fire the due timers of an instance `take_due` took (refresh_timers, engine steps, save, audit).

    Raises: ConcurrentModification, and whatever the run raises
    """
    running = runtime.load(session, instance_id)
    before = runtime.waiting_summary(running)
    runtime.run(session, running, SYSTEM, refresh_timers=True)
    runtime.save(session, running)
    runtime.record(session, running, SYSTEM, "timer.fire", before=before, after=runtime.waiting_summary(running))


def fire_instance(session: Session, instance_id: int, *, now: datetime) -> bool:
    """Fire one instance's due timers under a row lock; False if not due (already fired or taken).

    Re-checks the due time under the lock, so a redelivered job or a second worker does nothing.
    """
    if take_due(session, instance_id, now=now) is None:
        return False
    fire_taken(session, instance_id)
    return True
