"""七步工作法 ① 指标监测预警 and ② 缺口分析: each indicator against its target, and the gaps as draft plan items.

Formulas (one indicator, the period P = YYYY-MM of year Y = the indicator's year):

- The value used is the latest one recorded for a period of year Y up to P ("as of" that month m),
  so a quarterly figure (GDP) recorded in June still counts in August. None → status `missing`.
- Indicators coded `projects_<stage>[_<category>]` (data/seed: `projects_signed` 新签约 200,
  `projects_started_focus` 聚焦突破类新开工 35, …) are counted from the project library instead:
  projects that reached the stage (ProjectStage.on) from 1 January of Y to the end of P, of that
  category if given; m is P's month. A recorded value for them is ignored.
- Cumulative figures (counts and amounts with `cumulative`, e.g. 新签约项目 200, 产业规模 500 亿元) add
  up over the year: projected year-end = value × 12 / m. Rates and shares (`growth_rate`,
  `share`, never cumulative: e.g. GDP +5.6 %, 第三产业占比 53 %) are year-to-date values:
  projected year-end = the value itself.
- A range (3—5家) is met at its lower end (`target`); the upper end (`target_high`) is shown beside it.
- An indicator counted over its parts (5条产业链产值增长20%: `parent` of the five chains' indicators)
  with no value of its own recorded counts the parts that are met in P: value = that count, as of the
  latest part's period; missing while no part has a figure. A recorded value of its own wins.
- `>=` / `>` / `==` targets: met when the value already meets the target, on_track when only the
  projection does, behind otherwise; gap = max(target − projected, 0). `<=` / `<` targets (caps):
  behind when the projection breaks the cap, met when the year is complete (m = 12) or the figure
  is a rate, on_track otherwise; gap = max(projected − target, 0). remaining = what still
  separates the value itself from the target (0 when met).

Plan items proposed by ②: one per industry with at least one indicator behind (its indicators
listed in the title), and one per city-wide indicator behind (no industry).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from plan import projects
from plan.indicators.models import Indicator, IndicatorValue, Industry
from plan.investment.periods import parse_period, period_end

COUNTED_CODE = re.compile(r"^projects_(lead|signed|started|completed|producing)(?:_(focus|key|layout))?$")
CAPS = ("<=", "<")
STATUSES = ("met", "on_track", "behind", "missing")
Q4 = Decimal("0.0001")
RATE_KINDS = ("growth_rate", "share")


def round4(value: Decimal) -> Decimal:
    return value.quantize(Q4, rounding=ROUND_HALF_UP)


def show(value: Decimal | None) -> str | None:
    """Format a Decimal for instance data and titles: at most 4 decimals, no trailing zeros."""
    if value is None:
        return None
    text_ = format(round4(value), "f")
    return text_.rstrip("0").rstrip(".") if "." in text_ else text_


def _meets(value: Decimal, target: Decimal, comparison: str) -> bool:
    if comparison == ">":
        return value > target
    if comparison == "<=":
        return value <= target
    if comparison == "<":
        return value < target
    if comparison == "==":
        return value == target
    return value >= target


def assess(*, target: Decimal, comparison: str, cumulative: bool, value: Decimal | None,
           months: int | None, whole: bool = False) -> tuple[str, Decimal | None, Decimal | None, Decimal | None]:
    """Return (status, projected year-end, gap, remaining) of one indicator (formulas: module doc).

    `whole`: the indicator counts things one by one (个, 家, 列; not 万人): the status is judged on the exact
    projection, and the projection and gap shown are whole numbers (31.5 projects is no forecast anyone can read).
    """
    if value is None or not months:
        return "missing", None, None, None
    projected = round4(value * 12 / Decimal(months)) if cumulative else round4(value)
    status, projected, gap, remaining = _standing(target, comparison, cumulative, value, months, projected)
    if whole:
        projected = projected.quantize(Decimal(1), rounding=ROUND_HALF_UP)
        gap = max(projected - target, Decimal(0)) if comparison in CAPS else max(target - projected, Decimal(0))
    return status, projected, gap, remaining


def _standing(target: Decimal, comparison: str, cumulative: bool, value: Decimal, months: int,
              projected: Decimal) -> tuple[str, Decimal, Decimal, Decimal]:
    if comparison in CAPS:
        gap = max(projected - target, Decimal(0))
        remaining = max(value - target, Decimal(0))
        if not _meets(projected, target, comparison):
            status = "behind"
        elif months == 12 or not cumulative:
            status = "met"
        else:
            status = "on_track"
    else:
        gap = max(target - projected, Decimal(0))
        remaining = max(target - value, Decimal(0))
        if _meets(value, target, comparison):
            status = "met"
        elif _meets(projected, target, comparison):
            status = "on_track"
        else:
            status = "behind"
    return status, projected, round4(gap), round4(remaining)


@dataclass(frozen=True)
class Assessment:
    """One indicator's standing in a period."""

    indicator_id: int
    code: str
    name: str
    kind: str
    unit: str
    target: Decimal
    comparison: str
    cumulative: bool
    industry_id: int | None
    value: Decimal | None
    as_of: str | None  # the period the value is for
    status: str
    projected: Decimal | None
    gap: Decimal | None
    remaining: Decimal | None
    target_high: Decimal | None = None  # the upper end of a range (3—5家)
    parent_id: int | None = None  # the indicator this one is a part of (one of the 5条产业链)

    @property
    def target_text(self) -> str:
        """The target as the plan words it: 20, or a range 3—5 (unit apart)."""
        low = show(self.target) or ""
        return f"{low}—{show(self.target_high)}" if self.target_high is not None else low

    def brief(self) -> dict[str, Any]:
        """Return the compact, JSON-able form kept in instance data."""
        return {"code": self.code, "status": self.status, "value": show(self.value), "as_of": self.as_of,
                "projected": show(self.projected), "target": show(self.target), "gap": show(self.gap)}


def _counted(session: Session, code: str, year: int, end: date) -> Decimal | None:
    match = COUNTED_CODE.match(code)
    if match is None:
        return None
    return Decimal(projects.count_in_stage(session, match.group(1), year=year, category=match.group(2), until=end))


def indicator_statuses(session: Session, period: str) -> list[Assessment]:
    """Assess every indicator of the period's year against its target (①), ordered by code.

    Raises: InvalidInput (bad period)
    """
    year, month = parse_period(period)
    end = period_end(period)
    indicators = session.scalars(select(Indicator).where(Indicator.year == year).order_by(Indicator.code)).all()
    latest: dict[int, IndicatorValue] = {}
    if indicators:
        rows = session.scalars(select(IndicatorValue).where(
            IndicatorValue.indicator_id.in_([i.id for i in indicators]),
            IndicatorValue.period >= f"{year:04d}-01", IndicatorValue.period <= period)
            .order_by(IndicatorValue.indicator_id, IndicatorValue.period))
        for row in rows:
            latest[row.indicator_id] = row  # ordered by period: the last one wins
    parts: dict[int, list[Assessment]] = {}
    done: dict[int, Assessment] = {}
    # Parts before the indicators counted over them (one level: seed_schema refuses deeper chains).
    for ind in sorted(indicators, key=lambda i: i.parent_id is None):
        cumulative = bool(ind.cumulative) and ind.kind not in RATE_KINDS
        counted = _counted(session, ind.code, year, end)
        if counted is not None:
            value, as_of, months = counted, period, month
        elif ind.id in latest:
            row = latest[ind.id]
            value, as_of, months = Decimal(row.value), row.period, parse_period(row.period)[1]
        elif figured := [p for p in parts.get(ind.id, []) if p.value is not None]:
            value = Decimal(sum(1 for p in figured if p.status == "met"))
            as_of = max(p.as_of or "" for p in figured)
            months = parse_period(as_of)[1]
        else:
            value, as_of, months = None, None, None
        target = Decimal(ind.target)
        status, projected, gap, remaining = assess(target=target, comparison=ind.comparison or ">=",
                                                   cumulative=cumulative, value=value, months=months,
                                                   whole=ind.kind == "count" and target == target.to_integral_value())
        done[ind.id] = a = Assessment(
            ind.id, ind.code, ind.name, ind.kind, ind.unit, target, ind.comparison or ">=", cumulative,
            ind.industry_id, value, as_of, status, projected, gap, remaining,
            None if ind.target_high is None else Decimal(ind.target_high), ind.parent_id)
        if ind.parent_id is not None:
            parts.setdefault(ind.parent_id, []).append(a)
    return [done[ind.id] for ind in indicators]


def status_summary(period: str, assessments: list[Assessment]) -> dict[str, Any]:
    """Return the compact summary of ① kept in instance data: counts and the codes behind or missing."""
    counts = {s: sum(1 for a in assessments if a.status == s) for s in STATUSES}
    return {"period": period, "counts": counts,
            "behind": [a.code for a in assessments if a.status == "behind"],
            "missing": [a.code for a in assessments if a.status == "missing"]}


def propose_plan_items(session: Session, assessments: list[Assessment]) -> list[dict[str, Any]]:
    """Turn the indicators behind into draft plan items (③'s form rows), per industry chain."""
    behind = [a for a in assessments if a.status == "behind"]
    industries = {i.id: i for i in session.scalars(select(Industry).where(
        Industry.id.in_([a.industry_id for a in behind if a.industry_id is not None] or [-1])))}
    drafts: list[dict[str, Any]] = []
    by_industry: dict[int, list[Assessment]] = {}
    for a in behind:
        if a.industry_id is not None and a.industry_id in industries:
            by_industry.setdefault(a.industry_id, []).append(a)
        else:
            drafts.append({"title": f"补齐缺口：{a.name}（年末预计 {show(a.projected)}{a.unit}，"
                                    f"目标 {show(a.target)}{a.unit}，差 {show(a.gap)}{a.unit}）",
                           "industry": "", "indicator": a.code, "gap": float(a.gap or 0)})
    for industry_id, items in by_industry.items():
        industry, first = industries[industry_id], items[0]
        gaps = "；".join(f"{a.name}年末预计 {show(a.projected)}{a.unit}，差 {show(a.gap)}{a.unit}" for a in items)
        drafts.append({"title": f"{industry.name}产业链补链强链：{gaps}", "industry": industry.code,
                       "indicator": first.code, "gap": float(first.gap or 0)})
    drafts.sort(key=lambda d: (d["industry"], d["indicator"]))
    return drafts


def gap_analysis(session: Session, period: str) -> dict[str, Any]:
    """Compute ②: the indicators behind with gap and projection, and the draft plan items.

    Returns {"summary": {...compact...}, "items": [draft rows]}. Raises: InvalidInput
    """
    assessments = indicator_statuses(session, period)
    behind = [a.brief() for a in assessments if a.status == "behind"]
    summary = {**status_summary(period, assessments), "behind": behind}
    return {"summary": summary, "items": propose_plan_items(session, assessments)}


__all__ = ["CAPS", "COUNTED_CODE", "RATE_KINDS", "STATUSES", "Assessment", "assess", "gap_analysis",
           "indicator_statuses", "propose_plan_items", "round4", "show", "status_summary"]
