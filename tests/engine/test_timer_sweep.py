"""The timer sweep fires every due instance once; a broken one becomes an incident and does not stall the rest."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, jobs
from engine.audit.models import AuditEvent
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from tests.conftest import FIXTURES


def test_a_broken_instance_does_not_stall_the_sweep(session: Session, factory: sessionmaker[Session],
                                                   frozen: object) -> None:
    deploy.deploy(session, deploy.read_directory(FIXTURES / "good"), actor=SYSTEM, check_lanes=False)
    ids = [instances.start(session, process_key="timer_wait", actor=SYSTEM, data={"wait_for": "PT1H"}).id
           for _ in range(5)]
    # The first one due is corrupted by hand: its state no longer deserializes. (Every write of a state bumps
    # lock_version — a process's hot-instance cache would otherwise keep using the workflow it saved.)
    session.execute(update(ProcessInstance).where(ProcessInstance.id == ids[0])
                    .values(state='{"tasks": {}}', next_timer_at=clock.now() + timedelta(minutes=30),
                            lock_version=ProcessInstance.lock_version + 1))
    session.commit()
    clock.advance(timedelta(hours=2))
    fired = jobs.run_timer_sweep(factory, batch=2)
    assert fired == 4
    assert session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == ids[0])) == "incident"
    assert session.scalar(select(Incident.kind).where(Incident.instance_id == ids[0])) == "timer_error"
    statuses = set(session.scalars(select(ProcessInstance.status).where(ProcessInstance.id.in_(ids[1:]))))
    assert statuses == {"completed"}
    session.rollback()
    assert jobs.run_timer_sweep(factory, batch=2) == 0  # nothing twice
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "timer.fire")) == 4
