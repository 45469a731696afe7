"""经济运行监测: read models of the leaders' dashboard — targets, gaps, projects, warnings, per-unit views.

Nothing here writes. Every figure of an indicator (status, projected year-end, gap) comes from
`plan.investment` (① `indicator_statuses`, formulas in its module doc); this module adds
what the screen needs around it:

- light: green when plan's status is met or on_track; yellow when behind by at most
  YELLOW_SHARE (5 %) of the target (e.g. GDP projected +5.4 % against +5.6 %: gap 0.2 ≤ 0.28);
  red when behind by more; none when there is no figure (missing).
- year-to-date (累计) is plan's value (the latest figure of the year up to the period; counted
  indicators count the project library); the period's own figure (本期) is, for cumulative
  indicators, the year-to-date minus the one of the month recorded before; for rates, shares
  and stocks it is the year-to-date figure itself.
- progress = year-to-date ÷ target × 100; relative gap = gap ÷ target × 100 (how far behind).
- ② gap analysis links each indicator behind (yellow or red) to what addresses it: the plan items
  of the year's latest period naming the indicator or its industry (③④, with their investment_loop
  instance), the
  projects (of the indicator's industry; for `projects_<stage>[_<category>]` the pipeline that has
  not reached that stage yet, of that category; otherwise those of the plan items' industries) and
  the open ledger issues of those projects.

Scope (`scope_of`): admins, the system, city leaders (city_leader) and auditors see everything;
everyone else sees what their org units own — indicators whose responsible unit or whose
industry's lead unit is theirs, projects their unit is responsible for or that are located in it (a
town sees its own projects), issues given to their unit or about their projects, their units' tasks.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.errors import Forbidden, NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, Role, User
from engine.runtime.models import ProcessDefinition, ProcessInstance
from plan import investment as plan
from plan.dashboard.charts import Chart, Series
from plan.indicators.models import Indicator, IndicatorValue, Industry, PlanItem
from plan.ledger import OPEN_STATES
from plan.ledger.models import LedgerIssue
from plan.projects.models import STAGES, Project, ProjectLibrary, ProjectStage

EVERYTHING_ROLES = ("city_leader", "auditor")
YELLOW_SHARE = Decimal("0.05")
LIGHTS = ("red", "yellow", "green", "none")
GROUPS = ("industry_development", "investment", "operations", "industry")
CATEGORIES = ("focus", "key", "layout")
Q2 = Decimal("0.01")
HUNDRED = Decimal(100)


# -- scope ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """What a viewer may see: everything, or what the org units in `unit_ids` own."""

    everything: bool
    unit_ids: frozenset[int] = frozenset()

    def sees_unit(self, unit_id: int | None) -> bool:
        return self.everything or (unit_id is not None and unit_id in self.unit_ids)

    def sees_project(self, project: Project) -> bool:
        return self.sees_unit(project.responsible_unit_id) or self.sees_unit(project.location_unit_id)

    def sees_issue(self, issue: LedgerIssue, project: Project | None) -> bool:
        return self.sees_unit(issue.unit_id) or (project is not None and self.sees_project(project))


def scope_of(session: Session, actor: Actor) -> Scope:
    """Return the dashboard scope of an actor (see the module doc)."""
    if actor.is_admin or actor.is_system:
        return Scope(True)
    if actor.role_ids:
        codes = set(session.scalars(select(Role.code).where(Role.id.in_(actor.role_ids))))
        if codes & set(EVERYTHING_ROLES):
            return Scope(True)
    return Scope(False, frozenset(actor.org_unit_ids))


# -- periods --------------------------------------------------------------------------------------

def default_period(session: Session, now: datetime) -> str:
    """Return the period to show: last month, or the latest month with figures if that is earlier."""
    due = plan.period_due(now)
    latest = session.scalar(select(IndicatorValue.period).where(IndicatorValue.period <= due)
                            .order_by(IndicatorValue.period.desc()).limit(1))
    if latest is not None:
        return latest
    year = session.scalar(select(Indicator.year).order_by(Indicator.year.desc()).limit(1))
    if year is not None and int(due[:4]) > year:
        return f"{year:04d}-12"
    return due


def month_labels() -> tuple[str, ...]:
    return tuple(f"{m}月" for m in range(1, 13))


# -- indicators -----------------------------------------------------------------------------------

def light_of(a: plan.Assessment) -> str:
    """Return the indicator's light (module doc): green, yellow, red, or none without a figure."""
    if a.status == "missing":
        return "none"
    if a.status in ("met", "on_track"):
        return "green"
    tolerance = abs(a.target) * YELLOW_SHARE
    return "yellow" if (a.gap or Decimal(0)) <= tolerance else "red"


def _pct(part: Decimal | None, whole: Decimal) -> Decimal | None:
    if part is None or not whole:
        return None
    return (part / whole * HUNDRED).quantize(Q2, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class IndicatorRow:
    """One indicator on the dashboard: plan's assessment plus what the screen shows around it."""

    a: plan.Assessment
    group: str
    plan_line: int
    plan_text: str
    source: str
    industry_code: str | None
    industry_name: str | None
    category: str | None
    unit_id: int | None
    unit_code: str | None
    unit_name: str | None
    counted: bool
    light: str
    ytd: Decimal | None
    period_value: Decimal | None
    progress: Decimal | None
    relative_gap: Decimal | None
    series: tuple[Decimal | None, ...]  # year-to-date by month, January first, up to the period

    @property
    def code(self) -> str:
        return self.a.code

    @property
    def name(self) -> str:
        return self.a.name

    @property
    def behind(self) -> bool:
        return self.light in ("red", "yellow")


def _series(session: Session, indicators: list[Indicator], year: int, month: int,
            end: date) -> dict[int, list[Decimal | None]]:
    """Year-to-date figure per month (1..month) of each indicator: recorded values, or project counts."""
    out: dict[int, list[Decimal | None]] = {i.id: [None] * month for i in indicators}
    rows = session.execute(select(IndicatorValue.indicator_id, IndicatorValue.period, IndicatorValue.value).where(
        IndicatorValue.indicator_id.in_([i.id for i in indicators] or [-1]),
        IndicatorValue.period >= f"{year:04d}-01", IndicatorValue.period <= f"{year:04d}-{month:02d}"))
    for indicator_id, period, value in rows:
        out[indicator_id][int(period[5:7]) - 1] = Decimal(value)
    counted = {i.id: m for i in indicators if (m := plan.COUNTED_CODE.match(i.code)) is not None}
    if counted:
        reached = session.execute(select(ProjectStage.stage, Project.category, ProjectStage.on)
                                  .join(Project, Project.id == ProjectStage.project_id)
                                  .where(ProjectStage.on >= date(year, 1, 1), ProjectStage.on <= end)).all()
        for indicator_id, match in counted.items():
            stage, category = match.group(1), match.group(2)
            per_month = [0] * month
            for s, c, on in reached:
                if s == stage and (category is None or c == category):
                    per_month[on.month - 1] += 1
            running = 0
            for index in range(month):
                running += per_month[index]
                out[indicator_id][index] = Decimal(running)
    return out


def _period_value(a: plan.Assessment, series: list[Decimal | None]) -> Decimal | None:
    if a.value is None or a.as_of is None:
        return None
    if not a.cumulative:
        return a.value
    index = int(a.as_of[5:7]) - 1
    before = next((v for v in reversed(series[:index]) if v is not None), Decimal(0))
    return a.value - before


def indicator_rows(session: Session, period: str, scope: Scope) -> list[IndicatorRow]:
    """Assess every indicator of the period's year the scope may see (plan ①), ordered as the plan lists them.

    Raises: InvalidInput (bad period)
    """
    year, month = plan.parse_period(period)
    assessments = {a.indicator_id: a for a in plan.indicator_statuses(session, period)}
    indicators = list(session.scalars(select(Indicator).where(Indicator.id.in_(list(assessments) or [-1]))))
    industries = {i.id: i for i in session.scalars(select(Industry))}
    units = {u.id: u for u in session.scalars(select(OrgUnit))}
    latest_source = {iid: src for iid, src in session.execute(
        select(IndicatorValue.indicator_id, IndicatorValue.source).where(
            IndicatorValue.period >= f"{year:04d}-01", IndicatorValue.period <= period)
        .order_by(IndicatorValue.period))}
    visible = [i for i in indicators if scope.everything or scope.sees_unit(i.responsible_unit_id)
               or (i.industry_id is not None and scope.sees_unit(industries[i.industry_id].lead_unit_id))]
    series = _series(session, visible, year, month, plan.period_end(period))
    rows = []
    for ind in visible:
        a = assessments[ind.id]
        industry = industries.get(ind.industry_id) if ind.industry_id else None
        unit = units.get(ind.responsible_unit_id) if ind.responsible_unit_id else None
        counted = plan.COUNTED_CODE.match(ind.code)
        rows.append(IndicatorRow(
            a=a, group=ind.group, plan_line=ind.plan_line, plan_text=ind.plan_text,
            source=ind.source if counted else (latest_source.get(ind.id) or ind.source),
            industry_code=industry.code if industry else None, industry_name=industry.name if industry else None,
            category=industry.category if industry else (counted.group(2) if counted else None),
            unit_id=unit.id if unit else None, unit_code=unit.code if unit else None,
            unit_name=unit.name if unit else None, counted=counted is not None, light=light_of(a), ytd=a.value,
            period_value=_period_value(a, series[ind.id]),
            progress=_pct(a.value, a.target) if a.comparison not in plan.CAPS else None,
            relative_gap=_pct(a.gap, a.target) if a.gap else None, series=tuple(series[ind.id])))
    rows.sort(key=lambda r: (GROUPS.index(r.group) if r.group in GROUPS else 9, r.plan_line, r.code))
    return rows


# -- projects, plan items, issues -------------------------------------------------------------------

@dataclass(frozen=True)
class Lag:
    """A project behind its planned date for a stage (对进展缓慢项目自动预警)."""

    project: Project
    stage: str  # the first stage not reached although its planned date has passed
    planned: date
    days_late: int
    overdue: tuple[tuple[str, date], ...]  # every stage overdue, first the earliest


PLANNED = (("signed", "planned_sign"), ("started", "planned_start"), ("completed", "planned_complete"),
           ("producing", "planned_produce"))


def lag_of(project: Project, today: date) -> Lag | None:
    """Return how a project is behind its planned dates today, or None when it is on time."""
    reached = STAGES.index(project.stage) if project.stage in STAGES else 0
    overdue = []
    for stage, attribute in PLANNED:
        planned: date | None = getattr(project, attribute)
        if planned is not None and planned < today and STAGES.index(stage) > reached:
            overdue.append((stage, planned))
    if not overdue:
        return None
    stage, planned = overdue[0]
    return Lag(project, stage, planned, (today - planned).days, tuple(overdue))


def visible_projects(session: Session, scope: Scope) -> list[Project]:
    """Return the projects the scope may see, by code."""
    query = select(Project).order_by(Project.code)
    if not scope.everything:
        ids = list(scope.unit_ids) or [-1]
        query = query.where(Project.responsible_unit_id.in_(ids) | Project.location_unit_id.in_(ids))
    return list(session.scalars(query))


@dataclass(frozen=True)
class Gap:
    """② One indicator behind and what addresses it."""

    row: IndicatorRow
    plan_items: tuple[PlanItem, ...]
    projects: tuple[Project, ...]
    issues: tuple[LedgerIssue, ...]


@dataclass(frozen=True)
class IndustryRow:
    industry: Industry
    scale: IndicatorRow | None  # its 产业规模 indicator, when the plan gives one
    rows: tuple[IndicatorRow, ...]
    light: str  # the worst light of its indicators
    projects: int
    projects_by_stage: dict[str, int]


def worst(lights: list[str]) -> str:
    """Return the worst of some lights (red before yellow before green; none when no figure at all)."""
    return next((light for light in LIGHTS if light in lights), "none")


def _addressing(row: IndicatorRow, items: list[PlanItem], projects: list[Project]) -> list[Project]:
    counted = plan.COUNTED_CODE.match(row.code)
    if counted:
        stage, category = counted.group(1), counted.group(2)
        found = [p for p in projects if p.stage in STAGES and STAGES.index(p.stage) < STAGES.index(stage)
                 and (category is None or p.category == category)]
        attribute = dict(PLANNED).get(stage, "planned_sign")
        return sorted(found, key=lambda p: (getattr(p, attribute) or date.max, p.code))
    if row.a.industry_id is not None:
        return [p for p in projects if p.industry_id == row.a.industry_id]
    chains = {i.industry_id for i in items if i.industry_id is not None}
    return [p for p in projects if p.industry_id in chains]


def gaps(session: Session, rows: list[IndicatorRow], projects: list[Project], year: int,
         issues: list[LedgerIssue] | None = None) -> list[Gap]:
    """② For each indicator behind (yellow or red, the largest relative gap first): plan items, projects, issues."""
    behind = [r for r in rows if r.behind]
    if not behind:
        return []
    items = list(session.scalars(select(PlanItem).where(PlanItem.period.like(f"{year:04d}-%"))
                                 .order_by(PlanItem.period.desc(), PlanItem.id)))
    if issues is None:
        issues = open_issues(session, [p.id for p in projects])
    by_project: dict[int, list[LedgerIssue]] = defaultdict(list)
    for issue in issues:
        if issue.project_id is not None:
            by_project[issue.project_id].append(issue)
    result = []
    for row in sorted(behind, key=lambda r: (r.light != "red", -(r.relative_gap or 0), r.plan_line)):
        mine = [i for i in items if i.indicator_id == row.a.indicator_id
                or (row.a.industry_id is not None and i.industry_id == row.a.industry_id)]
        mine = [i for i in mine if i.period == mine[0].period]  # the latest period's plan (③) only
        addressed = _addressing(row, mine, projects)
        result.append(Gap(row, tuple(mine), tuple(addressed),
                          tuple(i for p in addressed for i in by_project.get(p.id, []))))
    return result


def open_issues(session: Session, project_ids: list[int]) -> list[LedgerIssue]:
    """Return the open ledger issues about some projects, the earliest deadline first."""
    if not project_ids:
        return []
    return list(session.scalars(select(LedgerIssue).where(LedgerIssue.project_id.in_(project_ids),
                                                          LedgerIssue.status.in_(OPEN_STATES))
                                .order_by(LedgerIssue.due_at.is_(None), LedgerIssue.due_at, LedgerIssue.id)))


def industry_rows(session: Session, rows: list[IndicatorRow], projects: list[Project],
                  scope: Scope) -> list[IndustryRow]:
    """The plan's industries (22, docs/decisions/0003) with their indicators, scale target and projects."""
    industries = session.scalars(select(Industry).order_by(Industry.plan_line, Industry.code)).all()
    result = []
    for industry in industries:
        own = tuple(r for r in rows if r.a.industry_id == industry.id)
        if not scope.everything and not own and not scope.sees_unit(industry.lead_unit_id):
            continue
        scale = next((r for r in own if r.code == f"scale_{industry.code}"), None)
        mine = [p for p in projects if p.industry_id == industry.id]
        stages = {s: sum(1 for p in mine if p.stage == s) for s in STAGES}
        result.append(IndustryRow(industry, scale, own, worst([r.light for r in own]), len(mine), stages))
    return result


@dataclass(frozen=True)
class Investment:
    """新签约 200 / 新开工 150 and the split by category: plan's rows, or the viewer's own projects."""

    signed: dict[str, IndicatorRow]  # "" for the total, else the category
    started: dict[str, IndicatorRow]
    own: dict[str, dict[str, int]]  # stage → category ("" total) → count of the viewer's projects this year


def investment(rows: list[IndicatorRow], projects: list[Project], year: int, end: date,
               scope: Scope) -> Investment:
    signed: dict[str, IndicatorRow] = {}
    started: dict[str, IndicatorRow] = {}
    for r in rows:
        match = plan.COUNTED_CODE.match(r.code)
        if match and match.group(1) in ("signed", "started"):
            (signed if match.group(1) == "signed" else started)[match.group(2) or ""] = r
    own: dict[str, dict[str, int]] = {}
    if not scope.everything:
        for stage in ("signed", "started"):
            counts = {c: 0 for c in ("", *CATEGORIES)}
            for p in projects:
                if any(s.stage == stage and date(year, 1, 1) <= s.on <= end for s in p.stages):
                    counts[""] += 1
                    counts[p.category] = counts.get(p.category, 0) + 1
            own[stage] = counts
    return Investment(signed, started, own)


@dataclass(frozen=True)
class Pipeline:
    """Projects by stage and library: counts and investment (万元)."""

    libraries: tuple[ProjectLibrary, ...]
    counts: dict[tuple[str, int], int]
    investment: dict[tuple[str, int], Decimal]

    def stage_total(self, stage: str) -> int:
        return sum(n for (s, _lib), n in self.counts.items() if s == stage)

    def library_total(self, library_id: int) -> int:
        return sum(n for (_s, lib), n in self.counts.items() if lib == library_id)


def pipeline(session: Session, projects: list[Project]) -> Pipeline:
    libraries = tuple(session.scalars(select(ProjectLibrary).order_by(ProjectLibrary.id)))
    counts: dict[tuple[str, int], int] = defaultdict(int)
    money: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for p in projects:
        counts[(p.stage, p.library_id)] += 1
        money[(p.stage, p.library_id)] += Decimal(p.investment)
    return Pipeline(libraries, dict(counts), dict(money))


# -- the overview -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoopInstance:
    id: int
    period: str
    status: str
    title: str


def loop_instances(session: Session, year: int) -> list[LoopInstance]:
    """The investment_loop instances (七步工作法) of a year, latest period first."""
    rows = session.execute(select(ProcessInstance.id, ProcessInstance.business_key, ProcessInstance.status,
                                  ProcessInstance.title)
                           .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                           .where(ProcessDefinition.key == plan.PROCESS_KEY,
                                  ProcessInstance.business_key.like(f"{plan.PROCESS_KEY}:{year:04d}-%"))
                           .order_by(ProcessInstance.business_key.desc(), ProcessInstance.id)).all()
    return [LoopInstance(r.id, (r.business_key or "").split(":", 1)[-1], r.status, r.title) for r in rows]


@dataclass(frozen=True)
class Overview:
    period: str
    year: int
    month: int
    scope: Scope
    rows: list[IndicatorRow]
    lights: dict[str, int]
    investment: Investment
    industries: list[IndustryRow]
    pipeline: Pipeline
    lags: list[tuple[Lag, LedgerIssue | None]]
    gaps: list[Gap]
    loops: list[LoopInstance]
    units: dict[int, OrgUnit] = field(default_factory=dict)

    def group(self, name: str) -> list[IndicatorRow]:
        return [r for r in self.rows if r.group == name]

    def headline(self, code: str) -> IndicatorRow | None:
        return next((r for r in self.rows if r.code == code), None)


def overview(session: Session, *, period: str, scope: Scope, now: datetime) -> Overview:
    """Build everything the dashboard's page shows for a period and a viewer's scope.

    Raises: InvalidInput (bad period)
    """
    year, month = plan.parse_period(period)
    rows = indicator_rows(session, period, scope)
    projects = visible_projects(session, scope)
    issues = open_issues(session, [p.id for p in projects])
    first_issue: dict[int, LedgerIssue] = {}
    for issue in issues:
        if issue.project_id is not None:
            first_issue.setdefault(issue.project_id, issue)
    today = now.astimezone(clock.SHANGHAI).date()
    lags = [(lag, first_issue.get(p.id)) for p in projects if (lag := lag_of(p, today)) is not None]
    lags.sort(key=lambda pair: -pair[0].days_late)
    return Overview(
        period=period, year=year, month=month, scope=scope, rows=rows,
        lights={light: sum(1 for r in rows if r.light == light) for light in LIGHTS},
        investment=investment(rows, projects, year, plan.period_end(period), scope),
        industries=industry_rows(session, rows, projects, scope), pipeline=pipeline(session, projects),
        lags=lags, gaps=gaps(session, rows, projects, year, issues), loops=loop_instances(session, year),
        units={u.id: u for u in session.scalars(select(OrgUnit))})


# -- drill-down -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Feed:
    """One figure feeding an indicator: a recorded value (with source), or a project counted."""

    period: str | None
    value: Decimal | None
    source: str
    recorded_by: str | None
    recorded_at: datetime | None
    project: Project | None = None
    on: date | None = None


@dataclass(frozen=True)
class IndicatorDetail:
    indicator: Indicator
    row: IndicatorRow
    feeds: list[Feed]
    gap: Gap | None
    chart: Chart
    loops: list[LoopInstance]


def indicator_detail(session: Session, *, code: str, period: str, scope: Scope) -> IndicatorDetail:
    """Drill down from a headline figure to what feeds it and what addresses its gap.

    Raises: NotFound, Forbidden, InvalidInput
    """
    year, _month = plan.parse_period(period)
    indicator = session.scalar(select(Indicator).where(Indicator.code == code, Indicator.year == year))
    if indicator is None:
        raise NotFound(f"指标不存在 (no such indicator): {code} ({year})", code=code)
    row = next((r for r in indicator_rows(session, period, scope) if r.code == code), None)
    if row is None:
        raise Forbidden(f"无权查看此指标 (not allowed to view this indicator): {code}", code=code)
    feeds: list[Feed] = []
    counted = plan.COUNTED_CODE.match(code)
    if counted:
        stage, category = counted.group(1), counted.group(2)
        query = (select(Project, ProjectStage.on).join(ProjectStage, ProjectStage.project_id == Project.id)
                 .where(ProjectStage.stage == stage, ProjectStage.on >= date(year, 1, 1),
                        ProjectStage.on <= plan.period_end(period)).order_by(ProjectStage.on, Project.code))
        if category:
            query = query.where(Project.category == category)
        feeds = [Feed(None, None, "项目库", None, None, project, on)
                 for project, on in session.execute(query).all() if scope.sees_project(project)]
    else:
        values = session.execute(select(IndicatorValue, User.display_name)
                                 .outerjoin(User, User.id == IndicatorValue.recorded_by_id)
                                 .where(IndicatorValue.indicator_id == indicator.id,
                                        IndicatorValue.period.like(f"{year:04d}-%"))
                                 .order_by(IndicatorValue.period.desc())).all()
        feeds = [Feed(v.period, Decimal(v.value), v.source, name, v.recorded_at) for v, name in values]
    projects = visible_projects(session, scope)
    found = gaps(session, [row], projects, year) if row.behind else []
    return IndicatorDetail(indicator, row, feeds, found[0] if found else None, indicator_chart(row),
                           loop_instances(session, year))


@dataclass(frozen=True)
class ProjectDetail:
    project: Project
    library: ProjectLibrary
    industry: Industry | None
    responsible_unit: OrgUnit | None
    location_unit: OrgUnit | None
    leader: str | None
    lag: Lag | None
    issues: list[LedgerIssue]


def project_detail(session: Session, *, code: str, scope: Scope, now: datetime) -> ProjectDetail:
    """A project's stages against its planned dates, its lag, and its ledger issues.

    Raises: NotFound, Forbidden
    """
    project = session.scalar(select(Project).where(Project.code == code))
    if project is None:
        raise NotFound(f"项目不存在 (no such project): {code}", code=code)
    if not scope.sees_project(project):
        raise Forbidden(f"无权查看此项目 (not allowed to view this project): {code}", code=code)
    issues = list(session.scalars(select(LedgerIssue).where(LedgerIssue.project_id == project.id)
                                  .order_by(LedgerIssue.id.desc())))
    leader = session.scalar(select(User.display_name).where(User.id == project.responsible_leader_id)) \
        if project.responsible_leader_id else None
    return ProjectDetail(project, project.library,
                         session.get(Industry, project.industry_id) if project.industry_id else None,
                         session.get(OrgUnit, project.responsible_unit_id) if project.responsible_unit_id else None,
                         session.get(OrgUnit, project.location_unit_id) if project.location_unit_id else None,
                         leader, lag_of(project, now.astimezone(clock.SHANGHAI).date()), issues)


# -- charts --------------------------------------------------------------------------------------------

def _f(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def indicator_chart(row: IndicatorRow) -> Chart:
    """Trend of one indicator: its year-to-date figure by month, the path to the projection, the target."""
    actual = list(row.series) + [None] * (12 - len(row.series))
    projection: list[float | None] = [None] * 12
    if row.a.value is not None and row.a.as_of is not None and row.a.projected is not None:
        m = int(row.a.as_of[5:7])
        for k in range(m, 13):
            share = Decimal(k - m) / Decimal(12 - m) if m < 12 else Decimal(1)
            projection[k - 1] = float(row.a.value + (row.a.projected - row.a.value) * share)
    label = "累计值" if row.a.cumulative else "当期值"
    return Chart(title=row.name, categories=month_labels(), unit=row.a.unit, target=float(row.a.target),
                 target_label=f"目标 {plan.show(row.a.target)}{row.a.unit}",
                 subtitle=f"{row.plan_text}（规划第{row.plan_line}行）",
                 series=(Series(label, tuple(_f(v) for v in actual)),
                         Series("年末预计", tuple(projection), dashed=True, color="#656d76")))


CATEGORY_NAMES = {"": "合计", "focus": "聚焦突破", "key": "重点实施", "layout": "加快布局"}
STAGE_NAMES = {"lead": "线索", "signed": "签约", "started": "开工", "completed": "竣工", "producing": "投产"}


def investment_chart(ov: Overview) -> Chart:
    """新签约 / 新开工 against their targets, per category (聚焦突破 60/35, 重点实施 120/100, 加快布局 20/15)."""
    keys = ("focus", "key", "layout", "")
    cats = tuple(CATEGORY_NAMES[k] for k in keys)
    inv = ov.investment
    series: tuple[Series, ...]
    if inv.signed or inv.started:
        def vals(cells: dict[str, IndicatorRow], attr: str) -> tuple[float | None, ...]:
            return tuple(_f(getattr(cells[k].a, attr)) if k in cells else None for k in keys)
        series = (Series("签约", vals(inv.signed, "value"), kind="bar"),
                  Series("签约目标", vals(inv.signed, "target"), kind="bar", color="#f4b8bb"),
                  Series("开工", vals(inv.started, "value"), kind="bar", color="#1f6feb"),
                  Series("开工目标", vals(inv.started, "target"), kind="bar", color="#b6d4fe"))
    else:
        series = tuple(Series(STAGE_NAMES[stage], tuple(float(inv.own.get(stage, {}).get(k, 0)) for k in keys),
                              kind="bar") for stage in ("signed", "started"))
    return Chart(title="招商引资：新签约与新开工", categories=cats, series=series, unit="个",
                 subtitle=f"截至 {ov.period}")


def industries_chart(ov: Overview) -> Chart:
    """The industries with a scale target: year-to-date and projected year-end as % of the target."""
    rows = [i for i in ov.industries if i.scale is not None]
    return Chart(title="产业规模目标完成进度", categories=tuple(i.industry.name for i in rows), unit="%",
                 target=100.0, target_label="目标 100%", subtitle=f"截至 {ov.period}",
                 series=(Series("累计完成", tuple(_f(i.scale.progress) if i.scale else None for i in rows), kind="bar"),
                         Series("年末预计", tuple(_f(_pct(i.scale.a.projected, i.scale.a.target)) if i.scale else None
                                              for i in rows), kind="bar", color="#8c959f")))


def pipeline_chart(ov: Overview) -> Chart:
    """Projects per stage, stacked by library (项目库)."""
    stages = STAGES
    return Chart(title="项目推进：各阶段项目数", categories=tuple(STAGE_NAMES[s] for s in stages), unit="个",
                 series=tuple(Series(lib.name, tuple(float(ov.pipeline.counts.get((s, lib.id), 0)) for s in stages),
                                     kind="bar", stack="projects") for lib in ov.pipeline.libraries))


CHARTS = {"investment": investment_chart, "industries": industries_chart, "pipeline": pipeline_chart}


def named_chart(ov: Overview, name: str) -> Chart:
    """Return one of the overview's charts by name.

    Raises: NotFound
    """
    if name not in CHARTS:
        raise NotFound(f"没有这个图表 (no such chart): {name}", chart=name)
    return CHARTS[name](ov)


def check_period(value: str | None, fallback: str) -> str:
    """Return a valid period from a query argument, or the fallback when none was given.

    Raises: InvalidInput
    """
    if not value:
        return fallback
    plan.parse_period(value)
    return value


def as_json(value: Any) -> Any:
    """Decimal → float for JSON answers."""
    if isinstance(value, Decimal):
        return float(value)
    return value


__all__ = ["Gap", "IndicatorRow", "Lag", "Overview", "Scope", "check_period", "default_period", "gaps",
           "indicator_chart", "indicator_detail", "indicator_rows", "lag_of", "light_of", "named_chart",
           "overview", "project_detail", "scope_of", "visible_projects"]
