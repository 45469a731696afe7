"""督办: a leader's view of everything overdue or escalated in their area, and what they can do (the names below).
"""
from plan.supervision.actions import decide_extension, escalate, reassign, request_extension, urge
from plan.supervision.area import is_supervisor
from plan.supervision.core import can_see_heat, history, overview, wait_heat

__all__ = [
    "can_see_heat",
    "decide_extension",
    "escalate",
    "history",
    "is_supervisor",
    "overview",
    "reassign",
    "request_extension",
    "urge",
    "wait_heat",
]
