"""Timers that must not fire forever: week dates the sweep can read, cycles under the minimum interval."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, jobs
from engine.audit.models import AuditEvent
from engine.errors import DeployInvalid
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from engine.spiff import timers as spiff_timers

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"'
        ' xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">\n')

WEEK_DATE = HEAD + """  <bpmn:process id="weekly" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="until"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDate>"2030-w01-1T09:00:00+08:00"</bpmn:timeDate></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="until" />
    <bpmn:sequenceFlow id="f2" sourceRef="until" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _timer_fires(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "timer.fire"))
               or 0)


def test_a_week_date_timer_is_not_refired_by_every_sweep(session: Session, factory: sessionmaker[Session],
                                                         frozen: object) -> None:
    deploy.deploy(session, {"w.bpmn": WEEK_DATE.encode()}, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="weekly", actor=SYSTEM)
    session.commit()
    before = row.lock_version
    fired = jobs.run_timer_sweep(factory, batch=100)
    clock.advance(timedelta(minutes=1))
    fired += jobs.run_timer_sweep(factory, batch=100)
    session.expire_all()
    after = session.get(ProcessInstance, row.id)
    assert after is not None
    assert (fired, _timer_fires(session), after.lock_version) == (0, 0, before)
    assert after.next_timer_at is not None
    # Monday of ISO week 1 of 2030 is 2029-12-31; 09:00 in +08:00 is 01:00 UTC.
    assert clock.as_utc(after.next_timer_at).isoformat() == "2029-12-31T01:00:00+00:00"


def test_the_sweep_fires_an_instance_at_most_once(session: Session, factory: sessionmaker[Session],
                                                  frozen: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever keeps an instance due after it fired (a time nobody can read), the next batch skips it."""
    deploy.deploy(session, {"w.bpmn": WEEK_DATE.encode()}, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="weekly", actor=SYSTEM)
    session.commit()
    monkeypatch.setattr(spiff_timers, "next_timer_at", lambda _workflow: clock.now())  # always due again
    session.execute(update(ProcessInstance).where(ProcessInstance.id == row.id).values(next_timer_at=clock.now()))
    session.commit()
    assert jobs.run_timer_sweep(factory, batch=100) == 1
    assert _timer_fires(session) == 1


CYCLE = HEAD + """  <bpmn:process id="cycling" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="work" name="办理"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:boundaryEvent id="remind" attachedToRef="work" cancelActivity="false"><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeCycle>CYCLE</bpmn:timeCycle></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="reminded"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:sequenceFlow id="f3" sourceRef="remind" targetRef="reminded" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.mark.parametrize("cycle", ['"R/PT0S"', '"R/PT1S"', '"R5/PT59S"', '"R/2025-09-01T09:00:00+08:00/PT0S"'])
def test_a_cycle_under_the_minimum_is_refused_at_deploy_naming_the_event(session: Session, cycle: str) -> None:
    with pytest.raises(DeployInvalid) as refused:
        deploy.deploy(session, {"c.bpmn": CYCLE.replace("CYCLE", cycle).encode()}, actor=SYSTEM, check_lanes=False)
    [problem] = refused.value.problems
    assert problem.element_id == "remind" and problem.line == 7
    assert "remind" in problem.message and "60" in problem.message and "JZFLOW_TIMER_MIN_CYCLE_SECONDS" in problem.message


@pytest.mark.parametrize("cycle", ['"R/PT1H"', '"R3/PT1M"', '"R/P1D"'])
def test_a_cycle_of_a_minute_or_more_deploys(session: Session, cycle: str) -> None:
    deploy.deploy(session, {"c.bpmn": CYCLE.replace("CYCLE", cycle).encode()}, actor=SYSTEM, check_lanes=False)


def test_a_computed_cycle_under_the_minimum_is_a_timer_incident(session: Session, frozen: object) -> None:
    deploy.deploy(session, {"c.bpmn": CYCLE.replace("CYCLE", '"R/PT" + str(every) + "S"').encode()}, actor=SYSTEM,
                  check_lanes=False)
    row = instances.start(session, process_key="cycling", actor=SYSTEM, data={"every": 0})
    session.flush()
    assert row.status == "incident"
    incident = session.scalars(select(Incident).where(Incident.instance_id == row.id)).one()
    assert incident.kind == "timer_error" and "JZFLOW_TIMER_MIN_CYCLE_SECONDS" in incident.message
    assert incident.bpmn_id == "remind"


def test_the_minimum_cycle_is_a_setting(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_TIMER_MIN_CYCLE_SECONDS", "1")
    deploy.deploy(session, {"c.bpmn": CYCLE.replace("CYCLE", '"R/PT1S"').encode()}, actor=SYSTEM, check_lanes=False)
