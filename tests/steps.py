"""Steps the scenario tests share: find open tasks, claim and complete as the inbox would."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import documents, tasks
from engine.audit.models import AuditEvent
from engine.errors import Conflict
from engine.org.actors import Actor
from engine.runtime.models import Incident, ProcessInstance
from engine.tasks.models import HumanTask


def open_tasks(session: Session, instance_id: int, bpmn_id: str | None = None) -> list[HumanTask]:
    """Return the instance's ready tasks (optionally of one BPMN element), oldest first, freshly read."""
    q = select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready")
    if bpmn_id is not None:
        q = q.where(HumanTask.bpmn_id == bpmn_id)
    return list(session.scalars(q.order_by(HumanTask.id).execution_options(populate_existing=True)))


def names(session: Session, instance_id: int) -> list[str]:
    """Return the BPMN ids of the instance's ready tasks, sorted."""
    return sorted(t.bpmn_id for t in open_tasks(session, instance_id))


def only_task(session: Session, instance_id: int, bpmn_id: str) -> HumanTask:
    """Return the one ready task of a BPMN element (fails naming what is ready instead)."""
    found = open_tasks(session, instance_id, bpmn_id)
    assert len(found) == 1, names(session, instance_id)
    return found[0]


def do(session: Session, task: HumanTask, actor: Actor, data: dict[str, Any]) -> tasks.Completion:
    """Claim and complete a task as the inbox would, commit, and insist the engine raised no incident."""
    tasks.claim(session, task_id=task.id, actor=actor)
    result = tasks.complete(session, task_id=task.id, actor=actor, data=data)
    session.commit()
    assert result.incident is None, result.incident
    return result


SPAWNER = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id={process_id} name={name} isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id={task_id} name="发起流程">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id={operator} resultVariable={result}>
          <spiffworkflow:parameters>
{parameters}
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef={task_id} />
    <bpmn:sequenceFlow id="f2" sourceRef={task_id} targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def spawner(process_id: str, *, task_id: str = "spawn", name: str = "发起子流程", operator: str = "start_process",
            result: str = "child", **parameters: str) -> bytes:
    """Return a process whose one service task calls `operator` with the given parameter expressions."""
    from xml.sax.saxutils import quoteattr
    params = "\n".join(f'            <spiffworkflow:parameter id={quoteattr(k)} type="any" value={quoteattr(v)} />'
                       for k, v in parameters.items())
    return SPAWNER.format(process_id=quoteattr(process_id), name=quoteattr(name), task_id=quoteattr(task_id),
                          operator=quoteattr(operator), result=quoteattr(result), parameters=params).encode()


def kept(session: Session, instance_id: int) -> tuple[Any, ...]:
    """What a refused submission must leave as it was: the instance's state, status, lock_version and open steps, and
    the counts of audit events and incidents."""
    session.expire_all()
    row = session.get(ProcessInstance, instance_id)
    assert row is not None
    return (row.state, row.status, row.lock_version, names(session, instance_id),
            session.scalar(select(func.count()).select_from(AuditEvent)),
            session.scalar(select(func.count()).select_from(Incident)))


def submitted_twice_at_once(factory: Any, monkeypatch: pytest.MonkeyPatch, task_id: int, actor: Actor,
                            data: Sequence[dict[str, Any]]) -> None:
    """Submit one task twice at once (PostgreSQL: two sessions, `data[0]` and `data[1]`), both held at
    `engine.documents.issue` until each has read the task and run the workflow to its service task: one wins, the
    other gets 409 (Conflict) and issues nothing."""
    from tests.engine.conftest import at_once
    both = threading.Barrier(2, timeout=20)
    issue = documents.issue

    def issue_when_both_got_here(*args: Any, **kwargs: Any) -> documents.IssuedDocument:
        both.wait()
        return issue(*args, **kwargs)
    monkeypatch.setattr(documents, "issue", issue_when_both_got_here)

    def submit(i: int) -> None:
        with factory() as s:
            tasks.complete(s, task_id=task_id, actor=actor, data=data[i])
            s.commit()
    outcomes = at_once(2, submit)
    assert sorted(o is None for o in outcomes) == [False, True], outcomes
    lost = next(o for o in outcomes if o is not None)
    assert isinstance(lost, Conflict), repr(lost)  # 409: someone else just acted
