"""项目库 pages' read models: who may see which project (`Reach`), the filtered list, one project's page.

Nothing here writes. Reach mirrors what the house already decides: admins, the system, city leaders
and auditors (the dashboard's `scope_of`) see every project; everyone else sees what their org units
are responsible for or located in (the dashboard's rule), plus a leader's 督办 area (the units they
head or are responsible for, with their sub-units: `supervision.area`) and the projects they are the
包挂 leader of. A user with none of these (an applicant) sees nothing and may not open the list.
A project outside one's reach is reported exactly like one that does not exist (NotFound), so an id
tells nobody that another unit's project is there.

The list pages on the project code (unique) with an opaque cursor, never OFFSET, like the inbox.
A project's deadline is the planned date of its next stage (`plan.projects.deadlines`); its light
turns yellow as the deadline sweep would (the watch row's warn time, else the library's policy).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, select
from sqlalchemy.orm import Session

from engine import clock
from engine.deadlines import sla
from engine.deadlines.models import DeadlineWatch
from engine.errors import Forbidden, InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, User
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.tasks.queries import decode_cursor, encode_cursor
from plan import dashboard, supervision
from plan.dashboard import Lag, lag_of
from plan.indicators.models import Industry
from plan.ledger.models import LedgerIssue
from plan.projects.deadlines import NEXT_STAGE, project_deadlines
from plan.projects.models import STAGES, LibraryMember, Project, ProjectLibrary

PAGE_SIZE = 50
MAX_PAGE = 200
MAX_ARG = 100  # characters of a filter value
PLANNED = (("signed", "planned_sign"), ("started", "planned_start"), ("completed", "planned_complete"),
           ("producing", "planned_produce"))
BEHIND = ("yes", "no")


# -- who sees what ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reach:
    """What a viewer may see of projects and issues: everything, or what `unit_ids` own, and what they lead."""

    everything: bool
    unit_ids: frozenset[int] = frozenset()
    user_id: int | None = None
    leads: bool = False  # the 包挂 leader of some project or issue outside their units

    @property
    def any(self) -> bool:
        return self.everything or bool(self.unit_ids) or self.leads

    def sees_unit(self, unit_id: int | None) -> bool:
        return self.everything or (unit_id is not None and unit_id in self.unit_ids)

    def _leader(self, leader_id: int | None) -> bool:
        return self.user_id is not None and leader_id == self.user_id

    def sees_project(self, project: Project) -> bool:
        return (self.sees_unit(project.responsible_unit_id) or self.sees_unit(project.location_unit_id)
                or self._leader(project.responsible_leader_id))

    def sees_issue(self, issue: LedgerIssue, project: Project | None) -> bool:
        return (self.sees_unit(issue.unit_id) or self._leader(issue.responsible_leader_id)
                or (self.user_id is not None and issue.handler_id == self.user_id)
                or (project is not None and self.sees_project(project)))

    def project_clause(self) -> ColumnElement[bool] | None:
        """Return the SQL condition of the projects in reach (None: every project)."""
        if self.everything:
            return None
        ids = list(self.unit_ids) or [-1]
        return or_(Project.responsible_unit_id.in_(ids), Project.location_unit_id.in_(ids),
                   Project.responsible_leader_id == self.user_id if self.user_id is not None else false())


def reach_of(session: Session, actor: Actor) -> Reach:
    """Return what the actor may see of the project library and the ledger (see the module doc)."""
    scope = dashboard.scope_of(session, actor)
    if scope.everything:
        return Reach(True)
    area = supervision.area(session, actor)
    if area.everything:
        return Reach(True)
    leads = actor.user_id is not None and (
        session.scalar(select(Project.id).where(Project.responsible_leader_id == actor.user_id).limit(1)) is not None
        or session.scalar(select(LedgerIssue.id).where(LedgerIssue.responsible_leader_id == actor.user_id)
                          .limit(1)) is not None)
    return Reach(False, frozenset(scope.unit_ids | area.unit_ids), actor.user_id, leads)


def require_reach(session: Session, actor: Actor, reach: Reach | None = None) -> Reach:
    """Return the actor's reach (or the one given), refusing one who may see no project or issue at all.

    Raises: Forbidden
    """
    reach = reach if reach is not None else reach_of(session, actor)
    if not reach.any:
        raise Forbidden("无权查看项目库和问题台账 (no project or issue in your reach)")
    return reach


# -- filters -----------------------------------------------------------------------------------------

def read_arg(values: Mapping[str, Any], name: str, *, limit: int = MAX_ARG, choices: Sequence[str] = ()) -> str:
    """Read one filter value: trimmed text, refused when it holds a NUL, is too long or is not a choice.

    Raises: InvalidInput naming the field
    """
    raw = values.get(name)
    text = "" if raw is None else str(raw).strip()
    if "\x00" in text:
        raise InvalidInput(f"筛选条件 {name} 含有非法字符 (NUL byte)", field=name)
    if len(text) > limit:
        raise InvalidInput(f"筛选条件 {name} 超过 {limit} 字 (too long)", field=name)
    if text and choices and text not in choices:
        raise InvalidInput(f"筛选条件 {name} 无效 (not one of {', '.join(choices)}): {text[:40]}", field=name)
    return text


@dataclass(frozen=True)
class ProjectFilter:
    """What the project list is narrowed to (each value as the query string carries it)."""

    library: str = ""  # library code: key | investment | government | land
    stage: str = ""
    industry: str = ""  # industry code
    unit: str = ""  # responsible unit code
    behind: str = ""  # "" | yes | no (behind a planned date)
    q: str = ""  # code or name

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ProjectFilter:
        """Read the filter from request arguments.

        Raises: InvalidInput
        """
        return cls(library=read_arg(values, "library", limit=40), stage=read_arg(values, "stage", choices=STAGES),
                   industry=read_arg(values, "industry", limit=60), unit=read_arg(values, "unit", limit=80),
                   behind=read_arg(values, "behind", choices=BEHIND), q=read_arg(values, "q"))

    def as_query(self) -> dict[str, str]:
        values = {"library": self.library, "stage": self.stage, "industry": self.industry, "unit": self.unit,
                  "behind": self.behind, "q": self.q}
        return {k: v for k, v in values.items() if v}


def behind_clause(today: date) -> ColumnElement[bool]:
    """Return the SQL condition of projects past a planned date of a stage they have not reached."""
    parts = []
    for stage, column in PLANNED:
        planned = getattr(Project, column)
        parts.append(and_(planned.is_not(None), planned < today, Project.stage.in_(STAGES[:STAGES.index(stage)])))
    return or_(*parts)


def _filters(session: Session, flt: ProjectFilter, today: date) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if flt.library:
        library = select(ProjectLibrary.id).where(ProjectLibrary.code == flt.library)
        where.append(or_(Project.library_id.in_(library), Project.id.in_(  # home library, or a member (项目库动态更新)
            select(LibraryMember.project_id).where(LibraryMember.library_id.in_(library)))))
    if flt.stage:
        where.append(Project.stage == flt.stage)
    if flt.industry:
        where.append(Project.industry_id.in_(select(Industry.id).where(Industry.code == flt.industry)))
    if flt.unit:
        where.append(Project.responsible_unit_id.in_(select(OrgUnit.id).where(OrgUnit.code == flt.unit)))
    if flt.behind:
        clause = behind_clause(today)
        where.append(clause if flt.behind == "yes" else not_(clause))
    if flt.q:
        where.append(or_(Project.code.icontains(flt.q, autoescape=True), Project.name.icontains(flt.q, autoescape=True)))
    return where


# -- the list ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NextStep:
    """The stage a project works towards, its planned date and the deadline's times."""

    stage: str
    planned: date
    due_at: datetime
    warn_at: datetime | None

    def light(self, now: datetime) -> str | None:
        return sla.level(self.due_at, self.warn_at, now)


@dataclass(frozen=True)
class ProjectRow:
    project: Project
    library: str
    unit: str | None
    leader: str | None
    next: NextStep | None
    lag: Lag | None


@dataclass(frozen=True)
class ProjectPage:
    rows: list[ProjectRow]
    next_cursor: str | None


def next_steps(session: Session, projects: Sequence[Project]) -> dict[int, NextStep]:
    """Return each project's next stage with its deadline; the watch's warn time, else the policy's."""
    ids = [p.id for p in projects]
    if not ids:
        return {}
    deadlines = project_deadlines(session, ids)
    watches = {w.object_id: w for w in session.scalars(select(DeadlineWatch).where(
        DeadlineWatch.object_type == "project", DeadlineWatch.object_id.in_(ids)))}
    policies = sla.load_policies()
    found = {}
    for p in projects:
        d = deadlines.get(p.id)
        if d is None:
            continue
        watch = watches.get(p.id)
        warn = watch.warn_at if watch is not None and watch.due_at == d.due_at else None
        if warn is None and d.started_at is not None:
            warn = sla.warn_time(clock.as_utc(d.started_at), d.due_at, policies.get("project", d.policy).yellow)
        stage, column = NEXT_STAGE[p.stage]
        found[p.id] = NextStep(stage, getattr(p, column), d.due_at, warn)
    return found


def _names(session: Session, model: Any, ids: set[int | None], attribute: str) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {row[0]: row[1] for row in session.execute(select(model.id, getattr(model, attribute))
                                                      .where(model.id.in_(wanted)))}


def project_page(session: Session, reach: Reach, flt: ProjectFilter = ProjectFilter(), *, after: str | None = None,
                 limit: int = PAGE_SIZE, now: datetime | None = None) -> ProjectPage:
    """Return a page of the projects in reach, by code, after the cursor.

    Raises: InvalidInput (a bad cursor)
    """
    now = now or clock.now()
    today = now.astimezone(clock.SHANGHAI).date()
    size = max(1, min(int(limit), MAX_PAGE))
    query = select(Project)
    clause = reach.project_clause()
    if clause is not None:
        query = query.where(clause)
    for condition in _filters(session, flt, today):
        query = query.where(condition)
    if after:
        (last,) = decode_cursor(after, 1)
        if not isinstance(last, str) or not last or len(last) > 40:
            raise InvalidInput("分页游标无效 (invalid cursor)", field="after")
        query = query.where(Project.code > last)
    found = list(session.scalars(query.order_by(Project.code).limit(size + 1)))
    projects = found[:size]
    libraries = {lib.id: lib.name for lib in session.scalars(select(ProjectLibrary))}
    units = _names(session, OrgUnit, {p.responsible_unit_id for p in projects}, "name")
    leaders = _names(session, User, {p.responsible_leader_id for p in projects}, "display_name")
    steps = next_steps(session, projects)
    rows = [ProjectRow(p, libraries.get(p.library_id, ""), units.get(p.responsible_unit_id or -1),
                       leaders.get(p.responsible_leader_id or -1), steps.get(p.id), lag_of(p, today))
            for p in projects]
    return ProjectPage(rows, encode_cursor([projects[-1].code]) if len(found) > size else None)


@dataclass(frozen=True)
class Choices:
    """The filter form's options."""

    libraries: list[tuple[str, str]]
    industries: list[tuple[str, str]]
    units: list[tuple[str, str]]


def choices(session: Session) -> Choices:
    """Return the libraries, industries and units to filter by (code, name)."""
    return Choices([(lib.code, lib.name) for lib in session.scalars(select(ProjectLibrary).order_by(ProjectLibrary.id))],
                   [(i.code, i.name) for i in session.scalars(select(Industry).order_by(Industry.id))],
                   [(u.code, u.name) for u in session.scalars(select(OrgUnit).order_by(OrgUnit.code))])


# -- one project -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageLine:
    stage: str
    planned: date | None
    reached: date | None
    note: str
    evidence: str = ""


@dataclass(frozen=True)
class InstanceLine:
    """A process instance about the project (its parallel approvals): what the page lists and links."""

    id: int
    process_key: str
    process_name: str
    title: str
    status: str
    started_at: datetime


@dataclass(frozen=True)
class ProjectDetail:
    project: Project
    library: ProjectLibrary
    industry: Industry | None
    responsible_unit: OrgUnit | None
    location_unit: OrgUnit | None
    leader: str | None
    stages: list[StageLine]
    next: NextStep | None
    lag: Lag | None
    approvals: list[InstanceLine]
    issues: list[LedgerIssue]
    watch: DeadlineWatch | None
    history: list[supervision.HistoryLine]


def visible_project(session: Session, reach: Reach, project_id: int) -> Project:
    """Return a project in reach.

    Raises: NotFound (also for a project out of reach: its existence is not told)
    """
    project = session.get(Project, project_id)
    if project is None or not reach.sees_project(project):
        raise NotFound(f"项目不存在 (no such project): {project_id}", project_id=project_id)
    return project


def project_instances(session: Session, code: str) -> list[InstanceLine]:
    """Return the instances whose business key is the project's code (parallel approvals), newest first."""
    rows = session.execute(select(ProcessInstance, ProcessDefinition.key, ProcessDefinition.name)
                           .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                           .where(ProcessInstance.business_key == code)
                           .order_by(ProcessInstance.started_at.desc(), ProcessInstance.id.desc())).all()
    return [InstanceLine(i.id, key, name, i.title, i.status, i.started_at) for i, key, name in rows]


def project_detail(session: Session, reach: Reach, project_id: int, *, now: datetime | None = None) -> ProjectDetail:
    """Return a project's data, stage timeline, planned dates, approvals, issues and 督办 history.

    Raises: NotFound
    """
    now = now or clock.now()
    project = visible_project(session, reach, project_id)
    reached = {s.stage: s for s in project.stages}
    planned = {stage: getattr(project, column) for stage, column in PLANNED}
    stages = [StageLine(stage, planned.get(stage), reached[stage].on if stage in reached else None,
                        reached[stage].note if stage in reached else "",
                        reached[stage].evidence if stage in reached else "") for stage in STAGES]
    issues = list(session.scalars(select(LedgerIssue).where(LedgerIssue.project_id == project.id)
                                  .order_by(LedgerIssue.id.desc())))
    leader = session.scalar(select(User.display_name).where(User.id == project.responsible_leader_id)) \
        if project.responsible_leader_id else None
    watch = session.scalar(select(DeadlineWatch).where(DeadlineWatch.object_type == "project",
                                                       DeadlineWatch.object_id == project.id))
    return ProjectDetail(project, project.library,
                         session.get(Industry, project.industry_id) if project.industry_id else None,
                         session.get(OrgUnit, project.responsible_unit_id) if project.responsible_unit_id else None,
                         session.get(OrgUnit, project.location_unit_id) if project.location_unit_id else None,
                         leader, stages, next_steps(session, [project]).get(project.id),
                         lag_of(project, now.astimezone(clock.SHANGHAI).date()),
                         project_instances(session, project.code), issues, watch,
                         supervision.history(session, "project", project.id))


def instance_projects(session: Session, reach: Reach, instance_id: int) -> list[Project]:
    """Return the projects in reach an instance belongs to: by its business key, or through its issue."""
    key = session.scalar(select(ProcessInstance.business_key).where(ProcessInstance.id == instance_id))
    query = select(Project).where(or_(
        Project.code == key if key else false(),
        Project.id.in_(select(LedgerIssue.project_id).where(LedgerIssue.instance_id == instance_id))))
    return [p for p in session.scalars(query.order_by(Project.code)) if reach.sees_project(p)]


__all__ = ["BEHIND", "Choices", "InstanceLine", "NextStep", "ProjectDetail", "ProjectFilter", "ProjectPage",
           "ProjectRow", "Reach", "StageLine", "behind_clause", "choices", "instance_projects", "next_steps",
           "project_detail", "project_instances", "project_page", "reach_of", "read_arg", "require_reach",
           "visible_project"]
