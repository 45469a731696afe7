"""Changing an entered project (项目录入): its planned dates (倒排工期 sets them too), its libraries (平台化动态更新)
and the 市级领导 who 包挂s it. Who may: as `plan.projects.entry` says (the project's own unit, admins). Each change
locks the project's row first (`core.lock_project`) and checks after it, also that the page it comes from saw what
is stored now (`seen`, `plan.stale`): two officers on one project's page do not undo each other's change. Services
flush; the caller commits.
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
from plan.stale import require_fresh, version


def planned_version(project: Project) -> str:
    """The `seen` of the planned-date forms (计划日期, 倒排工期)."""
    return version(*(getattr(project, f) for f in PLANNED_FIELDS))


def set_planned(session: Session, project: Project, *, actor: Actor, dates: Mapping[str, date | None],
                seen: str | None) -> None:
    """Set a project's planned dates, in order (flushes).

    `seen`: the `planned_version` the page showed (None: not a page — an import row says the dates itself).

    Raises: ProjectForbidden, InvalidInput naming the field, Conflict (the page is stale, or carries no `seen`)
    """
    lock_project(session, project)  # the dates not given are merged in as they are now
    require_edit(project, actor)
    merged = {f: dates[f] if f in dates else getattr(project, f) for f in PLANNED_FIELDS}
    before = {f: getattr(project, f) for f in PLANNED_FIELDS}
    require_fresh(seen, planned_version(project), what=f"项目 {project.code} 的计划日期", changes=merged != before)
    check_planned(merged)
    for field, value in merged.items():
        setattr(project, field, value)
    session.flush()
    audit.record(session, actor, "project.plan", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before=before, after=merged)


def libraries_version(session: Session, project: Project) -> str:
    """The `seen` of the libraries form."""
    return version(*sorted(library_codes(session, project.id)))


def set_libraries(session: Session, project: Project, *, actor: Actor, codes: Iterable[str],
                  seen: str | None) -> list[str]:
    """Make the project a member of exactly these libraries (平台化动态更新; flushes).

    `seen`: the `libraries_version` the page showed (None: not a page — an import row).

    Raises: ProjectForbidden, InvalidInput, Conflict (the page is stale, or carries no `seen`)
    """
    lock_project(session, project)  # the memberships are read, then added to
    require_edit(project, actor)
    libraries = libraries_named(session, codes)
    require_fresh(seen, libraries_version(session, project), what=f"项目 {project.code} 的项目库",
                  changes=sorted(lib.code for lib in libraries) != sorted(library_codes(session, project.id)))
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


def leader_version(project: Project) -> str:
    """The `seen` of the 包挂 leader form."""
    return version(project.responsible_leader_id)


def set_leader(session: Session, project: Project, *, actor: Actor, username: str, seen: str | None) -> None:
    """Name the 市级领导 who 包挂s the project (empty: none; flushes).

    `seen`: the `leader_version` the page showed.

    Raises: ProjectForbidden, InvalidInput, Conflict (the page is stale, or carries no `seen`)
    """
    lock_project(session, project)
    require_edit(project, actor)
    leader = city_leader(session, username) if username else None
    before = project.responsible_leader_id
    require_fresh(seen, leader_version(project), what=f"项目 {project.code} 的包挂领导",
                  changes=(leader.id if leader else None) != before)
    project.responsible_leader_id = leader.id if leader else None
    session.flush()
    audit.record(session, actor, "project.leader", stream=f"project:{project.id}", object_type="project",
                 object_id=project.id, before={"leader_id": before}, after={"leader": username or None})


__all__ = ["leader_version", "libraries_version", "library_codes", "planned_version", "set_leader", "set_libraries",
           "set_planned"]
