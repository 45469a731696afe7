"""Who an issue's reporter (登记人) may be: the person acting, or a user a 台账管理员 names for someone.

The reporter holds 回访 (the confirmation 销号 waits for) and is shown as the person who raised the issue. Before,
ledger_register took any username a diagram passed: a process owner's diagram (or its form) named anyone — the
handler, who then confirmed his own fix, or a leader shown as raising what he never raised. Now the reporter is the
run's actor (the person whose submission runs the service; in a run of the system's, the person behind it:
plan.projects.acting.acting_for), or, for a 台账管理员 (or the system itself), an active user they name. Anything else
is refused naming `reporter`: a form's field comes back to the person; a name the diagram wrote stops the instance
with an incident naming ledger_register's parameter. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deploy, tasks
from engine.errors import SubmissionRefused
from engine.org.actors import SYSTEM, Actor
from engine.org.models import User
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from plan.ledger.models import LedgerIssue
from tests.processes.test_issue_ledger import deployed, people
from tests.processes.test_project_services_reach import started_then_timers
from tests.steps import only_task

__all__ = ["deployed", "people"]

FORM = json.dumps({"type": "object", "required": ["title"], "additionalProperties": False,
                   "properties": {"title": {"type": "string", "maxLength": 300},
                                  "reporter": {"type": "string", "maxLength": 100}}})
TITLE_ONLY = json.dumps({"type": "object", "required": ["title"], "additionalProperties": False,
                         "properties": {"title": {"type": "string", "maxLength": 300}}})

DIAGRAM = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_rep" targetNamespace="t">
  <bpmn:process id="rep" name="rep" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    {middle}
    <bpmn:serviceTask id="act" name="登记">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="ledger_register" resultVariable="ledger">
        <spiffworkflow:parameters>
          <spiffworkflow:parameter id="title" type="any" value='{title}' />
          <spiffworkflow:parameter id="reporter" type="any" value='{reporter}' />
        </spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="mid" />
    <bpmn:sequenceFlow id="f2" sourceRef="mid" targetRef="act" />
    <bpmn:sequenceFlow id="f3" sourceRef="act" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""

FILL = """<bpmn:userTask id="mid" name="登记表">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="rep.schema.json" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>"""

WAIT = """<bpmn:intermediateCatchEvent id="mid"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>"PT1M"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>"""


def _deploy(session: Session, middle: str, reporter: str, title: str = '"厂房用电增容"', form: str = FORM) -> None:
    text = DIAGRAM.format(middle=middle, reporter=reporter, title=title)
    deploy.deploy(session, {"rep.bpmn": text.encode(), "rep.schema.json": form.encode()}, actor=SYSTEM)
    session.commit()


def _fill(session: Session, actor: Actor, data: dict[str, Any]) -> tasks.Completion:
    """Start the diagram as `actor` and submit its form: ledger_register runs in that submission."""
    row = instances.start(session, process_key="rep", actor=actor, data={})
    session.commit()
    task = only_task(session, row.id, "mid")
    tasks.claim(session, task_id=task.id, actor=actor)
    result = tasks.complete(session, task_id=task.id, actor=actor, data=data)
    session.commit()
    return result


def _reporter(session: Session) -> str | None:
    issue = session.scalar(select(LedgerIssue))
    assert issue is not None
    return session.scalar(select(User.username).where(User.id == issue.reported_by_id))


def _no_issue(session: Session) -> bool:
    return session.scalar(select(func.count(LedgerIssue.id))) == 0


def test_a_diagram_naming_someone_else_as_reporter_stops_with_an_incident(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    # Before: 刘洋's submission registered an issue 张伟 "raised", whose 回访 张伟 held (the handler of his own fix).
    _deploy(session, FILL, '"gx_zhang"', title="title", form=TITLE_ONLY)
    result = _fill(session, people["zr_liu"], {"title": "厂房用电增容"})
    assert result.incident is not None
    incident = session.scalar(select(Incident))
    assert incident is not None and incident.bpmn_id == "act"
    assert "ledger_register" in incident.message and "reporter 'gx_zhang'" in incident.message
    assert _no_issue(session)


def test_a_form_naming_someone_else_as_reporter_comes_back_naming_the_field(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    _deploy(session, FILL, "reporter", title="title")
    with pytest.raises(SubmissionRefused) as refused:
        _fill(session, people["zr_liu"], {"title": "厂房用电增容", "reporter": "leader_sun"})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["reporter"]
    assert _no_issue(session)


def test_the_person_acting_is_the_reporter(session: Session, deployed: None, people: dict[str, Actor]) -> None:
    _deploy(session, FILL, "reporter", title="title")
    result = _fill(session, people["zr_liu"], {"title": "厂房用电增容", "reporter": "zr_liu"})
    assert result.incident is None, result.incident
    assert _reporter(session) == "zr_liu"


def test_a_ledger_officer_registers_for_an_active_user_only(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    _deploy(session, FILL, "reporter", title="title")
    gone = session.scalar(select(User).where(User.username == "leader_zhou"))
    assert gone is not None
    gone.is_active = False
    session.commit()
    for name in ("leader_zhou", "nobody", "x" * 101):
        with pytest.raises(SubmissionRefused) as refused:
            _fill(session, people["officer"], {"title": "厂房用电增容", "reporter": name[:100]})
        session.rollback()
        assert [e.field for e in refused.value.errors] == ["reporter"]
    assert _no_issue(session)
    result = _fill(session, people["officer"], {"title": "厂房用电增容", "reporter": "gx_li"})
    assert result.incident is None, result.incident
    assert _reporter(session) == "gx_li"


def _after_a_timer(session: Session, starter: Actor, reporter: str) -> ProcessInstance:
    """The diagram's owner wrote the reporter in; it runs in the timer sweep's run (the system's)."""
    _deploy(session, WAIT, reporter)
    return started_then_timers(session, "rep", starter)


def test_a_timer_before_the_service_names_no_one_but_the_starter(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    # Before: the run was the system's, which named anyone.
    assert _after_a_timer(session, people["zr_liu"], '"gx_zhang"').status == "incident"
    assert _no_issue(session)


def test_a_timer_before_the_service_keeps_the_starter_as_reporter(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    assert _after_a_timer(session, people["zr_liu"], "initiator").status == "completed"
    assert _reporter(session) == "zr_liu"


def test_a_timer_in_an_officers_instance_registers_for_whom_they_name(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    assert _after_a_timer(session, people["officer"], '"gx_li"').status == "completed"
    assert _reporter(session) == "gx_li"



HANDED = FILL.replace('<spiffworkflow:property name="formJsonSchemaFilename" value="rep.schema.json" />',
                      '<spiffworkflow:property name="formJsonSchemaFilename" value="rep.schema.json" />\n'
                      '        <spiffworkflow:property name="candidates" value="&quot;gx_zhang&quot;" />')


@pytest.mark.parametrize(("named", "kept"), [("zr_liu", True), ("gx_zhang", True), ("leader_sun", False)])
def test_a_registration_handed_to_someone_else_names_the_starter_or_themselves(
        session: Session, deployed: None, people: dict[str, Actor], named: str, kept: bool) -> None:
    """issue_ledger's 登记 passes its initiator: one 改派'd to someone else still registers the starter's issue."""
    _deploy(session, HANDED, "reporter", title="title")
    row = instances.start(session, process_key="rep", actor=people["zr_liu"], data={})
    session.commit()
    task = only_task(session, row.id, "mid")
    tasks.claim(session, task_id=task.id, actor=people["gx_zhang"])
    if not kept:
        with pytest.raises(SubmissionRefused):
            tasks.complete(session, task_id=task.id, actor=people["gx_zhang"], data={"title": "x", "reporter": named})
        session.rollback()
        assert _no_issue(session)
        return
    result = tasks.complete(session, task_id=task.id, actor=people["gx_zhang"], data={"title": "x", "reporter": named})
    session.commit()
    assert result.incident is None, result.incident
    assert _reporter(session) == named
