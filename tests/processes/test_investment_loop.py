"""investment_loop.bpmn (七步工作法) end to end through the engine services, on SQLite and PostgreSQL.

Paths: a full period (① ② on hand-computed figures, recompute, ③ items, ④ claims while ⑤ ⑥ ⑦ are open, ⑤ a
visit raising issues into the ledger, ⑥ leads, ⑦ a call → its own loop_call instance: several bids → 挂帅 (the
lead goes to the appointed unit with its date to sign by) → follow-up → signed → parallel approval, after the
period's instance has completed); the 揭榜 window closing with 0, 1 and several bids; every unit declining; no
call this period; two calls for two chains with their own windows and 挂帅, a second call for one chain
refused; an unclaimed item turning yellow and red and climbing to its unit's head; bad input sent back to
its form; the follow-up cap; start_period idempotent. Each restores the instance in a fresh session in the
middle and verifies the audit trail at the end.

issue_ledger and parallel_approval are deployed from bpmn/ when they deploy; otherwise the stand-ins
of tests/fixtures/stand_ins/ take their place (same process ids), since only their start is tested here.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState
from SpiffWorkflow.workflow import Workflow
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, deploy, org, runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import Conflict, DeployInvalid, InvalidInput, NotYourTask, TaskNotFound
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import OrgUnit
from engine.runtime import instances, timers
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.spiff import guards, serializer
from engine.tasks.models import HumanTask
from plan import investment as plan
from plan import projects
from plan.indicators.models import Indicator, IndicatorValue, Industry, PlanItem
from plan.ledger.models import LedgerIssue
from plan.projects.models import Bid, Project, ProjectLibrary, ProjectStage
from tests.steps import do, names, open_tasks
from tests.steps import only_task as only

ROOT = Path(__file__).resolve().parents[2]
BPMN_DIR = ROOT / "bpmn"
STAND_INS = ROOT / "tests" / "fixtures" / "stand_ins"
PERIOD = "2025-08"
ROLES = [("applicant", "项目单位"), ("window", "窗口受理"), ("reviewer", "审批部门"), ("data_officer", "数据监测"),
         ("planner", "产业规划"), ("leader", "责任领导"), ("city_leader", "市级领导"), ("service_officer", "服务专员"),
         ("investment_officer", "招商专员"), ("ledger_officer", "台账管理员"), ("handler", "承办人"),
         ("process_owner", "流程管理员"), ("auditor", "审计督查")]
UNITS = [("fgj", "发展和改革局"), ("gxj", "工业和信息化局"), ("zrzyj", "自然资源局"), ("zjj", "住房和城乡建设局"),
         ("sthjj", "生态环境分局"), ("spj", "行政审批服务局"), ("yjj", "应急管理局"), ("scjgj", "市场监督管理局"),
         ("xfj", "消防救援大队"), ("tjj", "统计局"), ("tcj", "投资促进局"), ("swj", "商务局"), ("kjj", "科技局"),
         ("czj", "财政局"), ("rsj", "人力资源和社会保障局"), ("jtj", "交通运输局"), ("slj", "水务局"), ("rfb", "人防办"),
         ("shz", "上合示范区"), ("lkq", "临空经济区"), ("jdj", "胶东街道"), ("lgz", "李哥庄镇")]
USERS = [("tongji", "统计局赵敏", ["tjj"], ["data_officer"]), ("guihua", "发改局钱进", ["fgj"], ["planner"]),
         ("lizhenhua", "李振华", [], ["leader", "city_leader"]), ("wangjianguo", "王建国", [], ["leader", "city_leader"]),
         ("fuwu", "胶东街道服务专员孙丽", ["jdj"], ["service_officer"]),
         ("zhaoshang", "投促局招商专员周强", ["tcj"], ["investment_officer"]),
         ("shz_zs", "上合示范区吴磊", ["shz"], ["investment_officer"]),
         ("lkq_zs", "临空经济区郑洁", ["lkq"], ["investment_officer"]),
         ("lgz_zs", "李哥庄镇冯涛", ["lgz"], ["investment_officer"]),
         ("qiye", "青岛海智电器有限公司", [], ["applicant"])]


# -- deployment -----------------------------------------------------------------------------------

def loop_files() -> dict[str, bytes]:
    """This process's files only: investment_loop.bpmn, loop_call.bpmn, loop_*.dmn and forms/loop_*.json."""
    return {name: data for name, data in deploy.read_directory(BPMN_DIR).items()
            if name == "investment_loop.bpmn" or name.startswith("loop_")}


def partner_files(key: str, prefix: str) -> dict[str, bytes]:
    return {name: data for name, data in deploy.read_directory(BPMN_DIR).items()
            if name == f"{key}.bpmn" or name.startswith(prefix)}


def deploy_partner(session: Session, key: str, prefix: str) -> str:
    """Deploy the real process from bpmn/ if it is there and valid, else its stand-in; say which.

    JZFLOW_TEST_STAND_INS=1 forces the stand-ins (to tell this process's failures from a partner's).
    """
    if (BPMN_DIR / f"{key}.bpmn").exists() and os.environ.get("JZFLOW_TEST_STAND_INS") != "1":
        try:
            with session.begin_nested():
                deploy.deploy(session, partner_files(key, prefix), actor=SYSTEM)
            return "bpmn"
        except DeployInvalid:
            pass
    deploy.deploy(session, {f"{key}.bpmn": (STAND_INS / f"{key}.bpmn").read_bytes()}, actor=SYSTEM)
    return "stand-in"


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    """The 0001 roles and units (lanes, DMN departments), leaders 包挂 gxj and fgj, the staff of each lane."""
    for code, name in ROLES:
        org.add_role(session, code=code, name=name)
    for code, name in UNITS:
        org.add_unit(session, code=code, name=name)
    users = {u: org.add_user(session, username=u, display_name=n, unit_codes=units, role_codes=roles)
             for u, n, units, roles in USERS}
    for code, leader in [("gxj", "lizhenhua"), ("fgj", "wangjianguo")]:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        assert unit is not None
        unit.responsible_leader_id = users[leader].id
    session.commit()
    return {u: actor_for(session, u) for u, *_ in USERS}


def unit_id(session: Session, code: str) -> int:
    found = session.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
    assert found is not None
    return found


@pytest.fixture
def figures(session: Session, people: dict[str, Actor]) -> dict[str, int]:
    """Industries, 2025 indicators with targets, their recorded values and signed projects (for ①②)."""
    gxj, fgj, tcj = unit_id(session, "gxj"), unit_id(session, "fgj"), unit_id(session, "tcj")
    smart = Industry(code="smart_appliance", name="智能家电", category="focus", scale_target=Decimal("500"),
                     target_text="力争到2025年底产业规模超500亿元", lead_unit_id=gxj)
    energy = Industry(code="new_energy", name="新能源", category="focus", scale_target=Decimal("150"), lead_unit_id=fgj)
    air = Industry(code="low_altitude", name="低空经济", category="focus", scale_target=Decimal("30"))
    session.add_all([smart, energy, air])
    session.flush()
    line = iter(range(14, 100))

    def indicator(code: str, name: str, kind: str, unit: str, target: str, *, cumulative: bool = False,
                  industry: Industry | None = None, responsible: int | None = None, source: str = "统计局") -> Indicator:
        ind = Indicator(code=code, name=name, group="industry" if industry else "industry_development", kind=kind,
                        unit=unit, target=Decimal(target), comparison=">=", year=2025, cumulative=cumulative,
                        industry_id=industry.id if industry else None, responsible_unit_id=responsible,
                        source=source, plan_text=name, plan_line=next(line))
        session.add(ind)
        return ind

    gdp = indicator("gdp_growth", "地区生产总值增速", "growth_rate", "%", "5.6", responsible=fgj)
    industrial = indicator("industrial_growth", "规上工业增加值增速", "growth_rate", "%", "9", responsible=gxj)
    share = indicator("tertiary_share", "第三产业占比", "share", "%", "53", responsible=fgj)
    signed = indicator("projects_signed", "新签约项目", "count", "个", "200", cumulative=True, responsible=tcj,
                       source="投资促进局")
    indicator("projects_signed_focus", "聚焦突破类新签约项目", "count", "个", "60", cumulative=True, responsible=tcj)
    talents = indicator("new_talents", "新引进各类人才", "amount", "万人", "1.2", cumulative=True)
    smart_scale = indicator("smart_appliance_scale", "智能家电产业规模", "amount", "亿元", "500", cumulative=True,
                            industry=smart)
    energy_scale = indicator("new_energy_scale", "新能源产业规模", "amount", "亿元", "150", cumulative=True,
                             industry=energy)
    indicator("low_altitude_scale", "低空经济产业规模", "amount", "亿元", "30", cumulative=True, industry=air)
    session.flush()
    for ind, period, value in [(gdp, "2024-12", "4.9"), (gdp, "2025-03", "5.1"), (gdp, "2025-06", "5.8"),
                               (industrial, "2025-08", "8.7"), (share, "2025-07", "52.6"), (share, "2025-08", "52.1"),
                               (signed, "2025-08", "150"),  # ignored: counted from the project library
                               (talents, "2025-08", "0.9"), (smart_scale, "2025-08", "280"),
                               (energy_scale, "2025-07", "160"), (smart_scale, "2025-09", "400")]:
        session.add(IndicatorValue(indicator_id=ind.id, period=period, value=Decimal(value), source="统计局"))
    library = ProjectLibrary(code="investment", name="招商引资项目")
    session.add(library)
    session.flush()
    for n, (category, signed_on) in enumerate([("focus", date(2025, 3, 2)), ("key", date(2025, 6, 30)),
                                               ("key", date(2025, 8, 31)), ("key", date(2025, 9, 5)),
                                               ("focus", date(2024, 11, 11))], 1):
        p = Project(code=f"ZS-OLD-{n}", name=f"既有项目{n}", library_id=library.id, category=category,
                    investment=Decimal("1000"), stage="signed")
        session.add(p)
        session.flush()
        session.add(ProjectStage(project_id=p.id, stage="signed", on=signed_on))
    session.commit()
    return {"smart": smart.id, "air": air.id}


@pytest.fixture
def deployed(session: Session, figures: dict[str, int]) -> dict[str, str]:
    result = deploy.deploy(session, loop_files(), actor=SYSTEM)  # lane checks on
    assert sorted((d.key, d.created) for d in result) == [("investment_loop", True), ("loop_call", True)]
    used = {key: deploy_partner(session, key, prefix)
            for key, prefix in [("issue_ledger", "ledger_"), ("parallel_approval", "approval_")]}
    session.commit()
    return used


# -- helpers ----------------------------------------------------------------------------------------


def task_data(session: Session, task: HumanTask) -> dict[str, Any]:
    """Return the data of an open task (what its form and instructions see)."""
    found = runtime.find_task(runtime.load(session, task.instance_id).workflow, task.task_guid)
    assert found is not None
    return dict(found.data)


def data_of(running: runtime.Running, bpmn_id: str, state: TaskState = TaskState.COMPLETED) -> dict[str, Any]:
    """Return the data of the (last) task of an element in the given state."""
    found = [t for t in running.workflow.get_tasks(state=state) if t.task_spec.bpmn_id == bpmn_id]
    assert found, bpmn_id
    return dict(found[-1].data)


@contextmanager
def restored(session: Session, factory: sessionmaker[Session], instance_id: int) -> Iterator[runtime.Running]:
    """Save/restore in the middle: a fresh session and spec cache load the instance and lose nothing."""
    runtime._spec_cache.clear()
    session.rollback()  # end our read transaction: SQLite has one writer at a time
    with factory() as other:
        running = runtime.load(other, instance_id)
        stored = other.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id))
        assert serializer.dump_state(running.workflow) == stored
        yield running
        other.rollback()


def start(session: Session, actor: Actor = SYSTEM, period: str = PERIOD) -> int:
    started = plan.start_period(session, period, actor)
    session.commit()
    assert started.created
    return started.instance_id


def children(session: Session, key: str) -> list[ProcessInstance]:
    return list(session.scalars(select(ProcessInstance).join(ProcessDefinition)
                                .where(ProcessDefinition.key == key).order_by(ProcessInstance.id)))


def start_data(session: Session, instance_id: int) -> dict[str, Any]:
    """The start data of an instance as its instance.start audit event recorded it."""
    event = session.scalar(select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}",
                                                    AuditEvent.action == "instance.start"))
    assert event is not None
    data: dict[str, Any] = event.after["data"]
    return data


def to_fork(session: Session, people: dict[str, Actor], instance_id: int, items: list[dict[str, Any]]) -> None:
    """Run ①–④ quickly: confirm the figures, submit the given plan items, claim them all."""
    do(session, only(session, instance_id, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    do(session, only(session, instance_id, "review_plan"), people["guihua"], {"items": items})
    assert names(session, instance_id) == ["claim_item"] * len(items) + ["publish_call", "record_visits", "source_leads"]
    by_id = {a.user_id: a for a in people.values()}
    for task in open_tasks(session, instance_id, "claim_item"):
        leader = by_id.get(task.candidates[0].user_id, people["wangjianguo"])
        do(session, task, leader, {"measures": "按月调度", "finish_by": "2025-12-31"})
    assert names(session, instance_id) == ["publish_call", "record_visits", "source_leads"]


def a_call(units: list[str], window: str = "P7D", **extra: Any) -> dict[str, Any]:
    """One call of the publish form (智能家电 unless `industry` says otherwise)."""
    return {"call_title": "智能家电产业链强链补链揭榜", "industry": "smart_appliance", "eligible_units": units,
            "bid_window": window, "description": "招引智能家电核心零部件配套企业", **extra}


def call_instance(session: Session, industry: str = "smart_appliance", period: str = PERIOD) -> int | None:
    """The loop_call instance of a chain's call in a period (business key JB-YYYY-MM-<industry>)."""
    return session.scalar(select(ProcessInstance.id).join(ProcessDefinition).where(
        ProcessDefinition.key == "loop_call", ProcessInstance.business_key == f"JB-{period}-{industry}"))


def publish(session: Session, people: dict[str, Actor], instance_id: int, units: list[str],
            window: str = "P7D", *, more: bool = False, **extra: Any) -> int:
    """Publish one call from the period's ⑦ form; return its loop_call instance (0 when refused)."""
    do(session, only(session, instance_id, "publish_call"), people["zhaoshang"],
       {"call_decision": "publish", "calls": [a_call(units, window, **extra)], "publish_more": more})
    return call_instance(session, str(extra.get("industry", "smart_appliance"))) or 0


def bid_tasks(session: Session, instance_id: int) -> dict[str, HumanTask]:
    """The open 揭榜 tasks by the unit code of their candidate."""
    found = {}
    for task in open_tasks(session, instance_id, "submit_bid"):
        (candidate,) = task.candidates
        found[session.scalar(select(OrgUnit.code).where(OrgUnit.id == candidate.org_unit_id))] = task
    return found


def bid(session: Session, people: dict[str, Actor], instance_id: int, unit: str, proposal: str | None) -> None:
    task = bid_tasks(session, instance_id)[unit]
    data = {"bid_decision": "bid", "proposal": proposal} if proposal else {"bid_decision": "decline"}
    do(session, task, people[f"{unit}_zs"], data)


def close_window(session: Session, instance_id: int, days: int = 7) -> None:
    row = session.get(ProcessInstance, instance_id)
    assert row is not None and row.next_timer_at is not None
    assert timers.due_ids(session, now=clock.now()) == []
    clock.advance(timedelta(days=days, minutes=1))
    assert timers.due_ids(session, now=clock.now()) == [instance_id]
    assert timers.fire_instance(session, instance_id, now=clock.now())
    session.commit()
    from engine.runtime.models import Incident
    problem = session.scalar(select(Incident.message).where(Incident.instance_id == instance_id))
    assert problem is None, problem
    assert not timers.fire_instance(session, instance_id, now=clock.now())  # fired once, never twice


def bids_in_table(session: Session, instance_id: int) -> list[str]:
    return list(session.scalars(select(OrgUnit.code).join(Bid, Bid.unit_id == OrgUnit.id)
                                .where(Bid.instance_id == instance_id).order_by(Bid.id)))


def finish_other_branches(session: Session, people: dict[str, Actor], instance_id: int) -> None:
    do(session, only(session, instance_id, "record_visits"), people["fuwu"], {"visits": []})
    do(session, only(session, instance_id, "source_leads"), people["zhaoshang"], {"leads": []})


# -- the engine guard this process needs -------------------------------------------------------------

MI_SUBPROCESS_WITH_TIMER = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="t">
  <bpmn:process id="window" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:subProcess id="round">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics>
        <bpmn:loopDataInputRef>units</bpmn:loopDataInputRef>
        <bpmn:inputDataItem id="unit" name="unit" />
      </bpmn:multiInstanceLoopCharacteristics>
      <bpmn:startEvent id="s"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:userTask id="answer"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:userTask>
      <bpmn:endEvent id="e"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g1" sourceRef="s" targetRef="answer" />
      <bpmn:sequenceFlow id="g2" sourceRef="answer" targetRef="e" />
    </bpmn:subProcess>
    <bpmn:boundaryEvent id="deadline" attachedToRef="round" cancelActivity="true">
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"PT1H"</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="answered"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="closed"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="round" />
    <bpmn:sequenceFlow id="f2" sourceRef="round" targetRef="answered" />
    <bpmn:sequenceFlow id="f3" sourceRef="deadline" targetRef="closed" />
  </bpmn:process>
</bpmn:definitions>
"""


def _window_workflow() -> BpmnWorkflow:
    from lxml import etree
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_xml(etree.fromstring(MI_SUBPROCESS_WITH_TIMER), filename="window.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("window"), parser.get_subprocess_specs("window"))
    workflow.get_tasks(state=TaskState.READY)[0].data["units"] = ["shz", "lkq", "lgz"]
    workflow.do_engine_steps()
    answers = workflow.get_tasks(state=TaskState.READY, manual=True)
    assert len(answers) == 3 and len(workflow.subprocesses) == 3
    answers[0].run()  # one unit answers, two do not: the timer must cancel two live subprocesses
    workflow.do_engine_steps()
    return workflow


def test_guard_boundary_on_multi_instance_subprocess(frozen: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """SpiffWorkflow 3.2.0 drops the instances of a cancelled MI subprocess but keeps their subworkflows."""
    assert guards.installed()
    with monkeypatch.context() as without_the_patch:
        without_the_patch.setattr(Workflow, "_remove_task", guards._spiff_remove_task)
        workflow = _window_workflow()
        clock.advance(timedelta(hours=1, minutes=1))
        workflow.refresh_timers()
        with pytest.raises(TaskNotFoundException):
            workflow.do_engine_steps()

    workflow = _window_workflow()
    clock.advance(timedelta(hours=1, minutes=1))
    workflow.refresh_timers()
    workflow.do_engine_steps()
    assert workflow.is_completed() and guards.is_really_completed(workflow)
    assert [t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.COMPLETED)
            if t.task_spec.bpmn_id in ("answered", "closed")] == ["closed"]
    # Only the answered instance's (completed) subworkflow is left; the two dropped ones are gone.
    (kept,) = workflow.subprocesses.values()
    assert kept.completed and workflow.get_task_from_id(kept.parent_task_id).state == TaskState.COMPLETED
    assert workflow.waiting_events() == []


# -- ① ② formulas -----------------------------------------------------------------------------------

def test_assessment_formulas() -> None:
    d = Decimal
    # Rates and shares: the year-to-date value is the projection.
    assert plan.assess(target=d("5.6"), comparison=">=", cumulative=False, value=d("5.8"), months=6) == \
        ("met", d("5.8000"), d("0.0000"), d("0.0000"))
    assert plan.assess(target=d("53"), comparison=">=", cumulative=False, value=d("52.1"), months=8) == \
        ("behind", d("52.1000"), d("0.9000"), d("0.9000"))
    # Cumulative: value × 12 / months.
    assert plan.assess(target=d("1.2"), comparison=">=", cumulative=True, value=d("0.9"), months=8) == \
        ("on_track", d("1.3500"), d("0.0000"), d("0.3000"))
    assert plan.assess(target=d("500"), comparison=">=", cumulative=True, value=d("280"), months=8) == \
        ("behind", d("420.0000"), d("80.0000"), d("220.0000"))
    assert plan.assess(target=d("200"), comparison=">=", cumulative=True, value=d("2"), months=7)[1] == d("3.4286")
    # Caps (<=): on track while the projection stays under; met only when the year is complete.
    assert plan.assess(target=d("120"), comparison="<=", cumulative=True, value=d("60"), months=6)[0] == "on_track"
    assert plan.assess(target=d("120"), comparison="<=", cumulative=True, value=d("70"), months=6) == \
        ("behind", d("140.0000"), d("20.0000"), d("0.0000"))
    assert plan.assess(target=d("120"), comparison="<=", cumulative=True, value=d("110"), months=12)[0] == "met"
    assert plan.assess(target=d("0.5"), comparison="<=", cumulative=False, value=d("0.4"), months=3)[0] == "met"
    assert plan.assess(target=d("1"), comparison=">=", cumulative=True, value=None, months=None)[0] == "missing"
    # Strict comparisons: reaching the target exactly is not enough.
    assert plan.assess(target=d("30"), comparison=">", cumulative=True, value=d("30"), months=12)[0] == "behind"
    assert plan.assess(target=d("30"), comparison=">", cumulative=True, value=d("20"), months=6)[0] == "on_track"


def test_periods() -> None:
    assert plan.parse_period("2025-08") == (2025, 8)
    assert plan.period_end("2025-02") == date(2025, 2, 28) and plan.period_end("2025-12") == date(2025, 12, 31)
    assert plan.period_due(datetime(2025, 9, 1, 0, 30, tzinfo=clock.SHANGHAI)) == "2025-08"
    assert plan.period_due(datetime(2025, 1, 1, 0, 30, tzinfo=clock.SHANGHAI)) == "2024-12"
    assert plan.business_key("2025-08") == "investment_loop:2025-08"
    for bad in ("2025-8", "2025-13", "25-08", ""):
        with pytest.raises(InvalidInput):
            plan.parse_period(bad)


@pytest.mark.parametrize("bad", ["2025-08\n", "２０２５-08", "٢٠٢٥-08"])
def test_a_period_with_a_trailing_newline_or_other_digits_is_refused(bad: str) -> None:
    """`$` also matches before a trailing newline, and `\\d` any script's digits: "2025-08\\n" and "２０２５-08" were
    read as August 2025 but kept as they came, so figures saved for them went to a period of their own, beside
    August's (a second, invisible set of figures: on SQLite the later one won for September's dashboard)."""
    with pytest.raises(InvalidInput) as refused:
        plan.parse_period(bad)
    assert refused.value.details["field"] == "period"


def test_indicator_statuses_on_hand_computed_figures(session: Session, figures: dict[str, int]) -> None:
    by_code = {a.code: a for a in plan.indicator_statuses(session, PERIOD)}
    got = {c: (a.status, plan.show(a.value), a.as_of, plan.show(a.projected), plan.show(a.gap))
           for c, a in by_code.items()}
    assert got == {
        "gdp_growth": ("met", "5.8", "2025-06", "5.8", "0"),  # growth rate: latest YTD value (June, quarterly)
        "industrial_growth": ("behind", "8.7", "2025-08", "8.7", "0.3"),
        "tertiary_share": ("behind", "52.1", "2025-08", "52.1", "0.9"),  # share: August, not July
        "projects_signed": ("behind", "3", "2025-08", "5", "195"),  # 3 signed in 2025 by 31 Aug: 3×12/8 = 4.5 → 5 projects
        "projects_signed_focus": ("behind", "1", "2025-08", "2", "58"),  # of which 聚焦突破类: 1
        "new_talents": ("on_track", "0.9", "2025-08", "1.35", "0"),  # 0.9×12/8 = 1.35 ≥ 1.2
        "smart_appliance_scale": ("behind", "280", "2025-08", "420", "80"),  # 280×12/8 = 420 < 500
        "new_energy_scale": ("met", "160", "2025-07", "274.2857", "0"),  # 160 ≥ 150 in July already
        "low_altitude_scale": ("missing", None, None, None, None),
    }
    assert projects.count_in_stage(session, "signed", year=2025) == 4
    assert projects.count_in_stage(session, "signed", year=2025, category="focus") == 1
    summary = plan.status_summary(PERIOD, list(by_code.values()))
    assert summary["counts"] == {"met": 2, "on_track": 1, "behind": 5, "missing": 1}
    assert summary["behind"] == ["industrial_growth", "projects_signed", "projects_signed_focus",
                                 "smart_appliance_scale", "tertiary_share"]


# -- the full period ---------------------------------------------------------------------------------

def test_a_full_period(session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
                       deployed: dict[str, str]) -> None:
    iid = start(session)
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.business_key == "investment_loop:2025-08" and row.title == "七步工作法 2025-08"

    # ① computed at start; the data officer sees a missing figure, records it and recomputes.
    task = only(session, iid, "confirm_figures")
    assert task.lane == "数据监测"
    running = runtime.load(session, iid)
    status = data_of(running, "confirm_figures", TaskState.READY)["indicator_status"]
    assert status == {"period": PERIOD, "counts": {"met": 2, "on_track": 1, "behind": 5, "missing": 1},
                      "behind": ["industrial_growth", "projects_signed", "projects_signed_focus", "smart_appliance_scale",
                                 "tertiary_share"],
                      "missing": ["low_altitude_scale"]}
    with pytest.raises(TaskNotFound):  # one who may not see the task: as if it did not exist
        tasks.claim(session, task_id=task.id, actor=people["guihua"])
    session.rollback()
    air = session.scalar(select(Indicator).where(Indicator.code == "low_altitude_scale"))
    assert air is not None
    session.add(IndicatorValue(indicator_id=air.id, period=PERIOD, value=Decimal("24"), source="发改局"))
    session.commit()
    do(session, task, people["tongji"], {"figures_decision": "recompute", "figures_note": "已补录低空经济8月数据"})
    running = runtime.load(session, iid)
    assert data_of(running, "confirm_figures", TaskState.READY)["indicator_status"]["counts"] == \
        {"met": 2, "on_track": 2, "behind": 5, "missing": 0}  # 24×12/8 = 36 ≥ 30
    do(session, only(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})

    # ② gaps and projections, compact; ③ the draft items per industry chain, reviewed by the planner.
    task = only(session, iid, "review_plan")
    assert task.lane == "产业规划"
    ready = data_of(runtime.load(session, iid), "review_plan", TaskState.READY)
    assert ready["gap_analysis"]["behind"] == [
        {"code": "industrial_growth", "status": "behind", "value": "8.7", "as_of": "2025-08", "projected": "8.7",
         "target": "9", "gap": "0.3"},
        {"code": "projects_signed", "status": "behind", "value": "3", "as_of": "2025-08", "projected": "5",
         "target": "200", "gap": "195"},
        {"code": "projects_signed_focus", "status": "behind", "value": "1", "as_of": "2025-08", "projected": "2",
         "target": "60", "gap": "58"},
        {"code": "smart_appliance_scale", "status": "behind", "value": "280", "as_of": "2025-08",
         "projected": "420", "target": "500", "gap": "80"},
        {"code": "tertiary_share", "status": "behind", "value": "52.1", "as_of": "2025-08", "projected": "52.1",
         "target": "53", "gap": "0.9"}]
    drafts = ready["items"]
    share_at, smart_at = 3, 4  # positions of the tertiary-share and smart-appliance drafts
    assert [(d["industry"], d["indicator"], d["gap"]) for d in drafts] == [
        ("", "industrial_growth", 0.3), ("", "projects_signed", 195), ("", "projects_signed_focus", 58),
        ("", "tertiary_share", 0.9),
        ("smart_appliance", "smart_appliance_scale", 80.0)]
    assert drafts[smart_at]["title"] == "智能家电产业链补链强链：智能家电产业规模年末预计 420亿元，差 80亿元"
    assert drafts[1]["title"] == "补齐缺口：新签约项目（年末预计 5个，目标 200个，差 195个）"
    items = [drafts[1], {**drafts[share_at], "title": "提升第三产业占比：生产性服务业招商"}, drafts[smart_at],
             {"title": "新增落户创投风投机构20家", "industry": "", "indicator": ""}]
    do(session, task, people["guihua"], {"items": items})
    created = list(session.scalars(select(PlanItem).where(PlanItem.instance_id == iid).order_by(PlanItem.id)))
    assert [(p.title, p.gap, p.status, p.period) for p in created] == [
        (drafts[1]["title"], Decimal("195"), "open", PERIOD),
        ("提升第三产业占比：生产性服务业招商", Decimal("0.9"), "open", PERIOD),
        (drafts[smart_at]["title"], Decimal("80"), "open", PERIOD), ("新增落户创投风投机构20家", None, "open", PERIOD)]
    assert created[2].industry_id is not None and created[3].indicator_id is None

    # ④ one claim task per item: the 包挂 leader of the lead unit, else the leader role.
    claims = open_tasks(session, iid, "claim_item")
    assert len(claims) == 4 and {t.lane for t in claims} == {"责任领导"}
    # ⑤ ⑥ ⑦ open at the same time as ④: 打项目 does not wait for every claim.
    assert names(session, iid) == ["claim_item"] * 4 + ["publish_call", "record_visits", "source_leads"]
    gxj = unit_id(session, "gxj")
    assert {t.escalation_unit_id for t in claims} == {gxj, unit_id(session, "fgj"), unit_id(session, "tcj"), None}
    assert all(t.sla == "3wd" and t.due_at is not None for t in claims)
    by_title = {task_data(session, t)["plan_item"]["title"]: t for t in claims}
    smart_claim, share_claim = by_title[drafts[smart_at]["title"]], by_title["提升第三产业占比：生产性服务业招商"]
    assert [c.user_id for c in smart_claim.candidates] == [people["lizhenhua"].user_id]
    assert [c.user_id for c in share_claim.candidates] == [people["wangjianguo"].user_id]
    leader_role = [(c.user_id, c.role_id) for t in (by_title[drafts[1]["title"]], by_title["新增落户创投风投机构20家"])
                   for c in t.candidates]
    assert len(leader_role) == 2 and all(u is None and r is not None for u, r in leader_role)  # the role 责任领导
    with pytest.raises(NotYourTask):
        tasks.claim(session, task_id=smart_claim.id, actor=people["wangjianguo"])
    session.rollback()
    do(session, smart_claim, people["lizhenhua"], {"measures": "卡奥斯生态园配套项目月调度", "finish_by": "2025-12-31"})
    assert names(session, iid).count("claim_item") == 3  # the others still wait
    for t in open_tasks(session, iid, "claim_item"):  # his own item and the two open to every leader
        do(session, t, people["wangjianguo"], {"measures": "专班推进", "finish_by": "2025-11-30"})
    session.expire_all()
    claimed = {p.title: (p.status, p.claimed_by_id) for p in
               session.scalars(select(PlanItem).where(PlanItem.instance_id == iid))}
    assert claimed[drafts[smart_at]["title"]] == ("claimed", people["lizhenhua"].user_id)
    assert claimed["新增落户创投风投机构20家"] == ("claimed", people["wangjianguo"].user_id)
    assert names(session, iid) == ["publish_call", "record_visits", "source_leads"]

    # Save/restore in the middle: Chinese text, Decimal and the plan survive a fresh session.
    with restored(session, factory, iid) as running:
        ready = data_of(running, "publish_call", TaskState.READY)
        assert ready["period"] == PERIOD and "items" not in ready  # the draft is dropped once created
        assert [p["title"] for p in ready["plan_items"]][3] == "新增落户创投风投机构20家"
        assert ready["gap_analysis"]["counts"]["behind"] == 5
        assert len(serializer.dump_state(running.workflow)) < 120_000

    # ⑤ a visit with two problems → two issue_ledger instances with the 0001 data.
    do(session, only(session, iid, "record_visits"), people["fuwu"], {"visits": [
        {"enterprise": "青岛海智电器有限公司", "visited_on": "2025-09-01", "summary": "企业扩产，反映用地与用电问题",
         "problems": [{"title": "扩产项目用地指标未落实", "description": "新厂房用地指标尚未批复", "unit_code": "zrzyj",
                       "due_date": "2025-09-30"},
                      {"title": "10kV增容迟缓", "unit_code": "gxj", "project_code": "ZS-OLD-1"}]},
        {"enterprise": "胶州某食品有限公司", "visited_on": "2025-09-01", "summary": "运行平稳，无诉求"}]})
    issues = children(session, "issue_ledger")
    assert len(issues) == 2
    first, second = (start_data(session, i.id) for i in issues)
    assert first == {"title": "扩产项目用地指标未落实", "description": "新厂房用地指标尚未批复",
                     "enterprise": "青岛海智电器有限公司", "unit_code": "zrzyj", "source": "service_visit",
                     "reporter": "fuwu", "due_date": "2025-09-30", "parent_instance_id": iid, "initiator": "fuwu"}
    assert second["project_code"] == "ZS-OLD-1" and "due_date" not in second and second["unit_code"] == "gxj"
    assert [i.status for i in issues] == ["running", "running"]  # the ledger took the contract data
    if deployed["issue_ledger"] == "bpmn":  # the real process registers its ledger_issue row (0001)
        rows = session.scalars(select(LedgerIssue).order_by(LedgerIssue.id)).all()
        assert [(r.title, r.source, r.enterprise, r.instance_id) for r in rows] == [
            ("扩产项目用地指标未落实", "service_visit", "青岛海智电器有限公司", issues[0].id),
            ("10kV增容迟缓", "service_visit", "青岛海智电器有限公司", issues[1].id)]

    # ⑥ leads into the 招商引资项目 library at stage lead.
    do(session, only(session, iid, "source_leads"), people["zhaoshang"], {"leads": [
        {"name": "智能家电核心零部件项目", "enterprise": "青岛某精密电机有限公司", "investment": Decimal("52000.50"),
         "project_type": "industrial", "industry": "智能家电", "planned_sign": "2025-10-31"},
        {"name": "帽饰跨境电商中心", "enterprise": "胶州某帽业有限公司", "investment": Decimal("8000"),
         "project_type": "service", "category": "layout"}]})
    leads = list(session.scalars(select(Project).where(Project.code.like("XM-2025-%")).order_by(Project.code)))
    assert [(p.code, p.stage, p.category, p.investment, p.industry_id) for p in leads] == [
        ("XM-2025-0001", "lead", "focus", Decimal("52000.50"), session.scalar(
            select(Industry.id).where(Industry.code == "smart_appliance"))),
        ("XM-2025-0002", "lead", "layout", Decimal("8000.00"), None)]
    assert [(s.stage, s.on) for s in leads[0].stages] == [("lead", date(2025, 9, 1))]
    assert leads[0].planned_sign == date(2025, 10, 31) and leads[0].library.code == "investment"

    with restored(session, factory, iid) as running:
        lead_data = data_of(running, "source_leads")
        assert lead_data["leads"][0]["investment"] == Decimal("52000.50")
        assert isinstance(lead_data["leads"][0]["investment"], Decimal)

    # ⑦ a call aimed at the lead: it runs as its own loop_call instance and the period's instance ends now.
    cid = publish(session, people, iid, ["shz", "lkq", "lgz"], project_code="XM-2025-0001")
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "completed" and open_tasks(session, iid) == []
    call_row = session.get(ProcessInstance, cid)
    assert call_row is not None and call_row.business_key == "JB-2025-08-smart_appliance"
    assert call_row.title == "揭榜挂帅《智能家电产业链强链补链揭榜》（2025-08）"
    assert start_data(session, cid)["parent_instance_id"] == iid
    # Three units may bid, two bid, one declines: bidding closes early.
    assert sorted(bid_tasks(session, cid)) == ["lgz", "lkq", "shz"]
    assert {t.lane for t in open_tasks(session, cid, "submit_bid")} == {"招商专员"}
    bid(session, people, cid, "shz", "上合示范区提供标准厂房，三个月内投产")
    bid(session, people, cid, "lkq", "临空经济区配套物流优势，提供人才公寓")
    assert bids_in_table(session, cid) == ["shz", "lkq"]
    with restored(session, factory, cid) as running:
        assert data_of(running, "submit_bid", TaskState.READY)["bid_unit"] == "lgz"
    bid(session, people, cid, "lgz", None)
    row = session.get(ProcessInstance, cid)
    assert row is not None and row.next_timer_at is None  # everyone answered: the window timer is gone
    appoint = only(session, cid, "appoint")
    assert [c.user_id for c in appoint.candidates] == [people["lizhenhua"].user_id]  # gxj's 包挂 leader
    assert task_data(session, appoint)["bidding"]["bids"] == [
        {"unit_code": "shz", "unit_name": "上合示范区", "bidder": "shz_zs"},
        {"unit_code": "lkq", "unit_name": "临空经济区", "bidder": "lkq_zs"}]

    # A unit that did not bid cannot be appointed: back to the form.
    do(session, appoint, people["lizhenhua"], {"appointed_unit": "lgz", "appoint_opinion": "由李哥庄镇牵头",
                                               "sign_by": "2025-12-31"})
    appoint = only(session, cid, "appoint")
    assert task_data(session, appoint)["appointment"] == {"ok": False, "error": "单位“lgz”未揭榜，不能挂帅",
                                                          "project_code": ""}
    do(session, appoint, people["lizhenhua"], {"appointed_unit": "lkq", "appoint_opinion": "由临空经济区挂帅",
                                               "sign_by": "2025-08-31"})  # a date already past: back
    appoint = only(session, cid, "appoint")
    assert "sign_by" in task_data(session, appoint)["appointment"]["error"]
    do(session, appoint, people["lizhenhua"], {"appointed_unit": "lkq", "appoint_opinion": "由临空经济区挂帅",
                                               "sign_by": "2025-12-31"})
    assert session.scalars(select(Bid.appointed).where(Bid.instance_id == cid).order_by(Bid.id)).all() == [False, True]
    # The lead goes to the appointed unit; its date to sign by is the project's deadline (项目期限督办).
    lead = session.scalar(select(Project).where(Project.code == "XM-2025-0001"))
    assert lead is not None
    session.refresh(lead)
    assert (lead.stage, lead.responsible_unit_id, lead.planned_sign) == ("lead", unit_id(session, "lkq"),
                                                                       date(2025, 12, 31))
    from plan.projects.deadlines import project_deadlines
    deadline = project_deadlines(session, [lead.id])[lead.id]
    assert (deadline.unit_id, deadline.policy) == (unit_id(session, "lkq"), "investment")
    assert deadline.due_at.astimezone(clock.SHANGHAI).date() in (date(2025, 12, 31), date(2026, 1, 1))
    follow = only(session, cid, "follow_up")
    assert follow.assignee_id == people["lkq_zs"].user_id
    assert task_data(session, follow)["appointment"] == {
        "ok": True, "error": None, "unit_code": "lkq", "bidder": "lkq_zs", "project_code": "XM-2025-0001",
        "sign_by": "2025-12-31"}
    assert "{{ appointment.sign_by }}" in (follow.instructions or "")
    do(session, follow, people["lkq_zs"], {"progress": "已完成两轮洽谈", "outcome": "in_progress"})
    follow = only(session, cid, "follow_up")
    result = do(session, follow, people["lkq_zs"], {
        "progress": "已签订投资协议", "outcome": "signed", "project_name": "智能家电核心零部件项目（一期）",
        "enterprise": "青岛某精密电机有限公司", "investment": Decimal("60000.25"), "project_type": "industrial",
        "signed_on": "2025-09-20", "applicant": "qiye"})
    assert result.status == "completed"

    project = session.scalar(select(Project).where(Project.code == "XM-2025-0001"))
    assert project is not None
    session.refresh(project)
    assert (project.stage, project.name, project.investment) == ("signed", "智能家电核心零部件项目（一期）",
                                                                 Decimal("60000.25"))
    assert [(s.stage, s.on) for s in project.stages] == [("lead", date(2025, 9, 1)), ("signed", date(2025, 9, 20))]
    (approval,) = children(session, "parallel_approval")
    assert approval.business_key == "XM-2025-0001" and approval.status == "running"
    assert start_data(session, approval.id) == {
        "project_code": "XM-2025-0001", "project_name": "智能家电核心零部件项目（一期）", "project_type": "industrial",
        "investment": "60000.25", "stage": "land_planning", "applicant": "qiye", "parent_instance_id": cid,
        "initiator": "lkq_zs"}
    call_row = session.get(ProcessInstance, cid)
    assert call_row is not None and call_row.status == "completed"
    running = runtime.load(session, cid)
    final = data_of(running, "follow_up")
    assert final["signed_on"] == date(2025, 9, 20) and final["investment"] == Decimal("60000.25")
    assert data_of(running, "start_approval")["approval"]["instance_id"] == approval.id
    assert audit.verify(session).ok


# -- the 揭榜 window ---------------------------------------------------------------------------------

def test_window_closes_with_no_bids(session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
                                    deployed: dict[str, str]) -> None:
    iid = start(session)
    to_fork(session, people, iid, [])  # nothing to claim: the multi-instance over no items passes
    finish_other_branches(session, people, iid)
    cid = publish(session, people, iid, ["shz", "lkq"], window="P3D")
    assert session.get(ProcessInstance, iid).status == "completed"  # type: ignore[union-attr]
    row = session.get(ProcessInstance, cid)
    assert row is not None and row.next_timer_at == clock.now() + timedelta(days=3)
    with restored(session, factory, cid) as running:
        assert sorted(t.data["bid_unit"] for t in running.workflow.get_tasks(state=TaskState.READY, manual=True)) == \
            ["lkq", "shz"]
        assert data_of(running, "submit_bid", TaskState.READY)["call"]["title"] == "智能家电产业链强链补链揭榜"
    close_window(session, cid, days=3)
    session.expire_all()
    assert open_tasks(session, cid) == []
    row = session.get(ProcessInstance, cid)
    assert row is not None and row.status == "completed"
    states = session.scalars(select(HumanTask.state).where(HumanTask.instance_id == cid,
                                                           HumanTask.bpmn_id == "submit_bid")).all()
    assert sorted(states) == ["cancelled", "cancelled"]
    running = runtime.load(session, cid)
    assert data_of(running, "close_bidding")["bidding"] == {"count": 0, "bids": []}
    assert [t.task_spec.bpmn_id for t in running.workflow.get_tasks(state=TaskState.COMPLETED)
            if t.task_spec.bpmn_id in ("no_bids", "appoint")] == ["no_bids"]
    assert audit.verify(session).ok


def test_window_closes_with_one_bid(session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
                                    deployed: dict[str, str]) -> None:
    iid = start(session)
    to_fork(session, people, iid, [{"title": "智能家电强链", "industry": "smart_appliance",
                                    "indicator": "smart_appliance_scale", "gap": Decimal("80")}])
    cid = publish(session, people, iid, ["shz", "lkq", "lgz"])
    bid(session, people, cid, "shz", "上合示范区承接")
    with restored(session, factory, cid) as running:
        assert len(running.workflow.get_tasks(state=TaskState.READY, manual=True)) == 2  # the 2 other bids
    assert names(session, iid) == ["record_visits", "source_leads"]  # ⑤ ⑥ in the period's instance
    close_window(session, cid)
    session.expire_all()
    assert sorted(s for s in session.scalars(select(HumanTask.state).where(
        HumanTask.instance_id == cid, HumanTask.bpmn_id == "submit_bid"))) == ["cancelled", "cancelled", "completed"]
    assert bids_in_table(session, cid) == ["shz"]
    appoint = only(session, cid, "appoint")
    assert task_data(session, appoint)["bidding"] == {
        "count": 1, "bids": [{"unit_code": "shz", "unit_name": "上合示范区", "bidder": "shz_zs"}]}
    do(session, appoint, people["lizhenhua"], {"appointed_unit": "shz", "appoint_opinion": "同意", "sign_by": "2025-11-30"})
    # No lead named: a lead named after the call is created for the appointed unit to follow up.
    lead = session.scalar(select(Project).where(Project.name == "智能家电产业链强链补链揭榜"))
    assert lead is not None and (lead.stage, lead.responsible_unit_id, lead.planned_sign) == (
        "lead", unit_id(session, "shz"), date(2025, 11, 30))
    finish_other_branches(session, people, iid)
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "completed"  # the period ends though the follow-up goes on
    do(session, only(session, cid, "follow_up"), people["shz_zs"], {"progress": "企业决定暂缓投资", "outcome": "not_signed"})
    row = session.get(ProcessInstance, cid)
    assert row is not None and row.status == "completed"
    assert children(session, "parallel_approval") == []
    assert audit.verify(session).ok


# -- 签约 recorded on the project page and reported by the call ---------------------------------------

SIGNED = {"progress": "已签订投资协议", "outcome": "signed", "project_name": "智能家电核心零部件项目",
          "enterprise": "青岛某精密电机有限公司", "investment": Decimal("30000"), "project_type": "industrial",
          "signed_on": "2025-09-01", "applicant": "qiye"}


def to_follow_up(session: Session, people: dict[str, Actor]) -> tuple[int, Project]:
    """A call with one bid, 上合示范区 appointed: its new lead is handed over and the follow-up is open."""
    iid = start(session)
    to_fork(session, people, iid, [])
    finish_other_branches(session, people, iid)
    cid = publish(session, people, iid, ["shz", "lkq"])
    bid(session, people, cid, "shz", "上合示范区承接")
    bid(session, people, cid, "lkq", None)
    do(session, only(session, cid, "appoint"), people["lizhenhua"],
       {"appointed_unit": "shz", "appoint_opinion": "同意", "sign_by": "2025-11-30"})
    lead = session.scalar(select(Project).where(Project.name == "智能家电产业链强链补链揭榜"))
    assert lead is not None and lead.stage == "lead"
    return cid, lead


def approvals_of(session: Session, project: Project) -> list[tuple[str, int | None]]:
    """The project's approval rows (stage, instance) and, checked alongside, its parallel_approval instances."""
    from plan.projects.models import ProjectApproval
    rows = [(r.stage, r.instance_id) for r in session.scalars(
        select(ProjectApproval).where(ProjectApproval.project_id == project.id).order_by(ProjectApproval.id))]
    assert sorted(i for _s, i in rows) == [p.id for p in children(session, "parallel_approval")
                                           if p.business_key == project.code]
    return rows


def test_signing_recorded_on_the_page_then_reported_by_the_call(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    from plan.projects import approvals, entry
    cid, project = to_follow_up(session, people)
    unit = people["shz_zs"]
    # The appointed unit records 签约 on the project page and starts the first approval stage from there.
    entry.record_stage(session, project, actor=unit, stage="signed", on=date(2025, 9, 1), evidence="投资协议")
    started = approvals.start_stage(session, project, stage="land_planning", actor=unit, applicant="shz_zs")
    session.commit()
    page_stages = [(s.stage, s.on, s.evidence) for s in project.stages]
    # Then reports "signed" on the call's 跟进签约: accepted, no incident (do() insists), nothing recorded twice.
    result = do(session, only(session, cid, "follow_up"), unit, SIGNED)
    assert result.status == "completed"
    session.expire_all()
    assert session.get(ProcessInstance, cid).status == "completed"  # type: ignore[union-attr]
    project = session.get(Project, project.id)  # type: ignore[assignment]
    assert [(s.stage, s.on, s.evidence) for s in project.stages] == page_stages
    assert (project.stage, project.name, project.investment) == ("signed", "智能家电产业链强链补链揭榜", Decimal("0"))
    assert approvals_of(session, project) == [("land_planning", started.instance_id)]
    running = runtime.load(session, cid)
    assert data_of(running, "sign_project")["signed_project"]["already_signed"] is True
    assert data_of(running, "start_approval")["approval"]["instance_id"] == started.instance_id
    event = session.scalar(select(AuditEvent).where(AuditEvent.stream == f"project:{project.id}",
                                                    AuditEvent.action == "project.sign_reported"))
    assert event is not None and event.after["call"] == "JB-2025-08-smart_appliance"
    assert audit.verify(session).ok


def test_the_call_starts_the_approval_and_the_page_finds_it_started(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    from plan.projects import approvals, entry
    cid, project = to_follow_up(session, people)
    do(session, only(session, cid, "follow_up"), people["shz_zs"], SIGNED)
    session.expire_all()
    project = session.get(Project, project.id)  # type: ignore[assignment]
    (approval,) = children(session, "parallel_approval")
    assert approvals_of(session, project) == [("land_planning", approval.id)]
    assert start_data(session, approval.id)["parent_instance_id"] == cid  # still linked to the call
    # The unit then starts the same stage from the project page: it is the one the call started.
    again = approvals.start_stage(session, project, stage="land_planning", actor=people["shz_zs"], applicant="shz_zs")
    session.commit()
    assert again.instance_id == approval.id
    assert approvals_of(session, project) == [("land_planning", approval.id)]
    # And recording 签约 on the page once the call has: refused with the reason, not recorded twice.
    with pytest.raises(InvalidInput, match="签约"):
        entry.record_stage(session, project, actor=people["shz_zs"], stage="signed", on=date(2025, 9, 1),
                           evidence="投资协议")
    session.rollback()
    assert [s.stage for s in session.get(Project, project.id).stages] == ["lead", "signed"]  # type: ignore[union-attr]
    assert audit.verify(session).ok


OLD_START_APPROVAL = """        <spiffworkflow:serviceTaskOperator id="start_process" resultVariable="approval">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="process_key" type="any" value='"parallel_approval"' />
            <spiffworkflow:parameter id="data" type="any" value='{"project_code": signed_project["project_code"], \\
"project_name": signed_project["project_name"], "project_type": signed_project["project_type"], \\
"investment": Decimal(signed_project["investment"]), "stage": signed_project["stage"], \\
"applicant": signed_project["applicant"]}' />
            <spiffworkflow:parameter id="business_key" type="any" value='signed_project["project_code"]' />
            <spiffworkflow:parameter id="title" type="any" value='"并联审批 " + signed_project["project_name"]' />
          </spiffworkflow:parameters>"""


def to_follow_up_on_the_old_version(session: Session, people: dict[str, Actor]) -> tuple[int, Project]:
    """A call opened on loop_call's version before start_approval went through project_start_approval (its
    start_process starts parallel_approval itself), following up when the new version is deployed."""
    import re
    files = loop_files()
    text = files["loop_call.bpmn"].decode()
    current = re.search(r' *<spiffworkflow:serviceTaskOperator id="project_start_approval".*?</spiffworkflow:parameters>',
                        text, re.S)
    assert current is not None
    files["loop_call.bpmn"] = text.replace(current.group(0), OLD_START_APPROVAL.replace("\\\n", "")).encode()
    deploy.deploy(session, files, actor=SYSTEM)
    session.commit()
    cid, project = to_follow_up(session, people)
    old = session.get(ProcessInstance, cid)
    assert old is not None
    deploy.deploy(session, loop_files(), actor=SYSTEM)  # the new version comes while the call follows up
    session.commit()
    assert deploy.latest_version(session, "loop_call").id != old.version_id
    return cid, project


def linked_events(session: Session, project: Project) -> list[dict[str, Any]]:
    return [e.after for e in session.scalars(select(AuditEvent).where(
        AuditEvent.stream == f"project:{project.id}", AuditEvent.action == "project.approval_linked")
        .order_by(AuditEvent.id))]


def test_a_call_on_the_version_before_project_start_approval_still_signs(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """A call opened before loop_call's start_approval went through project_start_approval keeps its start_process:
    the approval it starts is the project's first stage (its row), so the page finds it."""
    from plan.projects import approvals
    cid, project = to_follow_up_on_the_old_version(session, people)
    do(session, only(session, cid, "follow_up"), people["shz_zs"], SIGNED)
    session.expire_all()
    (approval,) = children(session, "parallel_approval")
    assert session.get(ProcessInstance, cid).status == "completed"  # type: ignore[union-attr]
    assert start_data(session, approval.id)["stage"] == "land_planning"
    assert start_data(session, approval.id)["parent_instance_id"] == cid
    # The unit then starts the first stage on the project page: it is the one the call started, nothing new.
    project = session.get(Project, project.id)  # type: ignore[assignment]
    again = approvals.start_stage(session, project, stage="land_planning", actor=people["shz_zs"], applicant="shz_zs")
    session.commit()
    assert [p.id for p in children(session, "parallel_approval")] == [approval.id]
    assert again.instance_id == approval.id
    assert approvals_of(session, project) == [("land_planning", approval.id)]
    # the call's result names the approval as project_start_approval's does (a superset of start_process's)
    assert data_of(runtime.load(session, cid), "start_approval")["approval"] == {
        "instance_id": approval.id, "status": "running", "stage": "land_planning", "started": True}
    assert audit.verify(session).ok


def test_a_call_on_the_old_version_links_the_first_stage_the_page_started(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """The unit records 签约 and starts the first stage on the page; then the old call signs: no second approval."""
    from plan.projects import approvals, entry
    cid, project = to_follow_up_on_the_old_version(session, people)
    unit = people["shz_zs"]
    entry.record_stage(session, project, actor=unit, stage="signed", on=date(2025, 9, 1), evidence="投资协议")
    started = approvals.start_stage(session, project, stage="land_planning", actor=unit, applicant="shz_zs")
    session.commit()
    do(session, only(session, cid, "follow_up"), unit, SIGNED)
    session.expire_all()
    assert session.get(ProcessInstance, cid).status == "completed"  # type: ignore[union-attr]
    assert [p.id for p in children(session, "parallel_approval")] == [started.instance_id]
    project = session.get(Project, project.id)  # type: ignore[assignment]
    assert approvals_of(session, project) == [("land_planning", started.instance_id)]
    assert data_of(runtime.load(session, cid), "start_approval")["approval"] == {
        "instance_id": started.instance_id, "status": "running", "stage": "land_planning", "started": False}
    assert linked_events(session, project) == [{"stage": "land_planning", "instance_id": started.instance_id,
                                                "asked_by": cid, "asked_stage": "land_planning"}]
    assert audit.verify(session).ok


def test_a_first_stage_started_before_it_had_its_row_is_the_projects(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """An approval an old call started before the fix (no project_approval row: it got one only at its certificate)
    is found by the page and by a call on the new version: neither starts a second one."""
    from plan.projects import approvals, entry
    from plan.projects.models import ProjectApproval
    cid, project = to_follow_up(session, people)
    unit = people["shz_zs"]
    entry.record_stage(session, project, actor=unit, stage="signed", on=date(2025, 9, 1), evidence="投资协议")
    early = instances.start(session, process_key="parallel_approval", actor=SYSTEM, business_key=project.code,
                            data=approvals.start_data(project, "land_planning", "shz_zs"))
    call = session.get(ProcessInstance, cid)
    assert call is not None and call.start_root_id is not None
    early.start_root_id = call.start_root_id  # started inside the period's run, as the old call's start_process was
    session.commit()
    assert session.scalar(select(func.count(ProjectApproval.id))) == 0
    again = approvals.start_stage(session, project, stage="land_planning", actor=unit, applicant="shz_zs")
    session.commit()
    assert again.instance_id == early.id
    with pytest.raises(Conflict, match="立项用地规划许可"):
        approvals.start_stage(session, project, stage="land_planning_standard", actor=unit, applicant="shz_zs")
    session.rollback()
    do(session, only(session, cid, "follow_up"), unit, SIGNED)
    session.expire_all()
    assert [p.id for p in children(session, "parallel_approval")] == [early.id]
    assert approvals_of(session, session.get(Project, project.id)) == [  # type: ignore[arg-type]
        ("land_planning", early.id)]
    assert data_of(runtime.load(session, cid), "start_approval")["approval"]["instance_id"] == early.id
    assert audit.verify(session).ok


def test_an_approval_started_by_hand_with_a_projects_code_is_not_taken_as_its_first_stage(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """Anyone who may start 并联审批 may name any project's code: such an application is not the project's approval
    (it would block the unit's own start, or stand in for it, before any department has looked at it)."""
    from plan.projects import approvals, entry
    from plan.projects.models import ProjectApproval
    _cid, project = to_follow_up(session, people)
    unit = people["shz_zs"]
    entry.record_stage(session, project, actor=unit, stage="signed", on=date(2025, 9, 1), evidence="投资协议")
    stranger = instances.start(session, process_key="parallel_approval", actor=people["shz_zs"],
                               business_key=project.code,
                               data=approvals.start_data(project, "land_planning_standard", "shz_zs"))
    session.commit()
    assert stranger.start_root_id is None
    started = approvals.start_stage(session, project, stage="land_planning", actor=unit, applicant="shz_zs")
    session.commit()
    assert started.instance_id not in (None, stranger.id)
    assert [(r.stage, r.instance_id) for r in session.scalars(select(ProjectApproval))] == [
        ("land_planning", started.instance_id)]
    assert linked_events(session, project) == []


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_page_and_an_old_version_call_start_the_first_stage_at_once(
        factory: sessionmaker[Session], session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """PostgreSQL: the page's start holds the project's row while the old call's start_process runs: one approval."""
    import threading
    import time

    from plan.projects import approvals, entry
    cid, project = to_follow_up_on_the_old_version(session, people)
    pid = project.id
    session.close()
    page = factory()
    mine = page.get(Project, pid)
    assert mine is not None
    entry.record_stage(page, mine, actor=people["shz_zs"], stage="signed", on=date(2025, 9, 1), evidence="投资协议")
    started = approvals.start_stage(page, mine, stage="land_planning", actor=people["shz_zs"], applicant="shz_zs")
    outcome: list[BaseException | None] = []

    def call_signs() -> None:
        with factory() as s:
            try:
                do(s, only(s, cid, "follow_up"), people["shz_zs"], SIGNED)
                outcome.append(None)
            except BaseException as exc:
                s.rollback()
                outcome.append(exc)

    thread = threading.Thread(target=call_signs)
    thread.start()
    time.sleep(0.8)  # the call's 签约 waits for the page's lock on the project
    page.commit()
    first = started.instance_id
    page.close()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert outcome == [None]
    with factory() as s:
        assert [p.id for p in children(s, "parallel_approval")] == [first]
        assert approvals_of(s, s.get(Project, pid)) == [("land_planning", first)]  # type: ignore[arg-type]
        assert s.get(ProcessInstance, cid).status == "completed"  # type: ignore[union-attr]
        assert data_of(runtime.load(s, cid), "start_approval")["approval"]["instance_id"] == first


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_an_old_version_call_starting_the_first_stage_holds_off_the_page(
        factory: sessionmaker[Session], session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """PostgreSQL, the other order: the old call's start_process is being saved when the page starts the first stage
    (the same, or the 标准地 one): the page waits, then finds the call's approval or is refused; one approval."""
    import threading
    import time

    from plan.projects import approvals
    cid, project = to_follow_up_on_the_old_version(session, people)
    pid = project.id
    session.close()
    call = factory()  # the call's unit of work: 签约 and start_process, not committed yet
    task = only(call, cid, "follow_up")
    tasks.claim(call, task_id=task.id, actor=people["shz_zs"])
    tasks.complete(call, task_id=task.id, actor=people["shz_zs"], data=SIGNED)
    outcome: list[BaseException | int | None] = []

    def page_starts(stage: str) -> None:
        with factory() as s:
            try:
                mine = s.get(Project, pid)
                assert mine is not None
                row = approvals.start_stage(s, mine, stage=stage, actor=people["shz_zs"], applicant="shz_zs")
                s.commit()
                outcome.append(row.instance_id)
            except BaseException as exc:
                s.rollback()
                outcome.append(exc)

    threads = [threading.Thread(target=page_starts, args=(stage,)) for stage in ("land_planning",
                                                                                 "land_planning_standard")]
    for thread in threads:
        thread.start()
    time.sleep(0.8)  # both page starts wait for the call's lock on the project
    call.commit()
    call.close()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    with factory() as s:
        (approval,) = children(s, "parallel_approval")
        assert approvals_of(s, s.get(Project, pid)) == [("land_planning", approval.id)]  # type: ignore[arg-type]
    assert approval.id in outcome and len(outcome) == 2
    [refused] = [o for o in outcome if o != approval.id]
    assert isinstance(refused, Conflict) and refused.details["started"] == "land_planning", refused


def test_window_closes_with_several_bids_and_follow_up_is_capped(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    iid = start(session)
    to_fork(session, people, iid, [])
    finish_other_branches(session, people, iid)
    cid = publish(session, people, iid, ["shz", "lkq", "lgz"])
    assert session.get(ProcessInstance, iid).status == "completed"  # type: ignore[union-attr]
    bid(session, people, cid, "lkq", "临空经济区方案")
    bid(session, people, cid, "shz", "上合示范区方案")
    close_window(session, cid)
    assert bids_in_table(session, cid) == ["lkq", "shz"]
    session.expire_all()
    assert [t.state for t in session.scalars(select(HumanTask).where(
        HumanTask.instance_id == cid, HumanTask.bpmn_id == "submit_bid").order_by(HumanTask.id))
        if t.completed_by_id is None] == ["cancelled"]
    appoint = only(session, cid, "appoint")
    assert [b["unit_code"] for b in task_data(session, appoint)["bidding"]["bids"]] == ["lkq", "shz"]
    do(session, appoint, people["lizhenhua"], {"appointed_unit": "shz", "appoint_opinion": "上合示范区挂帅",
                                               "sign_by": "2026-06-30"})
    for n in range(1, 13):
        if n == 6:
            with restored(session, factory, cid) as running:
                assert data_of(running, "follow_up", TaskState.READY)["follow_up_count"] == 5
        follow = only(session, cid, "follow_up")
        do(session, follow, people["shz_zs"], {"progress": f"第{n}次洽谈", "outcome": "in_progress"})
    row = session.get(ProcessInstance, cid)
    assert row is not None and row.status == "completed"  # the 12th report without signing closes the call
    assert children(session, "parallel_approval") == []
    assert audit.verify(session).ok


def test_every_unit_declines_and_bidding_closes_at_once(session: Session, factory: sessionmaker[Session],
                                                        people: dict[str, Actor], deployed: dict[str, str]) -> None:
    iid = start(session)
    to_fork(session, people, iid, [])
    cid = publish(session, people, iid, ["shz", "lgz"])
    bid(session, people, cid, "shz", None)
    with restored(session, factory, cid) as running:
        assert [t.data["bid_unit"] for t in running.workflow.get_tasks(state=TaskState.READY, manual=True)
                if t.task_spec.bpmn_id == "submit_bid"] == ["lgz"]
    bid(session, people, cid, "lgz", None)
    row = session.get(ProcessInstance, cid)
    assert row is not None and row.next_timer_at is None and row.status == "completed"
    assert names(session, iid) == ["record_visits", "source_leads"]
    assert data_of(runtime.load(session, cid), "close_bidding")["bidding"]["count"] == 0
    finish_other_branches(session, people, iid)
    assert audit.verify(session).ok


def test_no_call_this_period(session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
                             deployed: dict[str, str]) -> None:
    iid = start(session)
    to_fork(session, people, iid, [])
    with restored(session, factory, iid) as running:
        assert data_of(running, "publish_call", TaskState.READY)["publish_more"] is False  # preScript default
    do(session, only(session, iid, "publish_call"), people["zhaoshang"],
       {"call_decision": "skip", "skip_reason": "本月集中推进存量项目"})
    finish_other_branches(session, people, iid)
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "completed"
    assert session.scalar(select(func.count(Bid.id))) == 0 and call_instance(session) is None
    assert audit.verify(session).ok


def test_bad_input_goes_back_to_its_form(session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
                                         deployed: dict[str, str]) -> None:
    iid = start(session)
    do(session, only(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    do(session, only(session, iid, "review_plan"), people["guihua"],
       {"items": [{"title": "航空航天头部企业招引", "industry": "航空航天"}, {"title": "x", "indicator": "no_such"}]})
    task = only(session, iid, "review_plan")  # back, nothing created
    assert task_data(session, task)["plan_result"] == {
        "ok": False, "error": "第1项：产业“航空航天”不存在；第2项：指标“no_such”不存在"}
    assert session.scalar(select(func.count(PlanItem.id))) == 0
    with restored(session, factory, iid) as running:
        assert data_of(running, "review_plan", TaskState.READY)["plan_result"]["ok"] is False
    do(session, task, people["guihua"], {"items": []})
    assert names(session, iid) == ["publish_call", "record_visits", "source_leads"]

    do(session, only(session, iid, "source_leads"), people["zhaoshang"], {"leads": [
        {"name": "无人机整机项目", "enterprise": "某航空科技公司", "investment": 30000, "project_type": "industrial",
         "industry": "无人机"}]})
    task = only(session, iid, "source_leads")
    assert task_data(session, task)["leads_result"]["error"] == "第1条线索：产业“无人机”不存在"
    do(session, task, people["zhaoshang"], {"leads": [
        {"name": "无人机整机项目", "enterprise": "某航空科技公司", "investment": 30000, "project_type": "industrial",
         "industry": "低空经济"}]})
    assert session.scalar(select(Project.stage).where(Project.name == "无人机整机项目")) == "lead"

    assert publish(session, people, iid, ["shz"], industry="no_such_industry") == 0
    task = only(session, iid, "publish_call")
    assert task_data(session, task)["call_result"] == {
        "ok": False, "error": "第1个榜单 calls[0].industry：产业“no_such_industry”不存在", "calls": []}
    assert publish(session, people, iid, ["shz"], project_code="XM-1999-0001") == 0
    assert task_data(session, only(session, iid, "publish_call"))["call_result"]["error"] == \
        "第1个榜单 calls[0].project_code：项目“XM-1999-0001”不在项目库中或不在您的查看范围内 (no such project in your reach)"
    with pytest.raises(Exception, match="calls"):  # the form: a call without its chain
        do(session, only(session, iid, "publish_call"), people["zhaoshang"],
           {"call_decision": "publish", "calls": [{"call_title": "x", "eligible_units": ["shz"], "bid_window": "P7D"}]})
    session.rollback()
    cid = publish(session, people, iid, ["shz"])
    assert sorted(bid_tasks(session, cid)) == ["shz"]
    assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "call.publish")) == 1
    assert audit.verify(session).ok


# -- ⑦ one call per industry chain -----------------------------------------------------------------

def test_two_calls_for_two_chains_and_a_second_call_for_one_chain_is_refused(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    iid = start(session)
    to_fork(session, people, iid, [])
    energy = a_call(["shz", "lgz"], "P3D", call_title="新能源产业链储能揭榜", industry="新能源")
    # The same chain twice in one submission: refused, naming the second call's field; nothing opens.
    do(session, only(session, iid, "publish_call"), people["zhaoshang"], {
        "call_decision": "publish", "calls": [a_call(["shz"]), energy, a_call(["lkq"], industry="智能家电")]})
    task = only(session, iid, "publish_call")
    assert task_data(session, task)["call_result"]["error"] == \
        "第3个榜单 calls[2].industry：产业链“智能家电”在本次提交中重复：每条产业链每期只发布一个榜单"
    assert call_instance(session) is None and call_instance(session, "new_energy") is None
    assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "call.publish")) == 0

    # Two chains at once, each its own instance, window and leader; then publish again.
    do(session, task, people["zhaoshang"], {"call_decision": "publish", "calls": [a_call(["shz", "lkq"]), energy],
                                            "publish_more": True})
    smart, power = call_instance(session), call_instance(session, "new_energy")
    assert smart and power and smart != power
    rows = {r.business_key: r for r in session.scalars(select(ProcessInstance).where(
        ProcessInstance.id.in_([smart, power])))}
    assert rows["JB-2025-08-smart_appliance"].next_timer_at == clock.now() + timedelta(days=7)
    assert rows["JB-2025-08-new_energy"].next_timer_at == clock.now() + timedelta(days=3)
    assert sorted(bid_tasks(session, smart)) == ["lkq", "shz"] and sorted(bid_tasks(session, power)) == ["lgz", "shz"]
    task = only(session, iid, "publish_call")  # 继续发布: back to the form, which lists what is open
    ready = task_data(session, task)
    assert ready["publish_more"] is False and [c["code"] for c in ready["call_result"]["calls"]] == [
        "JB-2025-08-smart_appliance", "JB-2025-08-new_energy"]

    # A second call for a chain that has one this period: refused, naming the field; nothing changes.
    do(session, task, people["zhaoshang"], {"call_decision": "publish", "calls": [a_call(["lgz"], industry="智能家电")]})
    task = only(session, iid, "publish_call")
    assert task_data(session, task)["call_result"]["error"] == (
        "第1个榜单 calls[0].industry：产业链“智能家电”本期已发布榜单 JB-2025-08-smart_appliance："
        "每条产业链每期只发布一个榜单")
    assert session.scalar(select(func.count(ProcessInstance.id)).join(ProcessDefinition).where(
        ProcessDefinition.key == "loop_call")) == 2
    # The same chain next period is a new call.
    assert projects.call_code("2025-09", "smart_appliance") == "JB-2025-09-smart_appliance"
    do(session, task, people["zhaoshang"], {"call_decision": "skip", "skip_reason": "本期榜单已发布完毕"})
    finish_other_branches(session, people, iid)
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "completed"

    # Each call its own window: after 3 days only the energy call closes.
    bid(session, people, power, "lgz", "李哥庄镇储能项目方案")
    close_window(session, power, days=3)
    row = session.get(ProcessInstance, smart)
    assert row is not None and row.status == "running" and len(bid_tasks(session, smart)) == 2
    appoint = only(session, power, "appoint")
    assert [c.user_id for c in appoint.candidates] == [people["wangjianguo"].user_id]  # fgj's 包挂 leader
    do(session, appoint, people["wangjianguo"], {"appointed_unit": "lgz", "appoint_opinion": "同意",
                                                 "sign_by": "2025-12-31"})
    bid(session, people, smart, "shz", "上合示范区方案")
    bid(session, people, smart, "lkq", None)
    appoint = only(session, smart, "appoint")
    assert [c.user_id for c in appoint.candidates] == [people["lizhenhua"].user_id]  # gxj's 包挂 leader
    do(session, appoint, people["lizhenhua"], {"appointed_unit": "shz", "appoint_opinion": "同意",
                                               "sign_by": "2026-03-31"})
    assert only(session, power, "follow_up").assignee_id == people["lgz_zs"].user_id
    assert only(session, smart, "follow_up").assignee_id == people["shz_zs"].user_id
    assert sorted(session.scalars(select(Bid.call_code).where(Bid.appointed))) == [
        "JB-2025-08-new_energy", "JB-2025-08-smart_appliance"]
    assert audit.verify(session).ok


def test_calls_refuse_the_wrong_leader_oversized_forms_and_keep_hostile_text_as_text(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    from engine.errors import FormInvalid
    iid = start(session)
    to_fork(session, people, iid, [])
    task = only(session, iid, "publish_call")
    tasks.claim(session, task_id=task.id, actor=people["zhaoshang"])
    session.commit()
    too_many = [a_call(["shz"], industry=f"chain{n}") for n in range(21)]
    for bad in ({"call_decision": "publish", "calls": too_many},
                {"call_decision": "publish", "calls": [a_call(["shz"], bid_window="P0D")]},
                {"call_decision": "publish", "calls": [a_call(["shz"], call_title="x" * 201)]},
                {"call_decision": "publish", "calls": [a_call(["no_such_unit"])]},
                {"call_decision": "publish"}):
        with pytest.raises(FormInvalid):
            tasks.complete(session, task_id=task.id, actor=people["zhaoshang"], data=bad)
        session.rollback()
    assert call_instance(session) is None and only(session, iid, "publish_call").id == task.id
    hostile = "<script>alert(1)</script>{{ 7*7 }}"
    tasks.complete(session, task_id=task.id, actor=people["zhaoshang"],
                   data={"call_decision": "publish", "calls": [a_call(["shz"], call_title=hostile)]})
    session.commit()
    cid = call_instance(session)
    assert cid is not None
    row = session.get(ProcessInstance, cid)
    assert row is not None and row.title == f"揭榜挂帅《{hostile}》（2025-08）"
    bid(session, people, cid, "shz", hostile)
    appoint = only(session, cid, "appoint")
    with pytest.raises(NotYourTask):  # fgj's leader does not appoint for gxj's chain
        tasks.claim(session, task_id=appoint.id, actor=people["wangjianguo"])
    session.rollback()
    with pytest.raises(NotYourTask):  # nor does the bidder
        tasks.claim(session, task_id=appoint.id, actor=people["shz_zs"])
    session.rollback()
    assert task_data(session, appoint)["call"]["title"] == hostile
    assert audit.verify(session).ok

# -- ④ an unclaimed item: deadline, lights, escalation ------------------------------------------------

def test_an_unclaimed_item_turns_yellow_then_red_and_climbs_to_its_units_head(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str],
        frozen: Any) -> None:
    from engine.deadlines import escalation
    from engine.deadlines.models import DeadlineWatch, EscalationStep
    head = org.add_user(session, username="gxj_head", display_name="工信局周局长", unit_codes=["gxj"], role_codes=[])
    gxj = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert gxj is not None
    gxj.leader_id = head.id
    session.commit()
    iid = start(session)
    do(session, only(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    do(session, only(session, iid, "review_plan"), people["guihua"], {"items": [
        {"title": "智能家电强链", "industry": "smart_appliance", "indicator": "smart_appliance_scale", "gap": 80}]})
    claim = only(session, iid, "claim_item")
    assert (claim.escalation_unit_id, [c.user_id for c in claim.candidates]) == (gxj.id, [people["lizhenhua"].user_id])
    # 3 working days from Monday 1 September 2025 09:00: Thursday 4 September.
    assert claim.due_at is not None and claim.due_at.astimezone(clock.SHANGHAI).date() == date(2025, 9, 4)
    # ⑤ ⑥ ⑦ go on while the item waits.
    assert names(session, iid) == ["claim_item", "publish_call", "record_visits", "source_leads"]

    def sweep(when: datetime) -> list[tuple[str, list[int]]]:
        clock.freeze(when)
        for _ in range(2):  # a second sweep repeats nothing
            escalation.sweep(session, now=clock.now())
            session.commit()
        return [(s.step, s.recipients) for s in session.scalars(select(EscalationStep).where(
            EscalationStep.object_type == "task", EscalationStep.object_id == claim.id).order_by(EscalationStep.id))]

    def light() -> str:
        watch = session.scalar(select(DeadlineWatch).where(DeadlineWatch.object_type == "task",
                                                           DeadlineWatch.object_id == claim.id))
        return watch.light if watch is not None else "green"

    sh = clock.SHANGHAI
    leader, unit_head = people["lizhenhua"].user_id, head.id
    assert sweep(datetime(2025, 9, 2, 10, 0, tzinfo=sh)) == [] and light() == "green"
    assert sweep(datetime(2025, 9, 3, 10, 0, tzinfo=sh)) == [("yellow", [leader])] and light() == "yellow"
    assert sweep(datetime(2025, 9, 4, 10, 0, tzinfo=sh))[1:] == [("red", []), ("handler", [leader])]
    assert light() == "red"
    steps = sweep(datetime(2025, 9, 5, 10, 0, tzinfo=sh))  # one working day late: the lead unit's head
    assert steps[3:] == [("unit_head", [unit_head])]
    steps = sweep(datetime(2025, 9, 9, 10, 0, tzinfo=sh))  # three working days late: the responsible leader
    assert steps[4:] == [("responsible_leader", [leader])]
    row = session.get(PlanItem, task_data(session, claim)["plan_item"]["id"])
    assert row is not None and row.status == "open"
    # Claimed at last: the light goes out, the period's other branches were never held up.
    do(session, claim, people["lizhenhua"], {"measures": "专班推进", "finish_by": "2025-12-31"})
    session.refresh(row)
    assert row.status == "claimed"
    assert names(session, iid) == ["publish_call", "record_visits", "source_leads"]
    assert audit.verify(session).ok


# -- one instance per period ------------------------------------------------------------------------

def test_start_period_is_idempotent_and_links_the_previous_period(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    july = start(session, period="2025-07")
    again = plan.start_period(session, "2025-07", people["tongji"])
    session.commit()
    assert (again.instance_id, again.created) == (july, False)
    august = start(session, people["tongji"], period="2025-08")
    assert august != july
    instances.terminate(session, instance_id=july, actor=SYSTEM)
    session.commit()
    assert plan.start_period(session, "2025-07", SYSTEM) == plan.PeriodStart(july, "2025-07", created=False)
    with restored(session, factory, august) as running:
        ready = data_of(running, "confirm_figures", TaskState.READY)
        assert (ready["period"], ready["previous_instance_id"], ready["initiator"]) == ("2025-08", july, "tongji")
    keys = session.scalars(select(ProcessInstance.business_key).order_by(ProcessInstance.id)).all()
    assert keys == ["investment_loop:2025-07", "investment_loop:2025-08"]
    with pytest.raises(InvalidInput):
        plan.start_period(session, "2025/08", SYSTEM)
    session.rollback()
    assert session.scalar(select(func.count(ProcessInstance.id))) == 2
    assert audit.verify(session).ok


def test_a_call_is_not_started_by_hand_without_a_whole_call(session: Session, people: dict[str, Actor],
                                                           deployed: dict[str, str]) -> None:
    from engine.errors import FormInvalid
    from engine.runtime import starts
    version = deploy.latest_version(session, "loop_call")
    assert version is not None
    info = starts.start_info(session, version)
    assert not starts.may_start(session, people["zhaoshang"], info)  # started by ⑦ 开榜, not from the start page
    for data in ({}, {"call": {"code": "JB-2025-08-x"}, "bid_units": [], "bid_window": "P7D"},
                 {"call": {"code": "<script>", "title": "t", "industry": "i", "leader": "l", "project_code": ""},
                  "bid_units": ["shz"], "bid_window": "P7D"}):
        with pytest.raises(FormInvalid):
            instances.start(session, process_key="loop_call", actor=SYSTEM, data=data, from_client=True)
        session.rollback()
    assert call_instance(session) is None


def test_deploys_with_every_lane_resolved(session: Session, deployed: dict[str, str]) -> None:
    version = deploy.latest_version(session, "investment_loop")
    assert version is not None and version.name == "七步工作法"
    import json
    lanes = json.loads(version.lane_map_json)
    assert sorted(lanes) == ["产业规划", "招商专员", "数据监测", "服务专员", "责任领导"]
    assert all("role_id" in target for target in lanes.values())
    call = deploy.latest_version(session, "loop_call")
    assert call is not None and call.name == "揭榜挂帅"
    assert sorted(json.loads(call.lane_map_json)) == ["招商专员", "责任领导"]
    assert set(deployed) == {"issue_ledger", "parallel_approval"}


@pytest.mark.parametrize("name", ["investment_loop.bpmn", "loop_call.bpmn"])
def test_the_diagram_is_complete_for_the_modeller(name: str) -> None:
    """Every element has a shape inside its lane, every flow an edge from its source to its target."""
    from lxml import etree
    bpmn_ns = "http://www.omg.org/spec/BPMN/20100524/MODEL"
    ns = {"bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI", "dc": "http://www.omg.org/spec/DD/20100524/DC",
          "di": "http://www.omg.org/spec/DD/20100524/DI", "bpmn": bpmn_ns}
    drawn = {"startEvent", "endEvent", "boundaryEvent", "userTask", "serviceTask", "exclusiveGateway",
             "parallelGateway", "subProcess", "lane", "participant"}
    tree = etree.parse(str(BPMN_DIR / name))
    shapes = {s.get("bpmnElement"): [float(s.find("dc:Bounds", ns).get(k)) for k in ("x", "y", "width", "height")]
              for s in tree.iterfind(".//bpmndi:BPMNShape", ns)}
    edges = {e.get("bpmnElement"): [(float(w.get("x")), float(w.get("y"))) for w in e.iterfind("di:waypoint", ns)]
             for e in tree.iterfind(".//bpmndi:BPMNEdge", ns)}
    problems = []
    for el in tree.iter(f"{{{bpmn_ns}}}*"):
        local, el_id = etree.QName(el).localname, el.get("id")
        if local == "sequenceFlow":
            points = edges.get(el_id, [])
            for end, ref in ((points[0], el.get("sourceRef")), (points[-1], el.get("targetRef"))) if points else ():
                x, y, w, h = shapes[ref]
                if not (x - 1 <= end[0] <= x + w + 1 and y - 1 <= end[1] <= y + h + 1):
                    problems.append(f"{el_id}: waypoint {end} is not on {ref}")
            if len(points) < 2:
                problems.append(f"{el_id}: no edge")
        elif local in drawn and el_id not in shapes:
            problems.append(f"{el_id}: no shape")
    for lane in tree.iterfind(".//bpmn:lane", ns):
        lx, ly, lw, lh = shapes[lane.get("id")]
        for ref in lane.iterfind("bpmn:flowNodeRef", ns):
            x, y, w, h = shapes[ref.text]
            if not (lx <= x and x + w <= lx + lw and ly <= y + h / 2 <= ly + lh):
                problems.append(f"{ref.text}: not drawn in its lane {lane.get('name')}")
    assert problems == []

