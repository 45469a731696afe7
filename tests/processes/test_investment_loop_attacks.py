"""七步工作法 ①–⑥ attacked as an office would: a period started by hand twice (the start page, the API, the CLI),
several at once, not yet begun, or the plan's first; ③ a gap the plan_item row cannot hold, a title of spaces; ⑤ visits
with more problems than a run may start, or a problem the ledger refuses; ⑥ a lead the project pages refuse.

The period's instance is one per month (`plan.investment.start_period`, business key investment_loop:YYYY-MM). The
start page, the API and the CLI start a process through `instances.start`, which knew nothing of periods: a data
officer starting 2025-08 by hand, after the beat job or a colleague had, got a second instance of the month — no
business key, no link to July — whose ③ wrote a second set of plan items and ④ asked every leader to claim them again.
"""
from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, tasks
from engine.errors import FormInvalid
from engine.org.actors import Actor
from engine.runtime import instances
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.tasks.models import HumanTask
from plan import investment as plan
from plan.indicators.models import PlanItem
from plan.investment import plan_items
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project, ProjectLibrary
from tests.processes import test_investment_loop as loop
from tests.processes.test_investment_loop import PERIOD, children, start, task_data, to_fork
from tests.steps import do, names, only_task

people, figures, deployed = loop.people, loop.figures, loop.deployed  # the loop's fixtures, used here too


def periods(session: Session) -> list[tuple[str | None, str]]:
    return [(key, title) for key, title in session.execute(
        select(ProcessInstance.business_key, ProcessInstance.title).join(ProcessDefinition)
        .where(ProcessDefinition.key == plan.PROCESS_KEY).order_by(ProcessInstance.id))]


def by_hand(session: Session, actor: Actor, period: str = PERIOD, **extra: Any) -> ProcessInstance:
    """Start the period as the start page, the API and the CLI do: client data, checked against the start form."""
    return instances.start(session, process_key=plan.PROCESS_KEY, actor=actor, data={"period": period},
                           from_client=True, **extra)


def test_a_period_started_by_hand_is_the_periods_one_instance(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    july = start(session, period="2025-07")
    row = by_hand(session, people["tongji"], business_key="my-own-key", title="我的标题")
    session.commit()
    assert (row.business_key, row.title) == ("investment_loop:2025-08", "七步工作法 2025-08")
    assert loop.start_data(session, row.id) == {"period": PERIOD, "previous_instance_id": july, "initiator": "tongji"}
    # Once the month has its instance, by hand (or by the beat job's start_period) there is no second one.
    with pytest.raises(FormInvalid) as refused:
        by_hand(session, people["tongji"])
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["period"]
    assert f"实例 {row.id}" in refused.value.errors[0].message
    assert plan.start_period(session, PERIOD, people["tongji"]) == plan.PeriodStart(row.id, PERIOD, created=False)
    assert periods(session) == [("investment_loop:2025-07", "七步工作法 2025-07"),
                                ("investment_loop:2025-08", "七步工作法 2025-08")]
    assert audit.verify(session).ok


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_data_officers_starting_the_same_period_at_once_make_one_instance(
        factory: sessionmaker[Session], session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    session.close()
    barrier = threading.Barrier(2)
    outcome: list[str] = []

    def officer() -> None:
        with factory() as s:
            barrier.wait()
            try:
                by_hand(s, people["tongji"])
                s.commit()
                outcome.append("started")
            except FormInvalid as exc:
                s.rollback()
                outcome.append(exc.errors[0].field)

    threads = [threading.Thread(target=officer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcome) == ["period", "started"]
    with factory() as s:
        assert s.scalar(select(func.count(ProcessInstance.id)).join(ProcessDefinition)
                        .where(ProcessDefinition.key == plan.PROCESS_KEY)) == 1


# -- ⑤ visits: every problem found goes to the ledger, or the form comes back and nothing is started -----------------

def visits_task(session: Session, people: dict[str, Actor]) -> tuple[int, HumanTask]:
    iid = start(session)
    to_fork(session, people, iid, [])
    return iid, only_task(session, iid, "record_visits")


def a_visit(n: int, problems: list[dict[str, Any]]) -> dict[str, Any]:
    return {"enterprise": f"胶州企业{n}", "visited_on": "2025-09-01", "summary": "走访", "problems": problems}


def test_more_problems_than_one_run_may_start_send_the_visits_back_and_start_none(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """The form takes 100 visits of 20 problems; one engine run starts at most JZFLOW_MAX_RUN_STARTS (100) instances.
    The 101st problem stopped the period's instance on an incident for good, after 100 issues had started — and
    nothing retries an incident, so ⑤ never ended and the period never completed."""
    iid, task = visits_task(session, people)
    visits = [a_visit(v, [{"title": f"问题{v}-{p}", "unit_code": "gxj"} for p in range(20)]) for v in range(5)]
    visits.append(a_visit(5, [{"title": "第101个问题", "unit_code": "zrzyj"}]))
    do(session, task, people["fuwu"], {"visits": visits})
    assert children(session, "issue_ledger") == []
    back = only_task(session, iid, "record_visits")
    data = task_data(session, back)
    assert data["visit_result"]["ok"] is False and "101" in data["visit_result"]["error"]
    assert "visits" in data["visit_result"]["error"] and len(data["visits"]) == 6  # the form shows them again
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "running"
    do(session, back, people["fuwu"], {"visits": visits[:5]})  # 100 fit
    assert len(children(session, "issue_ledger")) == 100
    assert "record_visits" not in names(session, iid)
    assert audit.verify(session).ok


@pytest.mark.parametrize(("problem", "field"), [
    ({"title": "   ", "unit_code": "gxj"}, "visits[1].problems[0].title"),
    ({"title": "用地", "unit_code": "gxj", "due_date": "9999-12-31"}, "visits[1].problems[0].due_date"),
    ({"title": "用地", "unit_code": "gxj", "due_date": "1999-12-31"}, "visits[1].problems[0].due_date"),
    ({"title": "用地", "unit_code": "gxj", "due_date": "2025-08-31"}, "visits[1].problems[0].due_date"),  # past
    ({"title": "用地", "unit_code": "gxj", "project_code": "NOPE-1"}, "visits[1].problems[0].project_code")])
def test_a_problem_the_ledger_would_refuse_sends_the_visits_back_naming_it(
        session: Session, people: dict[str, Actor], deployed: dict[str, str], problem: dict[str, Any],
        field: str) -> None:
    """issue_ledger's 登记 refuses a blank title and a due date outside 2000–2100: each such problem was started as an
    issue_ledger instance that stopped on an incident at once — the problem never reached the ledger, and the service
    officer was told nothing."""
    iid, task = visits_task(session, people)
    fine = {"title": "用电增容", "unit_code": "gxj"}
    do(session, task, people["fuwu"], {"visits": [a_visit(0, [fine]), a_visit(1, [problem])]})
    assert children(session, "issue_ledger") == []
    data = task_data(session, only_task(session, iid, "record_visits"))
    assert data["visit_result"]["ok"] is False and field in data["visit_result"]["error"]


def test_a_problem_naming_another_units_project_is_refused_like_a_code_not_in_the_library(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """⑤ 关联项目编号: the 服务专员 (胶东街道's) typed another unit's 重点项目 code on a problem, and the issue started
    for it was linked to that project — put on the other unit's project page and into its 问题台账 — while a code not
    in the 项目库 sent the visits back: which codes exist was told. A project out of his reach is now refused in the
    words of one not in the library (as ⑦'s are, plan/projects/acting.py), naming the field, nothing started; a
    project of his own unit links."""
    library = ProjectLibrary(code="key", name="重点项目")  # the 招商引资 library's leads are everyone's (⑦'s rule)
    session.add(library)
    session.flush()
    for code, name, unit in [("XM-2025-0101", "工信局的项目", "gxj"), ("XM-2025-0102", "胶东街道的项目", "jdj")]:
        session.add(Project(code=code, name=name, library_id=library.id, category="key", investment=Decimal("1000"),
                            stage="signed", responsible_unit_id=loop.unit_id(session, unit)))
    session.commit()
    iid, _task = visits_task(session, people)
    said = {}
    for code in ("XM-2025-0101", "NOPE-1"):
        problem = {"title": "用电增容", "unit_code": "gxj", "project_code": code}
        do(session, only_task(session, iid, "record_visits"), people["fuwu"], {"visits": [a_visit(0, [problem])]})
        assert children(session, "issue_ledger") == []
        result = task_data(session, only_task(session, iid, "record_visits"))["visit_result"]
        assert result["ok"] is False and "visits[0].problems[0].project_code" in result["error"]
        said[code] = result["error"].replace(code, "CODE")
    assert said["XM-2025-0101"] == said["NOPE-1"] and "不在您的查看范围内" in said["NOPE-1"]
    ours = {"title": "用电增容", "unit_code": "gxj", "project_code": "XM-2025-0102"}
    do(session, only_task(session, iid, "record_visits"), people["fuwu"], {"visits": [a_visit(0, [ours])]})
    assert len(children(session, "issue_ledger")) == 1
    if deployed["issue_ledger"] == "bpmn":
        linked = session.scalar(select(LedgerIssue.project_id))
        assert linked == session.scalar(select(Project.id).where(Project.code == "XM-2025-0102"))


# -- ⑥ leads: what the project pages refuse, the leads form does not put into the library either ---------------------

@pytest.mark.parametrize(("change", "said"), [
    ({"planned_sign": "9999-12-31"}, "planned_sign"), ({"planned_sign": "0001-01-01"}, "planned_sign"),
    ({"investment": Decimal("0.001")}, "investment"), ({"name": "   "}, "name"), ({"enterprise": " "}, "enterprise")])
def test_a_lead_the_project_pages_would_refuse_sends_the_leads_back(
        session: Session, people: dict[str, Actor], deployed: dict[str, str], change: dict[str, Any],
        said: str) -> None:
    """项目录入 refuses a planned date outside 2000–2100 (the calendar after 9999-12-31 breaks: the project deadline
    watch and the lag reports read it), an amount that rounds to 0.00 万元 and a blank name; ⑥ put such leads into
    the 招商引资项目 library as they came — a lead worth nothing, a nameless one, one due to sign in year 1."""
    iid = start(session)
    to_fork(session, people, iid, [])
    fine = {"name": "智能家电配套", "enterprise": "青岛某电机有限公司", "investment": Decimal("5000"),
            "project_type": "industrial", "category": "key"}
    do(session, only_task(session, iid, "source_leads"), people["zhaoshang"],
       {"leads": [fine, {**fine, "name": "第二条线索", **change}]})
    assert session.scalars(select(Project.code).where(Project.code.like("XM-%"))).all() == []
    data = task_data(session, only_task(session, iid, "source_leads"))
    assert data["leads_result"]["ok"] is False
    assert "第2条线索" in data["leads_result"]["error"] and said in data["leads_result"]["error"]


# -- ③ the planner's items: what the plan_item row cannot hold goes back to the form --------------------------------

@pytest.mark.parametrize("gap", [Decimal("1000000000000"), Decimal("999999999999.99999")])
def test_a_gap_past_what_the_plan_item_holds_is_refused_naming_it(
        session: Session, people: dict[str, Actor], deployed: dict[str, str], gap: Decimal) -> None:
    """The form's maximum (1e12) was one digit past plan_item.gap (NUMERIC(16, 4)): on PostgreSQL the planner's
    submission failed with a numeric overflow inside the engine run — a 500, the step open with no word why."""
    iid = start(session)
    do(session, only_task(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    task = only_task(session, iid, "review_plan")
    tasks.claim(session, task_id=task.id, actor=people["guihua"])
    session.commit()
    with pytest.raises(FormInvalid) as refused:
        tasks.complete(session, task_id=task.id, actor=people["guihua"],
                       data={"items": [{"title": "智能家电强链", "gap": Decimal("80")}, {"title": "补齐缺口", "gap": gap}]})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["items/1/gap"]
    assert session.scalar(select(func.count(PlanItem.id))) == 0 and only_task(session, iid, "review_plan").id == task.id
    # A version deployed with the old form's maximum: the service sends the plan back instead.
    with pytest.raises(plan_items.ItemsInvalid) as sent_back:
        plan_items.create_plan_items(session, period=PERIOD, instance_id=iid, actor=people["guihua"],
                                     items=[{"title": "补齐缺口", "gap": gap}])
    session.rollback()
    assert "items[0].gap" in sent_back.value.message
    assert session.scalar(select(func.count(PlanItem.id))) == 0


def test_a_plan_item_of_spaces_sends_the_plan_back(session: Session, people: dict[str, Actor],
                                                   deployed: dict[str, str]) -> None:
    """minLength 1 passes a title of spaces, which create_plan_items strips to nothing: a plan item with no title, and
    a leader asked to claim 认领计划任务 with no subject."""
    iid = start(session)
    do(session, only_task(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    do(session, only_task(session, iid, "review_plan"), people["guihua"],
       {"items": [{"title": "智能家电强链"}, {"title": " \t "}]})
    assert session.scalar(select(func.count(PlanItem.id))) == 0
    result = task_data(session, only_task(session, iid, "review_plan"))["plan_result"]
    assert result["ok"] is False and "items[1].title" in result["error"]


def test_on_a_version_without_the_way_back_a_bad_problem_does_not_stop_the_period(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """An instance of a version deployed before gw_visits calls loop_raise_issues without send_back: a problem the
    ledger refuses stops only its own issue, as before (an incident at ⑤ would stop the period for good)."""
    from engine.runtime import core as runtime
    from engine.runtime import effects
    from plan.investment import core
    iid = start(session)
    running = runtime.load(session, iid)
    with effects.bound(session, running, people["fuwu"]):
        context = effects.current()
        assert context is not None
        result = core.loop_raise_issues(context, [a_visit(0, [{"title": "  ", "unit_code": "gxj"}])])
    assert result["ok"] is True and len(result["issues"]) == 1
    session.rollback()


def test_a_period_not_yet_begun_is_not_started_by_hand(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """The start form takes any month of 2000–2099: a data officer typing 2052-08 for 2025-08 got an instance of a
    month decades ahead — ① finds no figures, ③ plans against nothing, ④ asks the leaders to claim it — and, one
    instance a period for good, the month keeps it. Today is 1 September 2025: August may start, September (begun)
    too, October not."""
    for period in ("2052-08", "2025-10"):
        with pytest.raises(FormInvalid) as refused:
            by_hand(session, people["tongji"], period)
        session.rollback()
        assert [e.field for e in refused.value.errors] == ["period"]
    assert periods(session) == []
    assert by_hand(session, people["tongji"], "2025-09").business_key == "investment_loop:2025-09"
    session.rollback()


def test_the_first_month_of_the_plans_years_starts_with_no_month_before(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """January 2000 passes the start form and parse_period, but start_period looked up December 1999's instance
    through business_key, which refused it: the month was refused with a message about another one."""
    row = by_hand(session, people["tongji"], "2000-01")
    session.commit()
    assert row.business_key == "investment_loop:2000-01"
    assert "previous_instance_id" not in loop.start_data(session, row.id)
