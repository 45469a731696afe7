"""Archiving long-ended instances: the heavy parts leave the hot tables, the instance stays readable, on SQLite and
PostgreSQL; a crash mid-batch loses nothing, a re-run moves nothing twice, two archivers never double-move."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, cli, clock, deploy, runtime, tasks
from engine.archive import core as archive
from engine.audit import audit_views
from engine.deadlines import escalation
from engine.deploy import versions
from engine.errors import InstanceArchived, TaskNotFound
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances, timeline, timers
from engine.runtime.models import ArchivedState, ProcessInstance, ProcessStateHistory, ProcessVersion, archived_history
from engine.tasks import access, inbox, queries, sendback, taskview
from engine.tasks.models import HumanTask, TaskCandidate, archived_candidates, archived_tasks
from tests.conftest import read_fixture_dir
from tests.engine.conftest import at_once
from tests.steps import do, only_task

APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial",
               "start_date": "2025-10-09"}


def _rejected(session: Session, people: dict[str, Actor], title: str) -> int:
    """An application 不予受理: two finished steps (with candidates), then completed."""
    row = instances.start(session, process_key="review_process", actor=people["applicant"], title=title)
    session.commit()
    do(session, only_task(session, row.id, "submit_application"), people["applicant"], APPLICATION)
    do(session, only_task(session, row.id, "accept"), people["window"], {"decision": "reject"})
    assert session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == row.id)) == "completed"
    return row.id


def _count(session: Session, table: Any, **where: Any) -> int:
    query = select(func.count()).select_from(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    return int(session.scalar(query) or 0)


def _hot_and_cold(session: Session) -> dict[str, int]:
    return {"tasks": _count(session, HumanTask.__table__), "archived_tasks": _count(session, archived_tasks),
            "candidates": _count(session, TaskCandidate.__table__),
            "archived_candidates": _count(session, archived_candidates),
            "history": _count(session, ProcessStateHistory.__table__),
            "archived_history": _count(session, archived_history),
            "states": _count(session, ArchivedState.__table__)}


@pytest.fixture
def world(session: Session, review_org: dict[str, Actor], frozen: object) -> dict[str, int]:
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    session.commit()
    old = _rejected(session, review_org, "一年多以前的申请")
    clock.advance(timedelta(days=400))
    recent = _rejected(session, review_org, "新近的申请")
    running = instances.start(session, process_key="review_process", actor=review_org["applicant"], title="在办")
    session.commit()
    return {"old": old, "recent": recent, "running": running.id}


def _page(session: Session, instance_id: int) -> dict[str, Any]:
    """What the instance page and the audit page show of an instance."""
    session.expire_all()
    running = runtime.load(session, instance_id, read_only=True)
    return {"tasks": [(t.id, t.name, t.state, t.completed_by_id) for t in timeline.human_tasks(session, instance_id)],
            "states": timeline.diagram_states(session, running),
            "data": timeline.instance_data(running),
            "history": [(e.action, e.actor, e.task_name) for e in timeline.timeline(session, instance_id, with_details=True)
                        if e.action != "instance.archive"],
            "audit": [(s.event.action, s.task_name, s.bpmn_id, s.opinion)
                      for s in audit_views.timeline(session, instance_id).steps if s.event.action != "instance.archive"]}


def test_archiving_moves_the_heavy_parts_and_keeps_the_instance_readable(
        session: Session, factory: sessionmaker[Session], world: dict[str, int], review_org: dict[str, Actor]) -> None:
    old = world["old"]
    before = _page(session, old)
    assert [t[1] for t in before["tasks"]] == ["提交项目申请", "一窗受理"]
    window = review_org["window"]
    done = {r.task.id for r in inbox.done_page(session, window).rows}
    old_tasks = {t[0] for t in before["tasks"] if t[3] == window.user_id}  # 一窗受理, done by the window
    assert len(old_tasks) == 1 and old_tasks <= done
    counts = _hot_and_cold(session)
    old_candidates = int(session.scalar(select(func.count()).select_from(TaskCandidate).join(HumanTask).where(
        HumanTask.instance_id == old)) or 0)
    assert old_candidates > 0
    session.rollback()

    report = archive.run(factory, after_days=365, batch=10)
    assert (report.due, report.moved, report.batches) == (1, 1, 1)

    row = session.get(ProcessInstance, old)
    assert row is not None and row.archived_at is not None and row.state == "" and row.status == "completed"
    assert session.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.instance_id == old)) == 0
    after = _hot_and_cold(session)
    assert after["tasks"] == counts["tasks"] - 2 and after["archived_tasks"] == 2
    assert after["candidates"] == counts["candidates"] - old_candidates
    assert after["archived_candidates"] == old_candidates
    assert after["states"] == 1
    # The others stay hot: the recent one (ended 0 days ago) and the running one.
    for other in (world["recent"], world["running"]):
        assert session.scalar(select(ProcessInstance.archived_at).where(ProcessInstance.id == other)) is None

    # Instance page and audit page: the same steps, diagram, data and history, read from the archive.
    assert _page(session, old) == before
    # The inbox no longer scans them: 已办 and 我发起的 leave them out; search (the instance list) still finds it.
    assert not old_tasks & {r.task.id for r in inbox.done_page(session, window).rows}
    assert old not in {r.instance.id for r in inbox.started_page(session, review_org["applicant"]).rows}
    found = queries.instance_page(session, review_org["admin"], queries.InstanceFilter(text="一年多以前"))
    assert [r.instance.id for r in found.items] == [old]
    # Who handled a step still may see the instance; a stranger still may not.
    assert access.can_view_instance(session, window, old)
    assert old in set(session.scalars(select(ProcessInstance.id).where(queries.visible_instances(session, window))))
    assert not access.can_view_instance(session, review_org["boss"], old)
    # The sweeps: no timer, no open task or deadline watch of it is left to scan.
    assert old not in timers.due_ids(session, now=clock.now() + timedelta(days=9999))
    escalation.sweep(session, now=clock.now() + timedelta(days=9999))
    session.rollback()

    # Read-only: every change is refused with a clear message, and nothing changes.
    with pytest.raises(InstanceArchived, match="已归档"):
        runtime.load(session, old)
    with pytest.raises(InstanceArchived, match="已归档"):
        instances.terminate(session, instance_id=old, actor=review_org["admin"])
    version_id = session.scalar(select(ProcessVersion.id).order_by(ProcessVersion.id.desc()))
    assert version_id is not None
    refused = versions.migrate(session, [old], version_id, review_org["admin"])
    assert refused.migrated == [] and "已归档" in refused.refused[old][0]
    (accept_id,) = old_tasks
    with pytest.raises(InstanceArchived, match="已归档"):  # 撤回 (reopen) the archived step
        sendback.withdraw(session, task_id=accept_id, actor=window, reason="重新受理")
    with pytest.raises(InstanceArchived, match="已归档"):
        tasks.claim(session, task_id=accept_id, actor=window)
    with pytest.raises(TaskNotFound):  # an id that never was stays "not found"
        tasks.claim(session, task_id=10**6, actor=window)
    # Someone who could not see the step is not told it was archived: as for an id that never was.
    for call in (lambda who: tasks.claim(session, task_id=accept_id, actor=who),
                 lambda who: sendback.withdraw(session, task_id=accept_id, actor=who, reason="重新受理"),
                 lambda who: taskview.get_visible(session, who, accept_id)):
        with pytest.raises(TaskNotFound, match=rf"任务不存在 \(no such task\): {accept_id}$"):
            call(review_org["boss"])
        with pytest.raises(InstanceArchived):
            call(window)
    session.rollback()

    # Run again: nothing moves twice. The audit chain is intact (an `instance.archive` event per instance).
    assert archive.run(factory, after_days=365, batch=10).moved == 0
    assert _hot_and_cold(session) == after
    assert audit.verify(session).ok
    assert [e.action for e in timeline.timeline(session, old, with_details=False)][-1] == "instance.archive"


class Crash(Exception):
    pass


def test_a_crash_mid_batch_loses_nothing_and_a_rerun_moves_each_once(
        session: Session, factory: sessionmaker[Session], world: dict[str, int], review_org: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock.advance(timedelta(days=400))  # all three ended ones are now due: old and recent (running is not)
    before = {i: _page(session, i) for i in (world["old"], world["recent"])}
    counts = _hot_and_cold(session)
    session.rollback()
    real = audit.record
    calls = {"n": 0}

    def dying(*args: Any, **kwargs: Any) -> Any:  # the process dies after the rows were copied and deleted
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(archive.audit, "record", dying)
    with pytest.raises(Crash):
        archive.run(factory, after_days=365, batch=10)
    assert _hot_and_cold(session) == counts  # nothing moved, nothing lost
    assert session.scalar(select(func.count()).select_from(ProcessInstance)
                          .where(ProcessInstance.archived_at.is_not(None))) == 0
    session.rollback()
    monkeypatch.setattr(archive.audit, "record", real)

    # Interrupted after one batch of one (the first stays archived, the second is still hot), then resumed.
    first = archive.run(factory, after_days=365, batch=1, max_batches=1)
    assert first.moved == 1
    report = archive.run(factory, after_days=365, batch=1)
    assert report.moved == 1
    assert archive.run(factory, after_days=365, batch=1).moved == 0
    after = _hot_and_cold(session)
    assert after["tasks"] + after["archived_tasks"] == counts["tasks"]
    assert after["candidates"] + after["archived_candidates"] == counts["candidates"]
    assert after["history"] + after["archived_history"] == counts["history"]
    assert after["states"] == 2
    for instance_id, page in before.items():
        assert _page(session, instance_id) == page
    assert audit.verify(session).ok


def test_archiving_can_be_switched_off_and_the_cli_checks_its_input(
        session: Session, db_url: str, tmp_path: Path, world: dict[str, int]) -> None:
    session.commit()
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path), "JZFLOW_ARCHIVE_AFTER_DAYS": "0"}
    result = CliRunner().invoke(cli.main, ["archive"], env=env)
    assert result.exit_code == 0 and "归档已关闭" in result.output
    for bad in ("2025-13-01", "yesterday", "2025-01-01; DROP TABLE process_instance", "9999-01-01"):
        result = CliRunner().invoke(cli.main, ["archive", "--before", bad], env=env)
        assert result.exit_code == 2 and "--before" in result.output, result.output
    # --before a day: the instance that ended before it (the old one), counted by a dry run and moved by a run.
    day = (clock.now() - timedelta(days=200)).astimezone(clock.SHANGHAI).date().isoformat()
    result = CliRunner().invoke(cli.main, ["archive", "--dry-run", "--before", day], env=env)
    assert result.exit_code == 0 and "将归档 (would archive) 1 " in result.output, result.output
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(ProcessInstance)
                          .where(ProcessInstance.archived_at.is_not(None))) == 0
    session.rollback()
    result = CliRunner().invoke(cli.main, ["archive", "--before", day], env=env)
    assert result.exit_code == 0 and "已归档 (archived) 1 " in result.output, result.output
    archived = list(session.scalars(select(ProcessInstance.id).where(ProcessInstance.archived_at.is_not(None))))
    assert archived == [world["old"]]


def test_two_archivers_at_once_never_move_an_instance_twice(factory: sessionmaker[Session],
                                                            frozen: object) -> None:
    pg_factory = factory  # PostgreSQL: SKIP LOCKED splits the work; SQLite: BEGIN IMMEDIATE serialises the batches
    with pg_factory() as session:
        from engine import org
        from engine.org.actors import actor_for
        for code, name in [("applicant", "申请人"), ("reviewer", "审批部门"), ("leader", "领导")]:
            org.add_role(session, code=code, name=name)
        org.add_unit(session, code="window", name="窗口")
        org.add_user(session, username="applicant", display_name="张三", role_codes=["applicant"])
        org.add_user(session, username="window", display_name="李四", unit_codes=["window"])
        deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM, check_lanes=False)
        session.commit()
        people = {u: actor_for(session, u) for u in ("applicant", "window")}
        ids = [_rejected(session, people, f"申请{i}") for i in range(6)]
        counts = _hot_and_cold(session)
    clock.advance(timedelta(days=400))
    reports: list[archive.Report] = []
    outcomes = at_once(2, lambda _i: reports.append(archive.run(pg_factory, after_days=365, batch=1)))
    assert outcomes == [None, None]
    assert sum(r.moved for r in reports) == len(ids)
    with pg_factory() as session:
        after = _hot_and_cold(session)
        assert after["tasks"] == 0 and after["archived_tasks"] == counts["tasks"]
        assert after["archived_candidates"] == counts["candidates"] and after["states"] == len(ids)
        assert session.scalar(select(func.count()).select_from(ProcessInstance)
                              .where(ProcessInstance.archived_at.is_not(None))) == len(ids)
        events = session.scalar(select(func.count()).select_from(audit_views.AuditEvent)
                                .where(audit_views.AuditEvent.action == "instance.archive"))
        assert events == len(ids)
        assert audit.verify(session).ok
