"""对进展缓慢项目自动预警: how far a project is behind the planned dates of its stages.

A project lags when the planned date of a stage it has not reached (签约 planned_sign, 开工
planned_start, 竣工 planned_complete, 投产 planned_produce) is before today; its lag is the earliest
such stage. The dashboard shows lags; `plan.projects.slow_projects` raises a ledger issue for each.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from plan.projects.models import STAGES, Project

STAGE_NAMES = {"lead": "线索", "signed": "签约", "started": "开工", "completed": "竣工", "producing": "投产"}
PLANNED = (("signed", "planned_sign"), ("started", "planned_start"), ("completed", "planned_complete"),
           ("producing", "planned_produce"))


@dataclass(frozen=True)
class Lag:
    """A project behind its planned date for a stage (对进展缓慢项目自动预警)."""

    project: Project
    stage: str  # the first stage not reached although its planned date has passed
    planned: date
    days_late: int
    overdue: tuple[tuple[str, date], ...]  # every stage overdue, first the earliest


def lag_of(project: Project, today: date) -> Lag | None:
    """Return how a project is behind its planned dates today, or None when it is on time."""
    reached = STAGES.index(project.stage) if project.stage in STAGES else 0
    overdue = []
    for stage, attribute in PLANNED:
        planned: date | None = getattr(project, attribute)
        if planned is not None and planned < today and STAGES.index(stage) > reached:
            overdue.append((stage, planned))
    if not overdue:
        return None
    stage, planned = overdue[0]
    return Lag(project, stage, planned, (today - planned).days, tuple(overdue))


__all__ = ["PLANNED", "STAGE_NAMES", "Lag", "lag_of"]
