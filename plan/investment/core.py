"""七步工作法: services for investment_loop.bpmn — steps ①–⑤ and the period's instance.

① 指标监测预警 `indicator_statuses` assesses every indicator of the period's year against its
target; ② 缺口分析 `gap_analysis` turns the ones behind into proposed plan items; ③ the planner's
reviewed items become `PlanItem` rows (`create_plan_items`); ④ each is claimed by a leader
(`claim_plan_item`); ⑤ problems found on enterprise visits go to the issue ledger (`raise_issues`).
Steps ⑥ ⑦ (leads, 揭榜挂帅) live in `plan.projects`.

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
- `>=` / `>` / `==` targets: met when the value already meets the target, on_track when only the
  projection does, behind otherwise; gap = max(target − projected, 0). `<=` / `<` targets (caps):
  behind when the projection breaks the cap, met when the year is complete (m = 12) or the figure
  is a rate, on_track otherwise; gap = max(projected − target, 0). remaining = what still
  separates the value itself from the target (0 when met).

Plan items proposed by ②: one per industry with at least one indicator behind (its indicators
listed in the title), and one per city-wide indicator behind (no industry). Candidates to claim
an item (④): the responsible leader (责任领导, 包挂) of the industry's lead unit, else of the
indicator's responsible unit, else everyone with the role `leader`.

One instance per period (continue-as-new, DESIGN §1/§4): `start_period` starts it, idempotently,
with business key `investment_loop:YYYY-MM`; a Celery beat entry calls it monthly.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.db import is_postgres
from engine.errors import InvalidInput, NotFound
from engine.org.actors import Actor
from engine.runtime import effects
from engine.runtime.models import ProcessDefinition, ProcessInstance
from plan import projects
from plan.indicators.models import Indicator, IndicatorValue, Industry, PlanItem

PROCESS_KEY = "investment_loop"
LEADER_ROLE = "leader"  # 0001: 责任领导
PERIOD_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
COUNTED_CODE = re.compile(r"^projects_(lead|signed|started|completed|producing)(?:_(focus|key|layout))?$")
CAPS = ("<=", "<")
STATUSES = ("met", "on_track", "behind", "missing")
Q4 = Decimal("0.0001")
RATE_KINDS = ("growth_rate", "share")


# -- periods ------------------------------------------------------------------------------------

def parse_period(period: str) -> tuple[int, int]:
    """Return (year, month) of a period "YYYY-MM".

    Raises: InvalidInput
    """
    match = PERIOD_PATTERN.match(period) if isinstance(period, str) else None
    if match is None:
        raise InvalidInput(f"期间格式应为 YYYY-MM (period must be YYYY-MM): {period!r}", field="period")
    return int(match.group(1)), int(match.group(2))


def period_end(period: str) -> date:
    """Return the last day of a period."""
    year, month = parse_period(period)
    first_next = date(year + (month == 12), month % 12 + 1, 1)
    return first_next - timedelta(days=1)


def period_due(now: datetime) -> str:
    """Return the period a run started at `now` analyses: the previous month (Asia/Shanghai)."""
    local = now.astimezone(clock.SHANGHAI).date().replace(day=1) - timedelta(days=1)
    return f"{local.year:04d}-{local.month:02d}"


def business_key(period: str) -> str:
    """Return the business key of a period's instance."""
    parse_period(period)
    return f"{PROCESS_KEY}:{period}"


# -- ① indicator status and ② projection ---------------------------------------------------------

def _q(value: Decimal) -> Decimal:
    return value.quantize(Q4, rounding=ROUND_HALF_UP)


def show(value: Decimal | None) -> str | None:
    """Format a Decimal for instance data and titles: at most 4 decimals, no trailing zeros."""
    if value is None:
        return None
    text_ = format(_q(value), "f")
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
           months: int | None) -> tuple[str, Decimal | None, Decimal | None, Decimal | None]:
    """Return (status, projected year-end, gap, remaining) of one indicator (formulas: module doc)."""
    if value is None or not months:
        return "missing", None, None, None
    projected = _q(value * 12 / Decimal(months)) if cumulative else _q(value)
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
    return status, projected, _q(gap), _q(remaining)


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
    result: list[Assessment] = []
    for ind in indicators:
        cumulative = bool(ind.cumulative) and ind.kind not in RATE_KINDS
        counted = _counted(session, ind.code, year, end)
        if counted is not None:
            value, as_of, months = counted, period, month
        elif ind.id in latest:
            row = latest[ind.id]
            value, as_of, months = Decimal(row.value), row.period, parse_period(row.period)[1]
        else:
            value, as_of, months = None, None, None
        target = Decimal(ind.target)
        status, projected, gap, remaining = assess(target=target, comparison=ind.comparison or ">=",
                                                   cumulative=cumulative, value=value, months=months)
        result.append(Assessment(ind.id, ind.code, ind.name, ind.kind, ind.unit, target, ind.comparison or ">=",
                                 cumulative, ind.industry_id, value, as_of, status, projected, gap, remaining))
    return result


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


# -- ③ plan items and ④ claims ------------------------------------------------------------------

def _candidates(session: Session, industry: Industry | None, indicator: Indicator | None) -> str:
    leader = projects.responsible_leader(session, industry.lead_unit_id if industry else None) or \
        projects.responsible_leader(session, indicator.responsible_unit_id if indicator else None)
    return leader or LEADER_ROLE


class ItemsInvalid(InvalidInput):
    """A reviewed plan item names an industry or indicator that does not exist."""

    code = "plan_items_invalid"


def create_plan_items(session: Session, *, period: str, instance_id: int | None, items: list[dict[str, Any]],
                      actor: Actor) -> list[PlanItem]:
    """Create the period's plan items (③) from the planner's reviewed rows (flushes).

    Idempotent per instance: when the instance already has items, those are returned.
    Raises: InvalidInput (bad period), ItemsInvalid (nothing is created)
    """
    parse_period(period)
    if instance_id is not None:
        existing = list(session.scalars(select(PlanItem).where(PlanItem.instance_id == instance_id)
                                        .order_by(PlanItem.id)))
        if existing:
            return existing
    resolved: list[tuple[dict[str, Any], Industry | None, Indicator | None]] = []
    problems: list[str] = []
    for n, item in enumerate(items, 1):
        industry = projects.find_industry(session, str(item.get("industry") or ""))
        if (item.get("industry") or "").strip() and industry is None:
            problems.append(f"第{n}项：产业“{item['industry']}”不存在")
        indicator = None
        if (item.get("indicator") or "").strip():
            indicator = session.scalar(select(Indicator).where(Indicator.code == item["indicator"].strip()))
            if indicator is None:
                problems.append(f"第{n}项：指标“{item['indicator']}”不存在")
        resolved.append((item, industry, indicator))
    if problems:
        raise ItemsInvalid("；".join(problems), field="items")
    created: list[PlanItem] = []
    for item, industry, indicator in resolved:
        gap = item.get("gap")
        row = PlanItem(period=period, instance_id=instance_id, title=str(item["title"]).strip()[:300],
                       industry_id=industry.id if industry else None,
                       indicator_id=indicator.id if indicator else None,
                       gap=_q(Decimal(str(gap))) if gap is not None else None, status="open")
        session.add(row)
        session.flush()
        audit.record(session, actor, "plan_item.create", stream=f"plan_item:{row.id}", object_type="plan_item",
                     object_id=row.id, after={"period": period, "title": row.title, "gap": row.gap,
                                              "industry": industry.code if industry else None,
                                              "indicator": indicator.code if indicator else None,
                                              "instance_id": instance_id})
        created.append(row)
    return created


def claim_candidates(session: Session, item: PlanItem) -> str:
    """Return who may claim an item: a leader's username, or the role code `leader`."""
    industry = session.get(Industry, item.industry_id) if item.industry_id else None
    indicator = session.get(Indicator, item.indicator_id) if item.indicator_id else None
    return _candidates(session, industry, indicator)


def claim_plan_item(session: Session, *, item_id: int, actor: Actor, measures: str = "",
                    finish_by: str | None = None) -> PlanItem:
    """Record a leader's claim (认领) of a plan item (④; flushes). Claiming twice keeps the first claim.

    Raises: NotFound
    """
    item = session.get(PlanItem, item_id)
    if item is None:
        raise NotFound(f"计划任务不存在 (no plan item): {item_id}", item_id=item_id)
    if item.status != "open":
        return item
    item.status = "claimed"
    item.claimed_by_id = actor.user_id
    item.claimed_at = clock.now()
    session.flush()
    audit.record(session, actor, "plan_item.claim", stream=f"plan_item:{item.id}", object_type="plan_item",
                 object_id=item.id, after={"status": "claimed", "claimed_by": actor.username,
                                           "measures": measures, "finish_by": finish_by})
    return item


def _item_brief(session: Session, item: PlanItem) -> dict[str, Any]:
    return {"id": item.id, "title": item.title, "candidates": claim_candidates(session, item)}


# -- ⑤ enterprise visits → issue ledger ----------------------------------------------------------

def issue_start_data(visit: dict[str, Any], problem: dict[str, Any], reporter: str) -> dict[str, Any]:
    """Build issue_ledger's start data (contract 0001) for one problem found on a visit."""
    data: dict[str, Any] = {
        "title": str(problem["title"]), "description": str(problem.get("description") or ""),
        "enterprise": str(visit["enterprise"]), "unit_code": str(problem["unit_code"]),
        "source": "service_visit", "reporter": reporter,
    }
    if problem.get("project_code"):
        data["project_code"] = str(problem["project_code"])
    if problem.get("due_date"):
        data["due_date"] = str(problem["due_date"])
    return data


# -- the period's instance ------------------------------------------------------------------------

@dataclass(frozen=True)
class PeriodStart:
    instance_id: int
    period: str
    created: bool  # False: the period's instance existed already


def _period_instance(session: Session, key: str) -> ProcessInstance | None:
    return session.scalar(select(ProcessInstance).join(ProcessDefinition,
                                                       ProcessDefinition.id == ProcessInstance.definition_id)
                          .where(ProcessDefinition.key == PROCESS_KEY, ProcessInstance.business_key == key)
                          .order_by(ProcessInstance.id).limit(1))


def start_period(session: Session, period: str, actor: Actor) -> PeriodStart:
    """Start the period's 七步工作法 instance unless it exists (any status): one instance per period (flushes).

    The caller commits. Raises: InvalidInput, ProcessNotFound
    """
    from engine.runtime import instances
    key = business_key(period)
    if is_postgres(session):
        # Two beat runs or a hand start racing: serialise on the key for the rest of the transaction.
        lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
    existing = _period_instance(session, key)
    if existing is not None:
        return PeriodStart(existing.id, period, created=False)
    year, month = parse_period(period)
    previous = _period_instance(session, business_key(f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"))
    data: dict[str, Any] = {"period": period}
    if previous is not None:
        data["previous_instance_id"] = previous.id  # continue-as-new: only the link is carried forward
    row = instances.start(session, process_key=PROCESS_KEY, actor=actor, data=data, business_key=key,
                          title=f"七步工作法 {period}")
    return PeriodStart(row.id, period, created=True)


# -- service tasks ----------------------------------------------------------------------------------

def _instance_id(ctx: effects.RunContext) -> int:
    return ctx.running.row.id


@effects.service("loop_indicator_status")
def loop_indicator_status(ctx: effects.RunContext, period: str) -> dict[str, Any]:
    """① Assess the period's indicators; keep only counts and codes in instance data."""
    return status_summary(period, indicator_statuses(ctx.session, period))


@effects.service("loop_gap_analysis")
def loop_gap_analysis(ctx: effects.RunContext, period: str) -> dict[str, Any]:
    """② Gaps and year-end projections of the indicators behind, and draft plan items for ③."""
    return gap_analysis(ctx.session, period)


@effects.service("loop_create_plan_items")
def loop_create_plan_items(ctx: effects.RunContext, period: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """③ Create the reviewed plan items; an unknown industry or indicator sends the form back."""
    try:
        created = create_plan_items(ctx.session, period=period, instance_id=_instance_id(ctx), items=list(items),
                                    actor=ctx.actor)
    except ItemsInvalid as exc:
        return {"ok": False, "error": exc.message, "plan_items": []}
    return {"ok": True, "error": None, "plan_items": [_item_brief(ctx.session, i) for i in created]}


@effects.service("loop_claim_item")
def loop_claim_item(ctx: effects.RunContext, item_id: int, measures: str = "",
                    finish_by: str | None = None) -> dict[str, Any]:
    """④ The leader who completed the claim task claims the item."""
    item = claim_plan_item(ctx.session, item_id=int(item_id), actor=ctx.actor, measures=measures,
                           finish_by=finish_by)
    return {"id": item.id, "status": item.status, "claimed_by": ctx.actor.username}


@effects.service("loop_raise_issues")
def loop_raise_issues(ctx: effects.RunContext, visits: list[dict[str, Any]],
                      initiator: str = "") -> dict[str, Any]:
    """⑤ Start one issue_ledger instance per problem found on the period's visits (via start_process)."""
    reporter = ctx.actor.username if ctx.actor.user_id is not None else initiator
    issues: list[dict[str, Any]] = []
    for visit in visits:
        for problem in visit.get("problems") or []:
            data = issue_start_data(visit, problem, reporter)
            child = effects.start_process(ctx, "issue_ledger", data=data,
                                          title=f"{data['enterprise']}：{data['title']}"[:300])
            issues.append({"instance_id": child["instance_id"], "title": data["title"]})
    return {"visits": len(visits), "issues": issues}


__all__ = ["Assessment", "PeriodStart", "assess", "business_key", "claim_plan_item", "create_plan_items",
           "gap_analysis", "indicator_statuses", "parse_period", "period_due", "period_end", "propose_plan_items",
           "start_period", "status_summary"]
