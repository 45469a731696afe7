"""Who sees what on the dashboard (`scope_of`).

Admins, the system, city leaders (city_leader) and auditors see everything; everyone else sees what
their org units own — the units they belong to and a leader's area (engine.org.area: the units they
head or are responsible for, with sub-units; docs/security.md) — indicators whose responsible unit or
whose industry's lead unit is theirs, projects their unit is responsible for or that are located in
it (a town sees its own projects), issues given to their unit or about their projects, their units' tasks.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import Forbidden
from engine.org.actors import Actor
from engine.org.area import area
from engine.org.models import Role
from engine.tasks.access import is_external
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project

EVERYTHING_ROLES = ("city_leader", "auditor")


@dataclass(frozen=True)
class Scope:
    """What a viewer may see: everything, or what the org units in `unit_ids` own."""

    everything: bool
    unit_ids: frozenset[int] = frozenset()

    def sees_unit(self, unit_id: int | None) -> bool:
        return self.everything or (unit_id is not None and unit_id in self.unit_ids)

    def sees_project(self, project: Project) -> bool:
        return self.sees_unit(project.responsible_unit_id) or self.sees_unit(project.location_unit_id)

    def sees_issue(self, issue: LedgerIssue, project: Project | None) -> bool:
        return self.sees_unit(issue.unit_id) or (project is not None and self.sees_project(project))


def scope_of(session: Session, actor: Actor) -> Scope:
    """Return the dashboard scope of an actor (see the module doc)."""
    if actor.is_admin or actor.is_system:
        return Scope(True)
    if actor.role_ids:
        codes = set(session.scalars(select(Role.code).where(Role.id.in_(actor.role_ids))))
        if codes & set(EVERYTHING_ROLES):
            return Scope(True)
    return Scope(False, frozenset(actor.org_unit_ids) | area(session, actor).unit_ids)


def require_reader(session: Session, actor: Actor) -> None:
    """Refuse an applicant from outside (项目单位: no government unit): the dashboard is the government's own.

    Raises: Forbidden
    """
    if is_external(session, actor):
        raise Forbidden("经济运行监测仅供政府部门使用 (the dashboard is for government staff)")


__all__ = ["EVERYTHING_ROLES", "Scope", "require_reader", "scope_of"]
