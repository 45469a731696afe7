"""An `assignee` expression that gives a unit's or a role's name rather than a username, when it runs.

`assignee` takes usernames only (units and roles belong in `candidates`): such a name is passed over as before (the
task goes to its candidates, its lane or the initiator), and the process owners are told which element names what
(`task.assignee_not_user`), once per element in a unit of work, with the names cut to printable text, as a name
nobody has is told (`task.assignee_unknown`). A quoted one is a warning at deploy already (engine.deploy.references).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import deploy, org
from engine.audit.models import AuditEvent
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM
from engine.org.models import OrgUnit
from engine.runtime import assignment, instances
from engine.tasks.models import HumanTask

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="handling" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="handle" name="办理">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="who" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="handle" />
    <bpmn:sequenceFlow id="f2" sourceRef="handle" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _world(session: Session) -> dict[str, int]:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_role(session, code="reviewer", name="审批人")
    org.add_role(session, code="process_owner", name="流程管理员")
    owner = org.add_user(session, username="po", display_name="流程管理员甲", role_codes=["process_owner"])
    starter = org.add_user(session, username="zhang", display_name="张三", unit_codes=["gxj"])
    deploy.deploy(session, {"handling.bpmn": BPMN.encode()}, actor=SYSTEM)
    session.commit()
    return {"owner": owner.id, "starter": starter.id}


def _start(session: Session, starter: int, who: Any) -> HumanTask:
    from engine.org.actors import actor_for
    row = instances.start(session, process_key="handling", actor=actor_for(session, "zhang"), data={"who": who})
    session.commit()
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None
    return task


def _told(session: Session, user_id: int) -> list[str]:
    return [f"{m.payload['title']}\n{m.payload.get('body') or ''}" for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "in_app").order_by(OutboxMessage.id))
        if m.payload.get("user_id") == user_id]


def _events(session: Session, instance_id: int) -> list[dict[str, Any]]:
    return [dict(e.after) for e in session.scalars(select(AuditEvent).where(
        AuditEvent.stream == f"instance:{instance_id}", AuditEvent.action == "task.assignee_not_user"))]


def test_an_assignee_naming_a_unit_or_a_role_is_passed_over_and_told(session: Session) -> None:
    ids = _world(session)
    task = _start(session, ids["starter"], ["gxj", "审批人"])
    assert task.assignee_id is None and [c.user_id for c in task.candidates] == [ids["starter"]]  # 发起人, as before
    [event] = _events(session, task.instance_id)
    assert event["bpmn_id"] == "handle" and event["property"] == "assignee" and event["names"] == ["gxj", "审批人"]
    [told] = _told(session, ids["owner"])
    assert "handle" in told and "gxj" in told and "candidates" in told and "单位/角色" in told
    person = _start(session, ids["starter"], "zhang")  # a username: nothing to tell
    assert person.assignee_id == ids["starter"] and _events(session, person.instance_id) == []


def test_hostile_names_are_told_cut_and_counted(session: Session) -> None:
    ids = _world(session)
    for i in range(30):  # as a database from before add_unit refused such codes may hold them
        session.add(OrgUnit(code=f"u{i}\x1b[31m", name=f"单位{i}"))
    session.commit()
    task = _start(session, ids["starter"], [f"u{i}\x1b[31m" for i in range(30)])
    [event] = _events(session, task.instance_id)
    assert event["count"] == 30 and len(event["names"]) == assignment.MAX_TOLD
    assert all(c.isprintable() for n in event["names"] for c in n)
    [told] = _told(session, ids["owner"])
    assert "\x1b" not in told and "等 30 个" in told
