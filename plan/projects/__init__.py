"""项目库: leads, 揭榜挂帅 calls and bids, signing and stages (the names below); deadlines and slow-project warnings.
"""
from plan.projects.calls import call_code, calls_of_period
from plan.projects.core import (
    CATEGORIES,
    approval_start_data,
    count_in_stage,
    find_industry,
    reach_stage,
    responsible_leader,
)

__all__ = [
    "CATEGORIES",
    "approval_start_data",
    "call_code",
    "calls_of_period",
    "count_in_stage",
    "find_industry",
    "reach_stage",
    "responsible_leader",
]
