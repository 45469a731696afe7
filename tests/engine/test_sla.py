"""engine.deadlines.sla: policies, lights, the ladder's timeline, what the sweep watches, and the wait heatmap."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy, tasks
from engine.deadlines import sla
from engine.deadlines.models import DeadlineWatch
from engine.org.actors import SYSTEM, Actor
from engine.org.models import OrgUnit
from engine.runtime import instances
from engine.tasks.models import HumanTask
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project, ProjectLibrary
from tests.conftest import read_fixture_dir

SH = clock.SHANGHAI
REPO = Path(__file__).resolve().parents[2]
APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial",
               "start_date": "2025-10-09"}


def at(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


# -- policies --------------------------------------------------------------------------------------

def test_the_shipped_policy_file_parses_with_the_issue_defaults() -> None:
    policies = sla.load_policies(REPO / "data" / "escalation.yaml")
    default = policies.get("task", "some_process")
    assert default.yellow == sla.Thresholds(0.2, 1) and default.remind_on_yellow
    assert default.ladder == (("handler", 0), ("unit_head", 1), ("responsible_leader", 3), ("city_leader", 5))
    assert policies.get("task", "parallel_approval").ladder[-1] == ("city_leader", 4)
    assert policies.skipped_tasks() == {"issue_ledger": frozenset({"handle", "feedback"}),
                                        "investment_lead": frozenset({"contact", "feedback"}),
                                        "loop_call": frozenset({"follow_up"})}
    assert policies.get("issue", "project").ladder[-1] == ("city_leader", 3)
    assert policies.get("issue", "manual").ladder[-1] == ("city_leader", 5)
    assert policies.get("project", "key").yellow == sla.Thresholds(0.1, 10)


def test_a_missing_file_means_the_defaults(tmp_path: Path) -> None:
    assert sla.load_policies(tmp_path / "none.yaml").get("issue", "x") == sla.Policy()


def test_levels_can_be_left_out_and_sections_inherit() -> None:
    policies = sla.parse_policies({"defaults": {"ladder": {"handler": 0, "city_leader": 2}, "remind_on_yellow": False},
                                   "issues": {"service_visit": {"yellow": {"working_days": 3}}}})
    policy = policies.get("issue", "service_visit")
    assert policy.ladder == (("handler", 0), ("city_leader", 2)) and not policy.remind_on_yellow
    assert policy.yellow == sla.Thresholds(0.2, 3)


@pytest.mark.parametrize("data, where", [
    ({"defaults": {"ladder": {"mayor": 1}}}, "defaults.ladder"),
    ({"tasks": {"x": {"ladder": {"handler": -1}}}}, "tasks.x.ladder.handler"),
    ({"issues": {"default": {"yellow": {"fraction": 1.5}}}}, "issues.default.yellow"),
    ({"projects": {"key": {"colour": "red"}}}, "projects.key: unknown key"),
    (["not", "a", "mapping"], "escalation.yaml"),
])
def test_bad_policies_name_the_place(data: Any, where: str) -> None:
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        sla.parse_policies(data)


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "escalation.yaml"
    path.write_text("defaults: {ladder: {handler: 0}}\n", encoding="utf-8")
    assert sla.load_policies(path).defaults.ladder == (("handler", 0),)
    path.write_text("defaults: {ladder: {unit_head: 2}}\n", encoding="utf-8")
    import os
    os.utime(path, (1, 1))  # a different modification time, whatever the file system's resolution
    assert sla.load_policies(path).defaults.ladder == (("unit_head", 2),)


# -- lights and the timeline -----------------------------------------------------------------------

def test_yellow_comes_with_the_last_fifth_or_the_last_working_day_whichever_first() -> None:
    start, due = at(2025, 9, 1), at(2025, 9, 8)  # a 5wd SLA from Monday 09:00
    assert sla.warn_time(start, due).astimezone(SH) == at(2025, 9, 5)  # one working day before (Friday)
    long_due = at(2025, 12, 1)
    fifth = start + (long_due - start) * 0.8
    assert sla.warn_time(start, long_due) == fifth  # 20 % left comes first on a long deadline
    # Across National Day: due Thursday 9 Oct, one working day before is Tuesday 30 Sep.
    assert sla.warn_time(at(2025, 9, 29), at(2025, 10, 9)).astimezone(SH) == at(2025, 9, 30)
    assert sla.warn_time(start, start - timedelta(hours=1)) == start - timedelta(hours=1)  # already overdue
    assert sla.warn_time(start, due, sla.Thresholds(0.2, 0)) == start + (due - start) * 0.8


def test_level() -> None:
    due, warn = at(2025, 9, 8), at(2025, 9, 5)
    assert sla.level(None, None, due) is None
    assert sla.level(due, warn, at(2025, 9, 4)) == "green"
    assert sla.level(due, warn, warn) == "yellow"
    assert sla.level(due, warn, due) == "red"
    assert sla.level(due, None, at(2025, 9, 7)) == "green"


def test_milestones_follow_the_ladder_in_working_days_after_the_deadline() -> None:
    due = datetime(2025, 9, 26, 23, 59, 59, tzinfo=SH)  # Friday before National Day
    steps = sla.milestones(sla.Policy(), at(2025, 9, 25), due)
    assert [(m.step, m.at.astimezone(SH).date()) for m in steps] == [
        ("yellow", date(2025, 9, 25)), ("red", date(2025, 9, 26)), ("handler", date(2025, 9, 26)),
        ("unit_head", date(2025, 9, 28)),  # Sunday 28 Sep is a working day (调休)
        ("responsible_leader", date(2025, 9, 30)), ("city_leader", date(2025, 10, 10))]
    assert [m.level for m in steps] == [0, 0, 1, 2, 3, 4]


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 6, 30)),
       st.integers(min_value=1, max_value=60 * 24 * 90), st.floats(min_value=0, max_value=0.9),
       st.integers(min_value=0, max_value=10))
def test_yellow_always_falls_between_start_and_deadline(start: datetime, minutes: int, fraction: float,
                                                         days: int) -> None:
    start = start.replace(tzinfo=SH)
    due = start + timedelta(minutes=minutes)
    warn = sla.warn_time(start, due, sla.Thresholds(fraction, days))
    assert start <= warn <= due
    assert sla.level(due, warn, warn) == "yellow" or warn == due
    assert sla.level(due, warn, start) in ("green", "yellow")


# -- tasks get their lights from the policy --------------------------------------------------------

@pytest.fixture
def reviews(session: Session, review_org: dict[str, Actor], frozen: Any) -> int:
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    row = instances.start(session, process_key="review_process", actor=review_org["applicant"], title="并联审批")
    session.commit()
    steps = (("submit_application", "applicant", APPLICATION), ("accept", "window", {"decision": "accept"}))
    for bpmn_id, who, data in steps:
        task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == bpmn_id,
                                                      HumanTask.state == "ready"))
        assert task is not None
        tasks.claim(session, task_id=task.id, actor=review_org[who])
        tasks.complete(session, task_id=task.id, actor=review_org[who], data=data)
        session.commit()
    return row.id


def test_a_new_task_turns_yellow_one_working_day_before_its_sla(session: Session, reviews: int) -> None:
    review = session.scalars(select(HumanTask).where(HumanTask.instance_id == reviews, HumanTask.state == "ready")).all()
    assert review and all(t.sla == "5wd" for t in review)
    for task in review:  # created Monday 1 Sep 09:00: due Monday 8 Sep 09:00, yellow from Friday 09:00
        assert task.due_at is not None and task.warn_at is not None
        assert (task.due_at.astimezone(SH), task.warn_at.astimezone(SH)) == (at(2025, 9, 8), at(2025, 9, 5))


def test_watch_tasks_adds_open_tasks_once_and_wakes_changed_ones(session: Session, reviews: int) -> None:
    now = clock.now()
    policies = sla.load_policies()
    sla.watch_all(session, now=now, policies=policies)
    sla.watch_all(session, now=now, policies=policies)
    session.commit()
    open_ids = set(session.scalars(select(HumanTask.id).where(HumanTask.state == "ready")))
    watches = session.scalars(select(DeadlineWatch).where(DeadlineWatch.object_type == "task")).all()
    assert {w.object_id for w in watches} == open_ids and len(watches) == len(open_ids)
    for w in watches:
        assert w.policy == "review_process" and w.round == 1 and w.light == "green" and w.next_at == w.warn_at

    task = session.get(HumanTask, min(open_ids))
    assert task is not None
    task.due_at = now + timedelta(days=30)
    session.commit()
    later = now + timedelta(minutes=5)
    sla.watch_all(session, now=later, policies=policies)
    session.commit()
    woken = session.scalar(select(DeadlineWatch).where(DeadlineWatch.object_id == task.id,
                                                       DeadlineWatch.object_type == "task")
                           .execution_options(populate_existing=True))
    assert woken is not None and woken.next_at == later  # the sweep takes it now and starts a new round


def test_skipped_tasks_are_not_watched(session: Session, reviews: int) -> None:
    policies = sla.parse_policies({"tasks": {"review_process": {"skip": ["department_review"]}}})
    sla.watch_all(session, now=clock.now(), policies=policies)
    watched = set(session.scalars(select(DeadlineWatch.object_id)))
    skipped = set(session.scalars(select(HumanTask.id).where(HumanTask.bpmn_id == "department_review")))
    assert skipped and not watched & skipped


def test_issues_and_projects_are_watched_by_their_deadlines(session: Session, review_org: dict[str, Actor],
                                                           frozen: Any) -> None:
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    assert unit is not None
    issue = LedgerIssue(code="WT-2025-0001", title="用地手续", unit_id=unit.id, status="in_progress", source="project",
                        due_at=sla.deadline_of(date(2025, 9, 12)), created_at=clock.now())
    closed = LedgerIssue(code="WT-2025-0002", title="已销号", unit_id=unit.id, status="closed",
                         due_at=sla.deadline_of(date(2025, 9, 12)), created_at=clock.now())
    library = ProjectLibrary(code="key", name="重点项目")
    session.add_all([issue, closed, library])
    session.flush()
    project = Project(code="XM-1", name="智能家电产业园", library_id=library.id, category="focus", investment=60000,
                      stage="signed", responsible_unit_id=unit.id, planned_start=date(2025, 10, 31))
    done = Project(code="XM-2", name="已投产", library_id=library.id, category="key", investment=1, stage="producing")
    session.add_all([project, done])
    session.commit()
    sla.watch_all(session, now=clock.now())
    session.commit()
    rows = {(w.object_type, w.object_id): w for w in session.scalars(select(DeadlineWatch))}
    assert set(rows) == {("issue", issue.id), ("project", project.id)}
    assert rows[("issue", issue.id)].policy == "project" and rows[("issue", issue.id)].unit_id == unit.id
    watch = rows[("project", project.id)]
    assert watch.policy == "key" and watch.due_at == sla.deadline_of(date(2025, 10, 31))
    # Projects: yellow ten working days before (the projects section of escalation.yaml).
    assert watch.warn_at is not None and watch.warn_at.astimezone(SH).date() == date(2025, 10, 17)

    issue.status, issue.closed_at = "closed", clock.now()
    session.commit()
    sla.watch_all(session, now=clock.now())
    session.commit()
    session.refresh(rows[("issue", issue.id)])
    assert rows[("issue", issue.id)].active is False


# -- heat ------------------------------------------------------------------------------------------

def test_wait_heat_per_element(session: Session, reviews: int, frozen: Any) -> None:
    version_id = instances_version(session, reviews)
    frozen.advance(timedelta(hours=4))
    heat = sla.wait_heat(session, version_id)
    assert heat["submit_application"].count == 1 and heat["submit_application"].open == 0
    assert heat["submit_application"].median == 0.0  # completed at once under the frozen clock
    review = heat["department_review"]
    assert review.open == review.count >= 2 and review.median == review.max == 4 * 3600.0
    assert "escalate" not in heat


def instances_version(session: Session, instance_id: int) -> int:
    from engine.runtime.models import ProcessInstance
    version = session.scalar(select(ProcessInstance.version_id).where(ProcessInstance.id == instance_id))
    assert version is not None
    return version
