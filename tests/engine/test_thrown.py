"""What an instance throws (messages and signals) is queued once, and within limits, naming the throwing element.

Runs on SQLite and PostgreSQL (the `session` fixture).
"""
from __future__ import annotations

from xml.sax.saxutils import escape

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deploy, tasks
from engine.org.actors import SYSTEM, Actor
from engine.runtime import hot, instances, message_rules
from engine.runtime.message_models import BpmnMessage
from engine.runtime.models import Incident, ProcessInstance
from engine.tasks.models import HumanTask

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:message id="m_ping" name="ping" />
  <bpmn:correlationProperty id="case" name="案号">
    <bpmn:correlationPropertyRetrievalExpression messageRef="m_ping">
      <bpmn:formalExpression>case</bpmn:formalExpression>
    </bpmn:correlationPropertyRetrievalExpression>
  </bpmn:correlationProperty>
  <bpmn:signal id="s_ping" name="ping_signal">{signal_payload}</bpmn:signal>
  <bpmn:process id="thrower" isExecutable="true">
"""


def thrower(payload: str = '{"case": "A-1", "n": 1}', *, kind: str = "message", prepare: str = "n = 0",
            rounds: str = "1") -> bytes:
    """start → prepare (a script) → send (throws `ping` with the payload) → count (n += 1) → back to send while
    n < rounds → review (a user task) → end."""
    if kind == "message":  # a message's payload is on its event definition, a signal's on the signal
        head, throw = HEAD.replace("{signal_payload}", ""), (
            '<bpmn:messageEventDefinition messageRef="m_ping"><bpmn:extensionElements><spiffworkflow:messagePayload>'
            f"{escape(payload)}</spiffworkflow:messagePayload></bpmn:extensionElements></bpmn:messageEventDefinition>")
    else:
        head, throw = HEAD.replace("{signal_payload}", "<bpmn:extensionElements><spiffworkflow:payloadExpression>"
                                   f"{escape(payload)}</spiffworkflow:payloadExpression></bpmn:extensionElements>"), \
            '<bpmn:signalEventDefinition signalRef="s_ping" />'
    return (head + f"""    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="prepare" />
    <bpmn:scriptTask id="prepare"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{escape(prepare)}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="prepare" targetRef="send" />
    <bpmn:intermediateThrowEvent id="send" name="发送">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:incoming>f_again</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      {throw}
    </bpmn:intermediateThrowEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="send" targetRef="count" />
    <bpmn:scriptTask id="count"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:script>n = n + 1</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f4" sourceRef="count" targetRef="again" />
    <bpmn:exclusiveGateway id="again" default="f_on">
      <bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f_again</bpmn:outgoing><bpmn:outgoing>f_on</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f_again" sourceRef="again" targetRef="send">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">n &lt; {rounds}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_on" sourceRef="again" targetRef="review" />
    <bpmn:userTask id="review"><bpmn:incoming>f_on</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing></bpmn:userTask>
    <bpmn:sequenceFlow id="f5" sourceRef="review" targetRef="end" />
    <bpmn:endEvent id="end"><bpmn:incoming>f5</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
""").encode()


def queued(session: Session, name: str = "ping") -> int:
    return int(session.scalar(select(func.count()).select_from(BpmnMessage).where(BpmnMessage.name == name)) or 0)


def incident(session: Session, instance_id: int) -> Incident:
    found = session.scalar(select(Incident).where(Incident.instance_id == instance_id))
    assert found is not None
    return found


def test_a_thrown_message_is_queued_once_when_the_instance_is_next_loaded_from_the_database(
        session: Session, review_org: dict[str, Actor]) -> None:
    """The save wrote the state before it took what the instance threw out of it: the stored state still held the
    thrown message, and the next save of a process that loaded it from the database (another web or worker process,
    or after the hot-instance cache let it go) queued it again — a second delivery or a second instance started."""
    deploy.deploy(session, {"thrower.bpmn": thrower()}, actor=SYSTEM, check_lanes=False)
    me = review_org["applicant"]
    row = instances.start(session, process_key="thrower", actor=me)
    session.commit()
    assert queued(session) == 1
    hot.CACHE.clear()  # as another process would: the workflow comes from the stored state
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.state == "ready"))
    assert task is not None
    tasks.complete(session, task_id=task.id, actor=me, data={})
    session.commit()
    assert queued(session) == 1
    stored = session.get(ProcessInstance, row.id)
    assert stored is not None and stored.status == "completed"


def test_a_thrown_signal_is_queued_once_too(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, {"thrower.bpmn": thrower(kind="signal")}, actor=SYSTEM, check_lanes=False)
    me = review_org["applicant"]
    row = instances.start(session, process_key="thrower", actor=me)
    session.commit()
    hot.CACHE.clear()
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.state == "ready"))
    assert task is not None
    tasks.complete(session, task_id=task.id, actor=me, data={})
    session.commit()
    assert queued(session, "ping_signal") == 1


@pytest.mark.parametrize("kind", ["message", "signal"])
def test_a_thrown_payload_past_the_limit_stops_the_instance_naming_the_element_and_is_not_queued(
        session: Session, kind: str) -> None:
    """A payload from outside is refused past 64 KB; an instance's own was queued whatever its size, into the table
    and then into every catching instance's state."""
    deploy.deploy(session, {"thrower.bpmn": thrower('{"case": "A-1", "big": big}', kind=kind,
                                                    prepare="n = 0\nbig = 'x' * 200000")},
                  actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="thrower", actor=SYSTEM)
    session.commit()
    found = incident(session, row.id)
    assert found.kind == "message_too_large" and found.bpmn_id == "send", (found.kind, found.bpmn_id, found.message)
    assert "64 KB" in found.message and "send" in found.message, found.message
    assert queued(session, "ping" if kind == "message" else "ping_signal") == 0


def test_a_payload_at_the_limit_is_thrown(session: Session) -> None:
    deploy.deploy(session, {"thrower.bpmn": thrower('{"case": "A-1", "big": big}',
                                                    prepare="n = 0\nbig = 'x' * 60000")},
                  actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="thrower", actor=SYSTEM)
    session.commit()
    assert row.status == "running" and queued(session) == 1


@pytest.mark.parametrize("kind", ["message", "signal"])
def test_an_instance_throwing_past_the_count_in_one_run_stops_naming_the_element(
        session: Session, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """A loop throwing on every round queued a row (and an outbox row, an audit event) per throw: 10,000 per run
    within the run's task budget, every run. At most MAX_THROWN per run are queued; the one past it stops the
    instance."""
    monkeypatch.setattr(message_rules, "MAX_THROWN", 20, raising=False)
    deploy.deploy(session, {"thrower.bpmn": thrower('{"case": "A-1"}', kind=kind, rounds="1000")},
                  actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="thrower", actor=SYSTEM)
    session.commit()
    found = incident(session, row.id)
    assert found.kind == "too_many_messages" and found.bpmn_id == "send", (found.kind, found.bpmn_id, found.message)
    assert "20" in found.message, found.message
    assert queued(session, "ping" if kind == "message" else "ping_signal") == 20


def test_thrown_payloads_together_past_the_state_limit_stop_the_instance(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "256")
    deploy.deploy(session, {"thrower.bpmn": thrower('{"case": "A-1", "big": big}', rounds="10",
                                                    prepare="n = 0\nbig = 'x' * 60000")},
                  actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="thrower", actor=SYSTEM)
    session.commit()
    found = incident(session, row.id)
    assert found.kind == "message_too_large" and found.bpmn_id == "send", (found.kind, found.bpmn_id, found.message)
    assert "256 KB" in found.message, found.message
    assert queued(session) == 4


def test_a_thrown_correlation_value_too_long_to_keep_stops_the_instance_naming_the_element(session: Session) -> None:
    """bpmn_message.correlation holds 500 characters: a longer one failed the save's INSERT on PostgreSQL (a 500 for
    whoever completed the step, every time) and was kept whole on SQLite, where nothing could ever match it."""
    deploy.deploy(session, {"thrower.bpmn": thrower('{"case": case}', prepare="n = 0\ncase = 'c' * 600")},
                  actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="thrower", actor=SYSTEM)
    session.commit()
    found = incident(session, row.id)
    assert found.kind == "message_too_large" and found.bpmn_id == "send", (found.kind, found.bpmn_id, found.message)
    assert str(message_rules.MAX_CORRELATION) in found.message, found.message
    assert queued(session) == 0
