"""七步工作法 ③ 产业体系确定方案 and ④ 责任领导认领任务: the period's plan items and their claims.

The planner's reviewed rows become `PlanItem` rows (`create_plan_items`); each is claimed by a leader
(`claim_plan_item`). Candidates to claim an item: the responsible leader (责任领导, 包挂) of the
industry's lead unit, else of the indicator's responsible unit, else everyone with the role `leader`.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit
from plan import projects
from plan.indicators.models import Indicator, Industry, PlanItem
from plan.investment.periods import parse_period
from plan.investment.status import round4

LEADER_ROLE = "leader"  # 0001: 责任领导


def _candidates(session: Session, industry: Industry | None, indicator: Indicator | None) -> str:
    leader = projects.responsible_leader(session, industry.lead_unit_id if industry else None) or \
        projects.responsible_leader(session, indicator.responsible_unit_id if indicator else None)
    return leader or LEADER_ROLE


MAX_GAP = Decimal("999999999999.9999")  # what plan_item.gap, NUMERIC(16, 4), holds


def _holds_gap(value: Any) -> bool:
    """Tell whether a gap, rounded to 4 places as it is stored, fits plan_item.gap (a number from 0 to MAX_GAP)."""
    try:
        gap = Decimal(str(value))
        return gap.is_finite() and 0 <= round4(gap) <= MAX_GAP
    except (InvalidOperation, ValueError):
        return False


class ItemsInvalid(InvalidInput):
    """A reviewed plan item names an industry or indicator that does not exist, has no title or a gap too large."""

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
        if not str(item.get("title") or "").strip():
            problems.append(f"第{n}项 items[{n - 1}].title：任务不能为空")
        gap = item.get("gap")
        if gap is not None and not _holds_gap(gap):
            problems.append(f"第{n}项 items[{n - 1}].gap：缺口应为 0 至 {MAX_GAP} 之间的数")
        resolved.append((item, industry, indicator))
    if problems:
        raise ItemsInvalid("；".join(problems), field="items")
    created: list[PlanItem] = []
    for item, industry, indicator in resolved:
        gap = item.get("gap")
        row = PlanItem(period=period, instance_id=instance_id, title=str(item["title"]).strip()[:300],
                       industry_id=industry.id if industry else None,
                       indicator_id=indicator.id if indicator else None,
                       gap=round4(Decimal(str(gap))) if gap is not None else None, status="open")
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

    Raises: NotFound, InvalidInput (a 计划完成日期 already past, named finish_by)
    """
    today = clock.now().astimezone(clock.SHANGHAI).date().isoformat()
    if finish_by and finish_by < today:  # ISO dates (the form's format) order as text
        raise InvalidInput(f"计划完成日期 {finish_by} 早于今天 {today} ({finish_by} is before today, {today})",
                           field="finish_by")
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


def claim_unit(session: Session, item: PlanItem) -> str | None:
    """Return the code of the unit an unclaimed item escalates from: its industry's lead unit, else its
    indicator's responsible unit (None when neither names one)."""
    industry = session.get(Industry, item.industry_id) if item.industry_id else None
    indicator = session.get(Indicator, item.indicator_id) if item.indicator_id else None
    unit_id = (industry.lead_unit_id if industry else None) or (indicator.responsible_unit_id if indicator else None)
    return session.scalar(select(OrgUnit.code).where(OrgUnit.id == unit_id)) if unit_id else None


def item_brief(session: Session, item: PlanItem) -> dict[str, Any]:
    return {"id": item.id, "title": item.title, "candidates": claim_candidates(session, item),
            "unit": claim_unit(session, item)}


__all__ = ["ItemsInvalid", "claim_candidates", "claim_plan_item", "claim_unit", "create_plan_items", "item_brief"]
