"""并联审批 (bpmn/parallel_approval.bpmn) end to end through the engine services, on SQLite and PostgreSQL.

Every path: happy (started by hand), 容缺受理 (supplied in time; overdue → extended; overdue →
terminated), a 补正 loop with one department, 不予受理 at the window, 退回 to the applicant, a
department's 不予许可, and a start by another process with the contract's data
(docs/decisions/0001). Each scenario reloads the instance in a fresh session in the middle. Time is
frozen; working days cross the 2025 National Day holiday (10-01…10-08) and the make-up working days
2025-09-28 (Sunday) and 2025-10-11 (Saturday).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, deploy, documents, org, runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import FormInvalid, NotYourTask, TaskNotFound
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import OrgUnit, User
from engine.runtime import instances, timers
from engine.runtime.models import ProcessInstance
from engine.spiff import serializer
from engine.tasks.models import HumanTask
from tests.steps import do, only_task, open_tasks, spawner

BPMN = Path(__file__).resolve().parents[2] / "bpmn"
SHANGHAI = clock.SHANGHAI

# Org units of docs/decisions/0001 that approval_departments.dmn names, plus the 行政审批服务局 window.
DEPARTMENTS = {"fgj": "发展和改革局", "zrzyj": "自然资源局", "zjj": "住房和城乡建设局", "sthjj": "生态环境分局",
               "yjj": "应急管理局", "xfj": "消防救援大队", "jtj": "交通运输局", "slj": "水务局", "rfb": "人防办"}

APPLICATION: dict[str, Any] = {
    "project_code": "2025-370281-26-03-012345",
    "project_name": "胶州湾智能家电产业园（一期）",
    "project_type": "industrial",
    "investment": Decimal("8600.50"),  # 万元: an industrial project under 1亿元 → 发改, 自然资源, 生态环境
    "stage": "land_planning",
    "applicant_unit": "青岛海湾智能家电有限公司",
    "contact_name": "张伟",
    "contact_phone": "13805320000",
    "planned_start_date": "2025-11-03",
    "materials": ["application_form", "business_license", "project_document", "land_documents"],
}
LAND_INDUSTRIAL_SMALL = {"fgj": 3, "zrzyj": 10, "sthjj": 10}  # the DMN rule's SLAs, working days


def at(day: str, hhmm: str = "09:30") -> datetime:
    """Return a Shanghai wall-clock time."""
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=SHANGHAI)


def approval_files() -> dict[str, bytes]:
    """Read only this process's files from bpmn/, as a process owner's upload would send them."""
    files = {"parallel_approval.bpmn": (BPMN / "parallel_approval.bpmn").read_bytes()}
    for path in sorted(BPMN.glob("approval_*.dmn")):
        files[path.name] = path.read_bytes()
    for path in sorted((BPMN / "forms").glob("approval_*.json")):
        files[path.name] = path.read_bytes()
    return files


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def people(session: Session) -> dict[str, Actor]:
    """Roles, org units and users the lanes, the DMN departments and the assignments resolve to."""
    for code, name in [("applicant", "项目单位"), ("window", "窗口受理"), ("reviewer", "审批部门"),
                       ("leader", "责任领导"), ("investment_officer", "招商专员")]:
        org.add_role(session, code=code, name=name)
    org.add_unit(session, code="spj", name="行政审批服务局")
    for code, name in DEPARTMENTS.items():
        org.add_unit(session, code=code, name=name)
    org.add_user(session, username="qiye_zhang", display_name="海湾家电 张伟", role_codes=["applicant"])
    org.add_user(session, username="qiye_li", display_name="另一企业 李娜", role_codes=["applicant"])
    org.add_user(session, username="window_wang", display_name="窗口 王芳", unit_codes=["spj"], role_codes=["window"])
    for code in DEPARTMENTS:
        org.add_user(session, username=f"{code}_reviewer", display_name=f"{DEPARTMENTS[code]}审查员",
                     unit_codes=[code], role_codes=["reviewer"])
    org.add_user(session, username="leader_sun", display_name="责任领导 孙明", role_codes=["leader"])
    org.add_user(session, username="zhaoshang_liu", display_name="招商专员 刘洋", role_codes=["investment_officer"])
    session.commit()
    names = ["qiye_zhang", "qiye_li", "window_wang", "leader_sun", "zhaoshang_liu",
             *[f"{code}_reviewer" for code in DEPARTMENTS]]
    return {name: actor_for(session, name) for name in names}


@pytest.fixture
def deployed(session: Session, people: dict[str, Actor]) -> None:
    """Deploy through the same validation as an upload, lanes checked against the org."""
    result = deploy.deploy(session, approval_files(), actor=SYSTEM)
    assert [(d.key, d.created) for d in result] == [("parallel_approval", True)]
    session.commit()


@pytest.fixture(autouse=True)
def _fresh_spec_cache() -> Iterator[None]:
    runtime._spec_cache.clear()  # version ids repeat across the throwaway databases
    yield
    runtime._spec_cache.clear()


# --------------------------------------------------------------------------- helpers


def unit_code(session: Session, task: HumanTask) -> str:
    """Return the org unit a review task is offered to (its only candidate)."""
    assert len(task.candidates) == 1 and task.candidates[0].org_unit_id is not None
    code = session.scalar(select(OrgUnit.code).where(OrgUnit.id == task.candidates[0].org_unit_id))
    assert code is not None
    return code


def reviews_by_unit(session: Session, instance_id: int) -> dict[str, HumanTask]:
    found = {unit_code(session, t): t for t in open_tasks(session, instance_id, "department_review")}
    assert len(found) == len(open_tasks(session, instance_id, "department_review"))
    return found


def assignee(session: Session, task: HumanTask) -> str | None:
    return session.scalar(select(User.username).where(User.id == task.assignee_id)) if task.assignee_id else None


def data_of(session: Session, instance_id: int) -> dict[str, Any]:
    """Return the instance's current data (of the task that ran last)."""
    workflow = runtime.load(session, instance_id).workflow
    return dict(workflow.last_task.data)


def restored(factory: sessionmaker[Session], session: Session, instance_id: int,
             waiting_at: str | None = None) -> dict[str, Any]:
    """Save/restore in the middle: reload in a fresh session with a cold spec cache; state must round-trip.

    Returns the data of the open task `waiting_at` (parallel branches carry different data), else
    of the task that ran last.
    """
    session.commit()
    runtime._spec_cache.clear()
    with factory() as other:
        running = runtime.load(other, instance_id)
        stored = other.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id))
        assert serializer.dump_state(running.workflow) == stored
        if waiting_at is None:
            data = dict(running.workflow.last_task.data)
        else:
            first = open_tasks(other, instance_id, waiting_at)[0]
            task = runtime.find_task(running.workflow, first.task_guid)
            assert task is not None
            data = dict(task.data)
        other.rollback()
    return data


def due_local(task: HumanTask) -> datetime:
    assert task.due_at is not None
    return clock.as_utc(task.due_at).astimezone(SHANGHAI)


def start_by_hand(session: Session, people: dict[str, Actor], when: datetime) -> int:
    """The applicant starts the process without data and fills the application form."""
    clock.freeze(when)
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"],
                          business_key=APPLICATION["project_code"], title="胶州湾智能家电产业园（一期）并联审批")
    session.commit()
    task = only_task(session, row.id, "submit_application")
    assert assignee(session, task) == "qiye_zhang"  # the initiator is the applicant
    do(session, task, people["qiye_zhang"], APPLICATION)
    return row.id


def accept(session: Session, people: dict[str, Actor], instance_id: int, when: datetime,
           **form: Any) -> tasks.Completion:
    clock.freeze(when)
    data = {"acceptance": "accept", "window_opinion": "材料齐全，予以受理", **form}
    return do(session, only_task(session, instance_id, "window_accept"), people["window_wang"], data)


def review(session: Session, people: dict[str, Actor], instance_id: int, code: str, decision: str = "approve",
           **form: Any) -> tasks.Completion:
    task = reviews_by_unit(session, instance_id)[code]
    opinions = {"approve": "同意", "supplement": "材料需补正", "disapprove": "不符合产业准入条件，不予许可"}
    return do(session, task, people[f"{code}_reviewer"],
              {"review_decision": decision, "review_opinion": f"{DEPARTMENTS[code]}：{opinions[decision]}", **form})


def certify(session: Session, people: dict[str, Actor], instance_id: int, when: datetime) -> tasks.Completion:
    clock.freeze(when)
    local_day = when.astimezone(SHANGHAI).date().isoformat()
    return do(session, only_task(session, instance_id, "issue_certificate"), people["window_wang"],
              {"issued_on": local_day})


def approve_all(session: Session, people: dict[str, Actor], instance_id: int) -> None:
    for code in list(reviews_by_unit(session, instance_id)):
        review(session, people, instance_id, code)


def fire_timers(session: Session, instance_id: int) -> None:
    assert timers.due_ids(session, now=clock.now()) == [instance_id]
    assert timers.fire_instance(session, instance_id, now=clock.now())
    session.commit()


def assert_completed(session: Session, instance_id: int) -> ProcessInstance:
    row = session.get(ProcessInstance, instance_id)
    assert row is not None
    session.refresh(row)
    assert row.status == "completed" and row.ended_at is not None and row.next_timer_at is None
    assert open_tasks(session, instance_id) == []
    return row


# --------------------------------------------------------------------------- scenarios


def test_happy_path_counts_working_days_across_national_day(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    window = only_task(session, iid, "window_accept")
    assert window.lane == "窗口受理" and due_local(window) == at("2025-09-26")  # 1wd
    with pytest.raises(NotYourTask):
        tasks.claim(session, task_id=window.id, actor=people["qiye_zhang"])
    session.rollback()
    accept(session, people, iid, at("2025-09-26"))  # Friday before the holiday

    reviews = reviews_by_unit(session, iid)
    assert set(reviews) == set(LAND_INDUSTRIAL_SMALL)
    assert all(t.lane == "审批部门" for t in reviews.values())
    # Each department's own SLA in working days: 3wd skips Saturday 09-27 but counts Sunday 09-28 (调休);
    # 10wd skips 10-01…10-08 and counts Saturday 10-11 (调休).
    assert due_local(reviews["fgj"]) == at("2025-09-30")
    assert due_local(reviews["zrzyj"]) == due_local(reviews["sthjj"]) == at("2025-10-16")
    with pytest.raises(NotYourTask):
        tasks.claim(session, task_id=reviews["fgj"].id, actor=people["zrzyj_reviewer"])
    session.rollback()

    mid = restored(factory, session, iid, waiting_at="department_review")
    assert mid["project_name"] == "胶州湾智能家电产业园（一期）"
    assert mid["investment"] == Decimal("8600.50") and isinstance(mid["investment"], Decimal)
    assert mid["acceptance_record"]["accepted_on"] == "2025-09-26"
    assert [d["code"] for d in mid["departments"]] == ["fgj", "zrzyj", "sthjj"]
    assert mid["review_round"] == 1 and mid["applicant"] == "qiye_zhang"
    assert mid["department"]["code"] in LAND_INDUSTRIAL_SMALL  # a review instance's own item

    clock.freeze(at("2025-09-28", "10:00"))  # a Sunday, but a make-up working day
    review(session, people, iid, "fgj")
    clock.freeze(at("2025-09-30", "16:00"))
    review(session, people, iid, "zrzyj")
    assert open_tasks(session, iid, "issue_certificate") == []  # 会签: waits for every department
    clock.freeze(at("2025-10-09", "11:00"))
    review(session, people, iid, "sthjj")
    result = certify(session, people, iid, at("2025-10-10", "10:00"))

    assert result.status == "completed"
    assert_completed(session, iid)
    final = data_of(session, iid)
    assert final["outcome"] == "certified"
    assert final["certificate_date"] == date(2025, 10, 10)
    assert final["certificate_title"] == "胶州湾智能家电产业园（一期）并联审批联合意见书"
    # 联合出证: the engine numbered it (nobody typed it), stored and audited it.
    assert final["certificate"]["number"] == "胶审〔2025〕0001号"
    issued = documents.for_instance(session, iid)
    assert [(d.number, d.subject, d.issued_on) for d in issued] == [
        ("胶受〔2025〕0001号", "胶州湾智能家电产业园（一期）", date(2025, 9, 26)),  # 受理通知书 (test_acceptance_receipts)
        ("胶审〔2025〕0001号", "胶州湾智能家电产业园（一期）", date(2025, 10, 10)),
        ("胶审单〔2025〕0001号", "胶州湾智能家电产业园（一期）", date(2025, 10, 10))]  # and its 审批单
    assert final["certificate"]["sheet_number"] == "胶审单〔2025〕0001号"
    assert final["acceptance_notice"]["number"] == "胶受〔2025〕0001号"
    assert issued[1].issuers == [DEPARTMENTS[c] for c in ("fgj", "zrzyj", "sthjj")]
    assert sorted(final["approved_departments"]) == ["fgj", "sthjj", "zrzyj"]
    assert [(r["code"], r["round"], r["decision"]) for r in final["review_log"]] == [
        ("fgj", 1, "approve"), ("zrzyj", 1, "approve"), ("sthjj", 1, "approve")]
    # 09-28 (调休), 09-29, 09-30, 10-09, 10-10: five working days against 3 + 10 + 10 in series.
    assert final["working_days"] == {
        "accepted_on": "2025-09-26", "certified_on": "2025-10-10", "calendar_days": 14, "working_days_used": 5,
        "supplement_wd": 0, "working_days_net": 5, "sla_serial_wd": 23, "sla_parallel_wd": 10, "working_days_saved": 18,
        "departments": ["fgj", "zrzyj", "sthjj"]}
    event = session.scalar(select(AuditEvent).where(AuditEvent.stream == f"instance:{iid}",
                                                    AuditEvent.action == "approval.working_days"))
    assert event is not None and event.after["working_days_used"] == 5
    assert audit.verify(session).ok


@pytest.mark.parametrize(("accepted", "certified", "used"), [
    ("2025-09-26", "2025-10-08", 3),  # certificate on the last holiday: 09-28, 09-29, 09-30
    ("2025-09-27", "2025-09-28", 1),  # accepted on Saturday, certified on the make-up Sunday
    ("2025-09-30", "2025-10-09", 1),  # the whole holiday in between counts nothing
    ("2025-10-10", "2025-10-13", 2),  # Saturday 10-11 is a make-up working day, Sunday 10-12 is not
])
def test_working_days_used_follow_the_chinese_calendar(
        session: Session, deployed: None, people: dict[str, Actor], accepted: str, certified: str,
        used: int) -> None:
    iid = start_by_hand(session, people, at(accepted, "08:30"))
    accept(session, people, iid, at(accepted))
    approve_all(session, people, iid)
    certify(session, people, iid, at(certified, "17:00"))
    days = data_of(session, iid)["working_days"]
    assert (days["accepted_on"], days["certified_on"], days["working_days_used"]) == (accepted, certified, used)
    assert days["working_days_saved"] == 23 - used


def test_deferred_materials_supplied_in_time(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance="accept_deferred",
           window_opinion="环评文件容缺受理", deferred_materials=["eia_document"], commitment_deadline="2025-10-10")

    deferred = only_task(session, iid, "submit_deferred_materials")
    assert deferred.lane == "项目单位" and assignee(session, deferred) == "qiye_zhang"
    # The commitment deadline is the task's due date and the boundary timer's: 24:00 of that day.
    assert due_local(deferred) == at("2025-10-10", "23:59:59")
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.next_timer_at is not None
    assert clock.as_utc(row.next_timer_at) == at("2025-10-10", "23:59:59").astimezone(clock.UTC)
    assert len(open_tasks(session, iid, "department_review")) == 3  # reviews run meanwhile

    mid = restored(factory, session, iid, waiting_at="submit_deferred_materials")
    assert mid["deferred_deadline"] == date(2025, 10, 10) and isinstance(mid["deferred_deadline"], date)
    assert mid["deferred_materials"] == ["eia_document"] and mid["deferred_status"] == "pending"
    assert mid["acceptance_record"]["mode"] == "deferred"
    assert mid["investment"] == Decimal("8600.50")

    clock.freeze(at("2025-09-29"))
    approve_all(session, people, iid)
    assert open_tasks(session, iid, "issue_certificate") == []  # 联合出证 waits for the deferred materials
    clock.freeze(at("2025-10-09"))
    do(session, only_task(session, iid, "submit_deferred_materials"), people["qiye_zhang"],
       {"deferred_supplied": ["eia_document"], "deferred_note": "环评批复已取得，现补交"})
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.next_timer_at is None  # the timer went with the task
    certify(session, people, iid, at("2025-10-10"))
    assert_completed(session, iid)
    final = data_of(session, iid)
    assert final["outcome"] == "certified" and final["deferred_status"] == "supplied"
    assert final["deferred_supplied"] == ["eia_document"] and final["deferred_extensions"] == []
    assert final["working_days"]["working_days_used"] == 5


def test_deferred_materials_overdue_then_extended_by_the_leader(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance="accept_deferred", window_opinion="安全评价报告容缺",
           deferred_materials=["safety_assessment"], commitment_deadline="2025-09-30")
    approve_all(session, people, iid)

    clock.freeze(at("2025-09-30", "23:59"))
    assert timers.due_ids(session, now=clock.now()) == []  # not yet: the deadline is the end of the day
    clock.freeze(at("2025-10-01", "00:00:30"))
    fire_timers(session, iid)
    assert open_tasks(session, iid, "submit_deferred_materials") == []
    overdue = only_task(session, iid, "handle_deferred_overdue")
    assert overdue.lane == "责任领导"
    with pytest.raises(NotYourTask):
        tasks.claim(session, task_id=overdue.id, actor=people["window_wang"])
    session.rollback()

    mid = restored(factory, session, iid, waiting_at="handle_deferred_overdue")
    assert mid["deferred_deadline"] == date(2025, 9, 30) and mid["deferred_status"] == "pending"

    clock.freeze(at("2025-10-09"))
    do(session, overdue, people["leader_sun"], {"overdue_decision": "extend", "leader_opinion": "同意延期至10月15日",
                                                "new_deadline": "2025-10-15"})
    again = only_task(session, iid, "submit_deferred_materials")
    assert due_local(again) == at("2025-10-15", "23:59:59")
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.next_timer_at is not None
    assert clock.as_utc(row.next_timer_at) == at("2025-10-15", "23:59:59").astimezone(clock.UTC)

    clock.freeze(at("2025-10-13"))
    do(session, again, people["qiye_zhang"], {"deferred_supplied": ["safety_assessment"], "deferred_note": "已补交"})
    certify(session, people, iid, at("2025-10-14"))
    assert_completed(session, iid)
    final = data_of(session, iid)
    assert final["outcome"] == "certified" and final["deferred_deadline"] == date(2025, 10, 15)
    assert final["deferred_extensions"] == [{"decision": "extend", "opinion": "同意延期至10月15日",
                                             "previous_deadline": date(2025, 9, 30)}]


def test_deferred_materials_overdue_then_terminated_by_the_leader(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance="accept_deferred", window_opinion="环评文件容缺",
           deferred_materials=["eia_document"], commitment_deadline="2025-09-29")
    review(session, people, iid, "fgj")

    clock.freeze(at("2025-09-30", "08:00"))
    fire_timers(session, iid)
    mid = restored(factory, session, iid, waiting_at="handle_deferred_overdue")
    assert mid["deferred_deadline"] == date(2025, 9, 29)
    assert len(open_tasks(session, iid, "department_review")) == 2  # the reviews still wait

    result = do(session, only_task(session, iid, "handle_deferred_overdue"), people["leader_sun"],
                {"overdue_decision": "terminate", "leader_opinion": "逾期未补交环评文件，终止审批"})
    assert result.status == "completed"  # the terminate end event ends the parallel reviews too
    assert_completed(session, iid)
    cancelled = session.scalars(select(HumanTask.bpmn_id).where(HumanTask.instance_id == iid,
                                                                HumanTask.state == "cancelled")).all()
    assert sorted(cancelled) == ["department_review", "department_review", "submit_deferred_materials"]
    final = data_of(session, iid)
    assert (final["outcome"], final["deferred_status"]) == ("terminated", "overdue")
    assert final["outcome_reason"] == "逾期未补交环评文件，终止审批"
    assert "working_days" not in final


def test_supplement_goes_back_only_to_the_department_that_asked(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    clock.freeze(at("2025-09-29"))
    review(session, people, iid, "fgj")
    review(session, people, iid, "zrzyj", "supplement", supplement_materials="补充宗地界址点坐标及红线图（盖章）")
    assert open_tasks(session, iid, "submit_supplement") == []  # waits until every department has answered
    clock.freeze(at("2025-09-30"))
    review(session, people, iid, "sthjj")

    supplement = only_task(session, iid, "submit_supplement")
    assert supplement.lane == "项目单位" and assignee(session, supplement) == "qiye_zhang"
    with pytest.raises(TaskNotFound):  # assigned to the applicant who started it; others learn nothing more
        tasks.claim(session, task_id=supplement.id, actor=people["qiye_li"])
    with pytest.raises(TaskNotFound):
        tasks.complete(session, task_id=supplement.id, actor=people["qiye_li"],
                       data={"supplement_reply": "冒名补正", "supplement_pledge": True})
    session.rollback()
    mid = restored(factory, session, iid, waiting_at="submit_supplement")
    assert mid["supplement_requests"] == [{"code": "zrzyj", "name": "自然资源局",
                                           "materials": "补充宗地界址点坐标及红线图（盖章）"}]
    assert [d["code"] for d in mid["pending_departments"]] == ["zrzyj"]
    assert sorted(mid["approved_departments"]) == ["fgj", "sthjj"]

    clock.freeze(at("2025-10-09"))
    do(session, supplement, people["qiye_zhang"],
       {"supplement_reply": "已补充界址点坐标及盖章红线图", "supplement_pledge": True})
    second = reviews_by_unit(session, iid)
    assert list(second) == ["zrzyj"]  # only the department that asked reviews again
    assert due_local(second["zrzyj"]) == at("2025-10-22")  # its own 10wd from the supplement (10-11 counts)
    per_unit = {code: 0 for code in LAND_INDUSTRIAL_SMALL}
    for t in session.scalars(select(HumanTask).where(HumanTask.instance_id == iid,
                                                     HumanTask.bpmn_id == "department_review")):
        per_unit[unit_code(session, t)] += 1
    assert per_unit == {"fgj": 1, "zrzyj": 2, "sthjj": 1}

    clock.freeze(at("2025-10-10"))
    review(session, people, iid, "zrzyj")
    certify(session, people, iid, at("2025-10-13"))
    assert_completed(session, iid)
    final = data_of(session, iid)
    assert final["outcome"] == "certified" and final["review_round"] == 2
    assert [(r["code"], r["round"], r["decision"]) for r in final["review_log"]] == [
        ("fgj", 1, "approve"), ("zrzyj", 1, "supplement"), ("sthjj", 1, "approve"), ("zrzyj", 2, "approve")]
    assert final["supplement_log"] == [{"round": 1, "reply": "已补充界址点坐标及盖章红线图", "requests": [
        {"code": "zrzyj", "name": "自然资源局", "materials": "补充宗地界址点坐标及红线图（盖章）"}]}]
    days = final["working_days"]
    assert days["working_days_used"] == 7  # 09-28, 29, 30, 10-09, 10, 11 (调休), 13
    assert (days["supplement_wd"], days["working_days_net"]) == (1, 6)  # 补正 09-30 → 10-09 is not counted
    assert days["working_days_saved"] == 23 - 7


def test_reject_at_the_window_ends_with_a_rejection(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    mid = restored(factory, session, iid)
    assert mid["materials"] == APPLICATION["materials"] and mid["investment"] == Decimal("8600.50")
    assert mid["contact_name"] == "张伟"

    result = accept(session, people, iid, at("2025-09-26"), acceptance="reject",
                    window_opinion="项目不符合《产业结构调整指导目录》，不予受理")
    assert result.status == "completed"
    assert_completed(session, iid)
    final = data_of(session, iid)
    assert final["outcome"] == "not_accepted"
    assert final["outcome_reason"] == "项目不符合《产业结构调整指导目录》，不予受理"
    assert "departments" not in final and "acceptance_record" not in final
    # the 不予受理决定书, numbered by the engine in its own series (tests/processes/test_acceptance_receipts)
    assert final["not_accepted_notice"]["number"] == "胶不受〔2025〕0001号" and "acceptance_notice" not in final
    assert session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.instance_id == iid, HumanTask.bpmn_id == "department_review")) == 0


def test_send_back_returns_the_application_to_the_applicant(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance="send_back",
           window_opinion="缺少用地预审材料原件，请补充后重新提交")
    again = only_task(session, iid, "submit_application")
    assert assignee(session, again) == "qiye_zhang"
    assert open_tasks(session, iid, "department_review") == []

    mid = restored(factory, session, iid)
    assert mid["send_backs"] == [{"round": 1, "reason": "缺少用地预审材料原件，请补充后重新提交"}]
    assert mid["project_name"] == APPLICATION["project_name"]  # the form comes back filled in

    clock.freeze(at("2025-09-29"))
    do(session, again, people["qiye_zhang"],
       {**APPLICATION, "materials": [*APPLICATION["materials"], "planning_scheme"]})
    accept(session, people, iid, at("2025-09-30"))
    approve_all(session, people, iid)
    certify(session, people, iid, at("2025-10-10"))
    assert_completed(session, iid)
    final = data_of(session, iid)
    assert final["outcome"] == "certified" and len(final["send_backs"]) == 1
    assert "planning_scheme" in final["materials"]
    # Counted from the acceptance after the send-back (09-30), not from the first submission.
    assert final["working_days"]["accepted_on"] == "2025-09-30"
    assert final["working_days"]["working_days_used"] == 2


def test_a_disapproval_ends_with_a_rejection_notice(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance="accept_deferred", window_opinion="环评文件容缺",
           deferred_materials=["eia_document"], commitment_deadline="2025-10-20")
    clock.freeze(at("2025-09-29"))
    review(session, people, iid, "fgj")
    review(session, people, iid, "zrzyj", "supplement", supplement_materials="补充红线图")
    review(session, people, iid, "sthjj", "disapprove")

    assert open_tasks(session, iid, "submit_supplement") == []  # 不予许可 outweighs 补正
    notice = only_task(session, iid, "issue_rejection_notice")
    assert notice.lane == "窗口受理"
    mid = restored(factory, session, iid, waiting_at="issue_rejection_notice")
    assert mid["disapprovals"] == [{"code": "sthjj", "name": "生态环境分局",
                                    "opinion": "生态环境分局：不符合产业准入条件，不予许可"}]
    deferred_branch = restored(factory, session, iid, waiting_at="submit_deferred_materials")
    assert deferred_branch["deferred_deadline"] == date(2025, 10, 20) and "disapprovals" not in deferred_branch

    result = do(session, notice, people["window_wang"],
                {"notice_text": "经生态环境分局审查，项目不符合产业准入条件，决定不予许可。"})
    assert result.status == "completed"
    assert_completed(session, iid)  # the terminate end event also ended the open 容缺 branch
    deferred = session.scalar(select(HumanTask.state).where(HumanTask.instance_id == iid,
                                                            HumanTask.bpmn_id == "submit_deferred_materials"))
    assert deferred == "cancelled"
    final = data_of(session, iid)
    assert final["outcome"] == "disapproved" and final["outcome_reason"].startswith("经生态环境分局审查")
    # the 不予许可决定书, numbered by the engine in its own series (nobody types it: tests/processes/test_rejection_notice)
    assert final["rejection_notice"]["number"] == "胶不许〔2025〕0001号"


CONTRACT_KEYS = ("project_code", "project_name", "project_type", "investment", "stage", "applicant")


def test_started_by_another_process_with_the_contract_data(
        session: Session, deployed: None, people: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    data = "{" + ", ".join(f'"{k}": {k}' for k in CONTRACT_KEYS) + "}"
    parent = spawner("signed_project", task_id="start_approval", name="签约项目", result="approval",
                     process_key='"parallel_approval"', business_key="project_code", data=data)
    deploy.deploy(session, {**approval_files(), "signed_project.bpmn": parent}, actor=SYSTEM)
    session.commit()
    clock.freeze(at("2025-09-25"))
    contract = {"project_code": "XM-2025-031", "project_name": "胶州上合新区冷链物流中心", "project_type": "infrastructure",
                "investment": Decimal("23500.00"), "stage": "construction_permit", "applicant": "qiye_zhang"}
    parent = instances.start(session, process_key="signed_project", actor=people["zhaoshang_liu"], data=contract)
    session.commit()
    assert parent.status == "completed"
    child = session.scalar(select(ProcessInstance).where(ProcessInstance.business_key == "XM-2025-031"))
    assert child is not None and child.id != parent.id and child.status == "running"

    first = only_task(session, child.id, "submit_application")
    assert assignee(session, first) == "qiye_zhang"  # the contract's applicant, not the 招商专员 who started it
    started = restored(factory, session, child.id)
    assert {k: started[k] for k in CONTRACT_KEYS} == contract
    assert isinstance(started["investment"], Decimal)
    assert started["parent_instance_id"] == parent.id and started["initiator"] == "zhaoshang_liu"

    # The form comes pre-filled from the contract; the applicant completes the rest.
    form = {**{k: v for k, v in contract.items() if k != "applicant"}, "applicant_unit": "青岛上合冷链物流有限公司",
            "contact_name": "王强", "contact_phone": "0532-87210000",
            "materials": ["application_form", "construction_drawings", "contracts"]}
    do(session, first, people["qiye_zhang"], form)
    accept(session, people, child.id, at("2025-09-26"))
    reviews = reviews_by_unit(session, child.id)
    assert set(reviews) == {"zjj", "yjj", "jtj"}  # 施工许可 · 基础设施项目
    assert all(due_local(t) == at("2025-10-10") for t in reviews.values())  # 5wd: 28, 29, 30, 10-09, 10-10
    approve_all(session, people, child.id)
    certify(session, people, child.id, at("2025-10-10"))
    days = data_of(session, child.id)["working_days"]
    assert (days["working_days_used"], days["sla_serial_wd"], days["working_days_saved"]) == (5, 15, 10)


def test_forms_are_validated_on_the_server(session: Session, deployed: None, people: dict[str, Actor]) -> None:
    clock.freeze(at("2025-09-25"))
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"])
    session.commit()
    task = only_task(session, row.id, "submit_application")
    before = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == row.id))
    bad = {**APPLICATION, "project_type": "mine", "investment": Decimal("-1"), "stage": "施工许可",
           "contact_phone": "12345", "planned_start_date": "下周一", "materials": [], "extra": "x"}
    del bad["project_name"]
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=task.id, actor=people["qiye_zhang"], data=bad)
    session.rollback()
    fields = {e.field for e in err.value.errors}
    assert fields == {"project_name", "project_type", "investment", "stage", "contact_phone",
                      "planned_start_date", "materials", "(form)"}  # (form): the unknown field "extra"
    assert session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == row.id)) == before
    do(session, task, people["qiye_zhang"], APPLICATION)

    window = only_task(session, row.id, "window_accept")
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=window.id, actor=people["window_wang"],
                       data={"acceptance": "accept_deferred", "window_opinion": "容缺"})
    session.rollback()
    assert {e.field for e in err.value.errors} == {"deferred_materials", "commitment_deadline"}
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=window.id, actor=people["window_wang"],
                       data={"acceptance": "accept_deferred", "window_opinion": "容缺", "deferred_materials": ["x"],
                             "commitment_deadline": "2025-13-01"})
    session.rollback()
    assert {e.field for e in err.value.errors} == {"deferred_materials/0", "commitment_deadline"}
    accept(session, people, row.id, at("2025-09-26"))

    fgj = reviews_by_unit(session, row.id)["fgj"]
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=fgj.id, actor=people["fgj_reviewer"],
                       data={"review_decision": "supplement", "review_opinion": ""})
    session.rollback()
    assert {e.field for e in err.value.errors} == {"review_opinion", "supplement_materials"}
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=fgj.id, actor=people["fgj_reviewer"],
                       data={"review_decision": "maybe", "review_opinion": "？"})
    session.rollback()
    assert {e.field for e in err.value.errors} == {"review_decision"}


def test_every_form_is_a_strict_chinese_schema() -> None:
    schemas = sorted((BPMN / "forms").glob("approval_*.schema.json"))
    tree = etree.parse(str(BPMN / "parallel_approval.bpmn"))
    used = {p.get("value") for p in tree.iter("{http://spiffworkflow.org/bpmn/schema/1.0/core}property")
            if p.get("name") in ("formJsonSchemaFilename", "formUiSchemaFilename")}
    names = {p.name for p in schemas} | {p.name.replace(".schema.", ".uischema.") for p in schemas}
    assert used == names  # every user task has both files, and no file is unused
    for path in schemas:
        schema = json.loads(path.read_text(encoding="utf-8"))
        ui = json.loads(path.with_name(path.name.replace(".schema.", ".uischema.")).read_text(encoding="utf-8"))
        assert schema["additionalProperties"] is False and schema["required"], path.name
        assert set(ui["ui:order"]) == set(schema["properties"]), path.name
        for name, field in schema["properties"].items():
            assert any("\u4e00" <= ch <= "\u9fff" for ch in field["title"]), (path.name, name)
            if "enum" in field:
                assert len(ui[name]["ui:enumNames"]) == len(field["enum"]), (path.name, name)
            if field.get("type") == "array":
                assert len(ui[name]["items"]["ui:enumNames"]) == len(field["items"]["enum"]), (path.name, name)


RULE_TASK = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="choose_only" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:businessRuleTask id="choose">
      <bpmn:extensionElements>
        <spiffworkflow:calledDecisionId>approval_departments</spiffworkflow:calledDecisionId>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:businessRuleTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="choose" />
    <bpmn:sequenceFlow id="f2" sourceRef="choose" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_the_department_table_covers_every_stage_type_and_investment(session: Session) -> None:
    files = {"choose_only.bpmn": RULE_TASK, "approval_departments.dmn": (BPMN / "approval_departments.dmn").read_bytes()}
    deploy.deploy(session, files, actor=SYSTEM)  # the validator refuses overlapping UNIQUE rules
    seen = {}
    for stage in ("land_planning", "land_planning_standard", "construction_works", "construction_permit",
                  "earthwork_permit", "completion_acceptance"):
        for project_type in ("industrial", "service", "infrastructure"):
            for investment in (Decimal("0.01"), Decimal("9999.99"), Decimal("10000"), Decimal("10000000")):
                row = instances.start(session, process_key="choose_only", actor=SYSTEM,
                                      data={"stage": stage, "project_type": project_type, "investment": investment})
                assert row.status == "completed"
                departments = data_of(session, row.id)["departments"]
                assert departments, (stage, project_type, investment)
                for d in departments:
                    assert DEPARTMENTS[d["code"]] == d["name"] and isinstance(d["sla_wd"], int) and d["sla_wd"] > 0
                assert len({d["code"] for d in departments}) == len(departments)
                seen[(stage, project_type, investment)] = sum(d["sla_wd"] for d in departments)
    assert seen[("land_planning", "industrial", Decimal("9999.99"))] == 23
    assert seen[("land_planning", "industrial", Decimal("10000"))] == 33  # 1亿元 and above: 应急, 水务 too
    assert seen[("land_planning_standard", "industrial", Decimal("10000"))] == 8  # “标准地”: 备案 and 规划许可 only
    assert seen[("earthwork_permit", "service", Decimal("0.01"))] == 3  # 土石方施工许可


def test_fire_review_and_acceptance_are_housing_and_construction_since_the_2019_reform() -> None:
    # 消防设计审查验收 moved from the fire brigade to 住建 (2019): no stage asks the fire brigade (xfj)
    text = (BPMN / "approval_departments.dmn").read_text(encoding="utf-8")
    assert '"xfj"' not in text and "消防救援" not in text
    assert "消防设计审查" in text and "消防验收" in text


BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
DI_NS = {"bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI", "dc": "http://www.omg.org/spec/DD/20100524/DC",
         "di": "http://www.omg.org/spec/DD/20100524/DI"}
DRAWN = {"startEvent", "endEvent", "boundaryEvent", "userTask", "scriptTask", "businessRuleTask", "serviceTask",
         "exclusiveGateway", "parallelGateway", "lane", "participant"}


def test_the_diagram_is_complete_for_the_modeller() -> None:
    tree = etree.parse(str(BPMN / "parallel_approval.bpmn"))
    shapes = {s.get("bpmnElement"): [float(s.find("dc:Bounds", DI_NS).get(k)) for k in ("x", "y", "width", "height")]
              for s in tree.iterfind(".//bpmndi:BPMNShape", DI_NS)}
    edges = {e.get("bpmnElement"): [(float(w.get("x")), float(w.get("y"))) for w in e.iterfind("di:waypoint", DI_NS)]
             for e in tree.iterfind(".//bpmndi:BPMNEdge", DI_NS)}
    problems = []
    for el in tree.iter(f"{{{BPMN_NS}}}*"):
        local, el_id = etree.QName(el).localname, el.get("id")
        if local == "sequenceFlow":
            points = edges.get(el_id, [])
            for end, ref in ((points[0], el.get("sourceRef")), (points[-1], el.get("targetRef"))) if points else ():
                x, y, w, h = shapes[ref]
                if not (x - 1 <= end[0] <= x + w + 1 and y - 1 <= end[1] <= y + h + 1):
                    problems.append(f"{el_id}: waypoint {end} is not on {ref}")
            if len(points) < 2:
                problems.append(f"{el_id}: no edge")
        elif local in DRAWN and el_id not in shapes:
            problems.append(f"{el_id}: no shape")
    assert problems == []


def test_hole6_a_person_starting_an_approval_cannot_name_another_applicant(session: Session,
                                                                           people: dict[str, Actor],
                                                                           deployed: None) -> None:
    """`applicant` is reserved start data (reservedStartData): another process names it, a person never does."""
    clock.freeze(at("2025-09-25"))
    with pytest.raises(FormInvalid) as refused:
        instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"],
                        data={"applicant": "zhaoshang_liu"}, from_client=True)
    assert [e.field for e in refused.value.errors] == ["applicant"]
    session.rollback()
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"], from_client=True)
    session.commit()
    assert assignee(session, only_task(session, row.id, "submit_application")) == "qiye_zhang"
