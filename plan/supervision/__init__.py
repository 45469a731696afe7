"""督办: a leader's view of everything overdue or escalated in their area, and what they can do (the names below).
"""
from plan.supervision.actions import (
    NOTE_LIMIT,
    Reassignable,
    decide_extension,
    escalate,
    extension_version,
    reassign,
    reassignable,
    request_extension,
    urge,
)
from plan.supervision.area import area, is_supervisor, latest_extension, pending_extension
from plan.supervision.core import HistoryLine, can_see_heat, history, overview, wait_heat
from plan.supervision.reach import choices as reassign_choices
from plan.supervision.reach import search as reassign_search

__all__ = [
    "NOTE_LIMIT",
    "HistoryLine",
    "Reassignable",
    "area",
    "can_see_heat",
    "decide_extension",
    "escalate",
    "extension_version",
    "history",
    "is_supervisor",
    "latest_extension",
    "overview",
    "pending_extension",
    "reassign",
    "reassign_choices",
    "reassign_search",
    "reassignable",
    "request_extension",
    "urge",
    "wait_heat",
]
