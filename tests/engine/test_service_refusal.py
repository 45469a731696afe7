"""A service refusing what a person just submitted refuses the submission: the form comes back with the message under
the field and nothing is kept (engine/runtime/refusal.py). Faults that are not the person's stay incidents.

Before: the completion was kept and the instance stopped on an incident an administrator had to repair.
"""
from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, config, deploy, org, runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import FormInvalid, InvalidInput, SubmissionRefused
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import core as runtime_core
from engine.runtime import effects, hot, instances, timers
from engine.runtime.effects import RunContext
from engine.runtime.models import Incident, ProcessInstance
from engine.spiff import serializer
from engine.tasks import operations
from engine.tasks.collab_models import Notification
from engine.tasks.models import HumanTask
from tests.steps import names, only_task

FORM = json.dumps({"type": "object", "required": ["amount"], "additionalProperties": False,
                   "properties": {"amount": {"type": "integer"}, "note": {"type": "string", "maxLength": 200}}})
CHECKED: list[int] = []


def check(ctx: RunContext, amount: int) -> dict[str, Any]:
    """The test's service: the person's amount must not be negative; 13 names a field not on the form, 666 a bug."""
    CHECKED.append(amount)
    if amount < 0:
        raise InvalidInput("金额不能为负数 (amount must not be negative)", field="amount")
    if amount == 13:
        raise InvalidInput("上一步的数据有误 (an earlier step's data)", field="budget_code")
    if amount == 666:
        raise RuntimeError("a bug in the service")
    return {"ok": amount}


def _user_task(tid: str, incoming: str, outgoing: str) -> str:
    return f"""<bpmn:userTask id="{tid}" name="填报{tid}">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="amount.schema.json" />
        <spiffworkflow:property name="candidates" value="&quot;dept&quot;" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>{incoming}</bpmn:incoming><bpmn:outgoing>{outgoing}</bpmn:outgoing></bpmn:userTask>"""


def _service(sid: str, incoming: str, outgoing: str) -> str:
    return f"""<bpmn:serviceTask id="{sid}" name="核对{sid}">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="test_refusal_check" resultVariable="checked">
        <spiffworkflow:parameters><spiffworkflow:parameter id="amount" type="int" value="amount" />
        </spiffworkflow:parameters></spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>{incoming}</bpmn:incoming><bpmn:outgoing>{outgoing}</bpmn:outgoing></bpmn:serviceTask>"""


def _process(pid: str, body: str, flows: list[tuple[str, str, str]]) -> bytes:
    seq = "\n".join(f'<bpmn:sequenceFlow id="{f}" sourceRef="{a}" targetRef="{b}" />' for f, a, b in flows)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_{pid}" targetNamespace="t">
  <bpmn:process id="{pid}" name="{pid}" isExecutable="true">
    {body}
    {seq}
  </bpmn:process>
</bpmn:definitions>""".encode()


# fill → (a script, a gateway: the service is several steps on) → check → next
SEQUENTIAL = _process("refusal_seq", f"""
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    {_user_task("fill", "f1", "f2")}
    <bpmn:scriptTask id="prep" name="准备"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>rounds = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw" default="f4"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    {_service("check", "f4", "f5")}
    {_user_task("next", "f5", "f6")}
    <bpmn:endEvent id="end"><bpmn:incoming>f6</bpmn:incoming></bpmn:endEvent>""",
    [("f1", "start", "fill"), ("f2", "fill", "prep"), ("f3", "prep", "gw"), ("f4", "gw", "check"),
     ("f5", "check", "next"), ("f6", "next", "end")])

# two branches, each a person's form followed by the check: two people may complete them at once
PARALLEL = _process("refusal_par", f"""
    <bpmn:startEvent id="start"><bpmn:outgoing>p0</bpmn:outgoing></bpmn:startEvent>
    <bpmn:parallelGateway id="fork"><bpmn:incoming>p0</bpmn:incoming><bpmn:outgoing>pa</bpmn:outgoing>
      <bpmn:outgoing>pb</bpmn:outgoing></bpmn:parallelGateway>
    {_user_task("a", "pa", "pa2")}
    {_service("check_a", "pa2", "pa3")}
    {_user_task("b", "pb", "pb2")}
    {_service("check_b", "pb2", "pb3")}
    <bpmn:parallelGateway id="join"><bpmn:incoming>pa3</bpmn:incoming><bpmn:incoming>pb3</bpmn:incoming>
      <bpmn:outgoing>p9</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="end"><bpmn:incoming>p9</bpmn:incoming></bpmn:endEvent>""",
    [("p0", "start", "fork"), ("pa", "fork", "a"), ("pb", "fork", "b"), ("pa2", "a", "check_a"),
     ("pa3", "check_a", "join"), ("pb2", "b", "check_b"), ("pb3", "check_b", "join"), ("p9", "join", "end")])

# the check straight after the start: nobody submitted anything to send back
AT_START = _process("refusal_start", f"""
    <bpmn:startEvent id="start"><bpmn:outgoing>s1</bpmn:outgoing></bpmn:startEvent>
    {_service("check", "s1", "s2")}
    <bpmn:endEvent id="end"><bpmn:incoming>s2</bpmn:incoming></bpmn:endEvent>""",
    [("s1", "start", "check"), ("s2", "check", "end")])


# fill → a timer of an hour → check: when the timer fires nobody is there to send back to
AFTER_TIMER = _process("refusal_timer", f"""
    <bpmn:startEvent id="start"><bpmn:outgoing>t1</bpmn:outgoing></bpmn:startEvent>
    {_user_task("fill", "t1", "t2")}
    <bpmn:intermediateCatchEvent id="wait" name="等一小时"><bpmn:incoming>t2</bpmn:incoming>
      <bpmn:outgoing>t3</bpmn:outgoing><bpmn:timerEventDefinition>
        <bpmn:timeDuration>"PT1H"</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    {_service("check", "t3", "t4")}
    <bpmn:endEvent id="end"><bpmn:incoming>t4</bpmn:incoming></bpmn:endEvent>""",
    [("t1", "start", "fill"), ("t2", "fill", "wait"), ("t3", "wait", "check"), ("t4", "check", "end")])


@pytest.fixture
def people(session: Session, monkeypatch: pytest.MonkeyPatch) -> tuple[Actor, Actor]:
    monkeypatch.setitem(effects.REGISTRY, "test_refusal_check", check)
    monkeypatch.setattr(runtime_core, "_engine", None)  # the script engine copies the registry when it is built
    CHECKED.clear()
    org.add_unit(session, code="dept", name="审批部门")
    org.add_user(session, username="a", display_name="甲", unit_codes=["dept"])
    org.add_user(session, username="b", display_name="乙", unit_codes=["dept"])
    deploy.deploy(session, {"seq.bpmn": SEQUENTIAL, "par.bpmn": PARALLEL, "start.bpmn": AT_START,
                            "timer.bpmn": AFTER_TIMER, "amount.schema.json": FORM.encode()}, actor=SYSTEM, check_lanes=False)
    session.commit()
    return actor_for(session, "a"), actor_for(session, "b")


def snapshot(session: Session, instance_id: int) -> tuple[Any, ...]:
    """Everything a refused submission must leave as it was."""
    session.expire_all()
    row = session.get(ProcessInstance, instance_id)
    assert row is not None
    rows = session.execute(select(HumanTask.id, HumanTask.state, HumanTask.assignee_id, HumanTask.completed_by_id)
                           .where(HumanTask.instance_id == instance_id).order_by(HumanTask.id)).all()
    return (row.state, row.status, row.lock_version, row.next_timer_at, [tuple(r) for r in rows],
            session.scalar(select(func.count()).select_from(AuditEvent)),
            session.scalar(select(func.count()).select_from(OutboxMessage)),
            session.scalar(select(func.count()).select_from(Notification)),
            session.scalar(select(func.count()).select_from(Incident)))


def start(session: Session, key: str) -> int:
    row = instances.start(session, process_key=key, actor=SYSTEM)
    session.commit()
    return row.id


def test_a_negative_amount_is_refused_under_its_field_and_nothing_is_kept(
        session: Session, people: tuple[Actor, Actor]) -> None:
    """The service is three steps after the form (a script, a gateway): still the person's submission it refuses."""
    iid = start(session, "refusal_seq")
    task = only_task(session, iid, "fill")
    tasks.claim(session, task_id=task.id, actor=people[0])
    session.commit()
    before = snapshot(session, iid)
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=task.id, actor=people[0], data={"amount": -5, "note": "试一下"},
                       opinion="同意")
    session.rollback()
    assert isinstance(refused.value, FormInvalid) and refused.value.http_status == 422
    assert [(e.field, "负数" in e.message) for e in refused.value.errors] == [("amount", True)]
    assert refused.value.to_dict()["bpmn_id"] == "check"
    assert snapshot(session, iid) == before  # state, lock_version, rows, audit, outbox, notifications, incidents
    cached = hot.CACHE._entries.get(hot.key_of(session, iid))
    assert cached is None or cached.lock_version == before[2]  # no workflow of the refused run kept
    assert names(session, iid) == ["fill"]
    # corrected, it goes through
    done = tasks.complete(session, task_id=task.id, actor=people[0], data={"amount": 5})
    session.commit()
    assert done.incident is None and names(session, iid) == ["next"]
    assert CHECKED == [-5, 5]


@pytest.mark.parametrize(("amount", "kind"), [(13, "script_error"), (666, "script_error")])
def test_a_fault_that_is_not_the_persons_stays_an_incident(session: Session, people: tuple[Actor, Actor],
                                                           amount: int, kind: str) -> None:
    """A field the person did not submit (an earlier step's data) or a bug: the completion stands, an incident."""
    iid = start(session, "refusal_seq")
    task = only_task(session, iid, "fill")
    done = tasks.complete(session, task_id=task.id, actor=people[0], data={"amount": amount})
    session.commit()
    assert done.status == "incident" and done.incident
    incident = session.scalar(select(Incident).where(Incident.instance_id == iid))
    assert incident is not None and incident.bpmn_id == "check" and incident.kind == kind


def test_with_nobody_submitting_a_refusal_is_an_incident(session: Session, people: tuple[Actor, Actor]) -> None:
    """Steps nobody just submitted a form for (a start with data from the system; a timer, a message alike): there is
    nobody to send back to, so the service's refusal stops the instance on an incident as before."""
    row = instances.start(session, process_key="refusal_start", actor=SYSTEM, data={"amount": -5})
    assert row.status == "incident" and CHECKED == [-5]
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.bpmn_id == "check" and "负数" in incident.message
    session.rollback()


def test_a_clients_start_a_service_refuses_starts_nothing(session: Session, people: tuple[Actor, Actor]) -> None:
    """A person's start (the start page, the API, the CLI) is a submission too: refused, nothing started."""
    before = session.scalar(select(func.count()).select_from(ProcessInstance))
    with pytest.raises(SubmissionRefused) as refused:
        instances.start(session, process_key="refusal_start", actor=people[0], data={"amount": -5}, from_client=True)
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["amount"] and refused.value.bpmn_id == "check"
    assert session.scalar(select(func.count()).select_from(ProcessInstance)) == before
    assert session.scalar(select(func.count()).select_from(Incident)) == 0
    row = instances.start(session, process_key="refusal_start", actor=people[0], data={"amount": 5}, from_client=True)
    assert row.status == "completed"


def test_a_submission_held_for_a_co_signer_is_an_incident_when_signed(session: Session,
                                                                      people: tuple[Actor, Actor]) -> None:
    """后加签: the holder's data runs when the co-signer signs; the signer cannot change it, the holder is not there:
    an incident, as before (the signature is kept)."""
    iid = start(session, "refusal_seq")
    fill = only_task(session, iid, "fill")
    tasks.claim(session, task_id=fill.id, actor=people[0])
    [after] = operations.add_cosigners(session, task_id=fill.id, actor=people[0], usernames=["b"], position="after")
    session.commit()
    held = tasks.complete(session, task_id=fill.id, actor=people[0], data={"amount": -5})
    session.commit()
    assert held.incident is None and CHECKED == []
    tasks.complete(session, task_id=after.id, actor=people[1], data={}, opinion="同意")
    session.commit()
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "incident" and CHECKED == [-5]


def test_a_refusal_when_a_timer_fires_is_an_incident(session: Session, people: tuple[Actor, Actor],
                                                     frozen: Any) -> None:
    """The person's submission went through (the check comes after a timer); when the timer fires there is nobody to
    send back to: an incident, as before."""
    iid = start(session, "refusal_timer")
    done = tasks.complete(session, task_id=only_task(session, iid, "fill").id, actor=people[0], data={"amount": -5})
    session.commit()
    assert done.incident is None and done.status == "running" and CHECKED == []
    frozen.advance(timedelta(hours=2))
    assert timers.fire_instance(session, iid, now=clock.now())
    session.commit()
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "incident" and CHECKED == [-5]


def test_a_hot_instance_is_read_as_stored_after_a_refusal(session: Session, people: tuple[Actor, Actor]) -> None:
    """The workflow the refused run moved on was the cached one: the next load reads the state as stored."""
    iid = start(session, "refusal_par")
    tasks.complete(session, task_id=only_task(session, iid, "b").id, actor=people[1], data={"amount": 2})
    session.commit()  # the saved workflow is cached now
    key = hot.key_of(session, iid)
    assert hot.CACHE._entries.get(key) is not None or config.load().instance_cache_size <= 0
    with pytest.raises(SubmissionRefused):
        tasks.complete(session, task_id=only_task(session, iid, "a").id, actor=people[0], data={"amount": -2})
    session.rollback()
    assert hot.CACHE._entries.get(key) is None  # taken by the refused run, never put back
    stored = session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == iid))
    assert serializer.dump_state(runtime.load(session, iid).workflow) == stored
    session.rollback()


def test_a_refused_branch_leaves_the_other_branch_and_its_completion_alone(
        session: Session, people: tuple[Actor, Actor]) -> None:
    iid = start(session, "refusal_par")
    assert names(session, iid) == ["a", "b"]
    tasks.complete(session, task_id=only_task(session, iid, "b").id, actor=people[1], data={"amount": 3})
    session.commit()
    before = snapshot(session, iid)
    with pytest.raises(SubmissionRefused):
        tasks.complete(session, task_id=only_task(session, iid, "a").id, actor=people[0], data={"amount": -1})
    session.rollback()
    assert snapshot(session, iid) == before and names(session, iid) == ["a"]
    done = tasks.complete(session, task_id=only_task(session, iid, "a").id, actor=people[0], data={"amount": 1})
    session.commit()
    assert done.status == "completed"


def _race(factory: sessionmaker[Session], ids: dict[str, int], people: tuple[Actor, Actor]) -> dict[str, object]:
    """Complete branch a (refused: -7) and branch b (kept: 7) at the same moment, each in its own session."""
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def attempt(bpmn_id: str, actor: Actor, amount: int) -> None:
        with factory() as s:
            barrier.wait()
            try:
                tasks.complete(s, task_id=ids[bpmn_id], actor=actor, data={"amount": amount})
                s.commit()
                outcomes[bpmn_id] = "kept"
            except Exception as exc:
                s.rollback()
                outcomes[bpmn_id] = exc

    threads = [threading.Thread(target=attempt, args=("a", people[0], -7)),
               threading.Thread(target=attempt, args=("b", people[1], 7))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_two_people_at_once_one_refused_the_other_kept(session: Session, factory: sessionmaker[Session],
                                                       people: tuple[Actor, Actor]) -> None:
    """Two branches completed at the same moment: the refused one keeps nothing, the other stands (had it lost the
    optimistic lock it would be told to retry; a refusal never bumps lock_version, so it does not lose to one)."""
    for rep in range(5):
        iid = start(session, "refusal_par")
        ids = {t: only_task(session, iid, t).id for t in ("a", "b")}
        version = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == iid))
        session.close()
        outcomes = _race(factory, ids, people)
        assert isinstance(outcomes["a"], SubmissionRefused), (rep, outcomes)
        assert outcomes["b"] == "kept", (rep, outcomes)
        row = session.get(ProcessInstance, iid)
        assert row is not None and row.status == "running" and row.lock_version == (version or 0) + 1
        assert names(session, iid) == ["a"]
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"instance:{iid}", AuditEvent.action == "task.complete")) == 1
        assert session.scalar(select(func.count()).select_from(Incident).where(Incident.instance_id == iid)) == 0
        session.commit()
