"""issue_ledger.bpmn (问题台账销号) end to end through the engine services, on SQLite and PostgreSQL.

Every path: happy (two progress reports), returned as not ours and re-dispatched, 核验 fails and
then passes, 申请延期 granted and refused, started by another process with the 0001 contract data.
Each checks the ledger_issue row after every step, restores the instance in a fresh session in the
middle, and verifies the audit trail at the end.
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, deploy, org, runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import Conflict, DeployInvalid, Forbidden, FormInvalid, InvalidInput, NotYourTask, TaskNotFound
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import OrgUnit, User
from engine.runtime import instances
from engine.runtime.effects import RunContext
from engine.runtime.models import ProcessInstance
from engine.spiff import serializer
from engine.tasks.models import HumanTask
from plan import ledger
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project, ProjectLibrary
from tests.steps import do, names, only_task, spawner
from web.tasks.instructions import render_text

BPMN_DIR = Path(__file__).resolve().parents[2] / "bpmn"
TITLE = "青岛某智能家电公司扩产项目用电增容迟迟未落实"
REGISTRATION = {"title": TITLE,
                "description": "企业反映新厂房 10kV 增容申请已提交两个月，供电方案仍未批复，影响 10 月投产。",
                "enterprise": "青岛海智电器有限公司", "source": "service_visit", "unit_code": "gxj"}


VISIT = spawner("visit_enterprise", task_id="open_issue", name="走访企业（测试）", result="issue_instance",
                process_key='"issue_ledger"', data="issue", title='issue["title"]')


def ledger_files() -> dict[str, bytes]:
    """Only this process's files: issue_ledger.bpmn and forms/ledger_*.json."""
    return {name: data for name, data in deploy.read_directory(BPMN_DIR).items()
            if name == "issue_ledger.bpmn" or name.startswith("ledger_")}


def end_of_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=clock.SHANGHAI).astimezone(UTC)


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    """Roles named as the lanes (0001), two units with their responsible leaders, and their staff."""
    for code, name in [("ledger_officer", "台账管理员"), ("handler", "承办人"), ("leader", "责任领导")]:
        org.add_role(session, code=code, name=name)
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_unit(session, code="zrzyj", name="自然资源局")
    org.add_user(session, username="officer", display_name="台账管理员王敏", role_codes=["ledger_officer"])
    org.add_user(session, username="gx_zhang", display_name="工信局张伟", unit_codes=["gxj"], role_codes=["handler"])
    org.add_user(session, username="gx_li", display_name="工信局李娜", unit_codes=["gxj"], role_codes=["handler"])
    org.add_user(session, username="zr_liu", display_name="自然资源局刘洋", unit_codes=["zrzyj"],
                 role_codes=["handler"])
    sun = org.add_user(session, username="leader_sun", display_name="副市长孙建国", role_codes=["leader"])
    zhou = org.add_user(session, username="leader_zhou", display_name="副市长周立", role_codes=["leader"])
    for code, leader in [("gxj", sun), ("zrzyj", zhou)]:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        assert unit is not None
        unit.responsible_leader_id = leader.id
    session.commit()
    return {u: actor_for(session, u) for u in ("officer", "gx_zhang", "gx_li", "zr_liu", "leader_sun", "leader_zhou")}


@pytest.fixture
def deployed(session: Session, people: dict[str, Actor]) -> None:
    result = deploy.deploy(session, ledger_files(), actor=SYSTEM)  # lane checks on
    assert [(d.key, d.created) for d in result] == [("issue_ledger", True)]
    session.commit()


@pytest.fixture
def by_hand(session: Session, deployed: None, people: dict[str, Actor]) -> int:
    """A ledger officer starts an instance by hand and fills the 登记 form."""
    row = instances.start(session, process_key="issue_ledger", actor=people["officer"], title="问题台账")
    session.commit()
    assert names(session, row.id) == ["register_issue"]
    assert session.scalar(select(LedgerIssue).where(LedgerIssue.instance_id == row.id)) is None
    do(session, only_task(session, row.id, "register_issue"), people["officer"], REGISTRATION)
    issue = issue_of(session, row.id)
    assert re.fullmatch(r"WT-2025-\d{4}", issue.code) and issue.code == f"WT-2025-{issue.id:04d}"
    assert (issue.title, issue.status, issue.source, issue.enterprise) == (
        TITLE, "registered", "service_visit", "青岛海智电器有限公司")
    assert issue.reported_by_id == people["officer"].user_id and issue.due_at is None
    assert unit_code(session, issue) == "gxj"  # the suggested unit until 派单 decides
    return row.id


# -- helpers ------------------------------------------------------------------------------------


def issue_of(session: Session, instance_id: int) -> LedgerIssue:
    issue = session.scalar(select(LedgerIssue).where(LedgerIssue.instance_id == instance_id)
                           .execution_options(populate_existing=True))
    assert issue is not None
    return issue


def unit_code(session: Session, issue: LedgerIssue) -> str | None:
    return session.scalar(select(OrgUnit.code).where(OrgUnit.id == issue.unit_id)) if issue.unit_id else None


def username(session: Session, user_id: int | None) -> str | None:
    return session.scalar(select(User.username).where(User.id == user_id)) if user_id else None


def assert_row(session: Session, instance_id: int, status: str, *, unit: str | None = None,
               handler: str | None = None, due: date | None = None, closed: bool = False) -> LedgerIssue:
    """The ledger_issue row is in step with the instance."""
    issue = issue_of(session, instance_id)
    assert issue.status == status
    assert unit_code(session, issue) == unit
    assert username(session, issue.handler_id) == handler
    assert issue.due_at == (end_of_day(due) if due else None)
    assert (issue.closed_at is not None) == closed
    return issue


def workflow_data(session: Session, instance_id: int) -> dict[str, Any]:
    workflow = runtime.load(session, instance_id).workflow
    last = workflow.last_task
    assert last is not None
    return dict(last.data)


def restore(factory: sessionmaker[Session], session: Session, instance_id: int) -> dict[str, Any]:
    """Save/restore in the middle: a fresh session and spec cache reload the instance intact."""
    runtime._spec_cache.clear()
    session.rollback()  # end our read transaction: SQLite has one writer at a time
    with factory() as other:
        running = runtime.load(other, instance_id)
        stored = other.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id))
        assert serializer.dump_state(running.workflow) == stored
        assert running.workflow.last_task is not None
        data = dict(running.workflow.last_task.data)
        tasks_there = other.scalars(select(HumanTask.bpmn_id).where(HumanTask.instance_id == instance_id,
                                                                    HumanTask.state == "ready")).all()
        ready = [t.task_spec.bpmn_id for t in running.workflow.get_tasks(manual=True) if t.state == TaskState.READY]
        assert sorted(tasks_there) == sorted(ready)
        other.rollback()
    assert data["title"] == TITLE and data["ledger"]["title"] == TITLE
    return data


def dispatch(session: Session, instance_id: int, officer: Actor, unit: str, **deadline: Any) -> None:
    form = {"unit_code": unit, **deadline}
    form.setdefault("deadline_kind", "date" if "due_date" in form else "working_days")
    do(session, only_task(session, instance_id, "dispatch"), officer, form)


def finish(session: Session, instance_id: int, handler: Actor, officer: Actor, reporter: Actor | None = None) -> None:
    """办结 → 反馈 → 回访 (by whoever raised the issue: the officer unless said) → 核验通过 → 销号."""
    do(session, only_task(session, instance_id, "handle"), handler, {"action": "done"})
    do(session, only_task(session, instance_id, "feedback"), handler,
       {"evidence": "已协调供电公司完成方案批复，10kV 线路已送电。", "attachments": ["供电方案批复.pdf"]})
    do(session, only_task(session, instance_id, "revisit"), reporter or officer, {"revisit": "satisfied"})
    assert issue_of(session, instance_id).status == "confirmed"
    result = do(session, only_task(session, instance_id, "verify"), officer, {"verdict": "pass"})
    assert result.status == "completed"
    assert names(session, instance_id) == []
    issue = issue_of(session, instance_id)
    assert issue.status == "closed" and issue.closed_at == clock.now()


def issue_actions(session: Session, issue: LedgerIssue) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"ledger_issue:{issue.id}")
                                .order_by(AuditEvent.seq)))


# -- scenarios ----------------------------------------------------------------------------------

def test_deploys_only_its_own_files_with_lanes_resolved(session: Session, deployed: None) -> None:
    version = deploy.latest_version(session, "issue_ledger")
    assert version is not None and version.name == "问题台账销号"
    assert sorted(f.name for f in version.files) == sorted(ledger_files())
    assert set(ledger_files()) >= {"ledger_register.schema.json", "ledger_verify.uischema.json"}


def test_happy_path_two_progress_reports_then_closed(session: Session, by_hand: int, people: dict[str, Actor],
                                                     factory: sessionmaker[Session], frozen: Any) -> None:
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    dispatch(session, iid, officer, "gxj", working_days=10, dispatch_note="请一周内对接企业")
    # 2025-09-01 (Monday) + 10 working days = Monday 2025-09-15, end of day in Shanghai.
    assert_row(session, iid, "dispatched", unit="gxj", due=date(2025, 9, 15))
    respond = only_task(session, iid, "respond")
    with pytest.raises(TaskNotFound):  # candidates: members of the responsible unit only (others do not see it)
        tasks.claim(session, task_id=respond.id, actor=people["zr_liu"])
    session.rollback()
    do(session, respond, zhang, {"response": "accept"})
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_zhang", due=date(2025, 9, 15))

    handle = only_task(session, iid, "handle")
    assert handle.assignee_id == zhang.user_id  # straight to the user who accepted
    assert handle.due_at == end_of_day(date(2025, 9, 15)) == issue_of(session, iid).due_at
    assert handle.warn_at is not None and handle.warn_at < handle.due_at

    frozen.advance(timedelta(days=2))
    do(session, handle, zhang, {"action": "progress", "progress": "已约谈供电公司，明确增容方案三天内批复。", "percent": 40})
    assert_row(session, iid, "in_progress", unit="gxj", handler="gx_zhang", due=date(2025, 9, 15))

    data = restore(factory, session, iid)
    assert data["progress_reports"] == [{"text": "已约谈供电公司，明确增容方案三天内批复。", "percent": 40,
                                         "at": "2025-09-03T01:00:00+00:00", "by": "gx_zhang"}]
    assert data["ledger"]["due_date"] == "2025-09-15" and data["ledger"]["unit_name"] == "工业和信息化局"
    assert data["description"] == REGISTRATION["description"] and data["reporter"] == "officer"

    frozen.advance(timedelta(days=3))
    do(session, only_task(session, iid, "handle"), zhang, {"action": "progress", "progress": "方案已批复，线路施工中。"})
    reports = workflow_data(session, iid)["progress_reports"]
    assert [r["text"] for r in reports] == ["已约谈供电公司，明确增容方案三天内批复。", "方案已批复，线路施工中。"]
    assert reports[1]["percent"] is None  # the form was cleared: no stale 40 %
    assert_row(session, iid, "in_progress", unit="gxj", handler="gx_zhang", due=date(2025, 9, 15))

    do(session, only_task(session, iid, "handle"), zhang, {"action": "done"})
    feedback = only_task(session, iid, "feedback")
    assert feedback.assignee_id == zhang.user_id and feedback.due_at == end_of_day(date(2025, 9, 15))
    do(session, feedback, zhang,
       {"evidence": "线路已送电，企业确认满足投产需要。", "attachments": ["送电确认单.pdf", "现场照片.jpg"]})
    assert_row(session, iid, "feedback", unit="gxj", handler="gx_zhang", due=date(2025, 9, 15))
    revisit = only_task(session, iid, "revisit")  # 回访: the person who raised the issue, here the officer
    assert revisit.assignee_id == officer.user_id
    with pytest.raises(NotYourTask):
        tasks.claim(session, task_id=revisit.id, actor=zhang)
    session.rollback()
    do(session, revisit, officer, {"revisit": "satisfied", "revisit_opinion": "企业确认已送电。"})
    assert_row(session, iid, "confirmed", unit="gxj", handler="gx_zhang", due=date(2025, 9, 15))
    verify = only_task(session, iid, "verify")
    with pytest.raises(NotYourTask):  # 核验 is the ledger officer's
        tasks.claim(session, task_id=verify.id, actor=zhang)
    session.rollback()
    result = do(session, verify, officer, {"verdict": "pass", "verify_opinion": "经电话回访企业，问题已解决。"})
    assert result.status == "completed"
    issue = assert_row(session, iid, "closed", unit="gxj", handler="gx_zhang", due=date(2025, 9, 15), closed=True)
    assert issue.closed_at == clock.now()
    final = workflow_data(session, iid)
    assert final["feedbacks"][0]["attachments"] == ["送电确认单.pdf", "现场照片.jpg"]
    assert [v["verdict"] for v in final["verifications"]] == ["pass"]
    assert issue_actions(session, issue) == ["ledger.register", "ledger.dispatch", "ledger.accepted", "ledger.progress",
                                             "ledger.progress", "ledger.feedback", "ledger.confirmed", "ledger.closed"]
    assert [(r["result"], r["opinion"], r["by_name"]) for r in final["revisits"]] == [
        ("satisfied", "企业确认已送电。", "台账管理员王敏")]
    assert ledger.warning_level(issue, clock.now()) == "closed"
    assert audit.verify(session).ok


def test_returned_as_not_ours_then_redispatched(session: Session, by_hand: int, people: dict[str, Actor],
                                                 factory: sessionmaker[Session]) -> None:
    iid, officer = by_hand, people["officer"]
    dispatch(session, iid, officer, "zrzyj", due_date="2025-09-20")
    assert_row(session, iid, "dispatched", unit="zrzyj", due=date(2025, 9, 20))
    with pytest.raises(FormInvalid) as err:  # a return needs a reason: refused on the server, nothing changes
        tasks.complete(session, task_id=only_task(session, iid, "respond").id, actor=people["zr_liu"],
                       data={"response": "return"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["return_reason"]
    do(session, only_task(session, iid, "respond"), people["zr_liu"],
       {"response": "return", "return_reason": "用电增容属工信局牵头协调事项，非本局职责。"})
    assert_row(session, iid, "returned", unit="zrzyj", due=date(2025, 9, 20))
    assert names(session, iid) == ["dispatch"]

    data = restore(factory, session, iid)
    assert data["returns"] == [{"unit_code": "zrzyj", "unit_name": "自然资源局",
                                "reason": "用电增容属工信局牵头协调事项，非本局职责。",
                                "at": "2025-09-01T01:00:00+00:00", "by": "zr_liu"}]

    dispatch(session, iid, officer, "gxj", due_date="2025-09-26")
    assert_row(session, iid, "dispatched", unit="gxj", due=date(2025, 9, 26))
    respond = only_task(session, iid, "respond")
    with pytest.raises(NotYourTask):  # the unit that returned it is no longer a candidate
        tasks.claim(session, task_id=respond.id, actor=people["zr_liu"])
    session.rollback()
    do(session, respond, people["gx_li"], {"response": "accept"})
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_li", due=date(2025, 9, 26))
    finish(session, iid, people["gx_li"], officer)
    issue = issue_of(session, iid)
    assert issue_actions(session, issue) == ["ledger.register", "ledger.dispatch", "ledger.returned", "ledger.dispatch",
                                             "ledger.accepted", "ledger.feedback", "ledger.confirmed", "ledger.closed"]
    assert audit.verify(session).ok


def test_verification_fails_back_to_handling_then_passes(session: Session, by_hand: int, people: dict[str, Actor],
                                                         factory: sessionmaker[Session]) -> None:
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-19")
    do(session, only_task(session, iid, "respond"), zhang, {"response": "accept"})
    do(session, only_task(session, iid, "handle"), zhang, {"action": "done"})
    do(session, only_task(session, iid, "feedback"), zhang, {"evidence": "已电话沟通供电公司。"})
    assert_row(session, iid, "feedback", unit="gxj", handler="gx_zhang", due=date(2025, 9, 19))
    do(session, only_task(session, iid, "revisit"), officer, {"revisit": "satisfied"})
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=only_task(session, iid, "verify").id, actor=officer, data={"verdict": "fail"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["verify_opinion"]
    do(session, only_task(session, iid, "verify"), officer,
       {"verdict": "fail", "verify_opinion": "企业反映尚未送电，请继续跟进。"})
    assert_row(session, iid, "in_progress", unit="gxj", handler="gx_zhang", due=date(2025, 9, 19))
    handle = only_task(session, iid, "handle")
    assert handle.assignee_id == zhang.user_id and handle.due_at == end_of_day(date(2025, 9, 19))

    data = restore(factory, session, iid)
    assert data["verifications"] == [{"verdict": "fail", "opinion": "企业反映尚未送电，请继续跟进。",
                                      "at": "2025-09-01T01:00:00+00:00", "by": "officer"}]

    do(session, handle, zhang, {"action": "progress", "progress": "已督促供电公司排期送电。", "percent": 80})
    finish(session, iid, zhang, officer)
    final = workflow_data(session, iid)
    assert [(v["verdict"], v["opinion"]) for v in final["verifications"]] == [
        ("fail", "企业反映尚未送电，请继续跟进。"), ("pass", "")]  # the old opinion does not stick
    assert len(final["feedbacks"]) == 2
    assert issue_actions(session, issue_of(session, iid)) == [
        "ledger.register", "ledger.dispatch", "ledger.accepted", "ledger.feedback", "ledger.confirmed", "ledger.reopened",
        "ledger.progress", "ledger.feedback", "ledger.confirmed", "ledger.closed"]
    assert audit.verify(session).ok


def test_the_raiser_finds_it_unsolved_at_the_revisit_and_it_goes_back(session: Session, deployed: None,
                                                                       people: dict[str, Actor]) -> None:
    """回访 is the raiser's (zr_liu found it on a visit): not solved → 办理 with the reason; no 销号 before 回访."""
    contract = {"title": TITLE, "description": "走访中企业反映用电增容问题。", "enterprise": "青岛海智电器有限公司",
                "unit_code": "gxj", "source": "service_visit", "due_date": "2025-09-30", "reporter": "zr_liu"}
    iid = instances.start(session, process_key="issue_ledger", actor=people["officer"], data=contract).id
    session.commit()
    officer, zhang, liu = people["officer"], people["gx_zhang"], people["zr_liu"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-30")
    do(session, only_task(session, iid, "respond"), zhang, {"response": "accept"})
    do(session, only_task(session, iid, "handle"), zhang, {"action": "done"})
    do(session, only_task(session, iid, "feedback"), zhang, {"evidence": "已电话沟通供电公司。"})
    own = RunContext(session, runtime.load(session, iid), officer)
    with pytest.raises(Conflict):  # 核验销号 before the raiser's 回访
        ledger.verify(own, issue_id=issue_of(session, iid).id, verdict="pass")
    session.rollback()
    revisit = only_task(session, iid, "revisit")
    assert revisit.assignee_id == liu.user_id
    for outsider in (officer, zhang):  # neither the officer nor the handler may confirm their own fix
        with pytest.raises(NotYourTask):
            tasks.claim(session, task_id=revisit.id, actor=outsider)
        session.rollback()
    tasks.claim(session, task_id=revisit.id, actor=liu)
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=revisit.id, actor=liu, data={"revisit": "unsatisfied"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["revisit_opinion"]
    do(session, only_task(session, iid, "revisit"), liu, {"revisit": "unsatisfied", "revisit_opinion": "企业仍未送电。"})
    assert_row(session, iid, "in_progress", unit="gxj", handler="gx_zhang", due=date(2025, 9, 30))
    handle = only_task(session, iid, "handle")
    assert handle.assignee_id == zhang.user_id
    told = render_text(handle.instructions, workflow_data(session, iid))
    assert "回访未通过（自然资源局刘洋）：企业仍未送电。" in told
    finish(session, iid, zhang, officer, reporter=liu)
    assert issue_actions(session, issue_of(session, iid)) == [
        "ledger.register", "ledger.dispatch", "ledger.accepted", "ledger.feedback", "ledger.revisit_failed",
        "ledger.feedback", "ledger.confirmed", "ledger.closed"]
    assert audit.verify(session).ok


@pytest.mark.parametrize("granted", [True, False], ids=["granted", "refused"])
def test_extension_request_goes_to_the_responsible_leader(session: Session, by_hand: int, people: dict[str, Actor],
                                                          factory: sessionmaker[Session], granted: bool) -> None:
    iid, officer, zhang = by_hand, people["officer"], people["gx_zhang"]
    dispatch(session, iid, officer, "gxj", due_date="2025-09-12")
    do(session, only_task(session, iid, "respond"), zhang, {"response": "accept"})
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=only_task(session, iid, "handle").id, actor=zhang,
                       data={"action": "extension", "requested_due_date": "9月30日"})
    session.rollback()
    assert {e.field for e in err.value.errors} == {"requested_due_date", "extension_reason"}
    do(session, only_task(session, iid, "handle"), zhang,
       {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "供电公司线路改造需跨国庆假期。"})
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_zhang", due=date(2025, 9, 12))

    decide = only_task(session, iid, "decide_extension")
    assert decide.lane == "责任领导"
    with pytest.raises(TaskNotFound):  # the unit's responsible leader, not any leader
        tasks.claim(session, task_id=decide.id, actor=people["leader_zhou"])
    session.rollback()

    data = restore(factory, session, iid)
    assert (data["requested_due_date"], data["extension_reason"]) == ("2025-09-30", "供电公司线路改造需跨国庆假期。")
    assert data["ledger"]["leader"] == "leader_sun"

    if granted:
        do(session, decide, people["leader_sun"],
           {"extension_decision": "grant", "new_due_date": "2025-09-26",
            "leader_opinion": "同意延期至9月26日，务必节前办结。"})
        due = date(2025, 9, 26)
    else:
        with pytest.raises(FormInvalid):  # a grant needs the new date
            tasks.complete(session, task_id=decide.id, actor=people["leader_sun"],
                           data={"extension_decision": "grant", "leader_opinion": "同意"})
        session.rollback()
        do(session, decide, people["leader_sun"],
           {"extension_decision": "refuse", "leader_opinion": "不同意延期，请加快办理。"})
        due = date(2025, 9, 12)
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_zhang", due=due)
    handle = only_task(session, iid, "handle")  # back to 办理 either way, with the deadline in force
    assert handle.due_at == end_of_day(due) and handle.assignee_id == zhang.user_id
    entry = workflow_data(session, iid)["extensions"][0]
    assert entry["decision"] == ("grant" if granted else "refuse") and entry["due_date"] == due.isoformat()
    assert entry["requested_due_date"] == "2025-09-30" and entry["by"] == "leader_sun"

    finish(session, iid, zhang, officer)
    issue = issue_of(session, iid)
    assert issue.due_at == end_of_day(due)
    action = "ledger.extension.grant" if granted else "ledger.extension.refuse"
    assert action in issue_actions(session, issue)
    assert audit.verify(session).ok


def test_started_by_another_process_with_the_contract_data(session: Session, deployed: None,
                                                            people: dict[str, Actor],
                                                            factory: sessionmaker[Session]) -> None:
    deploy.deploy(session, {"visit.bpmn": VISIT}, actor=SYSTEM)
    library = ProjectLibrary(code="investment", name="招商引资项目")
    session.add(library)
    session.flush()
    project = Project(code="XM-2025-0042", name="海智电器新厂房", library_id=library.id, category="key",
                      investment=Decimal("1000"), stage="signed")  # 登记 refuses a code not in the 项目库
    session.add(project)
    contract = {"title": TITLE, "description": "走访中企业反映用电增容问题。", "enterprise": "青岛海智电器有限公司",
                "unit_code": "gxj", "project_code": "XM-2025-0042", "source": "service_visit",
                "due_date": "2025-09-30", "reporter": "gx_li"}
    parent = instances.start(session, process_key="visit_enterprise", actor=people["gx_li"], data={"issue": contract})
    session.commit()
    assert parent.status == "completed"
    child_id = workflow_data(session, parent.id)["issue_instance"]["instance_id"]
    assert names(session, child_id) == ["dispatch"]  # 登记 is done: registered automatically
    issue = assert_row(session, child_id, "registered", unit="gxj", due=date(2025, 9, 30))
    assert issue.title == TITLE and issue.source == "service_visit" and issue.project_id == project.id
    assert issue.reported_by_id == people["gx_li"].user_id
    assert session.get(ProcessInstance, child_id).title == TITLE  # type: ignore[union-attr]

    data = restore(factory, session, child_id)
    assert data["parent_instance_id"] == parent.id and data["registered"] is True
    assert data["due_date"] == "2025-09-30" and data["ledger"]["code"] == issue.code

    dispatch(session, child_id, people["officer"], "gxj", due_date=data["due_date"])
    assert_row(session, child_id, "dispatched", unit="gxj", due=date(2025, 9, 30))
    # the raiser confirms the fix: someone else of 工信局 handles it (职责分离: never his own)
    do(session, only_task(session, child_id, "respond"), people["gx_zhang"], {"response": "accept"})
    finish(session, child_id, people["gx_zhang"], people["officer"], reporter=people["gx_li"])
    assert audit.verify(session).ok


def test_codes_are_unique_per_issue(session: Session, deployed: None, people: dict[str, Actor]) -> None:
    deploy.deploy(session, {"visit.bpmn": VISIT}, actor=SYSTEM)
    for n in range(3):
        instances.start(session, process_key="visit_enterprise", actor=people["gx_li"],
                        data={"issue": {"title": f"问题{n}", "unit_code": "gxj", "source": "project", "reporter": "gx_li"}})
    session.commit()
    issues = session.scalars(select(LedgerIssue).order_by(LedgerIssue.id)).all()
    assert [i.code for i in issues] == [f"WT-2025-{i.id:04d}" for i in issues] and len({i.code for i in issues}) == 3
    assert [i.title for i in issues] == ["问题0", "问题1", "问题2"] and all(i.description == "" for i in issues)


def test_forms_are_validated_on_the_server(session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    task = only_task(session, by_hand, "dispatch")
    before = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == by_hand))
    bad: list[tuple[dict[str, Any], set[str]]] = [
        ({"unit_code": "gxj", "deadline_kind": "working_days"}, {"working_days"}),
        ({"unit_code": "gxj", "deadline_kind": "date", "due_date": "下周五"}, {"due_date"}),
        ({"unit_code": "nowhere", "deadline_kind": "working_days", "working_days": 0}, {"unit_code", "working_days"}),
        ({"unit_code": "gxj", "deadline_kind": "date", "due_date": "2025-09-20", "extra": 1}, {"(form)"}),
    ]
    for form, fields in bad:
        with pytest.raises(FormInvalid) as err:
            tasks.complete(session, task_id=task.id, actor=people["officer"], data=form)
        session.rollback()
        assert {e.field for e in err.value.errors} == fields, form
    assert session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == by_hand)) == before
    assert_row(session, by_hand, "registered", unit="gxj")


def test_services_refuse_other_instances_issues_and_wrong_steps(session: Session, by_hand: int,
                                                               people: dict[str, Actor]) -> None:
    other = instances.start(session, process_key="issue_ledger", actor=people["officer"])
    issue = issue_of(session, by_hand)
    foreign = RunContext(session, runtime.load(session, other.id), people["officer"])
    with pytest.raises(Forbidden):
        ledger.dispatch(foreign, issue_id=issue.id, unit_code="gxj", deadline_kind="working_days", working_days=3)
    own = RunContext(session, runtime.load(session, by_hand), people["officer"])
    with pytest.raises(Conflict):  # 核验 before 派单/反馈
        ledger.verify(own, issue_id=issue.id, verdict="pass")
    with pytest.raises(InvalidInput, match="超出范围") as err:  # a version deployed before its form checked the year
        ledger.dispatch(own, issue_id=issue.id, unit_code="gxj", deadline_kind="date", due_date="9999-12-31")
    assert err.value.details["field"] == "due_date"
    session.rollback()
    assert_row(session, by_hand, "registered", unit="gxj")


def test_due_property_expressions_are_checked_at_deploy(session: Session, people: dict[str, Actor]) -> None:
    files = ledger_files()
    files["issue_ledger.bpmn"] = files["issue_ledger.bpmn"].replace(
        b'name="due" value="ledger[&quot;due_at&quot;]"', b'name="due" value="__import__(&quot;os&quot;)"', 1)
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM)
    assert [(p.element_id, "refused" in p.message) for p in err.value.problems] == [("handle", True)]


def test_reports_count_per_unit_with_warning_levels(session: Session, by_hand: int, people: dict[str, Actor],
                                                    frozen: Any) -> None:
    officer, zhang = people["officer"], people["gx_zhang"]
    dispatch(session, by_hand, officer, "gxj", due_date="2025-09-03")
    second = instances.start(session, process_key="issue_ledger", actor=officer)
    session.commit()
    do(session, only_task(session, second.id, "register_issue"), officer,
       {**REGISTRATION, "title": "企业用地手续办理缓慢", "unit_code": "zrzyj"})
    dispatch(session, second.id, officer, "zrzyj", due_date="2025-09-30")
    first, other = issue_of(session, by_hand), issue_of(session, second.id)
    now = clock.now()
    assert ledger.warning_level(first, now) == "yellow" and ledger.warning_level(other, now) == "green"
    frozen.advance(timedelta(days=3))  # 2025-09-04: the first is overdue
    now = clock.now()
    assert ledger.warning_level(first, now) == "red"
    assert [i.id for i in ledger.list_issues(session, overdue_at=now)] == [first.id]
    assert [i.id for i in ledger.list_issues(session, unit_code="zrzyj")] == [other.id]

    do(session, only_task(session, by_hand, "respond"), zhang, {"response": "accept"})
    finish(session, by_hand, zhang, officer)
    weekly = {line.unit_code: line for line in ledger.weekly_report(session, now=clock.now())}
    assert weekly["gxj"] == ledger.UnitLine("gxj", "工业和信息化局", registered=1, closed=1, closed_late=1, open=0,
                                            yellow=0, red=0)
    assert weekly["zrzyj"] == ledger.UnitLine("zrzyj", "自然资源局", registered=1, closed=0, closed_late=0, open=1,
                                              yellow=0, red=0)
    september = ledger.monthly_report(session, year=2025, month=9, now=clock.now())
    assert sum(line.registered for line in september) == 2
    october = ledger.monthly_report(session, year=2025, month=10, now=clock.now())
    assert [(line.unit_code, line.registered, line.open) for line in october] == [("zrzyj", 0, 1)]
    assert ledger.get_issue(session, code=first.code).id == first.id


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2999-01-01"])
def test_a_deadline_out_of_range_is_refused_on_the_form_and_the_instance_goes_on(
        session: Session, by_hand: int, people: dict[str, Actor], day: str) -> None:
    """A typo'd year (9999, 0001) once passed the form and stopped the instance at 派单 with a bare AssertionError
    (an incident the officer could not clear); it is refused on the form, naming the field, and nothing changes."""
    iid, officer = by_hand, people["officer"]
    dispatch_task = only_task(session, iid, "dispatch")
    tasks.claim(session, task_id=dispatch_task.id, actor=officer)
    session.commit()
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=dispatch_task.id, actor=officer,
                       data={"unit_code": "gxj", "deadline_kind": "date", "due_date": day})
    session.rollback()
    assert [(e.field, "2000" in e.message) for e in err.value.errors] == [("due_date", True)]
    assert_row(session, iid, "registered", unit="gxj")
    do(session, dispatch_task, officer, {"unit_code": "gxj", "deadline_kind": "date", "due_date": "2025-09-12"})
    do(session, only_task(session, iid, "respond"), people["gx_zhang"], {"response": "accept"})
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=only_task(session, iid, "handle").id, actor=people["gx_zhang"],
                       data={"action": "extension", "requested_due_date": day, "extension_reason": "跨年"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["requested_due_date"]
    do(session, only_task(session, iid, "handle"), people["gx_zhang"],
       {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "跨国庆假期"})
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=only_task(session, iid, "decide_extension").id, actor=people["leader_sun"],
                       data={"extension_decision": "grant", "new_due_date": day, "leader_opinion": "同意"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["new_due_date"]
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_zhang", due=date(2025, 9, 12))
