"""Instances that start each other through messages and signals stop after MAX_START_HOPS generations.

A process whose message (or signal) start event its own instances throw to, twice, doubled the instance count on
every run of the outbox: 3, 7, 15, 31, … 511 after eight runs, a million in minutes, with nothing to stop it.
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, jobs
from engine.audit.models import AuditEvent
from engine.org.actors import SYSTEM
from engine.runtime import message_rules, messages, signals
from engine.runtime.message_models import BpmnMessage
from engine.runtime.models import ProcessInstance

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"'
        ' xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">\n')
PINGER = HEAD + """  <bpmn:message id="m_ping" name="ping" />
  <bpmn:process id="pinger" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_ping" /></bpmn:startEvent>
    <bpmn:parallelGateway id="split"><bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing><bpmn:outgoing>f3</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:intermediateThrowEvent id="throw_a"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_ping" /></bpmn:intermediateThrowEvent>
    <bpmn:intermediateThrowEvent id="throw_b"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_ping" /></bpmn:intermediateThrowEvent>
    <bpmn:endEvent id="end_a"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_b"><bpmn:incoming>f5</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="split" />
    <bpmn:sequenceFlow id="f2" sourceRef="split" targetRef="throw_a" />
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="throw_b" />
    <bpmn:sequenceFlow id="f4" sourceRef="throw_a" targetRef="end_a" />
    <bpmn:sequenceFlow id="f5" sourceRef="throw_b" targetRef="end_b" />
  </bpmn:process>
</bpmn:definitions>
"""
SIGGER = PINGER.replace('<bpmn:message id="m_ping" name="ping" />', '<bpmn:signal id="m_ping" name="ping" />') \
    .replace("messageEventDefinition messageRef", "signalEventDefinition signalRef")


@pytest.mark.parametrize("kind", ["message", "signal"])
def test_instances_starting_each_other_stop_after_a_few_generations(
        session: Session, factory: sessionmaker[Session], kind: str) -> None:
    deploy.deploy(session, {"p.bpmn": (PINGER if kind == "message" else SIGGER).encode()}, actor=SYSTEM,
                  check_lanes=False)
    session.commit()
    if kind == "message":
        messages.publish(session, name="ping", actor=SYSTEM)
    else:
        signals.broadcast(session, name="ping", actor=SYSTEM)
    session.commit()
    seen = []
    for _ in range(message_rules.MAX_START_HOPS + 4):  # runs of the outbox job (beat runs it every 10 s)
        jobs.run_outbox(factory, limit=1000)
        session.expire_all()
        seen.append(session.scalar(select(func.count()).select_from(ProcessInstance)))
        session.rollback()
    generations = message_rules.MAX_START_HOPS + 1  # the one started from outside, then one per hop
    assert seen[-1] == seen[-2] == 2 ** generations - 1, seen
    deepest = session.scalar(select(func.max(ProcessInstance.start_hops)))
    assert deepest == message_rules.MAX_START_HOPS
    refused = session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action.in_(("message.refuse", "signal.broadcast")),
        AuditEvent.after["reason"].as_string().contains("MAX_START_HOPS") if kind == "message" else
        AuditEvent.after["start_refused"].as_string().contains("MAX_START_HOPS")))
    assert refused == 2 ** generations, refused  # the throws of the last generation, each refused and audited
    if kind == "message":
        assert session.scalar(select(func.count()).select_from(BpmnMessage).where(BpmnMessage.status == "refused")) \
            == 2 ** generations


# A message start whose instance hands on to another process (start_process), which throws the message twice: the
# instance start_process makes inherits the generation of the one that made it, or every relay counted from 0.
RELAY_START = HEAD + """  <bpmn:message id="m_ping" name="ping" />
  <bpmn:process id="pinged" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_ping" /></bpmn:startEvent>
    <bpmn:serviceTask id="hand_on"><bpmn:extensionElements>
      <spiffworkflow:serviceTaskOperator id="start_process" resultVariable="relay"><spiffworkflow:parameters>
        <spiffworkflow:parameter id="process_key" type="any" value='"relay"' /></spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="hand_on" />
    <bpmn:sequenceFlow id="f2" sourceRef="hand_on" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""
RELAY = PINGER.replace('<bpmn:message id="m_ping" name="ping" />\n', "").replace('id="pinger"', 'id="relay"') \
    .replace('<bpmn:outgoing>f1</bpmn:outgoing>\n      <bpmn:messageEventDefinition messageRef="m_ping" />',
             "<bpmn:outgoing>f1</bpmn:outgoing>").replace("<bpmn:process", '<bpmn:message id="m_ping" name="ping" />\n'
                                                          "  <bpmn:process")


def test_a_generation_handed_on_through_start_process_still_counts(
        session: Session, factory: sessionmaker[Session]) -> None:
    deploy.deploy(session, {"pinged.bpmn": RELAY_START.encode(), "relay.bpmn": RELAY.encode()}, actor=SYSTEM,
                  check_lanes=False)
    session.commit()
    messages.publish(session, name="ping", actor=SYSTEM)
    session.commit()
    seen = []
    for _ in range(message_rules.MAX_START_HOPS + 4):
        jobs.run_outbox(factory, limit=1000)
        session.expire_all()
        seen.append(session.scalar(select(func.count()).select_from(ProcessInstance)))
        session.rollback()
    generations = message_rules.MAX_START_HOPS + 1
    assert seen[-1] == seen[-2] == 2 * (2 ** generations - 1), seen  # each pinged instance and its relay
    assert session.scalar(select(func.max(ProcessInstance.start_hops))) == message_rules.MAX_START_HOPS
