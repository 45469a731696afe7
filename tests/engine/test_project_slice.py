"""项目落地 through the services: a project from 线索 to 投产, its approval stages chained (施工许可 → 开工),
倒排工期, slow-project warnings from entered dates, the dashboard's counts and days saved; hostile cases.

On the seeded plan with bpmn/ deployed; the clock is frozen (engine.clock) and moved by working days.
"""
from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock
from engine.deadlines import calendar
from engine.errors import Conflict, Forbidden, FormInvalid, InvalidInput
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import OrgUnit
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from plan import projects as core
from plan.projects import approvals, edits, entry, needs, schedule
from plan.projects.lags import lag_of
from plan.projects.models import LibraryMember, Project, ProjectApproval, ProjectNeed, ProjectStage, StageReport
from plan.projects.slow_projects import flag_slow_projects, lag_key
from tests import dashboard_data, steps

OFFICER, SECOND, OUTSIDER = "tangjian", "liming", "pengtao"  # 投促 (tcj) ×2, 发改 (fgj)
WINDOW = "maxiaoyan"
REVIEWERS = {"fgj": "linzhiyuan", "zrzyj": "luocheng", "zjj": "lianghaifeng", "rfb": "tianye", "sthjj": "songjia",
             "yjj": "tanglei", "jtj": "donghao", "slj": "hubin"}


@pytest.fixture
def world(session: Session, frozen: Any) -> Session:
    dashboard_data.seed_and_deploy(session)
    return session


def new_project(session: Session, name: str = "胶州智能装备产业园", **extra: Any) -> Project:
    values = {"name": name, "enterprise": "青岛某装备有限公司", "investment": "8000", "project_type": "service",
              "unit_code": "tcj", "libraries": "key,investment", "category": "key", **extra}
    project = entry.create_project(session, actor=actor_for(session, OFFICER), data=entry.read_input(values))
    session.commit()
    return project


def drive_to_certificate(session: Session, instance_id: int, applicant: str, project: Project, stage: str) -> None:
    """Take one stage's approval from the application to 联合出证, every department approving."""
    steps.do(session, steps.only_task(session, instance_id, "submit_application"), actor_for(session, applicant), {
        "project_code": project.code, "project_name": project.name, "project_type": project.project_type,
        "investment": project.investment, "stage": stage, "applicant_unit": project.enterprise,
        "contact_name": "张三", "contact_phone": "13800000000", "materials": ["application_form"]})
    steps.do(session, steps.only_task(session, instance_id, "window_accept"), actor_for(session, WINDOW),
             {"acceptance": "accept", "window_opinion": "材料齐全"})
    clock.advance(timedelta(days=3))
    for task in steps.open_tasks(session, instance_id, "department_review"):
        unit = session.scalar(select(OrgUnit.code).where(OrgUnit.id.in_(
            [c.org_unit_id for c in task.candidates if c.org_unit_id])))
        steps.do(session, task, actor_for(session, REVIEWERS[str(unit)]),
                 {"review_decision": "approve", "review_opinion": "同意"})
    issued = clock.now().astimezone(clock.SHANGHAI).date().isoformat()
    steps.do(session, steps.only_task(session, instance_id, "issue_certificate"), actor_for(session, WINDOW),
             {"issued_on": issued})


def stage_instance(session: Session, project: Project, stage: str) -> int:
    row = session.scalar(select(ProjectApproval).where(ProjectApproval.project_id == project.id,
                                                       ProjectApproval.stage == stage))
    assert row is not None and row.instance_id is not None, stage
    return row.instance_id


def test_a_project_goes_from_lead_to_producing_with_its_four_approval_stages_chained(world: Session) -> None:
    session = world
    project = new_project(session)
    officer, second = actor_for(session, OFFICER), actor_for(session, SECOND)
    assert project.stage == "lead" and sorted(edits.library_codes(session, project.id)) == ["investment", "key"]
    entry.record_stage(session, project, actor=officer, stage="signed", on=core.core.today(), evidence="合同 HT-001")
    session.commit()

    approvals.start_stage(session, project, stage=approvals.first_stage(project), actor=officer, applicant=OFFICER)
    session.commit()
    for stage in ("land_planning", "construction_works", "construction_permit"):
        drive_to_certificate(session, stage_instance(session, project, stage), OFFICER, project, stage)
        session.refresh(project)
    # 施工许可 issued → 开工, on the certificate's day, with the certificate as evidence
    assert project.stage == "started"
    started = session.scalar(select(ProjectStage).where(ProjectStage.project_id == project.id,
                                                        ProjectStage.stage == "started"))
    assert started is not None and started.evidence.startswith("施工许可 胶审〔")  # the engine-issued number
    # the chain started 竣工验收 already, exactly one instance per stage
    counts = dict(session.execute(select(ProjectApproval.stage, func.count()).where(
        ProjectApproval.project_id == project.id).group_by(ProjectApproval.stage)).all())
    assert counts == {"land_planning": 1, "construction_works": 1, "construction_permit": 1,
                      "completion_acceptance": 1}
    instances_of = session.scalar(select(func.count()).select_from(ProcessInstance).where(
        ProcessInstance.business_key == project.code))
    assert instances_of == 4
    clock.advance(timedelta(days=200))
    drive_to_certificate(session, stage_instance(session, project, "completion_acceptance"), OFFICER, project,
                         "completion_acceptance")
    session.refresh(project)
    assert project.stage == "started"  # 竣工 waits for the unit's confirmation
    report = session.scalar(select(StageReport).where(StageReport.project_id == project.id))
    assert report is not None and report.stage == "completed" and report.status == "reported"
    entry.decide_report(session, project, actor=officer, report_id=report.id, confirm=True)
    session.commit()
    assert project.stage == "completed"
    # 投产: reported by the officer, the officer may not confirm it, the second officer does
    clock.advance(timedelta(days=30))
    produced = entry.record_stage(session, project, actor=officer, stage="producing", on=core.core.today(),
                                  evidence="试生产备案 SC-9")
    session.commit()
    assert produced is not None and project.stage == "completed"
    with pytest.raises(Forbidden):
        entry.decide_report(session, project, actor=officer, report_id=produced.id, confirm=True)
    entry.decide_report(session, project, actor=second, report_id=produced.id, confirm=True)
    session.commit()
    assert project.stage == "producing"
    assert [s.stage for s in project.stages] == ["lead", "signed", "started", "completed", "producing"]
    # 提速审批: every stage saved working days against the serial sum of its departments' limits
    saved = approvals.savings(session, [project.id])
    by_stage = {s.stage: s for s in saved.stages}
    assert by_stage["construction_permit"].certified == 1
    assert all(r.saved_wd == r.serial_wd - r.used_wd for r in approvals.project_approvals(session, project.id))
    assert saved.per_project[project.id] == sum(s.saved_wd for s in saved.stages) > 0


def test_chaining_happens_once_even_when_the_certificate_is_recorded_twice(world: Session) -> None:
    session = world
    project = new_project(session)
    officer = actor_for(session, OFFICER)
    approvals.start_stage(session, project, stage="land_planning", actor=officer, applicant=OFFICER)
    session.commit()
    iid = stage_instance(session, project, "land_planning")
    drive_to_certificate(session, iid, OFFICER, project, "land_planning")
    days = {"certified_on": core.core.today().isoformat(), "working_days_used": 3, "sla_serial_wd": 13}
    again = approvals.certified(session, instance_id=iid, actor=SYSTEM, days=days,
                                data={"project_code": project.code, "stage": "land_planning", "applicant": OFFICER})
    session.commit()
    assert again.get("already") is True
    assert session.scalar(select(func.count()).select_from(ProjectApproval).where(
        ProjectApproval.project_id == project.id, ProjectApproval.stage == "construction_works")) == 1
    # starting a stage a second time returns the first
    first = approvals.start_stage(session, project, stage="construction_works", actor=officer, applicant=OFFICER)
    assert first.instance_id == stage_instance(session, project, "construction_works")


def test_standard_land_takes_the_short_first_stage_and_earthworks_start_the_project(world: Session) -> None:
    session = world
    project = new_project(session, standard_land="是")
    officer = actor_for(session, OFFICER)
    assert project.standard_land and approvals.first_stage(project) == "land_planning_standard"
    approvals.start_stage(session, project, stage="land_planning_standard", actor=officer, applicant=OFFICER)
    session.commit()
    drive_to_certificate(session, stage_instance(session, project, "land_planning_standard"), OFFICER, project,
                         "land_planning_standard")
    drive_to_certificate(session, stage_instance(session, project, "construction_works"), OFFICER, project,
                         "construction_works")
    approvals.start_stage(session, project, stage="earthwork_permit", actor=officer, applicant=OFFICER)
    session.commit()
    drive_to_certificate(session, stage_instance(session, project, "earthwork_permit"), OFFICER, project,
                         "earthwork_permit")
    session.refresh(project)
    assert project.stage == "started"  # 土石方施工许可: earthworks before the full 施工许可


@pytest.mark.parametrize(("first", "other", "standard_land"), [("land_planning", "land_planning_standard", ""),
                                                                 ("land_planning_standard", "land_planning", "是")])
def test_the_other_first_stage_is_refused_once_one_was_started(world: Session, first: str, other: str,
                                                                standard_land: str) -> None:
    """A project has one first approval stage: 标准地 or the ordinary one, whichever was started, never both."""
    session = world
    project = new_project(session, standard_land=standard_land)
    officer = actor_for(session, OFFICER)
    row = approvals.start_stage(session, project, stage=first, actor=officer, applicant=OFFICER)
    session.commit()
    project.standard_land = not project.standard_land  # the flag changed after: the page would offer the other
    session.commit()
    before = session.scalar(select(func.count()).select_from(ProcessInstance))
    with pytest.raises(Conflict) as refused:
        approvals.start_stage(session, project, stage=other, actor=officer, applicant=OFFICER)
    assert approvals.STAGES[first].name in refused.value.message and "first" in refused.value.message
    assert refused.value.details == {"field": "stage", "stage": other, "started": first,
                                     "instance_id": row.instance_id}
    session.rollback()
    assert [(r.stage, r.instance_id) for r in approvals.project_approvals(session, project.id)] == [
        (first, row.instance_id)]
    assert session.scalar(select(func.count()).select_from(ProcessInstance)) == before
    # the same stage again is the one there is
    assert approvals.start_stage(session, project, stage=first, actor=officer, applicant=OFFICER).id == row.id


def test_backward_schedule_counts_working_days_from_the_planned_completion(world: Session) -> None:
    session = world
    project = new_project(session)
    plan = schedule.schedule_backward(session, project, actor=actor_for(session, OFFICER),
                                      planned_complete=date(2026, 10, 30), construction_wd=200, produce_wd=20,
                                      seen=edits.planned_version(project))
    session.commit()
    assert plan.planned_complete == date(2026, 10, 30)
    assert calendar.working_days_between(plan.planned_start, plan.planned_complete) == 200
    assert calendar.working_days_between(plan.planned_sign, plan.planned_start) == approvals.before_start_wd()
    assert calendar.working_days_between(plan.planned_complete, plan.planned_produce) == 20
    assert (project.planned_sign, project.planned_produce) == (plan.planned_sign, plan.planned_produce)
    chart = schedule.gantt(schedule.projects_of(session, ids=[project.id]), core.core.today())
    assert [b.label for b in chart.rows[0].bars] == ["前期", "建设", "投产准备"]
    assert chart.today_x is not None and chart.months[0][0] == 0


def test_a_slow_project_is_warned_once_its_entered_planned_date_passes(world: Session) -> None:
    session = world
    project = new_project(session, planned_sign=(core.core.today() + timedelta(days=10)).isoformat())
    assert lag_of(project, core.core.today()) is None
    assert all(f.project_code != project.code for f in flag_slow_projects(session, clock.now(), SYSTEM))
    clock.advance(timedelta(days=12))
    flagged = [f for f in flag_slow_projects(session, clock.now(), SYSTEM) if f.project_code == project.code]
    assert len(flagged) == 1 and flagged[0].stage == "signed" and flagged[0].created
    session.commit()
    again = [f for f in flag_slow_projects(session, clock.now(), SYSTEM) if f.project_code == project.code]
    assert len(again) == 1 and not again[0].created  # idempotent



def test_nobody_starts_an_issue_under_a_warnings_business_key_to_silence_it(world: Session) -> None:
    """The warning of a lagging project is raised once, under the business key project_lag:<code>:<stage>: while an
    issue of that key is open nothing new is raised. The key was anybody's to type on the start page (业务编号) or in the
    API: a 台账管理员 or 服务专员 of another unit started issue_ledger under it, registered something, and the warning of
    投促局's project was never raised. Now a client's start under the key is refused naming business_key, nothing
    started, and the warning is raised."""
    session = world
    project = new_project(session, planned_sign=(core.core.today() + timedelta(days=10)).isoformat())
    clock.advance(timedelta(days=12))
    key = lag_key(project.code, "signed")
    for who in ("jiangtao", "fangyuan"):  # 台账管理员 of 发改局, 服务专员 of 李哥庄镇
        before = session.scalar(select(func.count()).select_from(ProcessInstance))
        with pytest.raises(FormInvalid) as refused:
            instances.start(session, process_key="issue_ledger", actor=actor_for(session, who), business_key=key,
                            from_client=True)
        session.rollback()
        assert [e.field for e in refused.value.errors] == ["business_key"] and "project_lag:" in str(refused.value)
        assert session.scalar(select(func.count()).select_from(ProcessInstance)) == before
    flagged = [f for f in flag_slow_projects(session, clock.now(), SYSTEM) if f.project_code == project.code]
    assert len(flagged) == 1 and flagged[0].created
    started = session.get(ProcessInstance, flagged[0].instance_id)
    assert started is not None and started.business_key == key and started.started_by_id is None

def test_dashboard_counts_move_with_entered_stages(world: Session) -> None:
    session = world
    year = core.core.today().year
    before = core.count_in_stage(session, "started", year=year)
    project = new_project(session)
    officer = actor_for(session, OFFICER)
    entry.record_stage(session, project, actor=officer, stage="signed", on=core.core.today(), evidence="合同")
    entry.record_stage(session, project, actor=officer, stage="started", on=core.core.today(), evidence="施工许可证")
    session.commit()
    assert core.count_in_stage(session, "started", year=year) == before + 1
    assert core.count_in_stage(session, "signed", year=year, category="key") >= 1


# -- hostile -----------------------------------------------------------------------------------------

def test_a_user_of_another_unit_cannot_change_the_project(world: Session) -> None:
    session = world
    project = new_project(session)
    outsider = actor_for(session, OUTSIDER)
    attempts = [
        lambda: entry.record_stage(session, project, actor=outsider, stage="signed", on=core.core.today(), evidence="x"),
        lambda: edits.set_planned(session, project, actor=outsider, dates={"planned_start": date(2026, 1, 5)},
                                  seen=edits.planned_version(project)),
        lambda: edits.set_libraries(session, project, actor=outsider, codes=["land"], seen=None),
        lambda: edits.set_leader(session, project, actor=outsider, username="wangjianguo",
                                 seen=edits.leader_version(project)),
        lambda: needs.raise_need(session, project, actor=outsider, kind="land", description="x"),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            attempt()
    with pytest.raises(Forbidden):  # nor enter a project for a unit not theirs
        entry.create_project(session, actor=outsider, data=entry.read_input(
            {"name": "x", "investment": "1", "unit_code": "tcj", "libraries": "key", "category": "key"}))
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ProjectNeed)) == 0
    assert project.stage == "lead" and edits.library_codes(session, project.id) == ["key", "investment"]


def test_dates_out_of_order_are_refused_naming_the_field(world: Session) -> None:
    session = world
    project = new_project(session)
    officer = actor_for(session, OFFICER)
    with pytest.raises(InvalidInput) as caught:
        edits.set_planned(session, project, actor=officer, seen=edits.planned_version(project),
                          dates={"planned_start": date(2026, 5, 1), "planned_complete": date(2026, 3, 1)})
    assert caught.value.details["field"] == "planned_complete" and "计划竣工日期" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        entry.read_input({"name": "x", "investment": "1", "unit_code": "tcj", "planned_sign": "2026-02-30"})
    assert caught.value.details["field"] == "planned_sign"
    entry.record_stage(session, project, actor=officer, stage="signed", on=core.core.today(), evidence="合同")
    with pytest.raises(InvalidInput) as caught:  # a stage before the one reached
        entry.record_stage(session, project, actor=officer, stage="started",
                           on=core.core.today() - timedelta(days=3), evidence="施工许可证")
    assert caught.value.details["field"] == "on"
    with pytest.raises(InvalidInput) as caught:  # backwards
        entry.record_stage(session, project, actor=officer, stage="signed", on=core.core.today(), evidence="合同")
    assert caught.value.details["field"] == "stage"
    with pytest.raises(InvalidInput) as caught:
        entry.record_stage(session, project, actor=officer, stage="started", on=core.core.today(), evidence=" ")
    assert caught.value.details["field"] == "evidence"
    with pytest.raises(InvalidInput):
        edits.set_leader(session, project, actor=officer, username=OUTSIDER, seen=None)  # not a 市级领导


def test_needs_are_tracked_until_resolved_with_who_and_when(world: Session) -> None:
    session = world
    project = new_project(session)
    officer = actor_for(session, OFFICER)
    need = needs.raise_need(session, project, actor=officer, kind="land", description="用地指标缺口 30 亩")
    session.commit()
    needs.resolve_need(session, project, actor=actor_for(session, SECOND), need_id=need.id, resolution="已调剂指标")
    session.commit()
    assert need.status == "resolved" and need.resolved_by_id is not None and need.resolved_at is not None
    with pytest.raises(InvalidInput):
        needs.resolve_need(session, project, actor=officer, need_id=need.id, resolution="again")
    assert session.scalar(select(func.count()).select_from(LibraryMember).where(
        LibraryMember.project_id == project.id)) == 2


def test_two_officers_confirming_at_once_reach_the_stage_once(world: Session, factory: sessionmaker[Session]) -> None:
    session = world
    project = new_project(session)
    officer = actor_for(session, OFFICER)
    for stage in ("signed", "started"):
        entry.record_stage(session, project, actor=officer, stage=stage, on=core.core.today(), evidence="证")
    report = entry.record_stage(session, project, actor=officer, stage="completed", on=core.core.today(),
                                evidence="竣工验收备案")
    session.commit()
    assert report is not None
    confirmers = [SECOND, "admin"]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def confirm(username: str) -> None:
        barrier.wait(10)  # both start together; on SQLite the second BEGIN IMMEDIATE waits for the first
        with factory() as s:
            try:
                p = s.get(Project, project.id)
                assert p is not None
                entry.decide_report(s, p, actor=actor_for(s, username), report_id=report.id, confirm=True)
                s.commit()
                outcomes.append("ok")
            except (InvalidInput, Exception) as exc:  # the loser: decided already, or the database's lock
                s.rollback()
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=confirm, args=(u,)) for u in confirmers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("ok") == 1, outcomes
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(ProjectStage).where(
        ProjectStage.project_id == project.id, ProjectStage.stage == "completed")) == 1


def test_tasks_of_the_chained_stage_go_to_the_same_applicant(world: Session) -> None:
    session = world
    project = new_project(session)
    approvals.start_stage(session, project, stage="land_planning", actor=actor_for(session, OFFICER),
                          applicant=OFFICER)
    session.commit()
    drive_to_certificate(session, stage_instance(session, project, "land_planning"), OFFICER, project,
                         "land_planning")
    nxt = stage_instance(session, project, "construction_works")
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == nxt, HumanTask.state == "ready"))
    assert task is not None and task.bpmn_id == "submit_application"
    officer_id = actor_for(session, OFFICER).user_id
    assert task.assignee_id == officer_id or [c.user_id for c in task.candidates] == [officer_id]
