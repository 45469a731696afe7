"""② The dashboard's indicators: each one's light, year-to-date and period figures, and its gap.

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
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.models import OrgUnit
from plan import investment as plan
from plan.dashboard.scope import Scope
from plan.indicators.models import Indicator, IndicatorValue, Industry, PlanItem
from plan.ledger import OPEN_STATES
from plan.ledger.models import LedgerIssue
from plan.projects.lags import PLANNED
from plan.projects.models import STAGES, Project, ProjectStage

YELLOW_SHARE = Decimal("0.05")
LIGHTS = ("red", "yellow", "green", "none")
GROUPS = ("industry_development", "investment", "operations", "industry", "works")
Q2 = Decimal("0.01")
HUNDRED = Decimal(100)


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


def check_period(value: str | None, fallback: str) -> str:
    """Return a valid period from a query argument, or the fallback when none was given.

    Raises: InvalidInput
    """
    if not value:
        return fallback
    plan.parse_period(value)
    return value


# -- indicators -----------------------------------------------------------------------------------

def light_of(a: plan.Assessment) -> str:
    """Return the indicator's light (module doc): green, yellow, red, or none without a figure."""
    if a.status == "missing":
        return "none"
    if a.status in ("met", "on_track"):
        return "green"
    tolerance = abs(a.target) * YELLOW_SHARE
    return "yellow" if (a.gap or Decimal(0)) <= tolerance else "red"


def percent(part: Decimal | None, whole: Decimal) -> Decimal | None:
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
    also_quoted: tuple[tuple[int, str], ...]  # the plan's other lines stating the same target
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
            also_quoted=tuple((int(str(q["plan_line"])), str(q["plan_text"])) for q in ind.also_quoted or ()),
            source=ind.source if counted else (latest_source.get(ind.id) or ind.source),
            industry_code=industry.code if industry else None, industry_name=industry.name if industry else None,
            category=industry.category if industry else (counted.group(2) if counted else None),
            unit_id=unit.id if unit else None, unit_code=unit.code if unit else None,
            unit_name=unit.name if unit else None, counted=counted is not None, light=light_of(a), ytd=a.value,
            period_value=_period_value(a, series[ind.id]),
            progress=percent(a.value, a.target) if a.comparison not in plan.CAPS else None,
            relative_gap=percent(a.gap, a.target) if a.gap else None, series=tuple(series[ind.id])))
    rows.sort(key=lambda r: (GROUPS.index(r.group) if r.group in GROUPS else 9, r.plan_line, r.code))
    return rows


# -- ② gaps and industries -------------------------------------------------------------------------

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


__all__ = ["GROUPS", "LIGHTS", "Gap", "IndicatorRow", "IndustryRow", "check_period", "default_period", "gaps",
           "indicator_rows", "industry_rows", "light_of", "month_labels", "open_issues", "percent", "worst"]
