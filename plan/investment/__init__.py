"""七步工作法 (找位置 → 领任务 → 打项目): indicator status, gap analysis, plan items and the monthly period.
"""
from plan.investment.periods import (
    PROCESS_KEY,
    PeriodStart,
    business_key,
    parse_period,
    period_due,
    period_end,
    start_period,
)
from plan.investment.plan_items import create_plan_items
from plan.investment.status import (
    CAPS,
    COUNTED_CODE,
    RATE_KINDS,
    Assessment,
    assess,
    gap_analysis,
    indicator_statuses,
    show,
    status_summary,
)

__all__ = [
    "CAPS",
    "COUNTED_CODE",
    "PROCESS_KEY",
    "RATE_KINDS",
    "Assessment",
    "PeriodStart",
    "assess",
    "business_key",
    "create_plan_items",
    "gap_analysis",
    "indicator_statuses",
    "parse_period",
    "period_due",
    "period_end",
    "show",
    "start_period",
    "status_summary",
]
