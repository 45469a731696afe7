"""The timer sweep fires every due instance once; a broken one becomes an incident and does not stall the rest."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, jobs
from engine.audit.models import AuditEvent
from engine.org.actors import SYSTEM
from engine.runtime import core as runtime
from engine.runtime import instances, timers
from engine.runtime.models import Incident, ProcessInstance
from engine.runtime.running import Running
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


def test_a_save_between_a_failed_timer_run_and_its_incident_keeps_the_instance_running(
        session: Session, factory: sessionmaker[Session], frozen: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer's run fails; before the sweep writes the incident, someone saves the instance (a newer state, still
    running). The incident was about the state that failed, not this one: it is not written (nor lock_version set
    back to the saved one's), and the next sweep fires the timer on the new state."""
    deploy.deploy(session, deploy.read_directory(FIXTURES / "good"), actor=SYSTEM, check_lanes=False)
    iid = instances.start(session, process_key="timer_wait", actor=SYSTEM, data={"wait_for": "PT1H"}).id
    session.commit()
    clock.advance(timedelta(hours=2))
    real_run, real_mark = runtime.run, timers.mark_failed
    failures = [RuntimeError("脚本出错 (the script failed once)")]

    def run(s: Session, running: Running, *args: Any, **kw: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_run(s, running, *args, **kw)

    def mark_failed(*args: Any, **kw: Any) -> Any:
        with factory() as other:  # a user's save commits first: it loaded the instance after the failed run
            runtime.save(other, runtime.load(other, iid))
            other.commit()
        return real_mark(*args, **kw)

    monkeypatch.setattr(runtime, "run", run)
    monkeypatch.setattr(timers, "mark_failed", mark_failed)
    assert jobs.run_timer_sweep(factory, batch=10) == 0
    assert session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == iid)) == "running"
    assert session.scalar(select(func.count()).select_from(Incident).where(Incident.instance_id == iid)) == 0
    session.rollback()
    assert jobs.run_timer_sweep(factory, batch=10) == 1  # still due: fired on the state it has now
    assert session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == iid)) == "completed"
