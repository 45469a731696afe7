"""review_process end to end through the services, on SQLite and PostgreSQL.

Lanes, a DMN business-rule task, an exclusive gateway, a parallel gateway, a parallel
multi-instance task, a boundary timer and scripts; a save/restore in the middle.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, deploy, runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import FormInvalid, NotYourTask
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.spiff import serializer
from tests.conftest import read_fixture_dir
from tests.steps import do, only_task, open_tasks

APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial",
               "start_date": "2025-10-09"}


@pytest.fixture
def started(session: Session, review_org: dict[str, Actor], frozen: object) -> int:
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    row = instances.start(session, process_key="review_process", actor=review_org["applicant"],
                          business_key="JZ-2025-001", title="智能家电产业园并联审批")
    session.commit()
    task = only_task(session, row.id, "submit_application")
    do(session, task, review_org["applicant"], APPLICATION)
    do(session, only_task(session, row.id, "accept"), review_org["window"], {"decision": "accept"})
    return row.id


def test_happy_path_runs_to_the_end(session: Session, started: int, review_org: dict[str, Actor],
                                    factory: sessionmaker[Session]) -> None:
    reviews = [t for t in open_tasks(session, started) if t.bpmn_id == "department_review"]
    assert sorted(t.name for t in reviews) == ["部门审查 · 发改", "部门审查 · 生态环境", "部门审查 · 自然资源"]
    assert all(t.due_at is not None for t in reviews)

    # Save/restore in the middle: a fresh session and a fresh spec cache lose nothing.
    runtime._spec_cache.clear()
    session.rollback()  # end our read transaction: SQLite has one writer at a time
    with factory() as other:
        running = runtime.load(other, started)
        data = running.workflow.last_task.data if running.workflow.last_task else {}
        fee_task = next(t for t in running.workflow.get_tasks() if t.task_spec.bpmn_id == "compute_fee")
        assert fee_task.data["fee"] == Decimal("12.50")
        assert isinstance(fee_task.data["fee"], Decimal)
        assert fee_task.data["decided_on"] == date(2025, 10, 9)
        assert fee_task.data["project_name"] == "胶州智能家电产业园（一期）"
        assert data.get("accepted_at_step") == "窗口受理"
        restored = serializer.dump_state(running.workflow)
        assert restored == other.scalar(select(ProcessInstance.state).where(ProcessInstance.id == started))
        other.rollback()

    by_unit = {"部门审查 · 发改": "fg", "部门审查 · 自然资源": "zr", "部门审查 · 生态环境": "st"}
    for t in reviews:
        with pytest.raises(NotYourTask):
            tasks.claim(session, task_id=t.id, actor=review_org["window"])
        do(session, t, review_org[by_unit[t.name]], {"opinion": f"{t.name} 同意", "approved": True})

    cert = only_task(session, started, "issue_certificate")
    result = do(session, cert, review_org["window"], {"certificate_no": "JZ-2025-0001"})
    assert result.status == "completed"
    row = session.get(ProcessInstance, started)
    assert row is not None and row.ended_at is not None and row.next_timer_at is None
    running = runtime.load(session, started)
    final = running.workflow.last_task.data
    assert len(final["reviews"]) == 3 and all(r["approved"] for r in final["reviews"])
    assert final["certificate_title"] == "胶州智能家电产业园（一期）联合审批意见书"
    assert audit.verify(session).ok


def test_boundary_timer_escalates_to_the_leader(session: Session, started: int, review_org: dict[str, Actor],
                                                 frozen: object) -> None:
    from engine import clock
    from engine.runtime import timers
    row = session.get(ProcessInstance, started)
    assert row is not None and row.next_timer_at is not None
    assert timers.due_ids(session, now=clock.now()) == []
    clock.advance(timedelta(days=5, minutes=1))
    assert timers.due_ids(session, now=clock.now()) == [started]
    assert timers.fire_instance(session, started, now=clock.now())
    session.commit()
    assert not timers.fire_instance(session, started, now=clock.now())  # already fired: nothing twice
    names = [t.bpmn_id for t in open_tasks(session, started)]
    assert names == ["escalate"]
    do(session, only_task(session, started, "escalate"), review_org["boss"], {"leader_opinion": "加快办理"})
    result = do(session, only_task(session, started, "issue_certificate"), review_org["window"],
                {"certificate_no": "JZ-2025-0002"})
    assert result.status == "completed"
    fired = session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.stream == f"instance:{started}", AuditEvent.action == "timer.fire"))
    assert fired == 1


def test_reject_ends_at_the_rejected_end_event(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    row = instances.start(session, process_key="review_process", actor=review_org["applicant"])
    session.commit()
    do(session, only_task(session, row.id, "submit_application"), review_org["applicant"],
       {**APPLICATION, "investment": 300, "project_type": "service"})
    result = do(session, only_task(session, row.id, "accept"), review_org["window"], {"decision": "reject"})
    assert result.status == "completed"
    assert open_tasks(session, row.id) == []


def test_bad_form_data_is_refused_and_changes_nothing(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    row = instances.start(session, process_key="review_process", actor=review_org["applicant"])
    session.commit()
    task = only_task(session, row.id, "submit_application")
    before = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == row.id))
    tasks.claim(session, task_id=task.id, actor=review_org["applicant"])
    session.commit()
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=task.id, actor=review_org["applicant"],
                       data={"project_name": "", "investment": -1, "project_type": "mine", "start_date": "明天"})
    session.rollback()
    fields = {e.field for e in err.value.errors}
    assert fields == {"project_name", "investment", "project_type", "start_date"}
    assert session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == row.id)) == before
    assert only_task(session, row.id, "submit_application").state == "ready"
