"""A signal between a person's start and a project service does not reach past that person (plan.projects.acting).

The outbox fans out a thrown signal and resumes the instances waiting on it as the system, which reaches every
project. An instance a signal continues acts in the reach of whoever started it (as after a timer or a message); one
a signal an instance threw starts has no person behind it: nobody's reach. The same rule as the timer and message
cases of test_project_services_reach.py, here as a guard: the signal case held already when it was written
(an intermediate throw; an end event's signal throw was not queued at all when this was written, so not tested).
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, jobs
from engine.jobs_messages import run_signal_deliveries
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from plan.projects.models import Project, ProjectApproval
from tests.processes.test_project_services_reach import _param, a_project, deployed, figures, people, project_events

__all__ = ["deployed", "figures", "people"]

SERVICES = {
    "start": _param("project_code", "{code}") + _param("applicant", '"qiye"'),
    "sign": (_param("call", '{{"code": "X", "project_code": {code}}}') + _param("project_name", '"改名"')
             + _param("enterprise", '"某企业"') + _param("investment", '"1"') + _param("project_type", '"industrial"')
             + _param("signed_on", '"2025-09-01"') + _param("applicant", '"qiye"')),
}
OPERATORS = {"start": "project_start_approval", "sign": "project_sign"}

SIGNALS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_sig" targetNamespace="t">
  <bpmn:signal id="s_go" name="reach_go" />
  <bpmn:process id="sig_thrower" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateThrowEvent id="tell"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:signalEventDefinition signalRef="s_go" /></bpmn:intermediateThrowEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="tell" />
    <bpmn:sequenceFlow id="f2" sourceRef="tell" targetRef="end" />
  </bpmn:process>
  <bpmn:process id="sig_started" isExecutable="true">
    <bpmn:startEvent id="caught"><bpmn:outgoing>g1</bpmn:outgoing>
      <bpmn:signalEventDefinition signalRef="s_go" /></bpmn:startEvent>
    <bpmn:serviceTask id="act" name="办理">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="{operator}" resultVariable="result">
        <spiffworkflow:parameters>{params}</spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="done"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="g1" sourceRef="caught" targetRef="act" />
    <bpmn:sequenceFlow id="g2" sourceRef="act" targetRef="done" />
  </bpmn:process>
  <bpmn:process id="sig_waiter" isExecutable="true">
    <bpmn:startEvent id="w_start"><bpmn:outgoing>h1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>h1</bpmn:incoming><bpmn:outgoing>h2</bpmn:outgoing>
      <bpmn:signalEventDefinition signalRef="s_go" /></bpmn:intermediateCatchEvent>
    <bpmn:serviceTask id="w_act" name="办理">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="{operator}" resultVariable="result">
        <spiffworkflow:parameters>{params}</spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>h2</bpmn:incoming><bpmn:outgoing>h3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="w_end"><bpmn:incoming>h3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="h1" sourceRef="w_start" targetRef="wait" />
    <bpmn:sequenceFlow id="h2" sourceRef="wait" targetRef="w_act" />
    <bpmn:sequenceFlow id="h3" sourceRef="w_act" targetRef="w_end" />
  </bpmn:process>
</bpmn:definitions>"""


def _signalled(session: Session, factory: sessionmaker[Session], people: dict[str, Actor], service: str, code: str,
               waiter: Actor) -> tuple[ProcessInstance, ProcessInstance]:
    """Deploy the diagrams naming the project themselves, start the waiter as `waiter`, have 商河's 招商专员 throw the
    signal, and let the outbox deliver it. Returns the instance the signal started and the one it continued."""
    params = SERVICES[service].format(code=f'"{code}"')
    text = SIGNALS.format(operator=OPERATORS[service], params=params)
    deploy.deploy(session, {"sig.bpmn": text.encode()}, actor=SYSTEM, check_lanes=False)
    waiting = instances.start(session, process_key="sig_waiter", actor=waiter, data={})
    session.commit()
    instances.start(session, process_key="sig_thrower", actor=people["shz_zs"], data={})
    session.commit()
    for _ in range(3):
        jobs.run_outbox(factory, limit=100)
    run_signal_deliveries(factory)  # the waiting instances are resumed by their own job
    session.expire_all()
    started = session.scalar(select(ProcessInstance).where(ProcessInstance.start_hops > 0))
    continued = session.get(ProcessInstance, waiting.id)
    assert started is not None and continued is not None
    return started, continued


def _stage(session: Session, code: str) -> str:
    project = session.scalar(select(Project).where(Project.code == code))
    assert project is not None
    return project.stage


def test_a_signal_between_start_and_approval_does_not_reach_past_the_starter(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    theirs = a_project(session, "ZF-2025-0011", "jtj", stage="signed")
    events = project_events(session, theirs)
    started, continued = _signalled(session, factory, people, "start", "ZF-2025-0011", people["shz_zs"])
    assert (started.status, continued.status) == ("incident", "incident")
    assert session.scalar(select(func.count(ProjectApproval.id))) == 0
    assert project_events(session, theirs) == events


def test_a_signal_between_start_and_signing_does_not_reach_past_the_starter(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    theirs = a_project(session, "ZF-2025-0012", "jtj", stage="lead")
    events = project_events(session, theirs)
    started, continued = _signalled(session, factory, people, "sign", "ZF-2025-0012", people["shz_zs"])
    assert (started.status, continued.status) == ("incident", "incident")
    assert _stage(session, "ZF-2025-0012") == "lead"
    assert project_events(session, theirs) == events


def test_a_signal_continues_the_starters_own_approval(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    a_project(session, "ZF-2025-0013", "shz", stage="signed")
    started, continued = _signalled(session, factory, people, "start", "ZF-2025-0013", people["shz_zs"])
    assert started.status == "incident"  # a throw started it, nobody behind it: not even 商河's own project
    assert continued.status == "completed"
    assert [r.stage for r in session.scalars(select(ProjectApproval))] == ["land_planning"]
