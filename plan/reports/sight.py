"""Which lines of a 周调度 / 月通报 a reader sees: those of the units the ledger and project pages show them.

A run counts and ranks every unit once, when it is generated (a rank is a place among all units; readers share the
run, nothing is counted again per reader). Admins, city leaders, auditors and whoever's 督办 area is everything
(`plan.projects.views.reach_of`) read the whole run and its stored files. Anyone else reads the lines of the units in
their reach, each with its place in the city, and files made from those lines alone (their 合计 sums them); the
other units' figures — which their ledger and project pages answer 404 for — and the lines of issues or projects of
no unit are left out. Before this, every report reader read every unit's line.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.org.actors import Actor
from engine.org.models import OrgUnit
from plan.projects.views import Reach, reach_of
from plan.reports import core
from plan.reports.models import ReportRun


def _sees(reach: Reach, names: set[str], line: dict[str, Any]) -> bool:
    unit_id = line.get("unit_id")
    if unit_id is not None:
        return reach.sees_unit(unit_id)
    return "unit_id" not in line and line.get("unit") in names  # a run stored before lines named their unit


def _visible(session: Session, run: ReportRun, reach: Reach) -> dict[str, Any]:
    summary = run.summary or {}
    if reach.everything:
        return {"issues": list(summary.get("issues", ())), "projects": list(summary.get("projects", ())),
                "hidden": {"issues": 0, "projects": 0}}
    names = {name for (name,) in session.execute(select(OrgUnit.name).where(OrgUnit.id.in_(reach.unit_ids or {-1})))}
    shown: dict[str, Any] = {"hidden": {}}
    for part in ("issues", "projects"):
        lines = list(summary.get(part, ()))
        shown[part] = [line for line in lines if _sees(reach, names, line)]
        shown["hidden"][part] = len(lines) - len(shown[part])
    return shown


def visible_summary(session: Session, run: ReportRun, actor: Actor) -> dict[str, Any]:
    """The run's summary as the actor may read it: `issues` and `projects` (their lines in reach, ranks as stored)
    and `hidden` (how many lines of each were left out)."""
    return _visible(session, run, reach_of(session, actor))


def run_file(session: Session, run_id: int, fmt: str, actor: Actor) -> tuple[ReportRun, bytes] | None:
    """Return a run the actor may see and its file in a format (core.FORMATS), or None while it is not generated: the
    stored file for one who reads every unit, else one made now of the lines in their reach.

    Raises: NotFound (no such run or format, or a run the actor may not see)
    """
    found = core.run_file(session, run_id, fmt, actor)
    reach = reach_of(session, actor)
    if found is None or reach.everything:
        return found
    run = found[0]
    shown = _visible(session, run, reach)
    fields = {"issues": core.IssueLine.__dataclass_fields__, "projects": core.ProjectLine.__dataclass_fields__}
    report = core.Report(
        run.kind, run.title, run.period_start, run.period_end, clock.as_utc(run.started_at or run.created_at),
        issues=[core.IssueLine(**{k: v for k, v in line.items() if k in fields["issues"]}) for line in shown["issues"]],
        projects=[core.ProjectLine(**{k: v for k, v in line.items() if k in fields["projects"]})
                  for line in shown["projects"]])
    return run, core.to_xlsx(report) if fmt == "xlsx" else core.to_pdf(report)


__all__ = ["run_file", "visible_summary"]
