"""问题台账: the service tasks of issue_ledger.bpmn and queries of the ledger (the names below); its deadlines.
"""
from plan.ledger.core import (
    OPEN_STATES,
    dispatch,
    get_issue,
    list_issues,
    verify,
)
from plan.ledger.reports import UnitLine, monthly_report, warning_level, weekly_report

__all__ = [
    "OPEN_STATES",
    "UnitLine",
    "dispatch",
    "get_issue",
    "list_issues",
    "monthly_report",
    "verify",
    "warning_level",
    "weekly_report",
]
