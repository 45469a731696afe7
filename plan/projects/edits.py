"""Changing an entered project (项目录入): its planned dates (倒排工期 sets them too), its libraries (平台化动态更新)
and the 市级领导 who 包挂s it. Who may: as `plan.projects.entry` says (the project's own unit, admins). Each change
locks the project's row first (`core.lock_project`) and checks after it. Services flush; the caller commits.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine import audit
from engine.org.actors import Actor
from plan.projects.core import lock_project
from plan.projects.entry import city_leader, libraries_named, require_edit
from plan.projects.fields import PLANNED_FIELDS, check_planned
from plan.projects.models import LibraryMember, Project, ProjectLibrary


def set_planned(session: Session, project: Project, *, actor: Actor, dates: Mapping[str, date | None]) -> None:
    """Set a project's planned dates, in order (flushes). Raises: ProjectForbidden, InvalidInput naming the field"""
    lock_project(session, project)  # the dates not given are merged in as they are now
    require_edit(project, actor)
    merged = {f: dates[f] if f in dates else getattr(project, f) for f in PLANNED_FIELDS}
    check_planned(merged)
    before = {f: getattr(project, f) for f in PLANNED_FIELDS}
    for field, value in merged.items():
        setattr(project, field, value)
    session.flush()
    audit.record(session, actor, "project.plan", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before=before, after=merged)


def set_libraries(session: Session, project: Project, *, actor: Actor, codes: Iterable[str]) -> list[str]:
    """Make the project a member of exactly these libraries (平台化动态更新; flushes).

    Raises: ProjectForbidden, InvalidInput
    """
    lock_project(session, project)  # the memberships are read, then added to
    require_edit(project, actor)
    libraries = libraries_named(session, codes)
    before = list(session.scalars(select(ProjectLibrary.code).join(LibraryMember).where(
        LibraryMember.project_id == project.id).order_by(ProjectLibrary.code)))
    keep = {lib.id for lib in libraries}
    session.execute(delete(LibraryMember).where(LibraryMember.project_id == project.id,
                                                LibraryMember.library_id.not_in(keep)))
    have = set(session.scalars(select(LibraryMember.library_id).where(LibraryMember.project_id == project.id)))
    for lib in libraries:
        if lib.id not in have:
            session.add(LibraryMember(project_id=project.id, library_id=lib.id, added_by_id=actor.user_id))
    project.library_id = libraries[0].id if project.library_id not in keep else project.library_id
    session.flush()
    after = sorted(lib.code for lib in libraries)
    audit.record(session, actor, "project.libraries", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before={"libraries": before}, after={"libraries": after})
    return after


def library_codes(session: Session, project_id: int) -> list[str]:
    """Return the codes of the libraries a project belongs to (its home library when none is recorded)."""
    codes = list(session.scalars(select(ProjectLibrary.code).join(LibraryMember).where(
        LibraryMember.project_id == project_id).order_by(ProjectLibrary.id)))
    if codes:
        return codes
    home = session.scalar(select(ProjectLibrary.code).join(Project, Project.library_id == ProjectLibrary.id)
                          .where(Project.id == project_id))
    return [home] if home else []


def set_leader(session: Session, project: Project, *, actor: Actor, username: str) -> None:
    """Name the 市级领导 who 包挂s the project (empty: none; flushes). Raises: ProjectForbidden, InvalidInput"""
    lock_project(session, project)
    require_edit(project, actor)
    leader = city_leader(session, username) if username else None
    before = project.responsible_leader_id
    project.responsible_leader_id = leader.id if leader else None
    session.flush()
    audit.record(session, actor, "project.leader", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before={"leader_id": before}, after={"leader": username or None})


__all__ = ["library_codes", "set_leader", "set_libraries", "set_planned"]
