"""督办: a leader's view of everything overdue or escalated in their area, and what they can do (the names below).
"""
from plan.supervision.core import (
    HistoryLine,
    area,
    decide_extension,
    escalate,
    history,
    is_supervisor,
    overview,
    pending_extension,
    reassign,
    request_extension,
    urge,
)

__all__ = [
    "HistoryLine",
    "area",
    "decide_extension",
    "escalate",
    "history",
    "is_supervisor",
    "overview",
    "pending_extension",
    "reassign",
    "request_extension",
    "urge",
]
