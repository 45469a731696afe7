"""经济运行监测: read models of the leaders' dashboard — the overview of a period, drill-downs, charts.

Nothing here writes. The parts: `targets` (each indicator's light and figures, ② gaps, industries),
`pipeline` (the viewer's projects, 新签约/新开工, projects by stage), `plan.projects.lags` (projects
behind their planned dates), `scope` (who sees what), `unitview` (one org unit's work), `charts`
(drawing). This module puts them together for one page and draws the overview's charts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.errors import NotFound
from engine.org.models import OrgUnit, User
from engine.runtime.models import ProcessDefinition, ProcessInstance
from plan import investment as plan
from plan.dashboard.charts import Chart, Series
from plan.dashboard.pipeline import Investment, Pipeline, investment, pipeline, visible_projects
from plan.dashboard.scope import Scope
from plan.dashboard.targets import (
    LIGHTS,
    Gap,
    IndicatorRow,
    IndustryRow,
    gaps,
    indicator_rows,
    industry_rows,
    month_labels,
    open_issues,
    percent,
)
from plan.indicators.models import Indicator, IndicatorValue, Industry
from plan.ledger.models import LedgerIssue
from plan.projects.lags import STAGE_NAMES, Lag, lag_of
from plan.projects.models import STAGES, Project, ProjectLibrary, ProjectStage

CATEGORY_NAMES = {"": "合计", "focus": "聚焦突破", "key": "重点实施", "layout": "加快布局"}


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
    parts: tuple[IndicatorRow, ...] = ()  # the indicators this one counts (5条产业链: the five chains)
    whole: IndicatorRow | None = None  # the indicator this one is a part of


def indicator_detail(session: Session, *, code: str, period: str, scope: Scope) -> IndicatorDetail:
    """Drill down from a headline figure to what feeds it and what addresses its gap.

    Raises: NotFound (also for an indicator out of scope: its existence is not told), InvalidInput
    """
    year, _month = plan.parse_period(period)
    indicator = session.scalar(select(Indicator).where(Indicator.code == code, Indicator.year == year))
    rows = indicator_rows(session, period, scope) if indicator is not None else []
    row = next((r for r in rows if r.code == code), None)
    if indicator is None or row is None:
        raise NotFound(f"指标不存在 (no such indicator): {code} ({year})", code=code)
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
                           loop_instances(session, year),
                           parts=tuple(r for r in rows if r.a.parent_id == indicator.id),
                           whole=next((r for r in rows if r.a.indicator_id == indicator.parent_id), None))


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

    Raises: NotFound (also for a project out of scope: its existence is not told)
    """
    project = session.scalar(select(Project).where(Project.code == code))
    if project is None or not scope.sees_project(project):
        raise NotFound(f"项目不存在 (no such project): {code}", code=code)
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
                 target_label=f"目标 {row.a.target_text}{row.a.unit}",
                 subtitle=f"{row.plan_text}（规划第{row.plan_line}行）",
                 series=(Series(label, tuple(_f(v) for v in actual)),
                         Series("年末预计", tuple(projection), dashed=True, color="#656d76")))


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
                         Series("年末预计", tuple(_f(percent(i.scale.a.projected, i.scale.a.target)) if i.scale else None
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


def as_json(value: Any) -> Any:
    """Decimal → float for JSON answers."""
    if isinstance(value, Decimal):
        return float(value)
    return value


__all__ = ["CATEGORY_NAMES", "CHARTS", "Feed", "IndicatorDetail", "LoopInstance", "Overview", "ProjectDetail",
           "as_json", "indicator_chart", "indicator_detail", "loop_instances", "named_chart", "overview",
           "project_detail"]
