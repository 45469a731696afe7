"""investment_lead.bpmn (招商线索闭环: 派单—响应—对接—反馈) end to end through the services, on SQLite and PostgreSQL.

Paths: a lead the platform pushes becomes a project 线索 after two rounds of 对接; a lead registered by hand is
returned by the first unit and re-dispatched, then dropped with the reason. Each checks the investment_lead row,
who may take each step, and the audit trail; hostile cases: a deadline in the past, an unknown industry, another
unit's member, a service called for another instance's lead, a retried 反馈.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, clock, deploy, org, runtime, tasks
from engine.audit.models import AuditEvent
from engine.deadlines import sla, sources
from engine.errors import Conflict, Forbidden, FormInvalid, InvalidInput, TaskNotFound
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import OrgUnit
from engine.runtime import instances
from engine.runtime.effects import RunContext
from plan import leads
from plan.indicators.models import Industry
from plan.leads.models import InvestmentLead
from plan.projects.models import Project, ProjectLibrary, ProjectStage
from tests.steps import do, names, only_task

BPMN_DIR = Path(__file__).resolve().parents[2] / "bpmn"
PUSHED = {"title": "某新能源电池企业拟在胶州布局储能电池生产基地", "enterprise": "青岛某新能源科技有限公司",
          "industry": "new_energy", "investment": 150000, "source": "platform",
          "description": "监测平台抓取：企业计划投资15亿元建设储能电池生产基地，正在山东半岛选址。", "unit_code": "shz"}


def lead_files() -> dict[str, bytes]:
    return {name: data for name, data in deploy.read_directory(BPMN_DIR).items()
            if name == "investment_lead.bpmn" or name.startswith("lead_")}


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    clock.freeze(clock.as_utc(clock.datetime(2025, 9, 1, 9, tzinfo=clock.SHANGHAI)))
    for code, name in [("investment_officer", "招商专员"), ("handler", "承办人"), ("data_officer", "数据监测")]:
        org.add_role(session, code=code, name=name)
    org.add_unit(session, code="shz", name="上合示范区")
    org.add_unit(session, code="jxj", name="胶西街道")
    org.add_user(session, username="zs_wang", display_name="投促局王磊", role_codes=["investment_officer"])
    org.add_user(session, username="platform", display_name="监测平台", role_codes=["data_officer"])
    org.add_user(session, username="shz_chen", display_name="示范区陈晨", unit_codes=["shz"], role_codes=["handler"])
    org.add_user(session, username="jx_zhao", display_name="胶西街道赵强", unit_codes=["jxj"], role_codes=["handler"])
    session.add(ProjectLibrary(code="investment", name="招商引资项目"))
    session.add(Industry(code="new_energy", name="新能源", category="focus"))
    session.commit()
    assert deploy.deploy(session, lead_files(), actor=SYSTEM)[0].key == "investment_lead"
    session.commit()
    return {u: actor_for(session, u) for u in ("zs_wang", "platform", "shz_chen", "jx_zhao")}


def lead_of(session: Session, instance_id: int) -> InvestmentLead:
    lead = session.scalar(select(InvestmentLead).where(InvestmentLead.instance_id == instance_id)
                          .execution_options(populate_existing=True))
    assert lead is not None
    return lead


def actions(session: Session, lead: InvestmentLead) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"investment_lead:{lead.id}")
                                .order_by(AuditEvent.seq)))


def test_a_pushed_lead_becomes_a_project_lead_after_two_contacts(session: Session, people: dict[str, Actor]) -> None:
    iid = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    session.commit()
    assert names(session, iid) == ["dispatch"]  # registered automatically
    lead = lead_of(session, iid)
    assert lead.code == f"ZS-2025-{lead.id:04d}" and (lead.status, lead.source) == ("registered", "platform")
    assert lead.investment == Decimal("150000.00")
    with pytest.raises(TaskNotFound):  # 派单 is the 招商专员's
        tasks.claim(session, task_id=only_task(session, iid, "dispatch").id, actor=people["shz_chen"])
    session.rollback()
    do(session, only_task(session, iid, "dispatch"), people["zs_wang"],
       {"unit_code": "shz", "deadline_kind": "working_days", "working_days": 10})
    lead = lead_of(session, iid)
    assert lead.status == "dispatched" and lead.due_at is not None
    assert sources.get("lead").deadlines(session, [lead.id])[lead.id].due_at == lead.due_at  # watched and escalated
    respond = only_task(session, iid, "respond")
    with pytest.raises(TaskNotFound):  # only the unit's members (others do not see it)
        tasks.claim(session, task_id=respond.id, actor=people["jx_zhao"])
    session.rollback()
    do(session, respond, people["shz_chen"], {"response": "accept"})
    contact = only_task(session, iid, "contact")
    assert contact.assignee_id == people["shz_chen"].user_id and contact.due_at == lead_of(session, iid).due_at
    with pytest.raises(FormInvalid):
        tasks.complete(session, task_id=contact.id, actor=people["shz_chen"],
                       data={"contact_date": "2025-09-01", "contact_way": "fax", "summary": "x", "next_step": "done"})
    session.rollback()
    do(session, contact, people["shz_chen"], {"contact_date": "2025-09-01", "contact_way": "phone",
                                              "summary": "与企业投资总监电话沟通，约定现场考察。", "next_step": "again"})
    do(session, only_task(session, iid, "contact"), people["shz_chen"],
       {"contact_date": "2025-09-01", "contact_way": "visit", "summary": "企业一行考察示范区储能产业园，意向明确。",
        "next_step": "done"})
    assert lead_of(session, iid).contacts == 2
    with pytest.raises(FormInvalid) as zero:  # a project of 计划投资 0: the project entry form refuses it too
        tasks.complete(session, task_id=only_task(session, iid, "feedback").id, actor=people["shz_chen"],
                       data={"outcome": "project", "project_name": "储能电池生产基地项目", "investment": 0})
    assert [e.field for e in zero.value.errors] == ["investment"]
    session.rollback()
    result = do(session, only_task(session, iid, "feedback"), people["shz_chen"],
                {"outcome": "project", "project_name": "储能电池生产基地项目", "investment": 150000})
    assert result.status == "completed"
    lead = lead_of(session, iid)
    project = session.get(Project, lead.project_id)
    assert project is not None and lead.status == "project" and lead.closed_at == clock.now()
    assert (project.name, project.stage, project.enterprise) == ("储能电池生产基地项目", "lead", "青岛某新能源科技有限公司")
    assert session.scalar(select(ProjectStage.stage).where(ProjectStage.project_id == project.id)) == "lead"
    assert sources.get("lead").deadlines(session, [lead.id]) == {}  # closed: no longer watched
    assert actions(session, lead) == ["lead.register", "lead.dispatch", "lead.accepted", "lead.contact",
                                      "lead.contact", "lead.project"]
    # A retried 反馈 step finds the project made and makes no second one.
    ctx = RunContext(session, runtime.load(session, iid), people["shz_chen"])
    again = leads.feedback(ctx, lead_id=lead.id, outcome="project", project_name="储能电池生产基地项目", investment=1)
    assert again["project_code"] == project.code
    assert session.scalar(select(func.count()).select_from(Project)) == 1
    assert audit.verify(session).ok


def test_returned_redispatched_and_dropped_with_the_reason(session: Session, people: dict[str, Actor]) -> None:
    iid = instances.start(session, process_key="investment_lead", actor=people["zs_wang"]).id
    session.commit()
    register = only_task(session, iid, "register_lead")
    with pytest.raises(FormInvalid) as err:  # the form names the field
        tasks.complete(session, task_id=register.id, actor=people["zs_wang"],
                       data={"title": "x", "enterprise": "y", "source": "rumour"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["source"]
    do(session, only_task(session, iid, "register_lead"), people["zs_wang"],
       {"title": "某食品企业拟新建中央厨房", "enterprise": "青岛某食品有限公司", "source": "visit",
        "investment": 8000, "unit_code": "jxj"})
    do(session, only_task(session, iid, "dispatch"), people["zs_wang"],
       {"unit_code": "jxj", "deadline_kind": "date", "due_date": "2025-09-20"})
    do(session, only_task(session, iid, "respond"), people["jx_zhao"],
       {"response": "return", "return_reason": "企业选址在上合示范区，请改派示范区对接。"})
    lead = lead_of(session, iid)
    assert lead.status == "returned" and lead.handler_id is None
    with pytest.raises(FormInvalid) as err:  # a date that is not one is refused by the form, naming the field
        tasks.complete(session, task_id=only_task(session, iid, "dispatch").id, actor=people["zs_wang"],
                       data={"unit_code": "shz", "deadline_kind": "date", "due_date": "2025-02-30"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["due_date"]
    with pytest.raises(FormInvalid) as err:  # so is a year out of range: on the form, not as an incident at 派单
        tasks.complete(session, task_id=only_task(session, iid, "dispatch").id, actor=people["zs_wang"],
                       data={"unit_code": "shz", "deadline_kind": "date", "due_date": "9999-12-31"})
    session.rollback()
    assert [(e.field, "2000" in e.message) for e in err.value.errors] == [("due_date", True)]
    do(session, only_task(session, iid, "dispatch"), people["zs_wang"],
       {"unit_code": "shz", "deadline_kind": "date", "due_date": "2025-09-20"})
    do(session, only_task(session, iid, "respond"), people["shz_chen"], {"response": "accept"})
    do(session, only_task(session, iid, "contact"), people["shz_chen"],
       {"contact_date": "2025-09-01", "contact_way": "meeting", "summary": "企业已在外地签约。", "next_step": "done"})
    with pytest.raises(FormInvalid) as err:
        tasks.complete(session, task_id=only_task(session, iid, "feedback").id, actor=people["shz_chen"],
                       data={"outcome": "dropped"})
    session.rollback()
    assert [e.field for e in err.value.errors] == ["drop_reason"]
    do(session, only_task(session, iid, "feedback"), people["shz_chen"],
       {"outcome": "dropped", "drop_reason": "企业已与外地签约，暂无在胶投资意向。"})
    lead = lead_of(session, iid)
    assert (lead.status, lead.project_id, lead.outcome_note) == ("dropped", None, "企业已与外地签约，暂无在胶投资意向。")
    assert actions(session, lead) == ["lead.register", "lead.dispatch", "lead.returned", "lead.dispatch",
                                      "lead.accepted", "lead.contact", "lead.dropped"]
    assert [x.code for x in leads.list_leads(session, status="dropped")] == [lead.code]
    assert audit.verify(session).ok


def test_services_refuse_bad_input_and_other_instances_leads(session: Session, people: dict[str, Actor]) -> None:
    one = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    other = instances.start(session, process_key="investment_lead", actor=people["platform"],
                            data={**PUSHED, "title": "另一条线索"}).id
    session.commit()
    lead = lead_of(session, one)
    foreign = RunContext(session, runtime.load(session, other), people["zs_wang"])
    with pytest.raises(Forbidden):
        leads.dispatch(foreign, lead_id=lead.id, unit_code="shz", deadline_kind="working_days", working_days=3)
    own = RunContext(session, runtime.load(session, one), people["zs_wang"])
    with pytest.raises(Conflict):  # 反馈 before 派单 and 对接
        leads.feedback(own, lead_id=lead.id, outcome="dropped", drop_reason="x")
    with pytest.raises(InvalidInput) as err:
        leads.dispatch(own, lead_id=lead.id, unit_code="shz", deadline_kind="working_days", working_days=10**6)
    assert err.value.details["field"] == "working_days"
    with pytest.raises(InvalidInput) as err:
        leads.register(own, title="x", industry="no_such_industry")
    assert err.value.details["field"] == "industry"
    for amount in ("999999999999.995", "1e12", "-0.01", "NaN"):  # the first rounds past NUMERIC(14, 2)
        with pytest.raises(InvalidInput) as err:
            leads.register(own, title="x", investment=amount)
        assert err.value.details["field"] == "investment", amount
    session.rollback()
    bad = instances.start(session, process_key="investment_lead", actor=people["platform"],
                          data={**PUSHED, "industry": "no_such_industry"})
    session.commit()
    assert bad.status == "incident"  # a pushed lead with an unknown industry is held, named, for an administrator
    assert lead_of(session, one).status == "registered"
    assert session.scalar(select(OrgUnit.code).where(OrgUnit.id == lead_of(session, one).unit_id)) == "shz"
    assert date(2025, 9, 1) == clock.now().astimezone(clock.SHANGHAI).date()


def test_supervision_moves_the_leads_deadline_and_handler_with_its_open_step(
        session: Session, people: dict[str, Actor]) -> None:
    """督办 of a 招商线索: a new deadline moves the lead's 反馈 date and the 对接 step that carries it; 改派 gives the
    lead and its open step to the new handler, whose next 对接 round is theirs too."""
    from plan.supervision import actions as supervision
    from plan.supervision.area import target_of
    admin = org.add_user(session, username="admin", display_name="管理员", is_admin=True)
    org.add_user(session, username="shz_liu", display_name="示范区刘洋", unit_codes=["shz"], role_codes=["handler"])
    session.commit()
    boss, liu = actor_for(session, admin.username), actor_for(session, "shz_liu")
    iid = instances.start(session, process_key="investment_lead", actor=people["platform"], data=PUSHED).id
    session.commit()
    do(session, only_task(session, iid, "dispatch"), people["zs_wang"],
       {"unit_code": "shz", "deadline_kind": "date", "due_date": "2025-09-10"})
    do(session, only_task(session, iid, "respond"), people["shz_chen"], {"response": "accept"})
    lead = lead_of(session, iid)
    seen = supervision.deadline_version(target_of(session, "lead", lead.id))
    supervision.urge(session, actor=boss, object_type="lead", object_id=lead.id, due_date=date(2025, 9, 30), seen=seen)
    session.commit()
    lead = lead_of(session, iid)
    assert only_task(session, iid, "contact").due_at == lead.due_at == sla.deadline_of(date(2025, 9, 30))
    found = supervision.reassignable(session, actor=boss, object_type="lead", object_id=lead.id)
    assert found.task_id == only_task(session, iid, "contact").id
    supervision.reassign(session, actor=boss, object_type="lead", object_id=lead.id, to_username="shz_liu",
                         seen=found.seen)
    session.commit()
    assert lead_of(session, iid).handler_id == liu.user_id
    assert only_task(session, iid, "contact").assignee_id == liu.user_id
    do(session, only_task(session, iid, "contact"), liu, {"contact_date": "2025-09-01", "contact_way": "phone",
                                                          "summary": "电话沟通。", "next_step": "again"})
    assert only_task(session, iid, "contact").assignee_id == liu.user_id  # the next round reads the lead again
    assert actions(session, lead)[-3:] == ["supervision.urge", "supervision.reassign", "lead.contact"]
    assert audit.verify(session).ok
