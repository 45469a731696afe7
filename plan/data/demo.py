"""演示数据 (`jzflow demo`): a data set that makes a newcomer's first look meaningful; idempotent.

The content is editable YAML in data/demo/ (all enterprises, projects and figures are fictional):
projects at every stage in the four libraries, some behind plan; monthly indicator values of the
plan year, some behind target; ledger issues at every step, some overdue; parallel approvals in
flight; the last two periods of the seven-step method, the earlier one completed with its 揭榜 calls open
(one loop_call instance per industry chain), the later one at ④ with ⑤ ⑥ ⑦ open beside it.

Everything goes through the services real users go through (instances.start, tasks.claim/complete,
operations.urge/carbon_copy, plan.start_period), as the seed users, so the inbox, the ledger, the
deadlines and the audit trail are what the engine itself produced. Projects, their planned dates and
stages go through the project entry services a unit's data officer uses (plan.projects.entry:
create_project, record_stage, decide_report for 竣工/投产), as the system on behalf of the recorders of
projects.yaml. No service records an indicator value yet: it is written as a model with the audit
event a service would write (`indicator.record`). Each part
is a scenario: a generator yielding the moment of its next step. `replay` takes the steps of all
scenarios in time order with engine.clock frozen at each moment, so the history (project stages,
task times, deadlines, audit events) reads like a real one that ends now; the clock is restored
afterwards. Project stages and indicator values belong to the plan year (2025); issues, approvals
and the loop periods are placed relative to today, so the demo makes sense whatever day it is loaded.
A final audit event `demo.load` at the real time says that the history before it was simulated.

The demo projects' codes mark a loaded demo: a second run changes nothing and says so.
"""
from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, clock, deploy
from engine.errors import InvalidInput
from engine.org.actors import SYSTEM
from engine.org.models import OrgUnit, User
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.tasks.models import HumanTask
from plan import investment as plan
from plan import ledger, projects
from plan.data import demo_leads
from plan.data.demo_flows import Demo, approval, labelled, ledger_issue, loop_period
from plan.indicators.models import Indicator, IndicatorValue, Industry
from plan.meetings import core as meeting_core
from plan.projects import entry as project_entry
from plan.projects.models import STAGES, Project, ProjectLibrary

DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"
FILES = ("projects", "indicators", "issues", "approvals", "investment_loop", "leads")
PROCESSES = ("investment_loop", "loop_call", "parallel_approval", "issue_ledger", "investment_lead")
PLANNED = {"signed": "planned_sign", "started": "planned_start", "completed": "planned_complete",
           "producing": "planned_produce"}
STAGE_GAP = {"signed": 60, "started": 90, "completed": 300, "producing": 60}  # days between planned stages
STAGE_NOTES = {"lead": "线索入库", "signed": "签订投资协议", "started": "项目开工", "completed": "竣工验收",
               "producing": "投产运营"}
STAGE_NAMES = {"lead": "线索", "signed": "签约", "started": "开工", "completed": "竣工", "producing": "投产"}
# file: (keys of the file, the key of its entries, keys every entry needs)
REQUIRED: dict[str, tuple[tuple[str, ...], str | None, tuple[str, ...]]] = {
    "projects": (("recorders",), "projects", ("code", "name", "enterprise", "library", "investment", "location", "stages")),
    "indicators": (("year", "last_month", "recorders", "default_recorder"), "indicators", ("pace",)),
    "issues": (("officer",), "issues", ("title", "unit", "reporter", "history")),
    "approvals": (("window",), "approvals", ("project", "stage", "applicant", "contact", "materials", "history")),
    "investment_loop": (("data_officer", "planner", "service_officer", "investment_officer", "ledger_officer",
                         "open_for", "claim", "visits", "leads", "call"), None, ()),
    "leads": (("officer",), "leads", ("title", "enterprise", "source", "unit", "handler", "history")),
}
SEED_FIRST = "请先运行 `jzflow seed` 加载种子数据 (run `jzflow seed` first)"
DEPLOY_FIRST = "请先运行 `jzflow deploy bpmn/` 部署流程 (run `jzflow deploy bpmn/` first)"


def read(path: Path | None = None) -> dict[str, Any]:
    """Read the demo's YAML files.

    Raises: InvalidInput (a file is missing or is not YAML)
    """
    base = path or DEMO_DIR
    data: dict[str, Any] = {}
    for name in FILES:
        try:
            data[name] = yaml.safe_load((base / f"{name}.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"演示数据文件无法读取 (cannot read demo data file): {name}.yaml: {exc}", file=name) from exc
    check(data)
    return data


def check(data: dict[str, Any]) -> None:
    """Refuse demo files that lack what the loader needs, naming file, entry and field.

    Raises: InvalidInput
    """
    problems: list[str] = []
    for name, (keys, listed, fields) in REQUIRED.items():
        section = data[name]
        if not isinstance(section, dict):
            problems.append(f"{name}.yaml: 须为映射 (must be a mapping)")
            continue
        problems += [f"{name}.yaml: 缺少 (missing) {k}" for k in keys if k not in section]
        entries = section.get(listed) if listed else None
        if listed and not entries:
            problems.append(f"{name}.yaml: {listed} 为空 (empty)")
        for key, entry in (entries.items() if isinstance(entries, dict) else enumerate(entries or [], 1)):
            where = f"{name}.yaml {listed} {key}"
            if not isinstance(entry, dict):
                problems.append(f"{where}: 须为映射 (must be a mapping)")
                continue
            problems += [f"{where}: 缺少字段 (missing field) {f}" for f in fields if f not in entry]
            problems += [f"{where} history 第{n}步: 须有 at (工作日数) 和 do (step needs at and do)"
                         for n, step in enumerate(entry.get("history") or [], 1)
                         if not isinstance(step, dict) or not isinstance(step.get("at"), int) or "do" not in step]
    call = data["investment_loop"].get("call") if isinstance(data["investment_loop"], dict) else None
    if isinstance(call, dict) and not all(k in call for k in ("title", "industry", "eligible_units", "bid")):
        problems.append("investment_loop.yaml call: 须有 title, industry, eligible_units, bid")
    others = data["investment_loop"].get("other_calls") if isinstance(data["investment_loop"], dict) else None
    if others is not None and (not isinstance(others, list) or not all(
            isinstance(c, dict) and all(k in c for k in ("title", "industry", "eligible_units")) for c in others)):
        problems.append("investment_loop.yaml other_calls: 须为列表，每项须有 title, industry, eligible_units")
    if problems:
        raise InvalidInput("演示数据有误 (demo data invalid):\n  " + "\n  ".join(problems), problems=problems)


def _usernames(data: dict[str, Any]) -> set[str]:
    """Every seed user the demo acts as."""
    loop, names = data["investment_loop"], set()
    names |= {loop[k] for k in ("data_officer", "planner", "service_officer", "investment_officer", "open_for",
                                 "ledger_officer")}
    names |= {loop["call"]["bid"]["by"], data["issues"]["officer"], data["approvals"]["window"]}
    names |= set(data["projects"].get("recorders", {}).values()) | set(data["indicators"]["recorders"].values())
    names.add(data["indicators"]["default_recorder"])
    for issue in data["issues"]["issues"]:
        names |= {issue["reporter"], *([issue["handler"]] if issue.get("handler") else [])}
        names |= {u for step in issue["history"] for u in [step.get("by"), *step.get("to", [])] if u}
    names |= {a["applicant"] for a in data["approvals"]["approvals"]}
    return names | demo_leads.usernames(data["leads"])


def check_ready(session: Session, data: dict[str, Any]) -> None:
    """Refuse unless the seed (users, units, industries, indicators, libraries) and the processes are there.

    Raises: InvalidInput
    """
    missing: list[str] = []
    for model, what in [(User, "用户 users"), (OrgUnit, "单位 units"), (Industry, "产业 industries"),
                        (Indicator, "指标 indicators"), (ProjectLibrary, "项目库 libraries")]:
        if not session.scalar(select(func.count()).select_from(model)):
            missing.append(what)
    wanted = _usernames(data)
    known = set(session.scalars(select(User.username).where(User.username.in_(sorted(wanted)))))
    if not missing and wanted - known:  # seeded, but users.yaml no longer has everyone the demo acts as
        missing.append("用户 users " + ", ".join(sorted(wanted - known)))
    if missing:
        raise InvalidInput(f"{SEED_FIRST}; 缺少 (missing): {'; '.join(missing)}", missing=missing)
    absent = [key for key in PROCESSES if deploy.latest_version(session, key) is None]
    if absent:
        raise InvalidInput(f"{DEPLOY_FIRST}; 未部署 (not deployed): {', '.join(absent)}", missing=absent)


# -- the timeline ---------------------------------------------------------------------------------

def replay(scenarios: Iterable[Iterator[datetime]], *, until: datetime) -> None:
    """Take every scenario's steps in time order, the clock frozen at each step (never past `until`)."""
    heap: list[tuple[datetime, int, Iterator[datetime]]] = []

    def schedule(n: int, scenario: Iterator[datetime]) -> None:
        when = next(scenario, None)  # runs the scenario's current step, returns when the next one is due
        if when is not None:
            heapq.heappush(heap, (min(clock.as_utc(when), until), n, scenario))

    for n, scenario in enumerate(scenarios):
        schedule(n, scenario)
    last: datetime | None = None
    while heap:
        when, n, scenario = heapq.heappop(heap)
        last = when if last is None else max(when, last)  # a step never goes back in time
        clock.freeze(last)
        schedule(n, scenario)


# -- projects and indicator values -------------------------------------------------------------------

def _stage_dates(spec: dict[str, Any]) -> list[tuple[str, date]]:
    stages = [(s, spec["stages"][s]) for s in STAGES if s in spec["stages"]]
    days = [d for _s, d in stages]
    if not stages or stages[0][0] != "lead" or not all(isinstance(d, date) for d in days) or \
            days != sorted(days) or set(spec["stages"]) - set(STAGES):
        raise InvalidInput(f"projects.yaml {spec.get('code')}: stages 须从 lead 开始、日期按阶段递增 "
                           "(stages must start with lead, dates in stage order)", project=spec.get("code"))
    return stages


def _planned(spec: dict[str, Any], stages: list[tuple[str, date]], demo: Demo, n: int) -> dict[str, date]:
    """Planned dates: a little before each day reached; the next stage `next_due` days from today, then on."""
    reached, planned = dict(stages), {}
    following = STAGES[STAGES.index(stages[-1][0]) + 1] if stages[-1][0] != STAGES[-1] else None
    previous = demo.today
    for stage, field in PLANNED.items():
        if stage in reached:
            day = reached[stage] - timedelta(days=(n * 3) % 15)
        elif stage == following:
            day = demo.today + timedelta(days=int(spec.get("next_due", 60)))
        else:
            day = previous + timedelta(days=STAGE_GAP[stage])
        planned[field], previous = day, day
    return planned


def project(demo: Demo, spec: dict[str, Any], n: int, shift: timedelta, recorders: dict[str, str]) -> Iterator[datetime]:
    """Add one project on its lead day, then reach each of its stages on its day."""
    session = demo.session
    stages = [(s, d - shift) for s, d in _stage_dates(spec)]
    yield demo.moment(stages[0][1])
    library = session.scalar(select(ProjectLibrary).where(ProjectLibrary.code == spec["library"]))
    industry = projects.find_industry(session, spec.get("industry"))
    location = session.scalar(select(OrgUnit).where(OrgUnit.code == spec["location"]))
    if library is None or location is None or (spec.get("industry") and industry is None):
        raise InvalidInput(f"projects.yaml {spec['code']}: 项目库、产业或所在地不存在 (unknown library, industry or "
                           "location)", project=spec["code"])
    unit_id = demo.unit_id(spec["unit"]) if spec.get("unit") else (industry.lead_unit_id if industry else None)
    leader = spec.get("leader") or (session.scalar(select(User.username).where(
        User.id == location.responsible_leader_id)) if location.responsible_leader_id else "")
    category = industry.category if industry else spec.get("category")
    if category not in projects.CATEGORIES:
        raise InvalidInput(f"projects.yaml {spec['code']}: 没有产业时须填类别 category (focus/key/layout)",
                           project=spec["code"])
    unit_code = session.scalar(select(OrgUnit.code).where(OrgUnit.id == unit_id)) if unit_id else location.code
    # Entered through the same services as a unit's data officer uses (plan.projects.entry); the loader acts as
    # the system on behalf of the recorders named in projects.yaml, who are not members of every project's unit.
    data = project_entry.ProjectInput(
        name=spec["name"], enterprise=spec["enterprise"], investment=Decimal(str(spec["investment"])),
        project_type=spec.get("type", "industrial"), unit_code=str(unit_code), location_code=location.code,
        libraries=(library.code,), industry=industry.code if industry else "", category=str(category),
        leader=str(leader or ""), description=spec.get("description", ""),
        planned=tuple(_planned(spec, stages, demo, n).items()))
    row = project_entry.create_project(session, actor=SYSTEM, data=data, code=spec["code"], created_on=stages[0][1])
    recorder = recorders.get(spec["library"]) or recorders.get("default") or ""
    for stage, on in stages:
        if stage == "lead":
            continue
        yield demo.moment(on)
        note = f"{STAGE_NOTES[stage]}（{demo.actor(recorder).display_name}）" if recorder else STAGE_NOTES[stage]
        report = project_entry.record_stage(session, row, actor=SYSTEM, stage=stage, on=on, evidence=STAGE_NOTES[stage],
                                    note=note)
        if report is not None:  # 竣工 / 投产: confirmed by a second person, here the system
            project_entry.decide_report(session, row, actor=SYSTEM, report_id=report.id, confirm=True)


def _value(ind: Indicator, pace: Decimal, month: int, last: int) -> Decimal:
    """A month's value: cumulative figures add up evenly to target × pace; others close in on it."""
    target = Decimal(ind.target)
    if ind.cumulative and ind.kind not in plan.RATE_KINDS:
        raw = target * pace * month / 12
    else:
        raw = target * pace * (Decimal("0.96") + Decimal("0.04") * month / last)
    whole = ind.kind == "count" and target == target.to_integral_value()
    return raw.quantize(Decimal(1) if whole else Decimal("0.01"), rounding=ROUND_CEILING)


def indicator_values(demo: Demo, spec: dict[str, Any]) -> Iterator[datetime]:
    """Record each month's values at the end of the month, as the data officers would."""
    session, year = demo.session, int(spec["year"])
    done = 12 if demo.today.year > year else (demo.today.month - 1 if demo.today.year == year else 0)
    last = min(int(spec["last_month"]), done)
    wanted = dict(spec["indicators"])
    rows = {i.code: i for i in session.scalars(select(Indicator).where(Indicator.code.in_(list(wanted)),
                                                                       Indicator.year == year))}
    if set(wanted) - set(rows):
        raise InvalidInput(f"indicators.yaml: 指标不存在 (unknown indicators): {', '.join(sorted(set(wanted) - set(rows)))}")
    for month in range(1, last + 1):
        end = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
        yield demo.moment(end, 17)
        period = f"{year:04d}-{month:02d}"
        for code, cfg in wanted.items():
            months = [m for m in (cfg.get("months") or range(1, last + 1)) if m <= last]
            ind = rows[code]
            if month not in months or session.scalar(select(IndicatorValue.id).where(
                    IndicatorValue.indicator_id == ind.id, IndicatorValue.period == period)) is not None:
                continue
            actor = demo.actor(spec["recorders"].get(ind.source, spec["default_recorder"]))
            value = _value(ind, Decimal(str(cfg["pace"])), month, max(months))
            row = IndicatorValue(indicator_id=ind.id, period=period, value=value, source=ind.source,
                                 recorded_by_id=actor.user_id, recorded_at=clock.now())
            session.add(row)
            session.flush()
            audit.record(session, actor, "indicator.record", stream=f"indicator:{ind.id}", object_type="indicator_value",
                         object_id=row.id, after={"indicator": code, "period": period, "value": value,
                                                  "source": ind.source})


# -- the command ------------------------------------------------------------------------------------

def load_demo(session: Session, path: Path | None = None) -> str:
    """Load the demo data set unless it is loaded already, and describe what is there (flushes).

    Raises: InvalidInput (seed or processes missing; a demo file is wrong)
    """
    data = read(path)
    check_ready(session, data)
    codes = [p["code"] for p in data["projects"]["projects"]]
    present = set(session.scalars(select(Project.code).where(Project.code.in_(codes))))
    if present == set(codes):
        return "此前已加载，本次未做任何修改 (already loaded earlier; nothing changed)"
    if present:
        raise InvalidInput("数据库中已有部分演示项目编号，无法加载演示数据 (some demo project codes are taken): "
                           + ", ".join(sorted(present)))
    now = clock.now()
    was_frozen = clock.frozen_at() is not None  # give the caller's clock back as it was
    current = plan.period_due(now)
    periods = (plan.period_due(Demo.moment(date.fromisoformat(f"{current}-01"))), current)  # and the month before
    notes: list[str] = []
    try:
        replay(scenarios(Demo(session, now), data, periods, notes), until=now)
        clock.freeze(now)
        _next_meeting(session, now, notes)
        summary = describe(session, codes, now, periods, notes)
        audit.record(session, SYSTEM, "demo.load", stream="demo", object_type="demo", object_id="demo",
                     after={"summary": summary, "simulated_until": now, "projects": len(codes)})
    finally:
        if was_frozen:
            clock.freeze(now)
        else:
            clock.unfreeze()
    return summary


def _next_meeting(session: Session, now: datetime, notes: list[str]) -> None:
    """Build the coming 项目推进暨评审会议's agenda now, as the beat would a few days before it."""
    rhythm = meeting_core.load()
    if rhythm is None:
        return
    day = meeting_core.next_meeting(rhythm, now.astimezone(clock.SHANGHAI).date())
    early = Demo.moment(day - timedelta(days=rhythm.prepare_days), 7)
    meeting = meeting_core.ensure_meeting(session, now=early, rhythm=rhythm)
    if meeting is not None:
        notes.append(f"{meeting.title} 议程 {len(meeting.agenda)} 个项目")


def scenarios(demo: Demo, data: dict[str, Any], periods: tuple[str, str], notes: list[str]) -> list[Iterator[datetime]]:
    """Every part of the demo as a scenario: projects, indicator values, issues, approvals, the two periods."""
    specs = data["projects"]["projects"]
    latest = max(d for p in specs for _s, d in _stage_dates(p))
    shift = max(latest - (demo.today - timedelta(days=1)), timedelta(0))  # loaded early in the plan year
    found: list[Iterator[datetime]] = [project(demo, p, n, shift, data["projects"]["recorders"])
                                       for n, p in enumerate(specs)]
    found.append(indicator_values(demo, data["indicators"]))
    found += [ledger_issue(demo, spec, data["issues"]["officer"], f"issues.yaml 第{n}项《{spec['title']}》")
              for n, spec in enumerate(data["issues"]["issues"], 1)]
    found += [approval(demo, spec, data["approvals"]["window"], f"approvals.yaml 第{n}项 ({spec['project']})")
              for n, spec in enumerate(data["approvals"]["approvals"], 1)]
    found += [demo_leads.investment_lead(demo, spec, data["leads"]["officer"], f"leads.yaml 第{n}项《{spec['title']}》")
              for n, spec in enumerate(data["leads"]["leads"], 1)]
    leads_after = Demo.moment(max(p["stages"]["lead"] for p in specs) - shift, 11)  # after the last project
    found += [labelled(f"investment_loop.yaml ({period})", loop_period(
        demo, data["investment_loop"], period, full=full, notes=notes, leads_after=leads_after))
        for period, full in zip(periods, (True, False), strict=True)]
    return found


def describe(session: Session, codes: list[str], now: datetime, periods: tuple[str, str], notes: list[str]) -> str:
    """Say what the demo holds: projects by stage, values, issues, approvals and what the periods wait for."""
    rows = session.scalars(select(Project).where(Project.code.in_(codes))).all()
    today = now.astimezone(clock.SHANGHAI).date()
    stages = "、".join(f"{STAGE_NAMES[s]} {sum(p.stage == s for p in rows)}" for s in STAGES)
    slow = sum(1 for p in rows if p.stage != STAGES[-1] and
               (getattr(p, PLANNED[STAGES[STAGES.index(p.stage) + 1]]) or today) < today)
    values = int(session.scalar(select(func.count()).select_from(IndicatorValue)) or 0)
    open_issues = len(ledger.list_issues(session, open_only=True, limit=1000))
    overdue = len(ledger.list_issues(session, overdue_at=now, limit=1000))
    closed = len(ledger.list_issues(session, status="closed", limit=1000))

    def count(key: str, status: str) -> int:
        return int(session.scalar(select(func.count()).select_from(ProcessInstance).join(ProcessDefinition)
                                  .where(ProcessDefinition.key == key, ProcessInstance.status == status)) or 0)

    def waiting(period: str) -> str:
        keys = [plan.business_key(period), *(c["code"] for c in projects.calls_of_period(session, period))]
        names = session.scalars(select(HumanTask.name).join(ProcessInstance).where(
            ProcessInstance.business_key.in_(keys), HumanTask.state == "ready")).all()
        return "、".join(f"{name}×{n}" for name, n in Counter(names).items()) or "无"
    return "；".join([
        f"项目 {len(rows)} 个 ({stages}；{slow} 个已过计划日期未进入下一阶段)", f"指标数值 {values} 条",
        f"问题台账 在办 {open_issues} 件 (逾期 {overdue} 件)、已销号 {closed} 件",
        f"并联审批 在办 {count('parallel_approval', 'running')} 件、已出证 {count('parallel_approval', 'completed')} 件",
        *(f"七步工作法 {p} 期待办：{waiting(p)}" for p in periods), *notes,
        f"历史模拟至 {now.astimezone(clock.SHANGHAI):%Y-%m-%d %H:%M}"])


__all__ = ["check_ready", "describe", "load_demo", "read", "replay"]
