"""A signal end event throws its signal, as BPMN says ("the associated signal is sent for a Signal End Event").

SpiffWorkflow 3.2.0's parser reads message, cancel, error, escalation and terminate end events only: a signal end event
was parsed as a plain end event, deployed without a word, and threw nothing (the waiting instances waited for ever).

Runs on SQLite and PostgreSQL (the `session` fixture).
"""
from __future__ import annotations

import json

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, jobs
from engine.jobs_messages import run_signal_deliveries
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.message_models import BpmnMessage
from engine.runtime.models import ProcessInstance

DIAGRAM = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:signal id="s_done" name="done_signal">
    <bpmn:extensionElements><spiffworkflow:payloadExpression>{"case": case}</spiffworkflow:payloadExpression>
    </bpmn:extensionElements></bpmn:signal>
  <bpmn:process id="finisher" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="prepare" />
    <bpmn:scriptTask id="prepare"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>case = "A-7"</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="prepare" targetRef="end" />
    <bpmn:endEvent id="end" name="\xe5\x8a\x9e\xe7\xbb\x93"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:signalEventDefinition signalRef="s_done" /></bpmn:endEvent>
  </bpmn:process>
  <bpmn:process id="waiter" isExecutable="true">
    <bpmn:startEvent id="w_start"><bpmn:outgoing>h1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>h1</bpmn:incoming><bpmn:outgoing>h2</bpmn:outgoing>
      <bpmn:signalEventDefinition signalRef="s_done" /></bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="w_end"><bpmn:incoming>h2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="h1" sourceRef="w_start" targetRef="wait" />
    <bpmn:sequenceFlow id="h2" sourceRef="wait" targetRef="w_end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_signal_end_event_throws_its_signal_once(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, {"finisher.bpmn": DIAGRAM}, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="finisher", actor=review_org["applicant"])
    session.commit()
    stored = session.get(ProcessInstance, row.id)
    assert stored is not None and stored.status == "completed"
    thrown = session.scalars(select(BpmnMessage).where(BpmnMessage.name == "done_signal")).all()
    assert len(thrown) == 1
    assert json.loads(thrown[0].payload) == {"case": "A-7"}
    assert session.scalar(select(func.count()).select_from(BpmnMessage)) == 1


def test_the_instances_waiting_on_a_signal_end_event_go_on(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, {"finisher.bpmn": DIAGRAM}, actor=SYSTEM, check_lanes=False)
    waiting = instances.start(session, process_key="waiter", actor=review_org["applicant"])
    session.commit()
    assert waiting.status == "running"
    instances.start(session, process_key="finisher", actor=review_org["applicant"])
    session.commit()
    for _ in range(3):
        jobs.run_outbox(factory, limit=100)
    run_signal_deliveries(factory)
    session.expire_all()
    stored = session.get(ProcessInstance, waiting.id)
    assert stored is not None and stored.status == "completed"
