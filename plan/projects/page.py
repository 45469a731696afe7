"""A project's working page beyond what `views` shows: libraries, reports to confirm, 要素保障, approval stages.

Read-only; `may_edit` and `may_confirm` tell the page which forms to offer (the services check again).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.actors import Actor
from engine.org.models import Membership, OrgUnit, Role, User
from plan.projects import approvals
from plan.projects.core import skipped
from plan.projects.edits import leader_version, libraries_version, library_codes, planned_version
from plan.projects.entry import LEADER_ROLE, may_confirm, may_edit, report_version, stage_version
from plan.projects.models import STAGES, Project, ProjectApproval, ProjectLibrary, ProjectNeed, StageReport
from plan.projects.needs import NEED_KINDS


@dataclass(frozen=True)
class ReportLine:
    report: StageReport
    reporter: str
    decider: str
    may_confirm: bool

    @property
    def seen(self) -> str:
        """The version its 确认 / 退回 buttons carry (`plan.stale`)."""
        return report_version(self.report)


@dataclass(frozen=True)
class NeedLine:
    need: ProjectNeed
    kind_name: str
    raised_by: str
    resolved_by: str


@dataclass(frozen=True)
class ApprovalLine:
    row: ProjectApproval
    stage: approvals.Stage

    @property
    def over_limit(self) -> bool:
        return self.row.used_wd is not None and self.row.used_wd > self.stage.limit_wd


@dataclass(frozen=True)
class ProjectWork:
    may_edit: bool
    libraries: list[tuple[str, str]]  # every library (code, name)
    member_of: list[str]
    reports: list[ReportLine]
    needs: list[NeedLine]
    approvals: list[ApprovalLine]
    saved_wd: int
    leaders: list[tuple[str, str]]  # 市级领导 (username, name)
    startable: list[tuple[str, str]]  # approval stages one may start by hand now (code, name)
    recordable: tuple[str, ...] = ()  # the stages the stage form offers: the next one (投产 too while 竣工 waits)
    seen: dict[str, str] | None = None  # the version each form carries (`plan.stale`): planned, libraries, leader
    back_to: tuple[str, ...] = ()  # the stages an administrator may move the project back to (更正误录)
    now: datetime | None = None


def _names(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    return {u.id: u.display_name for u in session.scalars(select(User).where(User.id.in_(wanted or [-1])))}


def leaders(session: Session) -> list[tuple[str, str]]:
    """Return the 市级领导 who may 包挂 a project."""
    rows = session.execute(select(User.username, User.display_name).join(Membership, Membership.user_id == User.id)
                           .join(Role, Role.id == Membership.role_id)
                           .where(Role.code == LEADER_ROLE, User.is_active.is_(True))
                           .order_by(User.username).distinct()).all()
    return [(r[0], r[1]) for r in rows]


def unit_codes(session: Session, actor: Actor) -> list[str]:
    """Return the codes of the actor's own units (where they enter projects)."""
    return list(session.scalars(select(OrgUnit.code).where(OrgUnit.id.in_(list(actor.org_unit_ids) or [-1]))
                                .order_by(OrgUnit.code)))


def project_work(session: Session, project: Project, actor: Actor) -> ProjectWork:
    """Return what the project page shows and offers beyond `views.project_detail`."""
    reports = list(session.scalars(select(StageReport).where(StageReport.project_id == project.id)
                                   .order_by(StageReport.id)))
    needs = list(session.scalars(select(ProjectNeed).where(ProjectNeed.project_id == project.id)
                                 .order_by(ProjectNeed.status, ProjectNeed.id)))
    names = _names(session, {r.reported_by_id for r in reports} | {r.decided_by_id for r in reports}
                   | {n.raised_by_id for n in needs} | {n.resolved_by_id for n in needs})
    rows = approvals.project_approvals(session, project.id)
    have = {r.stage for r in rows}
    startable = []
    if not rows and project.stage in ("lead", "signed"):
        first = approvals.first_stage(project)
        startable.append((first, approvals.STAGES[first].name))
    if "construction_works" in {r.stage for r in rows if r.certified_on} and "earthwork_permit" not in have \
            and project.stage in ("lead", "signed"):
        startable.append(("earthwork_permit", approvals.STAGES["earthwork_permit"].name))
    return ProjectWork(
        may_edit=may_edit(project, actor),
        libraries=[(lib.code, lib.name) for lib in session.scalars(select(ProjectLibrary).order_by(ProjectLibrary.id))],
        member_of=library_codes(session, project.id),
        reports=[ReportLine(r, names.get(r.reported_by_id or -1, ""), names.get(r.decided_by_id or -1, ""),
                            r.status == "reported" and may_confirm(project, r, actor)) for r in reports],
        needs=[NeedLine(n, NEED_KINDS.get(n.kind, n.kind), names.get(n.raised_by_id or -1, ""),
                        names.get(n.resolved_by_id or -1, "")) for n in needs],
        approvals=[ApprovalLine(r, approvals.STAGES[r.stage]) for r in rows if r.stage in approvals.STAGES],
        saved_wd=sum(r.saved_wd or 0 for r in rows),
        leaders=leaders(session),
        startable=startable, recordable=recordable(project, {r.stage for r in reports if r.status == "reported"}),
        seen={"planned": planned_version(project), "libraries": libraries_version(session, project),
              "leader": leader_version(project), "stages": stage_version(session, project)},
        back_to=STAGES[:STAGES.index(project.stage)] if actor.is_admin else ())


def recordable(project: Project, waiting: set[str]) -> tuple[str, ...]:
    """The stages the unit may record or report now: the next one; 投产 too while its 竣工 report waits."""
    ahead = STAGES[STAGES.index(project.stage) + 1:]
    return tuple(s for s in ahead if s not in waiting and set(skipped(project.stage, s)) <= waiting)


__all__ = ["ApprovalLine", "NeedLine", "ProjectWork", "ReportLine", "leaders", "project_work", "recordable",
           "unit_codes"]
