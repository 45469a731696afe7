"""Instances that start instances (start_process, a service that starts one) are bounded: per engine run, in depth,
and in how many of one lineage are open at once.

A process whose two service tasks each started the same process made 8,239 instances from a single start in 17 s:
every child ran at once, inside its parent's run, and started two more; only Python's recursion limit and the run's
time limit stopped it, as incidents `budget_exceeded` and `run_too_long` naming nothing useful. With a timer in
between, each generation would start in a later unit of work (the timer sweep) and nothing would stop it at all.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, jobs
from engine.org.actors import SYSTEM
from engine.runtime import instances, start_limits
from engine.runtime.models import Incident, ProcessInstance

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"'
        ' xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">\n')


def _spawn(i: str, key: str) -> str:
    return f"""<bpmn:serviceTask id="spawn_{i}"><bpmn:extensionElements>
      <spiffworkflow:serviceTaskOperator id="start_process" resultVariable="child_{i}"><spiffworkflow:parameters>
        <spiffworkflow:parameter id="process_key" type="any" value='"{key}"' /></spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>f{i}</bpmn:incoming><bpmn:outgoing>g{i}</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f{i}" sourceRef="split" targetRef="spawn_{i}" />
    <bpmn:sequenceFlow id="g{i}" sourceRef="spawn_{i}" targetRef="join" />"""


def bomb(key: str = "bomb", *, ways: int = 2, wait: str | None = None) -> bytes:
    """A process that starts `ways` instances of itself (after a timer of `wait`, if given)."""
    branches = "abcdefghij"[:ways]
    timer = (f'<bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>f0</bpmn:incoming><bpmn:outgoing>f1</bpmn:outgoing>'
             f'<bpmn:timerEventDefinition><bpmn:timeDuration>"{wait}"</bpmn:timeDuration></bpmn:timerEventDefinition>'
             '</bpmn:intermediateCatchEvent><bpmn:sequenceFlow id="f1" sourceRef="wait" targetRef="split" />'
             '<bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="wait" />') if wait else \
        '<bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="split" />'
    return (HEAD + f"""<bpmn:process id="{key}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>
    {timer}
    <bpmn:parallelGateway id="split"><bpmn:incoming>{"f1" if wait else "f0"}</bpmn:incoming>
      {"".join(f"<bpmn:outgoing>f{i}</bpmn:outgoing>" for i in branches)}</bpmn:parallelGateway>
    {"".join(_spawn(i, key) for i in branches)}
    <bpmn:parallelGateway id="join">{"".join(f"<bpmn:incoming>g{i}</bpmn:incoming>" for i in branches)}
      <bpmn:outgoing>fz</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="end"><bpmn:incoming>fz</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="fz" sourceRef="join" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
""").encode()


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ProcessInstance)) or 0)


def _kinds(session: Session) -> dict[str, int]:
    return {kind: int(n) for kind, n in session.execute(select(Incident.kind, func.count()).group_by(Incident.kind))}


def test_a_process_starting_itself_many_times_stops_at_the_run_limit(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_RUN_STARTS", "20")
    deploy.deploy(session, {"b.bpmn": bomb(ways=10)}, actor=SYSTEM, check_lanes=False)
    session.commit()
    root = instances.start(session, process_key="bomb", actor=SYSTEM)
    session.commit()
    assert _count(session) == 1 + 20  # the one started from outside, then what its run may start
    assert root.status == "incident"
    assert set(_kinds(session)) == {"too_many_starts"}, _kinds(session)
    found = session.scalar(select(Incident).where(Incident.instance_id == root.id))
    assert found is not None and found.bpmn_id and found.bpmn_id.startswith("spawn_"), found
    assert "JZFLOW_MAX_RUN_STARTS" in found.message and "bomb" in found.message, found.message


def test_instances_started_inside_each_others_runs_stop_a_few_deep(session: Session) -> None:
    """Each instance starts one more, which runs inside its parent's run: past MAX_START_NESTING the start is refused,
    named, long before Python's recursion limit is (then a RecursionError, or a flush failing the whole request)."""
    deploy.deploy(session, {"b.bpmn": bomb(ways=1)}, actor=SYSTEM, check_lanes=False)
    session.commit()
    root = instances.start(session, process_key="bomb", actor=SYSTEM)
    session.commit()
    depth = start_limits.MAX_START_NESTING
    assert _count(session) == 1 + depth
    assert _kinds(session) == {"too_many_starts": 1}
    deepest = session.scalar(select(Incident))
    assert deepest is not None and deepest.bpmn_id == "spawn_a" and "MAX_START_NESTING" in deepest.message
    assert deepest.instance_id == session.scalar(select(func.max(ProcessInstance.id)))
    assert root.status == "completed"


def test_a_chain_that_starts_only_one_successor_is_not_limited_by_generations(
        session: Session, factory: sessionmaker[Session], frozen: object) -> None:
    """Continue-as-new: each instance waits, then starts its successor. Neither limit touches it, however long."""
    deploy.deploy(session, {"b.bpmn": bomb("chain", ways=1, wait="PT1H")}, actor=SYSTEM, check_lanes=False)
    instances.start(session, process_key="chain", actor=SYSTEM)
    session.commit()
    for _ in range(start_limits.MAX_START_NESTING * 3):
        clock.advance(timedelta(hours=2))
        assert jobs.run_timer_sweep(factory, batch=100) == 1
    session.expire_all()
    assert _count(session) == 1 + start_limits.MAX_START_NESTING * 3
    assert _kinds(session) == {}


def test_a_lineage_that_grows_across_units_of_work_stops_at_its_open_limit(
        session: Session, factory: sessionmaker[Session], frozen: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each instance waits on a timer, then starts two more: every generation is another unit of work (a timer sweep),
    so no run limit sees more than two. The instances descending from the first start that are still open (running,
    suspended, in incident) are capped: the instance that tries past it stops, the lineage stops growing."""
    monkeypatch.setenv("JZFLOW_MAX_OPEN_DESCENDANTS", "10")
    deploy.deploy(session, {"b.bpmn": bomb(ways=2, wait="PT1M")}, actor=SYSTEM, check_lanes=False)
    root = instances.start(session, process_key="bomb", actor=SYSTEM)
    session.commit()
    counts = []
    for _ in range(8):
        clock.advance(timedelta(minutes=2))
        jobs.run_timer_sweep(factory, batch=100)
        session.expire_all()
        counts.append(_count(session))
        session.rollback()  # SQLite: a reading transaction would keep the next sweep out
    assert counts[-1] == counts[-2] == counts[-3], counts
    descendants = select(func.count()).select_from(ProcessInstance).where(ProcessInstance.start_root_id == root.id)
    assert session.scalar(descendants.where(ProcessInstance.status.in_(("running", "incident")))) == 10
    assert set(_kinds(session)) == {"too_many_starts"}
    assert session.scalar(select(func.count()).select_from(ProcessInstance)
                          .where(ProcessInstance.status == "running")) == 0  # none left to grow
    found = session.scalar(select(Incident.message).limit(1))
    assert found is not None and "JZFLOW_MAX_OPEN_DESCENDANTS" in found
