"""The dashboard's projects: which a viewer sees, 新签约/新开工 against the plan, and the pipeline by stage."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from plan import investment as plan
from plan.dashboard.scope import Scope
from plan.dashboard.targets import IndicatorRow
from plan.projects.models import Project, ProjectLibrary

CATEGORIES = ("focus", "key", "layout")


def visible_projects(session: Session, scope: Scope) -> list[Project]:
    """Return the projects the scope may see, by code."""
    query = select(Project).order_by(Project.code)
    if not scope.everything:
        ids = list(scope.unit_ids) or [-1]
        query = query.where(Project.responsible_unit_id.in_(ids) | Project.location_unit_id.in_(ids))
    return list(session.scalars(query))


@dataclass(frozen=True)
class Investment:
    """新签约 200 / 新开工 150 and the split by category: plan's rows, or the viewer's own projects."""

    signed: dict[str, IndicatorRow]  # "" for the total, else the category
    started: dict[str, IndicatorRow]
    own: dict[str, dict[str, int]]  # stage → category ("" total) → count of the viewer's projects this year


def investment(rows: list[IndicatorRow], projects: list[Project], year: int, end: date,
               scope: Scope) -> Investment:
    signed: dict[str, IndicatorRow] = {}
    started: dict[str, IndicatorRow] = {}
    for r in rows:
        match = plan.COUNTED_CODE.match(r.code)
        if match and match.group(1) in ("signed", "started"):
            (signed if match.group(1) == "signed" else started)[match.group(2) or ""] = r
    own: dict[str, dict[str, int]] = {}
    if not scope.everything:
        for stage in ("signed", "started"):
            counts = {c: 0 for c in ("", *CATEGORIES)}
            for p in projects:
                if any(s.stage == stage and date(year, 1, 1) <= s.on <= end for s in p.stages):
                    counts[""] += 1
                    counts[p.category] = counts.get(p.category, 0) + 1
            own[stage] = counts
    return Investment(signed, started, own)


@dataclass(frozen=True)
class Pipeline:
    """Projects by stage and library: counts and investment (万元)."""

    libraries: tuple[ProjectLibrary, ...]
    counts: dict[tuple[str, int], int]
    investment: dict[tuple[str, int], Decimal]

    def stage_total(self, stage: str) -> int:
        return sum(n for (s, _lib), n in self.counts.items() if s == stage)

    def library_total(self, library_id: int) -> int:
        return sum(n for (_s, lib), n in self.counts.items() if lib == library_id)


def pipeline(session: Session, projects: list[Project]) -> Pipeline:
    libraries = tuple(session.scalars(select(ProjectLibrary).order_by(ProjectLibrary.id)))
    counts: dict[tuple[str, int], int] = defaultdict(int)
    money: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for p in projects:
        counts[(p.stage, p.library_id)] += 1
        money[(p.stage, p.library_id)] += Decimal(p.investment)
    return Pipeline(libraries, dict(counts), dict(money))


__all__ = ["CATEGORIES", "Investment", "Pipeline", "investment", "pipeline", "visible_projects"]
