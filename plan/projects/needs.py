"""要素保障 (plan line 124): a project's needs for 资金, 土地, 手续 or other factors, tracked open → resolved.

The project's unit raises a need; the unit or the 包挂 leader resolves it, once, with who, when and how.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import InvalidInput, NotFound
from engine.org.actors import Actor
from plan.projects.entry import ProjectForbidden, may_edit, require_edit
from plan.projects.fields import text
from plan.projects.models import Project, ProjectNeed

NEED_KINDS = {"funds": "资金", "land": "土地", "procedures": "手续", "other": "其他"}


def raise_need(session: Session, project: Project, *, actor: Actor, kind: str, description: str) -> ProjectNeed:
    """Track a need for 资金 / 土地 / 手续 / 其他 (open; flushes). Raises: ProjectForbidden, InvalidInput"""
    require_edit(project, actor)
    if kind not in NEED_KINDS:
        raise InvalidInput(f"要素类型应为 {'/'.join(NEED_KINDS)} (unknown kind)", field="kind")
    need = ProjectNeed(project_id=project.id, kind=kind, description=text(description, "description", required=True),
                       status="open", raised_by_id=actor.user_id, raised_at=clock.now())
    session.add(need)
    session.flush()
    audit.record(session, actor, "project.need", stream=f"project:{project.id}", object_type="project_need",
                 object_id=need.id, after={"kind": kind, "description": need.description})
    return need


def resolve_need(session: Session, project: Project, *, actor: Actor, need_id: int, resolution: str) -> ProjectNeed:
    """Mark a need resolved with who, when and how, exactly once (flushes).

    Raises: ProjectForbidden, InvalidInput (resolved already), NotFound
    """
    if not (may_edit(project, actor) or (actor.user_id is not None and actor.user_id == project.responsible_leader_id)):
        raise ProjectForbidden("只有项目责任单位或包挂领导可以办结要素保障 (not your project)")
    resolution = text(resolution, "resolution", required=True)
    need = session.scalar(select(ProjectNeed).where(ProjectNeed.id == need_id, ProjectNeed.project_id == project.id))
    if need is None:
        raise NotFound("要素保障事项不存在 (no such need)", need_id=need_id)
    done = session.execute(update(ProjectNeed).where(ProjectNeed.id == need.id, ProjectNeed.status == "open")
                           .values(status="resolved", resolved_by_id=actor.user_id, resolved_at=clock.now(),
                                   resolution=resolution).execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidInput("该事项已办结 (resolved already)", field="need")
    session.refresh(need)
    audit.record(session, actor, "project.need_resolved", stream=f"project:{project.id}", object_type="project_need",
                 object_id=need.id, after={"resolution": resolution})
    return need



__all__ = ["NEED_KINDS", "raise_need", "resolve_need"]
