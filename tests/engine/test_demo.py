"""`jzflow demo` (plan.data.demo): the demo data set, on SQLite and PostgreSQL.

Loaded on a day inside the plan year, on a day after it and on the real clock: projects at every
stage (some behind plan), indicator values with some indicators behind, ledger issues at every step
(some overdue), approvals in flight, two running periods of the seven-step method, something in the
inbox of every demo login; a second run changes nothing; without the seed or the processes it says
what to run first and writes nothing.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, clock, deploy, runtime, tasks
from engine.audit.models import AuditEvent
from engine.documents import sheet
from engine.documents.models import IssuedDocument
from engine.errors import InvalidInput
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import Membership, Role, User
from engine.runtime import timers
from engine.runtime.models import Incident, ProcessDefinition, ProcessInstance
from engine.tasks.collab_models import CarbonCopy
from engine.tasks.models import HumanTask
from plan import investment as plan
from plan.data import demo, seed
from plan.indicators.models import IndicatorValue, PlanItem
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue
from plan.meetings.models import ReviewMeeting
from plan.projects.models import STAGES, Bid, Project, ProjectApproval, ProjectStage
from tests.conftest import pdf_text

ROOT = Path(__file__).resolve().parents[2]
DEMO_CODES = [p["code"] for p in demo.read()["projects"]["projects"]]
IN_PLAN_YEAR = datetime(2025, 9, 15, 10, 0, tzinfo=clock.SHANGHAI)  # a Monday
AFTER_PLAN_YEAR = datetime(2026, 11, 27, 16, 30, tzinfo=clock.SHANGHAI)  # a Friday


@pytest.fixture
def seeded(session: Session) -> None:
    seed.load_seed(session)
    session.commit()


@pytest.fixture
def ready(session: Session, seeded: None) -> None:
    deploy.deploy(session, deploy.read_directory(ROOT / "bpmn"), actor=SYSTEM)
    session.commit()
    runtime._spec_cache.clear()  # version ids repeat across the throwaway databases


def demo_logins(session: Session) -> dict[str, str]:
    """The logins web/run.py prints: the first user with a password of each role, by role code."""
    rows = session.execute(select(Role.code, User.username).join(Membership, Membership.user_id == User.id)
                           .join(Role, Role.id == Membership.role_id).where(User.password_hash.is_not(None))
                           .order_by(Role.id, User.id)).all()
    logins: dict[str, str] = {}
    for role, username in rows:
        logins.setdefault(role, username)
    return logins


def instances_of(session: Session, key: str) -> list[ProcessInstance]:
    return list(session.scalars(select(ProcessInstance).join(ProcessDefinition)
                                .where(ProcessDefinition.key == key).order_by(ProcessInstance.id)))


def open_tasks(session: Session, instance: ProcessInstance) -> list[str]:
    return sorted(session.scalars(select(HumanTask.bpmn_id).where(HumanTask.instance_id == instance.id,
                                                                  HumanTask.state == "ready")))


def fingerprint(session: Session) -> tuple[int, ...]:
    return tuple(int(session.scalar(select(func.count()).select_from(model)) or 0)
                 for model in (Project, ProjectStage, ProcessInstance, HumanTask, LedgerIssue, IndicatorValue, Bid,
                               PlanItem, AuditEvent))


@pytest.mark.parametrize("today", [IN_PLAN_YEAR, AFTER_PLAN_YEAR, None], ids=["in_plan_year", "after", "real_clock"])
def test_the_demo_shows_every_part_of_the_plan_and_loads_once(session: Session, ready: None,
                                                              today: datetime | None) -> None:
    if today is not None:
        clock.freeze(today)
    now = clock.now()
    summary = demo.load_demo(session)
    session.commit()
    if today is not None:
        assert clock.now() == now  # the caller's frozen clock is given back as it was
    else:
        assert clock.now() is not clock.now()  # the wall clock again
    local_today = now.astimezone(clock.SHANGHAI).date()
    assert "项目 36 个" in summary and "七步工作法" in summary

    # Projects: every stage, in order, in 2025 (before today); some behind their plan.
    rows = {p.code: p for p in session.scalars(select(Project).where(Project.code.in_(DEMO_CODES)))}
    assert Counter(p.stage for p in rows.values()) == {"lead": 6, "signed": 9, "started": 11, "completed": 5,
                                                        "producing": 5}
    assert {p.library.code for p in rows.values()} == {"key", "investment", "government", "land"}
    assert {p.category for p in rows.values()} == {"focus", "key", "layout"}
    assert all(p.responsible_leader_id and p.responsible_unit_id for p in rows.values())
    for p in rows.values():
        days = [s.on for s in p.stages]
        assert [s.stage for s in p.stages] == list(STAGES[:len(days)]) and days == sorted(days)
        assert all(d.year == 2025 and d < local_today for d in days), p.code
    behind = [p for p in rows.values() if p.stage == "signed" and p.planned_start and p.planned_start < local_today]
    assert len(behind) >= 3
    # + the two leads of step ⑥ and the one a 招商线索 became after two rounds of 对接
    assert session.scalar(select(func.count()).select_from(Project)) == 39
    leads = {x.title: x for x in session.scalars(select(InvestmentLead))}
    assert sorted(x.status for x in leads.values()) == ["contacting", "dispatched", "project"]
    assert leads["某储能电池企业拟在胶州布局生产基地"].project_id is not None
    meeting = session.scalar(select(ReviewMeeting))
    assert meeting is not None and meeting.held_on > local_today - timedelta(days=3) and meeting.agenda

    # Indicator values of 2025 up to August: some behind (a growth rate and a share among them), some not.
    periods = set(session.scalars(select(IndicatorValue.period)))
    assert min(periods) == "2025-01" and max(periods) == "2025-08"
    statuses = {a.code: a.status for a in plan.indicator_statuses(session, "2025-08")}
    assert statuses["gdp_growth"] == statuses["tertiary_share"] == statuses["scale_spices"] == "behind"
    assert statuses["digital_core_growth"] == "met" and statuses["scale_new_energy"] == "on_track"
    assert statuses["marine_iot_high_tech_firms"] == "missing"

    # Ledger issues at every step, some overdue, one extension waiting for the leader.
    issues = list(session.scalars(select(LedgerIssue)))
    assert len(issues) == 13
    assert {i.status for i in issues} == {"registered", "dispatched", "accepted", "in_progress", "feedback", "closed",
                                          "returned"}
    overdue = [i for i in issues if i.status != "closed" and i.due_at and clock.as_utc(i.due_at) < now]
    assert len(overdue) >= 3
    ledger_tasks = Counter(b for i in instances_of(session, "issue_ledger") for b in open_tasks(session, i))
    assert ledger_tasks["decide_extension"] == 1 and ledger_tasks["revisit"] == 1 and ledger_tasks["dispatch"] >= 2

    # Approvals in flight at every step, one certified with its working days.
    approvals = instances_of(session, "parallel_approval")
    # the certified 工程建设许可 chained the project's 施工许可 (plan.projects.approvals), waiting for its application
    assert Counter(a.status for a in approvals) == {"running": 7, "completed": 1}
    chained = session.scalar(select(ProjectApproval).where(ProjectApproval.stage == "construction_permit"))
    assert chained is not None and chained.instance_id in {a.id for a in approvals}
    assert open_tasks(session, next(a for a in approvals if a.id == chained.instance_id)) == ["submit_application"]
    waiting = Counter(b for a in approvals for b in open_tasks(session, a))
    assert {"window_accept", "department_review", "submit_supplement", "submit_deferred_materials",
            "submit_application"} <= set(waiting)
    done = next(a for a in approvals if a.status == "completed")
    last = runtime.load(session, done.id).workflow.last_task
    assert last is not None
    days = last.data["working_days"]
    assert days["working_days_used"] > 0 and days["working_days_saved"] == days["sla_serial_wd"] - days["working_days_used"]
    deferred = next(a for a in approvals if "submit_deferred_materials" in open_tasks(session, a))
    assert deferred.next_timer_at is not None and clock.as_utc(deferred.next_timer_at) > now

    # Two periods of the seven-step method: the earlier one completed, its two calls (one per industry chain)
    # open in their own loop_call instances with one bid; the latest at ④ with ⑤ ⑥ ⑦ open beside it.
    current = plan.period_due(now)
    earlier = plan.period_due(datetime.combine(date.fromisoformat(f"{current}-01"), datetime.min.time(),
                                               tzinfo=clock.SHANGHAI))
    loops = {i.business_key: i for i in instances_of(session, "investment_loop")}
    assert set(loops) == {plan.business_key(earlier), plan.business_key(current)}
    assert [loops[plan.business_key(p)].status for p in (earlier, current)] == ["completed", "running"]
    calls = {i.business_key: i for i in instances_of(session, "loop_call")}
    assert set(calls) == {f"JB-{earlier}-smart_appliances", f"JB-{earlier}-low_altitude_economy"}
    assert all(i.status == "running" and set(open_tasks(session, i)) == {"submit_bid"} for i in calls.values())
    assert session.scalar(select(func.count()).select_from(Bid)) == 1
    for call in calls.values():
        assert call.next_timer_at is not None and clock.as_utc(call.next_timer_at) > now  # windows still open
    assert set(open_tasks(session, loops[plan.business_key(current)])) == {
        "claim_item", "publish_call", "record_visits", "source_leads"}
    items = Counter(session.scalars(select(PlanItem.status).where(PlanItem.period == current)))
    assert items["claimed"] >= 1 and items["open"] >= 1

    # Every demo login has work waiting; the auditor has an overdue issue CC'd.
    logins = demo_logins(session)
    for role, username in logins.items():
        if role in ("process_owner", "auditor"):
            continue
        assert tasks.open_tasks(session, actor_for(session, username)), (role, username)
    auditor = session.scalar(select(User.id).where(User.username == logins["auditor"]))
    assert session.scalar(select(func.count()).select_from(CarbonCopy).where(CarbonCopy.user_id == auditor))

    assert session.scalar(select(func.count()).select_from(Incident)) == 0
    assert timers.due_ids(session, now=clock.now()) == []
    assert audit.verify(session).ok
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "demo.load"))
    assert event is not None and clock.as_utc(event.at) >= now and (today is None or clock.as_utc(event.at) == now)

    # A second run changes nothing and says so.
    before = fingerprint(session)
    again = demo.load_demo(session)
    session.commit()
    assert "已加载" in again and "nothing changed" in again
    assert fingerprint(session) == before


def test_the_demo_s_issued_approval_sheet_holds_what_each_step_submitted(session: Session, ready: None,
                                                                          tmp_path: Path) -> None:
    """The demo finishes its applications in one transaction, so the steps' completion events were still waiting for
    the commit when 联合出证 printed the 审批单: it was issued with each step's name and no content. The sheet reads the
    transaction's own events too."""
    demo.load_demo(session)
    session.commit()
    body = session.scalar(select(IssuedDocument.pdf).where(IssuedDocument.kind == sheet.KIND)
                          .order_by(IssuedDocument.id).limit(1))
    assert body is not None
    text = pdf_text(body, tmp_path)
    assert "施工图审查及消防设计审查合格。" in text and "人防设计审查通过。" in text, text


def test_without_the_seed_it_says_to_run_jzflow_seed(session: Session) -> None:
    with pytest.raises(InvalidInput) as err:
        demo.load_demo(session)
    assert "jzflow seed" in err.value.message
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_without_the_processes_it_says_to_deploy_them(session: Session, seeded: None) -> None:
    before = fingerprint(session)
    with pytest.raises(InvalidInput) as err:
        demo.load_demo(session)
    assert "jzflow deploy bpmn/" in err.value.message
    assert all(key in err.value.message for key in ("investment_loop", "parallel_approval", "issue_ledger"))
    session.rollback()
    assert fingerprint(session) == before


def test_replay_takes_the_steps_of_all_scenarios_in_time_order() -> None:
    start = datetime(2025, 3, 3, 9, 0, tzinfo=clock.SHANGHAI)
    seen: list[tuple[str, datetime]] = []

    def scenario(name: str, offsets: list[int]) -> Iterator[datetime]:
        for hours in offsets:
            yield start + timedelta(hours=hours)
            seen.append((name, clock.now()))

    clock.freeze(start + timedelta(days=1))
    demo.replay([scenario("a", [0, 5, 30]), scenario("b", [1, 2, 6])], until=start + timedelta(hours=24))
    assert [name for name, _at in seen] == ["a", "b", "b", "a", "b", "a"]
    assert [at for _name, at in seen] == sorted(at for _name, at in seen)
    assert seen[-1][1] == start + timedelta(hours=24)  # nothing happens after `until`


def copy_demo(tmp_path: Path) -> Path:
    target = tmp_path / "demo"
    target.mkdir()
    for name in demo.FILES:
        (target / f"{name}.yaml").write_text((demo.DEMO_DIR / f"{name}.yaml").read_text(encoding="utf-8"),
                                             encoding="utf-8")
    return target


def test_a_demo_file_that_lacks_a_field_is_named(tmp_path: Path) -> None:
    path = copy_demo(tmp_path)
    projects = path / "projects.yaml"
    projects.write_text(projects.read_text(encoding="utf-8").replace(
        "    stages: {lead: 2025-07-22}\n", "", 1), encoding="utf-8")
    issues = path / "issues.yaml"
    issues.write_text(issues.read_text(encoding="utf-8").replace("{at: 0, do: register}", "{at: 0}", 1),
                      encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        demo.read(path)
    assert "projects.yaml projects 11: 缺少字段 (missing field) stages" in err.value.message
    assert "issues.yaml issues 1 history 第1步" in err.value.message


def test_a_demo_step_that_cannot_be_taken_is_named_and_nothing_is_written(session: Session, ready: None,
                                                                          tmp_path: Path) -> None:
    path = copy_demo(tmp_path)
    issues = path / "issues.yaml"
    issues.write_text(issues.read_text(encoding="utf-8").replace("handler: weihua", "handler: gupeng", 1),
                      encoding="utf-8")  # an applicant is no member of 自然资源局: cannot accept its issue
    clock.freeze(AFTER_PLAN_YEAR)
    before = fingerprint(session)
    with pytest.raises(InvalidInput) as err:
        demo.load_demo(session, path)
    session.rollback()
    assert "issues.yaml 第4项《项目用地规划条件调整申请办理缓慢》" in err.value.message
    assert "accept" in err.value.message
    assert clock.now() == AFTER_PLAN_YEAR  # the clock is given back even when loading fails
    assert fingerprint(session) == before
