"""A project as the deadline sweep sees it: the planned date of its next stage (签约/开工/竣工/投产).

Registered with the engine's deadline sources as object type `project`, policies under `projects:`
in the escalation file, keyed by the project's library code.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.deadlines.objects import Deadline, Org, Target
from engine.deadlines.sla import deadline_of
from engine.deadlines.sources import Source
from plan.projects.models import Project, ProjectLibrary, ProjectStage

# A project's deadline: the planned date of the stage after the one it has reached.
NEXT_STAGE = {"lead": ("signed", "planned_sign"), "signed": ("started", "planned_start"),
              "started": ("completed", "planned_complete"), "completed": ("producing", "planned_produce")}


def project_deadline(project: Project, library_code: str, reached: dict[str, date]) -> Deadline | None:
    """Return the planned date of a project's next stage as its deadline (None when none is planned)."""
    if project.stage not in NEXT_STAGE:
        return None
    planned: date | None = getattr(project, NEXT_STAGE[project.stage][1])
    if planned is None:
        return None
    since = reached.get(project.stage)
    started = datetime.combine(since, time(0), tzinfo=clock.SHANGHAI).astimezone(clock.UTC) if since \
        else project.created_at
    return Deadline(library_code, project.responsible_unit_id, started, deadline_of(planned))


def project_deadlines(session: Session, project_ids: Sequence[int] | None = None) -> dict[int, Deadline]:
    """Return the deadlines of projects that have one (all, or these)."""
    query = select(Project, ProjectLibrary.code).join(ProjectLibrary, ProjectLibrary.id == Project.library_id).where(
        Project.stage.in_(list(NEXT_STAGE)))
    if project_ids is not None:
        query = query.where(Project.id.in_(list(project_ids)))
    rows = session.execute(query).all()
    reached: dict[int, dict[str, date]] = {}
    for pid, stage, on in session.execute(select(ProjectStage.project_id, ProjectStage.stage, ProjectStage.on).where(
            ProjectStage.project_id.in_([p.id for p, _ in rows] or [-1]))):
        reached.setdefault(pid, {})[stage] = on
    found = {}
    for project, code in rows:
        deadline = project_deadline(project, code, reached.get(project.id, {}))
        if deadline is not None:
            found[project.id] = deadline
    return found


def project_targets(session: Session, ids: Sequence[int], org: Org) -> dict[int, Target]:
    """Return projects as the escalation ladder sees them."""
    deadlines = project_deadlines(session, list(ids))
    found = {}
    for p in session.scalars(select(Project).where(Project.id.in_(ids)).execution_options(populate_existing=True)):
        d = deadlines.get(p.id)
        found[p.id] = Target("project", p.id, f"{p.code} {p.name}", f"/projects/{p.id}", f"project:{p.id}",
                             "project", d is not None, d.due_at if d else None, None, d.started_at if d else None,
                             d.policy if d else "", p.responsible_unit_id, org.members(session, p.responsible_unit_id),
                             p.responsible_leader_id)
    return found


SOURCE = Source("project", "projects", project_deadlines, project_targets)
