"""A user task's sla, priority and due out of range: refused at deploy naming the task, else an incident."""
from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import deploy, task_properties
from engine.errors import DeployInvalid
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident
from engine.tasks.models import HumanTask

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"'
        ' xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">\n')

PROPPED = HEAD + """  <bpmn:process id="propped" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="work" name="办理"><bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="NAME" value=VALUE />
    </spiffworkflow:properties></bpmn:extensionElements><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def bundle(name: str, value: str) -> dict[str, bytes]:
    return {"p.bpmn": PROPPED.replace("NAME", name).replace("VALUE", quoteattr(value)).encode()}


@pytest.mark.parametrize(("name", "value"), [("sla", "99999999d"), ("sla", "3000000wd"), ("sla", "999999999999h"),
                                              ("sla", "3651d"), ("sla", "2501wd"), ("sla", "87601h"),
                                              ("sla", "5 days"), ("priority", "99999999999999999999"),
                                              ("priority", "1001"), ("priority", "-1"), ("priority", "high")])
def test_an_out_of_range_sla_or_priority_is_refused_at_deploy_naming_the_task(session: Session, name: str,
                                                                                value: str) -> None:
    with pytest.raises(DeployInvalid) as refused:
        deploy.deploy(session, bundle(name, value), actor=SYSTEM, check_lanes=False)
    [problem] = refused.value.problems
    assert (problem.element_id, problem.line) == ("work", 6)
    assert f"任务 work 的 {name}" in problem.message and f"task 'work': {name}" in problem.message


@pytest.mark.parametrize(("name", "value"), [("sla", "3650d"), ("sla", "2500wd"), ("sla", "87600h"), ("sla", "5wd"),
                                              ("priority", "0"), ("priority", "1000")])
def test_a_task_property_within_range_deploys(session: Session, name: str, value: str) -> None:
    deploy.deploy(session, bundle(name, value), actor=SYSTEM, check_lanes=False)


@pytest.mark.parametrize("due", ['"9999-12-31T23:00:00-14:00"', '"0001-01-01T00:00:00+14:00"', "limit",
                                 "datetime(9999, 12, 31, 23)"])
def test_a_due_date_out_of_range_is_an_incident_naming_the_task(session: Session, due: str) -> None:
    deploy.deploy(session, bundle("due", due), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="propped", actor=SYSTEM, data={"limit": "9999-12-31T23:00:00-14:00"})
    session.flush()
    assert row.status == "incident"
    incident = session.scalars(select(Incident).where(Incident.instance_id == row.id)).one()
    assert incident.kind == "expression_error" and incident.bpmn_id == "work"
    assert "任务 work 的 due" in incident.message


def test_a_due_date_within_range_is_the_deadline(session: Session) -> None:
    deploy.deploy(session, bundle("due", "limit"), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="propped", actor=SYSTEM, data={"limit": "2999-12-31"})
    session.flush()
    assert row.status == "running"
    task = session.scalars(select(HumanTask).where(HumanTask.instance_id == row.id)).one()
    assert task.due_at is not None and task.due_at.year == 2999


@pytest.mark.parametrize(("name", "value"), [("sla", "99999999d"), ("sla", "3000000wd"), ("sla", "999999999999h"),
                                              ("priority", "99999999999999999999")])
def test_a_version_deployed_before_the_check_gets_an_incident_not_a_traceback(
        session: Session, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setattr(task_properties, "problem", lambda _name, _value: None)  # as deploy was before
    deploy.deploy(session, bundle(name, value), actor=SYSTEM, check_lanes=False)
    monkeypatch.undo()
    row = instances.start(session, process_key="propped", actor=SYSTEM)
    session.flush()
    assert row.status == "incident"
    incident = session.scalars(select(Incident).where(Incident.instance_id == row.id)).one()
    assert incident.kind == "expression_error" and incident.bpmn_id == "work"
    assert f"任务 work 的 {name}" in incident.message
