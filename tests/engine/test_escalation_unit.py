"""A user task's `escalationUnit` property: the unit its escalation ladder climbs from.

A task offered to a leader who belongs to no unit (七步工作法 ④: a city leader claims a chain's item) has no
unit to climb from unless the BPMN names one; the property names it by code or name, an expression over
the task's data. A name that is no unit leaves the old rule (candidates' unit, else the handler's), an
expression that fails or gives something else is a problem (an incident), never a silent fallback.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy, org
from engine.deadlines import escalation
from engine.deadlines.models import EscalationStep
from engine.org.actors import SYSTEM
from engine.org.models import OrgUnit
from engine.runtime import instances
from engine.runtime.models import Incident
from engine.tasks.models import HumanTask

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="claiming" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="claim" name="认领">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="sla" value="2wd" />
        <spiffworkflow:property name="candidates" value="leader" />
        <spiffworkflow:property name="escalationUnit" value="unit" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="claim" />
    <bpmn:sequenceFlow id="f2" sourceRef="claim" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _world(session: Session) -> dict[str, int]:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    leader = org.add_user(session, username="li", display_name="李振华", unit_codes=[], role_codes=[])
    head = org.add_user(session, username="zhou", display_name="周局长", unit_codes=["gxj"], role_codes=[])
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert unit is not None
    unit.leader_id = head.id
    deploy.deploy(session, {"claiming.bpmn": BPMN.encode()}, actor=SYSTEM)
    session.commit()
    return {"leader": leader.id, "head": head.id, "gxj": unit.id}


def _start(session: Session, unit: Any) -> HumanTask:
    row = instances.start(session, process_key="claiming", actor=SYSTEM, data={"leader": "li", "unit": unit})
    session.commit()
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None
    return task


def _steps(session: Session, task: HumanTask, when: datetime) -> list[tuple[str, list[int]]]:
    clock.freeze(when)
    escalation.sweep(session, now=clock.now())
    session.commit()
    return [(s.step, s.recipients) for s in session.scalars(select(EscalationStep).where(
        EscalationStep.object_type == "task", EscalationStep.object_id == task.id).order_by(EscalationStep.id))]


def test_the_ladder_climbs_from_the_named_unit(session: Session, frozen: Any) -> None:
    ids = _world(session)
    named, unnamed = _start(session, "gxj"), _start(session, None)
    assert (named.escalation_unit_id, unnamed.escalation_unit_id) == (ids["gxj"], None)
    assert [c.user_id for c in named.candidates] == [ids["leader"]]  # the unit does not become a candidate
    late = datetime(2025, 9, 4, 10, 0, tzinfo=clock.SHANGHAI) + timedelta(days=1)  # one working day late
    assert ("unit_head", [ids["head"]]) in _steps(session, named, late)
    # Without the property the leader's task has no unit: the unit head's rung reaches nobody.
    assert ("unit_head", []) in _steps(session, unnamed, late)


def test_a_name_that_is_no_unit_and_a_bad_value(session: Session, frozen: Any) -> None:
    ids = _world(session)
    assert _start(session, "no_such_unit").escalation_unit_id is None
    assert _start(session, "li").escalation_unit_id is None  # a user is not a unit
    assert _start(session, "工业和信息化局").escalation_unit_id == ids["gxj"]  # by name too
    task = _start(session, {"not": "a name"})
    problem = session.scalar(select(Incident.message).where(Incident.instance_id == task.instance_id))
    assert problem is not None and "escalationUnit" in problem
