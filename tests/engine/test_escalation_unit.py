"""A user task's `escalationUnit` property: the unit its escalation ladder climbs from.

A task offered to a leader who belongs to no unit (七步工作法 ④: a city leader claims a chain's item) has no
unit to climb from unless the BPMN names one; the property names it by code or name, an expression over
the task's data. Without the property the old rule holds (candidates' unit, else the handler's); a name that is no
unit is not silently replaced by it: the unit head's rung names nobody and passes to the rung above (the responsible
leader of the candidates' or handler's unit), and the process owners are told once which element names what. An
expression that fails or gives something else is a problem (an incident), never a silent fallback.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, org
from engine.audit.models import AuditEvent
from engine.deadlines import escalation, unknown_units
from engine.deadlines.models import EscalationStep
from engine.deadlines.objects import UnitUnknown
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM
from engine.org.models import Membership, OrgUnit
from engine.runtime import assignment, instances
from engine.runtime.models import Incident
from engine.tasks.models import HumanTask
from tests.engine.conftest import waits_for_a_lock

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="claiming" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="claim" name="认领">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="sla" value="2wd" />
        <spiffworkflow:property name="candidates" value="leader" />
        <spiffworkflow:property name="escalationUnit" value="unit" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="claim" />
    <bpmn:sequenceFlow id="f2" sourceRef="claim" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _world(session: Session) -> dict[str, int]:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    leader = org.add_user(session, username="li", display_name="李振华", unit_codes=[], role_codes=[])
    head = org.add_user(session, username="zhou", display_name="周局长", unit_codes=["gxj"], role_codes=[])
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert unit is not None
    unit.leader_id = head.id
    deploy.deploy(session, {"claiming.bpmn": BPMN.encode()}, actor=SYSTEM)
    session.commit()
    return {"leader": leader.id, "head": head.id, "gxj": unit.id}


def _start(session: Session, unit: Any) -> HumanTask:
    row = instances.start(session, process_key="claiming", actor=SYSTEM, data={"leader": "li", "unit": unit})
    session.commit()
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None
    return task


def _steps(session: Session, task: HumanTask, when: datetime) -> list[tuple[str, list[int]]]:
    clock.freeze(when)
    escalation.sweep(session, now=clock.now())
    session.commit()
    return [(s.step, s.recipients) for s in session.scalars(select(EscalationStep).where(
        EscalationStep.object_type == "task", EscalationStep.object_id == task.id).order_by(EscalationStep.id))]


def test_the_ladder_climbs_from_the_named_unit(session: Session, frozen: Any) -> None:
    ids = _world(session)
    named, unnamed = _start(session, "gxj"), _start(session, None)
    assert (named.escalation_unit_id, unnamed.escalation_unit_id) == (ids["gxj"], None)
    assert [c.user_id for c in named.candidates] == [ids["leader"]]  # the unit does not become a candidate
    late = datetime(2025, 9, 4, 10, 0, tzinfo=clock.SHANGHAI) + timedelta(days=1)  # one working day late
    assert ("unit_head", [ids["head"]]) in _steps(session, named, late)
    # Without the property the leader's task has no unit: the unit head's rung reaches nobody.
    assert ("unit_head", []) in _steps(session, unnamed, late)


def test_a_name_that_is_no_unit_and_a_bad_value(session: Session, frozen: Any) -> None:
    ids = _world(session)
    assert _start(session, "no_such_unit").escalation_unit_id is None
    assert _start(session, "li").escalation_unit_id is None  # a user is not a unit
    assert _start(session, "工业和信息化局").escalation_unit_id == ids["gxj"]  # by name too
    task = _start(session, {"not": "a name"})
    problem = session.scalar(select(Incident.message).where(Incident.instance_id == task.instance_id))
    assert problem is not None and "escalationUnit" in problem


def _handled_world(session: Session) -> dict[str, int]:
    """The leader belongs to 工信局 (head 周, responsible leader 王); a process owner is told of the model's slips."""
    ids = _world(session)
    org.add_role(session, code="process_owner", name="流程管理员")
    owner = org.add_user(session, username="po", display_name="流程管理员甲", role_codes=["process_owner"])
    wang = org.add_user(session, username="wang", display_name="王副市长", unit_codes=[], role_codes=[])
    unit = session.get(OrgUnit, ids["gxj"])
    assert unit is not None
    unit.responsible_leader_id = wang.id
    session.add(Membership(user_id=ids["leader"], org_unit_id=ids["gxj"]))
    session.commit()
    return {**ids, "owner": owner.id, "wang": wang.id}


def _reports(session: Session) -> list[dict[str, Any]]:
    return [e.after for e in session.scalars(select(AuditEvent).where(
        AuditEvent.action == "task.escalation_unit_unknown").order_by(AuditEvent.seq))]


def _told(session: Session, user_id: int) -> list[str]:
    return [f"{m.payload['title']}\n{m.payload.get('body') or ''}" for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "in_app").order_by(OutboxMessage.id))
        if m.payload.get("user_id") == user_id and m.payload.get("kind") == "process_problem"]


def _step_event(session: Session, task: HumanTask, step: str) -> dict[str, Any]:
    after = session.scalar(select(AuditEvent.after).where(AuditEvent.action == f"escalation.{step}",
                                                          AuditEvent.object_id == str(task.id)))
    assert after is not None
    return dict(after)


def test_a_name_that_is_no_unit_passes_the_unit_heads_rung_up_and_is_told_once(session: Session, frozen: Any) -> None:
    ids = _handled_world(session)
    first, second = _start(session, "no_such_unit"), _start(session, "no_such_unit")
    unnamed = _start(session, None)  # no name given: the old rule, the leader's unit
    late = datetime(2025, 9, 4, 10, 0, tzinfo=clock.SHANGHAI) + timedelta(days=1)
    assert ("unit_head", [ids["head"]]) in _steps(session, unnamed, late)
    assert ("unit_head", [ids["wang"]]) in _steps(session, first, late)  # not 周: the model named another unit
    assert ("unit_head", [ids["wang"]]) in _steps(session, second, late)
    assert _step_event(session, first, "unit_head")["escalation_unit_unknown"] == "no_such_unit"
    [report] = _reports(session)  # once, though two tasks climbed past it
    assert report["bpmn_id"] == "claim" and report["name"] == "no_such_unit" and report["process_key"] == "claiming"
    [told] = _told(session, ids["owner"])
    assert "claim" in told and "escalationUnit" in told and "no_such_unit" in told and "不是任何单位" in told
    third = _start(session, "no_such_unit")  # a later sweep: still told once
    clock.freeze(late + timedelta(days=7))
    assert ("unit_head", [ids["wang"]]) in _steps(session, third, late + timedelta(days=7))
    assert len(_reports(session)) == 1 and len(_told(session, ids["owner"])) == 1


def test_a_hostile_unit_name_is_told_cut_to_printable_text(session: Session, frozen: Any) -> None:
    ids = _handled_world(session)
    hostile = "\x1b[31m\n" + "长" * 100_000
    task = _start(session, hostile)
    late = datetime(2025, 9, 4, 10, 0, tzinfo=clock.SHANGHAI) + timedelta(days=1)
    assert ("unit_head", [ids["wang"]]) in _steps(session, task, late)
    [report] = _reports(session)
    shown = report["name"]
    assert shown == assignment.told_name(hostile) and len(shown) <= assignment.NAME_TOLD_CHARS + 1
    assert all(c.isprintable() for c in shown)
    assert _step_event(session, task, "unit_head")["escalation_unit_unknown"] == shown
    [told] = _told(session, ids["owner"])
    assert "\x1b" not in told and "长" * (assignment.NAME_TOLD_CHARS + 1) not in told


def test_thousands_of_misnamed_rungs_write_a_bounded_report(session: Session) -> None:
    ids = _handled_world(session)
    row = instances.start(session, process_key="claiming", actor=SYSTEM, data={"leader": "li", "unit": "gxj"})
    session.commit()
    found = [UnitUnknown(f"bad{i}", "claiming", f"task_{i}_" + "x" * 190, "步骤", row.id) for i in range(3_000)]
    unknown_units.tell(session, found)
    session.commit()
    assert len(_reports(session)) == unknown_units.MAX_REPORTS
    assert len(_told(session, ids["owner"])) == unknown_units.MAX_REPORTS
    unknown_units.tell(session, found[:5])  # the same again: nothing new
    session.commit()
    assert len(_reports(session)) == unknown_units.MAX_REPORTS


def test_two_sweeps_meeting_one_misnamed_element_at_once_tell_it_once(
        db_url: str, factory: sessionmaker[Session], session: Session) -> None:
    """Two workers' batches (SKIP LOCKED: different tasks) of the same element: the second waits for the first's
    note on the outbox's unique key, and then takes it as told instead of failing its whole batch."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer)")
    ids = _handled_world(session)
    row = instances.start(session, process_key="claiming", actor=SYSTEM, data={"leader": "li", "unit": "gxj"})
    session.commit()
    found = UnitUnknown("no_such_unit", "claiming", "claim", "认领", row.id)
    outcome: list[object] = []
    pids: list[int] = []
    with factory() as first:
        assert unknown_units.tell(first, [found]) == 1  # holds its note's key, uncommitted

        def second() -> None:
            with factory() as other:
                pids.append(int(other.execute(text("SELECT pg_backend_pid()")).scalar() or 0))
                try:
                    outcome.append(unknown_units.tell(other, [found]))
                    other.commit()
                except Exception as exc:  # the outcome is the assertion
                    other.rollback()
                    outcome.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 20
        while not (pids and waits_for_a_lock(factory, pids[0])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids and waits_for_a_lock(factory, pids[0])  # the second waits on the first's key
        first.commit()
    thread.join(timeout=30)
    assert outcome == [0], outcome
    session.expire_all()
    assert len(_reports(session)) == 1 and len(_told(session, ids["owner"])) == 1
