"""The project services of the seven steps act only on a project in reach of the person whose submission runs them.

Before: ⑦'s publish form took any project code as the call's target lead (`calls[n].project_code`), only checking
that it existed: an 招商专员 typing another unit's project (a 交通局 government project at its lead stage, say) had it
handed over to the appointed unit at 挂帅, renamed and moved to 签约 at the follow-up, and its approval started. And
the services themselves (project_sign, project_start_approval, start_process of parallel_approval routed to
routed_start) took the project code from the process data, which a form of any diagram feeds: a user typing another
unit's code into such a form made the service sign it or start its approval.

Now a call may aim at a lead of the 招商引资项目 library (what ⑥ feeds and every 招商专员 works on) or at a project in
the publisher's reach; anything else is refused exactly like a code that is not in the library (a project out of reach
is not told to exist), naming calls[n].project_code, and no call opens. The services refuse a project out of the
acting person's reach naming project_code: the submission comes back, nothing is changed.
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, deploy, jobs, tasks
from engine.audit.models import AuditEvent
from engine.errors import SubmissionRefused
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances, timers
from engine.runtime.models import ProcessInstance
from plan.projects.models import Project, ProjectApproval, ProjectLibrary, ProjectStage
from tests.processes import test_investment_loop as loop
from tests.processes.test_investment_loop import call_instance, finish_other_branches, start, task_data, to_fork
from tests.steps import only_task

people, figures, deployed = loop.people, loop.figures, loop.deployed  # the loop's fixtures, used here too


def a_project(session: Session, code: str, unit: str, *, library: str = "government", stage: str = "lead") -> Project:
    """A project of another library (政府投资项目 unless told), its responsible unit `unit`."""
    lib = session.scalar(select(ProjectLibrary).where(ProjectLibrary.code == library))
    if lib is None:
        lib = ProjectLibrary(code=library, name="政府投资项目")
        session.add(lib)
        session.flush()
    project = Project(code=code, name=f"{unit}的项目", library_id=lib.id, category="key", investment=Decimal("5000"),
                      stage=stage, enterprise="某企业", responsible_unit_id=loop.unit_id(session, unit))
    session.add(project)
    session.flush()
    session.add(ProjectStage(project_id=project.id, stage="lead", on=date(2025, 3, 1)))
    session.commit()
    return project


def project_events(session: Session, project: Project) -> int:
    return int(session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.stream == f"project:{project.id}"))
               or 0)


def test_a_call_aimed_at_another_units_project_is_refused_like_one_not_in_the_library(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    theirs = a_project(session, "ZF-2025-0001", "jtj")  # 交通运输局's road: not the 招商专员 of 投促局's
    events = project_events(session, theirs)
    iid = start(session)
    to_fork(session, people, iid, [])
    finish_other_branches(session, people, iid)
    assert loop.publish(session, people, iid, ["shz", "lkq"], project_code="ZF-2025-0001") == 0
    back = only_task(session, iid, "publish_call")
    assert task_data(session, back)["call_result"]["error"] == (
        "第1个榜单 calls[0].project_code：项目“ZF-2025-0001”不在项目库中或不在您的查看范围内 "
        "(no such project in your reach)")
    # the same words as a code that does not exist: nobody learns that another unit's project is there
    assert loop.publish(session, people, iid, ["shz"], project_code="XM-1999-0001") == 0
    assert task_data(session, only_task(session, iid, "publish_call"))["call_result"]["error"] == (
        "第1个榜单 calls[0].project_code：项目“XM-1999-0001”不在项目库中或不在您的查看范围内 "
        "(no such project in your reach)")
    assert call_instance(session) is None
    session.expire_all()
    again = session.get(Project, theirs.id)
    assert again is not None and (again.stage, again.responsible_unit_id, again.name) == (
        "lead", loop.unit_id(session, "jtj"), "jtj的项目")
    assert project_events(session, theirs) == events
    assert audit.verify(session).ok


def test_a_call_aimed_at_a_project_in_the_publishers_reach_opens(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    a_project(session, "ZF-2025-0002", "tcj")  # 投促局's own government-library lead
    iid = start(session)
    to_fork(session, people, iid, [])
    finish_other_branches(session, people, iid)
    cid = loop.publish(session, people, iid, ["shz", "lkq"], project_code="ZF-2025-0002")
    assert cid and loop.start_data(session, cid)["call"]["project_code"] == "ZF-2025-0002"


# -- the services in a diagram of any process owner's: a form feeding their project code ------------------------

FORM = json.dumps({"type": "object", "required": ["project_code"], "additionalProperties": False,
                   "properties": {"project_code": {"type": "string", "maxLength": 40}}})


def _diagram(pid: str, operator: str, parameters: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_{pid}" targetNamespace="t">
  <bpmn:process id="{pid}" name="{pid}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="pick" name="填写项目">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="pick.schema.json" />
        <spiffworkflow:property name="candidates" value="&quot;shz&quot;" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:serviceTask id="act" name="办理">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="{operator}" resultVariable="result">
        <spiffworkflow:parameters>{parameters}</spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="pick" />
    <bpmn:sequenceFlow id="f2" sourceRef="pick" targetRef="act" />
    <bpmn:sequenceFlow id="f3" sourceRef="act" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>""".encode()


def _param(name: str, value: str) -> str:
    return f'<spiffworkflow:parameter id="{name}" type="any" value=\'{value}\' />'


DIAGRAMS = {
    "reach_start": _diagram("reach_start", "project_start_approval",
                            _param("project_code", "project_code") + _param("applicant", '"qiye"')),
    "reach_sign": _diagram("reach_sign", "project_sign", _param("call", '{"code": "X", "project_code": project_code}')
                           + _param("project_name", '"改名"') + _param("enterprise", '"某企业"')
                           + _param("investment", '"1"') + _param("project_type", '"industrial"')
                           + _param("signed_on", '"2025-09-01"') + _param("applicant", '"qiye"')),
    "reach_route": _diagram("reach_route", "start_process", _param("process_key", '"parallel_approval"') + _param(
        "data", '{"project_code": project_code, "project_name": "改名", "project_type": "industrial", '
                '"investment": 1, "stage": "land_planning", "applicant": "qiye"}')),
}


@pytest.fixture
def diagrams(session: Session, deployed: dict[str, str]) -> None:
    files = {f"{pid}.bpmn": text for pid, text in DIAGRAMS.items()}
    deploy.deploy(session, {**files, "pick.schema.json": FORM.encode()}, actor=SYSTEM)
    session.commit()


def pick(session: Session, people: dict[str, Actor], pid: str, code: str) -> tasks.Completion:
    row = instances.start(session, process_key=pid, actor=SYSTEM, data={})
    session.commit()
    task = only_task(session, row.id, "pick")
    tasks.claim(session, task_id=task.id, actor=people["shz_zs"])
    result = tasks.complete(session, task_id=task.id, actor=people["shz_zs"], data={"project_code": code})
    session.commit()
    return result


@pytest.mark.parametrize("pid", sorted(DIAGRAMS))
def test_a_service_refuses_a_project_out_of_the_submitters_reach_and_changes_nothing(
        session: Session, people: dict[str, Actor], diagrams: None, pid: str) -> None:
    theirs = a_project(session, "ZF-2025-0003", "jtj", stage="signed")
    events = project_events(session, theirs)
    approvals = session.scalar(select(func.count(ProcessInstance.id)))
    with pytest.raises(SubmissionRefused) as refused:
        pick(session, people, pid, "ZF-2025-0003")
    session.rollback()
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("project_code", "项目“ZF-2025-0003”不在项目库中或不在您的查看范围内 (no such project in your reach)")]
    session.expire_all()
    again = session.get(Project, theirs.id)
    assert again is not None and (again.stage, again.name) == ("signed", "jtj的项目")
    assert project_events(session, theirs) == events
    assert session.scalar(select(func.count(ProjectApproval.id))) == 0
    assert session.scalar(select(func.count(ProcessInstance.id))) == approvals + 1  # the diagram's own, waiting
    assert audit.verify(session).ok


@pytest.mark.parametrize("pid", sorted(DIAGRAMS))
def test_a_service_acts_on_a_project_of_the_submitters_unit(
        session: Session, people: dict[str, Actor], diagrams: None, pid: str) -> None:
    ours = a_project(session, "ZF-2025-0004", "shz", stage="lead" if pid == "reach_sign" else "signed")
    result = pick(session, people, pid, "ZF-2025-0004")
    assert result.incident is None, result.incident
    session.expire_all()
    if pid == "reach_sign":
        assert session.get(Project, ours.id).stage == "signed"  # type: ignore[union-attr]
    else:
        assert [r.stage for r in session.scalars(select(ProjectApproval))] == ["land_planning"]


# -- a timer between: the run is the system's, and acts in the reach of whoever started the instance --------------

HOP = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_hop" targetNamespace="t">
  <bpmn:process id="reach_hop" name="reach_hop" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>"PT1M"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:serviceTask id="act" name="办理">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="project_start_approval" resultVariable="result">
        <spiffworkflow:parameters>{params}</spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait" />
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="act" />
    <bpmn:sequenceFlow id="f3" sourceRef="act" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


def _after_a_timer(session: Session, starter: Actor, code: str) -> ProcessInstance:
    """Deploy a diagram naming the project itself (no form: its owner wrote the code in), start it as `starter`,
    and fire its timer: the service runs in the timer sweep's run, whose actor is the system."""
    params = _param("project_code", f'"{code}"') + _param("applicant", '"qiye"')
    deploy.deploy(session, {"reach_hop.bpmn": HOP.format(params=params).encode()}, actor=SYSTEM)
    return started_then_timers(session, "reach_hop", starter)


def started_then_timers(session: Session, process_key: str, starter: Actor) -> ProcessInstance:
    """Start the process as `starter`, five minutes on fire the timers due (the sweep's run: the system's), and return
    the instance as it then stands."""
    row = instances.start(session, process_key=process_key, actor=starter, data={})
    session.commit()
    clock.advance(timedelta(minutes=5))
    for instance_id in timers.due_ids(session, now=clock.now()):
        timers.fire_instance(session, instance_id, now=clock.now())
    session.commit()
    session.expire_all()
    found = session.get(ProcessInstance, row.id)
    assert found is not None
    return found


def test_a_timer_before_the_service_does_not_reach_past_the_starter(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    # Before: the timer's run acts as the system, which reaches every project: 商河's 招商专员 (or whoever a process
    # owner's diagram lets start it) started 交通局's approval, audited as the system's.
    theirs = a_project(session, "ZF-2025-0005", "jtj", stage="signed")
    events = project_events(session, theirs)
    row = _after_a_timer(session, people["shz_zs"], "ZF-2025-0005")
    assert row.status == "incident"
    assert session.scalar(select(func.count(ProjectApproval.id))) == 0
    assert project_events(session, theirs) == events


def test_a_timer_before_the_service_acts_on_the_starters_own_project(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    a_project(session, "ZF-2025-0006", "shz", stage="signed")
    row = _after_a_timer(session, people["shz_zs"], "ZF-2025-0006")
    assert row.status == "completed"
    assert [r.stage for r in session.scalars(select(ProjectApproval))] == ["land_planning"]


def test_an_instance_the_system_started_keeps_the_systems_reach(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    a_project(session, "ZF-2025-0007", "jtj", stage="signed")
    row = _after_a_timer(session, SYSTEM, "ZF-2025-0007")
    assert row.status == "completed"
    assert [r.stage for r in session.scalars(select(ProjectApproval))] == ["land_planning"]


RELAY = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_relay" targetNamespace="t">
  <bpmn:message id="m_relay" name="reach_relay" />
  <bpmn:process id="reach_thrower" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateThrowEvent id="tell"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_relay" /></bpmn:intermediateThrowEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="tell" />
    <bpmn:sequenceFlow id="f2" sourceRef="tell" targetRef="end" />
  </bpmn:process>
  <bpmn:process id="reach_catcher" isExecutable="true">
    <bpmn:startEvent id="caught"><bpmn:outgoing>g1</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_relay" /></bpmn:startEvent>
    <bpmn:serviceTask id="act" name="办理">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="project_start_approval" resultVariable="result">
        <spiffworkflow:parameters>{params}</spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="done"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="g1" sourceRef="caught" targetRef="act" />
    <bpmn:sequenceFlow id="g2" sourceRef="act" targetRef="done" />
  </bpmn:process>
</bpmn:definitions>"""


def test_a_message_between_start_and_service_does_not_reach_past_anyone(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    # The outbox delivers a thrown message as the system, and the instance it starts was the system's: every project.
    theirs = a_project(session, "ZF-2025-0008", "jtj", stage="signed")
    events = project_events(session, theirs)
    params = _param("project_code", '"ZF-2025-0008"') + _param("applicant", '"qiye"')
    deploy.deploy(session, {"relay.bpmn": RELAY.format(params=params).encode()}, actor=SYSTEM, check_lanes=False)
    instances.start(session, process_key="reach_thrower", actor=people["shz_zs"], data={})
    session.commit()
    for _ in range(3):
        jobs.run_outbox(factory, limit=100)
    session.expire_all()
    caught = session.scalar(select(ProcessInstance).where(ProcessInstance.start_hops > 0))
    assert caught is not None and caught.status == "incident"
    assert session.scalar(select(func.count(ProjectApproval.id))) == 0
    assert project_events(session, theirs) == events
