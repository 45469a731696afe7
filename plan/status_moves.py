"""The status moves of a case row kept in step with its process (问题台账 ledger_issue, 招商线索 investment_lead).

A step reopened by 退回 or 撤回 runs its service again with the row where the later steps left it: taken again, a step
may move the row back to its own status from any later one, never to or from an ended status (the process has ended).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Lifecycle:
    """`transitions`: status → the statuses it may be reached from; `rank`: how far along each status is."""

    transitions: Mapping[str, frozenset[str]]
    rank: Mapping[str, int]
    ended: frozenset[str]

    def allows(self, current: str, to: str) -> bool:
        """May a step move the row from `current` to `to` (forward, or again after 退回 / 撤回)?"""
        if current in self.transitions[to]:
            return True
        return not {current, to} & self.ended and self.rank[current] >= self.rank[to]
