"""A workflow state that grows past JZFLOW_MAX_STATE_KB over several units of work, not in one submission.

One submission is bounded where it arrives (half the limit, engine/content_limits.py); several, or a loop whose
script appends on every round, still grew the state until the save refused it — and the instance stopped with an
incident `state_too_large` that named neither the element nor the data. Now the submission that would make the
state too large is refused naming its largest fields, and nothing changes; growth by a script or an engine step
still stops the instance, with the element whose data weighs most and the largest data keys named.

Runs on SQLite and PostgreSQL (the `session` fixture).
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import deploy, runtime, tasks
from engine.errors import FormInvalid
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from engine.tasks.models import HumanTask

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="grow" isExecutable="true">
"""
TAIL = """  </bpmn:process>
</bpmn:definitions>
"""
LOOP_BACK = """    <bpmn:exclusiveGateway id="again" default="f_again">
      <bpmn:incoming>f_review</bpmn:incoming><bpmn:outgoing>f_again</bpmn:outgoing><bpmn:outgoing>f_end</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f_review" sourceRef="review" targetRef="again" />
    <bpmn:sequenceFlow id="f_end" sourceRef="again" targetRef="end">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">stop == True</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:endEvent id="end"><bpmn:incoming>f_end</bpmn:incoming></bpmn:endEvent>
"""


def script_loop(append: str) -> dict[str, bytes]:
    """start → init (log = []) → append (the script) → review (a user task) → again: back to append, or end."""
    body = f"""    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="init" />
    <bpmn:scriptTask id="init"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>log = []\nstop = False</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="init" targetRef="append" />
    <bpmn:scriptTask id="append" name="追加记录">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:incoming>f_again</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>{append}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="append" targetRef="review" />
    <bpmn:sequenceFlow id="f_again" sourceRef="again" targetRef="append" />
    <bpmn:userTask id="review" name="审核"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f_review</bpmn:outgoing>
    </bpmn:userTask>
"""
    return {"grow.bpmn": (HEAD + body + LOOP_BACK + TAIL).encode()}


def form_loop() -> dict[str, bytes]:
    """start → review (a user task) → again: back to review, or end. No form file: any valid data is taken."""
    body = """    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:sequenceFlow id="f_again" sourceRef="again" targetRef="review" />
    <bpmn:userTask id="review" name="审核">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:incoming>f_again</bpmn:incoming><bpmn:outgoing>f_review</bpmn:outgoing>
    </bpmn:userTask>
"""
    return {"grow.bpmn": (HEAD + body + LOOP_BACK + TAIL).encode()}


def ready(session: Session, instance_id: int) -> HumanTask:
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready"))
    assert task is not None
    return task


def complete(session: Session, instance_id: int, actor: Actor, data: dict[str, Any]) -> tasks.Completion:
    task = ready(session, instance_id)
    result = tasks.complete(session, task_id=task.id, actor=actor, data=data)
    session.commit()
    return result


def incident(session: Session, instance_id: int) -> Incident:
    found = session.scalar(select(Incident).where(Incident.instance_id == instance_id))
    assert found is not None
    return found


def test_a_script_appending_every_round_stops_the_instance_naming_the_element_and_the_key(
        session: Session, review_org: dict[str, Actor]) -> None:
    """A hostile owner's loop: its script appends 100 KB each round. The person completing the round is not the
    cause: the instance stops, and the incident says which element and which data made the state too large."""
    deploy.deploy(session, script_loop("log = log + ['x' * 100000]"), actor=SYSTEM, check_lanes=False)
    me = review_org["applicant"]
    row = instances.start(session, process_key="grow", actor=me)
    session.commit()
    for _round in range(60):
        result = complete(session, row.id, me, {"stop": False, "note": "继续"})
        if result.incident is not None:
            break
    else:
        pytest.fail("the state never passed the limit")
    found = incident(session, row.id)
    assert found.kind == "state_too_large" and found.bpmn_id == "append", (found.kind, found.bpmn_id)
    assert "append" in found.message and "追加记录" in found.message and "log" in found.message, found.message
    assert "2048 KB" in found.message and "JZFLOW_MAX_STATE_KB" in found.message, found.message
    assert session.get(ProcessInstance, row.id).status == "incident"  # type: ignore[union-attr]


def test_a_script_growing_the_state_at_the_start_names_the_element(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "64")
    deploy.deploy(session, script_loop("log = log + ['y' * 70000]"), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="grow", actor=SYSTEM)
    found = incident(session, row.id)
    assert found.kind == "state_too_large" and found.bpmn_id == "append", (found.kind, found.bpmn_id)
    assert "log" in found.message and "64 KB" in found.message, found.message


def test_big_but_valid_submissions_that_would_make_the_state_too_large_are_refused_and_nothing_changes(
        session: Session, review_org: dict[str, Actor]) -> None:
    """A person submits a valid form again and again (each under half the limit), different fields each round:
    the submission that would make the state too large is refused, naming its largest fields; the task stays open,
    the instance runs, the state is what it was; a smaller submission then goes through."""
    deploy.deploy(session, form_loop(), actor=SYSTEM, check_lanes=False)
    me = review_org["applicant"]
    row = instances.start(session, process_key="grow", actor=me)
    session.commit()
    big = "z" * 400_000
    refused: FormInvalid | None = None
    for n in range(20):
        task = ready(session, row.id)
        before = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == row.id))
        try:
            tasks.complete(session, task_id=task.id, actor=me, data={"stop": False, f"part{n}": big, "small": "s"})
        except FormInvalid as exc:
            session.rollback()
            refused = exc
            break
        session.commit()
        assert session.get(ProcessInstance, row.id).status == "running"  # type: ignore[union-attr]
    assert refused is not None, "the state never passed the limit"
    fields = [e.field for e in refused.errors]
    assert fields == [f"part{n}"], refused.errors
    assert "2048 KB" in refused.errors[0].message and "JZFLOW_MAX_STATE_KB" in refused.errors[0].message
    session.expire_all()
    stored = session.get(ProcessInstance, row.id)
    assert stored is not None and stored.status == "running" and stored.lock_version == before
    assert session.scalar(select(Incident.id).where(Incident.instance_id == row.id)) is None
    assert ready(session, row.id).id == task.id
    assert runtime.load(session, row.id).workflow is not None
    result = complete(session, row.id, me, {"stop": False, "note": "这次少一些"})
    assert result.incident is None and result.status == "running" and result.next_tasks


def test_one_submission_of_chinese_text_within_the_data_limit_that_makes_the_state_too_large_is_refused(
        session: Session, review_org: dict[str, Actor]) -> None:
    """The door counts characters (half the limit: 1,024 K); the state writes a Chinese character as \\uXXXX, six.
    350,000 characters pass the door and make a 2 MB state: refused naming the field, the task stays open."""
    deploy.deploy(session, form_loop(), actor=SYSTEM, check_lanes=False)
    me = review_org["applicant"]
    row = instances.start(session, process_key="grow", actor=me)
    session.commit()
    task = ready(session, row.id)
    with pytest.raises(FormInvalid) as refused:
        tasks.complete(session, task_id=task.id, actor=me, data={"stop": False, "note": "字" * 350_000, "n": 1})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["note"], refused.value.errors
    assert ready(session, row.id).id == task.id
    assert session.scalar(select(Incident.id).where(Incident.instance_id == row.id)) is None


def test_start_data_from_a_client_that_makes_the_state_too_large_is_refused_and_nothing_is_started(
        session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, form_loop(), actor=SYSTEM, check_lanes=False)
    session.commit()
    with pytest.raises(FormInvalid) as refused:
        instances.start(session, process_key="grow", actor=review_org["applicant"], from_client=True,
                        data={"title": "申请", "material": "字" * 350_000})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["material"], refused.value.errors
    assert "JZFLOW_MAX_STATE_KB" in refused.value.errors[0].message
    assert session.scalar(select(ProcessInstance.id)) is None


def test_a_message_from_outside_that_would_make_the_state_too_large_is_refused_and_the_instance_keeps_waiting(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender from outside (API, CLI) delivering into an instance near the limit: the publisher is refused naming the
    payload's field; before, the catching instance — someone else's — stopped with `state_too_large`."""
    from engine.runtime import messages
    from engine.runtime.message_models import BpmnMessage
    from tests.conftest import FIXTURES
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "96")  # data from outside: at most 48 KB at once
    deploy.deploy(session, deploy.read_directory(FIXTURES / "messages"), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="msg_case", actor=SYSTEM,
                          data={"application_id": "A-1", "resumed": 0, "filler": "f" * 47_500})
    messages.publish(session, name="supplement", actor=SYSTEM, correlations={"application_id": "A-1"},
                     payload={"pages": 3})
    session.commit()
    assert ready(session, row.id).bpmn_id == "review"
    before = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == row.id))
    with pytest.raises(FormInvalid) as refused:
        messages.publish(session, name="withdraw", actor=SYSTEM, payload={"reason": "r" * 47_500, "at": "今天"})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["data/reason"], refused.value.errors
    assert "JZFLOW_MAX_STATE_KB" in refused.value.errors[0].message
    stored = session.get(ProcessInstance, row.id)
    assert stored is not None and stored.status == "running" and stored.lock_version == before
    assert session.scalar(select(Incident.id).where(Incident.instance_id == row.id)) is None
    assert session.scalar(select(BpmnMessage.id).where(BpmnMessage.name == "withdraw")) is None
    assert ready(session, row.id).bpmn_id == "review"


CALLED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="c" targetNamespace="t">
  <bpmn:process id="called" isExecutable="true">
    <bpmn:startEvent id="c_start"><bpmn:outgoing>c1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="c_fill" name="填写"><bpmn:incoming>c1</bpmn:incoming><bpmn:outgoing>c2</bpmn:outgoing>
      <bpmn:script>report = "r" * 45000</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="c_end"><bpmn:incoming>c2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="c1" sourceRef="c_start" targetRef="c_fill" />
    <bpmn:sequenceFlow id="c2" sourceRef="c_fill" targetRef="c_end" />
  </bpmn:process>
</bpmn:definitions>
"""


def call_then_review() -> dict[str, bytes]:
    """start → a call activity (its script writes 45 KB) → review (a user task) → end."""
    body = """    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:callActivity id="call" calledElement="called"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:callActivity>
    <bpmn:userTask id="review" name="审核"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="call" />
    <bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="review" targetRef="end" />
"""
    return {"grow.bpmn": (HEAD + body + TAIL).encode(), "called.bpmn": CALLED.encode()}


def test_an_instance_well_within_the_limit_completes_though_spiffworkflow_copies_its_data_at_the_end(
        session: Session, review_org: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> None:
    """At the end SpiffWorkflow copies the last task's data into the workflow's own, and a called process's into its
    own as it ends: the state holding 45 KB of data took 90 KB after the call and 135 KB at the end. Counted, an
    instance whose data took more than a third of the limit could never finish: its last step stopped it with
    `state_too_large`, and a person's last submission was refused. The copies are written, and not counted."""
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "128")
    deploy.deploy(session, call_then_review(), actor=SYSTEM, check_lanes=False)
    me = review_org["applicant"]
    row = instances.start(session, process_key="grow", actor=me)
    session.commit()
    assert row.status == "running" and ready(session, row.id).bpmn_id == "review"
    result = complete(session, row.id, me, {"note": "n" * 25_000})
    assert result.incident is None and result.status == "completed", result
    stored = session.get(ProcessInstance, row.id)
    assert stored is not None and len(stored.state) > 128 * 1024  # what SpiffWorkflow copied is in it, uncounted
    assert runtime.load(session, row.id, read_only=True).workflow.data["report"] == "r" * 45000


def test_a_state_over_the_limit_without_the_end_copies_still_stops_the_instance(
        session: Session, review_org: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "128")
    deploy.deploy(session, call_then_review(), actor=SYSTEM, check_lanes=False)
    me = review_org["applicant"]
    row = instances.start(session, process_key="grow", actor=me)
    session.commit()
    with pytest.raises(FormInvalid) as refused:  # 90 KB held (one copy of the call's data uncounted) + 45 KB
        tasks.complete(session, task_id=ready(session, row.id).id, actor=me, data={"note": "n" * 45_000})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["note"], refused.value.errors
