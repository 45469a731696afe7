"""问题台账 pages' read models: the filtered list of issues and one issue's page.

Nothing here writes. Who sees an issue is `plan.projects.views.Reach` (the project library's rule):
everything for admins, city leaders and auditors; otherwise issues given to one's units or leader
area, issues one leads or handles, and issues about a project in reach. An issue out of reach is
reported exactly like one that does not exist.

The list pages on (deadline, id) — dated issues first, the earliest deadline first, then undated
ones — with an opaque cursor, never OFFSET. An issue's light is the deadline sweep's: its watch
row's warn time, else the issue policy's yellow threshold from its registration.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import Session

from engine import clock
from engine.audit.models import AuditEvent
from engine.deadlines import sla
from engine.deadlines.models import DeadlineWatch, ExtensionRequest
from engine.errors import NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, User
from engine.runtime.models import ProcessInstance
from engine.tasks import access
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask, archived_tasks
from engine.tasks.queries import cursor_int, cursor_time, decode_cursor, encode_cursor
from plan import supervision
from plan.ledger.core import OPEN_STATES, SOURCES
from plan.ledger.deadlines import issue_deadline
from plan.ledger.models import ISSUE_STATES, LedgerIssue
from plan.projects.models import Project
from plan.projects.views import MAX_PAGE, PAGE_SIZE, Reach, read_arg

OVERDUE = ("yes",)


@dataclass(frozen=True)
class IssueFilter:
    """What the issue list is narrowed to."""

    status: str = ""
    unit: str = ""  # responsible unit code
    source: str = ""
    overdue: str = ""  # "" | yes
    q: str = ""  # code, title or enterprise

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> IssueFilter:
        """Read the filter from request arguments.

        Raises: InvalidInput
        """
        return cls(status=read_arg(values, "status", choices=ISSUE_STATES), unit=read_arg(values, "unit", limit=80),
                   source=read_arg(values, "source", choices=SOURCES), overdue=read_arg(values, "overdue", choices=OVERDUE),
                   q=read_arg(values, "q"))

    def as_query(self) -> dict[str, str]:
        values = {"status": self.status, "unit": self.unit, "source": self.source, "overdue": self.overdue, "q": self.q}
        return {k: v for k, v in values.items() if v}


def issue_clause(reach: Reach) -> ColumnElement[bool] | None:
    """Return the SQL condition of the issues in reach (None: every issue)."""
    if reach.everything:
        return None
    ids = list(reach.unit_ids) or [-1]
    projects = reach.project_clause()
    mine: list[ColumnElement[bool]] = []
    if reach.user_id is not None:
        mine = [LedgerIssue.responsible_leader_id == reach.user_id, LedgerIssue.handler_id == reach.user_id]
    return or_(LedgerIssue.unit_id.in_(ids), *mine,
               LedgerIssue.project_id.in_(select(Project.id).where(projects if projects is not None else false())))


def _filters(flt: IssueFilter, now: datetime) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if flt.status:
        where.append(LedgerIssue.status == flt.status)
    if flt.unit:
        where.append(LedgerIssue.unit_id.in_(select(OrgUnit.id).where(OrgUnit.code == flt.unit)))
    if flt.source:
        where.append(LedgerIssue.source == flt.source)
    if flt.overdue:
        where.append(and_(LedgerIssue.status.in_(OPEN_STATES), LedgerIssue.due_at < now))
    if flt.q:
        where.append(or_(LedgerIssue.code.icontains(flt.q, autoescape=True),
                         LedgerIssue.title.icontains(flt.q, autoescape=True),
                         LedgerIssue.enterprise.icontains(flt.q, autoescape=True)))
    return where


@dataclass(frozen=True)
class IssueRow:
    issue: LedgerIssue
    unit: str | None
    handler: str | None
    project_code: str | None
    warn_at: datetime | None


@dataclass(frozen=True)
class IssuePage:
    rows: list[IssueRow]
    next_cursor: str | None


def warn_times(session: Session, issues: list[LedgerIssue]) -> dict[int, datetime]:
    """Return when each open issue's light turns yellow: its watch's warn time, else its policy's."""
    ids = [i.id for i in issues]
    watches = {w.object_id: w for w in session.scalars(select(DeadlineWatch).where(
        DeadlineWatch.object_type == "issue", DeadlineWatch.object_id.in_(ids or [-1])))}
    policies = sla.load_policies()
    found = {}
    for issue in issues:
        deadline = issue_deadline(issue)
        if deadline is None:
            continue
        watch = watches.get(issue.id)
        if watch is not None and watch.warn_at is not None and watch.due_at == deadline.due_at:
            found[issue.id] = watch.warn_at
        elif deadline.started_at is not None:
            found[issue.id] = sla.warn_time(clock.as_utc(deadline.started_at), clock.as_utc(deadline.due_at),
                                            policies.get("issue", deadline.policy).yellow)
    return found


def _cursor(after: str) -> tuple[datetime | None, int]:
    due, last = decode_cursor(after, 2)
    return (None if due is None else cursor_time(due)), cursor_int(last)


def issue_page(session: Session, reach: Reach, flt: IssueFilter = IssueFilter(), *, after: str | None = None,
               limit: int = PAGE_SIZE, now: datetime | None = None) -> IssuePage:
    """Return a page of the issues in reach, the earliest deadline first (undated last), after the cursor.

    Raises: InvalidInput (a bad cursor)
    """
    now = now or clock.now()
    size = max(1, min(int(limit), MAX_PAGE))
    query = select(LedgerIssue)
    clause = issue_clause(reach)
    if clause is not None:
        query = query.where(clause)
    for condition in _filters(flt, now):
        query = query.where(condition)
    if after:
        due, last = _cursor(after)
        if due is None:
            query = query.where(LedgerIssue.due_at.is_(None), LedgerIssue.id > last)
        else:
            query = query.where(or_(LedgerIssue.due_at > due, and_(LedgerIssue.due_at == due, LedgerIssue.id > last),
                                    LedgerIssue.due_at.is_(None)))
    found = list(session.scalars(query.order_by(LedgerIssue.due_at.is_(None), LedgerIssue.due_at, LedgerIssue.id)
                                 .limit(size + 1)))
    issues = found[:size]
    units = {u.id: u.name for u in session.scalars(select(OrgUnit).where(
        OrgUnit.id.in_([i.unit_id for i in issues if i.unit_id] or [-1])))}
    users = {u.id: u.display_name for u in session.scalars(select(User).where(
        User.id.in_([i.handler_id for i in issues if i.handler_id] or [-1])))}
    codes = {p.id: p.code for p in session.scalars(select(Project).where(
        Project.id.in_([i.project_id for i in issues if i.project_id] or [-1])))}
    warns = warn_times(session, issues)
    rows = [IssueRow(i, units.get(i.unit_id or -1), users.get(i.handler_id or -1), codes.get(i.project_id or -1),
                     warns.get(i.id)) for i in issues]
    next_cursor = None
    if len(found) > size:
        last_issue = issues[-1]
        next_cursor = encode_cursor([clock.as_utc(last_issue.due_at).isoformat() if last_issue.due_at else None,
                                     last_issue.id])
    return IssuePage(rows, next_cursor)


# -- one issue ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogLine:
    """A step of the issue's own record (登记, 派单, 办理 progress, 延期, 反馈, 核验) from its audit stream."""

    at: datetime
    action: str
    who: str
    after: dict[str, Any]


@dataclass(frozen=True)
class IssueDetail:
    issue: LedgerIssue
    unit: OrgUnit | None
    project: Project | None  # None also when the project is out of reach
    handler: str | None
    leader: str | None
    reporter: str | None
    instance: ProcessInstance | None
    open_tasks: list[HumanTask]
    warn_at: datetime | None
    watch: DeadlineWatch | None
    history: list[supervision.HistoryLine]
    log: list[LogLine]
    extensions: list[LogLine]  # decided 申请延期 (ledger.extension.grant / refuse)
    pending_extension: HumanTask | None
    task_requests: list[ExtensionRequest]  # 申请延期 on the issue's tasks
    comments: list[tuple[Comment, str]]  # only for who may see the instance


def visible_issue(session: Session, reach: Reach, issue_id: int) -> LedgerIssue:
    """Return an issue in reach.

    Raises: NotFound (also for an issue out of reach: its existence is not told)
    """
    issue = session.get(LedgerIssue, issue_id)
    project = session.get(Project, issue.project_id) if issue is not None and issue.project_id else None
    if issue is None or not reach.sees_issue(issue, project):
        raise NotFound(f"问题不存在 (no such issue): {issue_id}", issue_id=issue_id)
    return issue


def user_names(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    return {u.id: u.display_name for u in session.scalars(select(User).where(User.id.in_(wanted or [-1])))}


def record_of(session: Session, stream: str) -> list[LogLine]:
    """A case's own record, step by step, from its audit stream (who acted, by their name now)."""
    events = list(session.scalars(select(AuditEvent).where(AuditEvent.stream == stream).order_by(AuditEvent.seq)))
    actors = user_names(session, {e.actor_id for e in events})
    return [LogLine(e.at, e.action, actors.get(e.actor_id or -1, e.actor_name),
                    e.after if isinstance(e.after, dict) else {}) for e in events]


def issue_detail(session: Session, reach: Reach, actor: Actor, issue_id: int) -> IssueDetail:
    """Return an issue's fields, its instance and open tasks, deadline, 督办 history, extensions and comments.

    Raises: NotFound
    """
    issue = visible_issue(session, reach, issue_id)
    project = session.get(Project, issue.project_id) if issue.project_id else None
    names = user_names(session, {issue.handler_id, issue.responsible_leader_id, issue.reported_by_id})
    log = record_of(session, f"ledger_issue:{issue.id}")
    instance = session.get(ProcessInstance, issue.instance_id) if issue.instance_id else None
    open_tasks: list[HumanTask] = []
    task_requests: list[ExtensionRequest] = []
    comments: list[tuple[Comment, str]] = []
    if instance is not None:
        open_tasks = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                                  HumanTask.state == "ready").order_by(HumanTask.id)))
        task_ids = select(HumanTask.id).where(HumanTask.instance_id == instance.id).union_all(  # archived steps too
            select(archived_tasks.c.id).where(archived_tasks.c.instance_id == instance.id))
        task_requests = list(session.scalars(select(ExtensionRequest).where(
            ExtensionRequest.object_type == "task", ExtensionRequest.object_id.in_(task_ids))
            .order_by(ExtensionRequest.created_at)))
        if access.can_view_instance(session, actor, instance.id):
            rows = list(session.scalars(select(Comment).where(Comment.instance_id == instance.id)
                                        .order_by(Comment.created_at, Comment.id)))
            authors = user_names(session, {c.author_id for c in rows})
            comments = [(c, authors.get(c.author_id or -1, "系统")) for c in rows]
    pending = supervision.pending_extension(session, "issue", issue.id)
    watch = session.scalar(select(DeadlineWatch).where(DeadlineWatch.object_type == "issue",
                                                       DeadlineWatch.object_id == issue.id))
    return IssueDetail(issue, session.get(OrgUnit, issue.unit_id) if issue.unit_id else None,
                       project if project is not None and reach.sees_project(project) else None,
                       names.get(issue.handler_id or -1), names.get(issue.responsible_leader_id or -1),
                       names.get(issue.reported_by_id or -1), instance, open_tasks,
                       warn_times(session, [issue]).get(issue.id), watch,
                       supervision.history(session, "issue", issue.id), log,
                       [line for line in log if line.action.startswith("ledger.extension.")],
                       pending if isinstance(pending, HumanTask) else None, task_requests, comments)


def instance_issues(session: Session, reach: Reach, instance_id: int) -> list[LedgerIssue]:
    """Return the issues in reach an instance drives."""
    found = []
    for issue in session.scalars(select(LedgerIssue).where(LedgerIssue.instance_id == instance_id)):
        project = session.get(Project, issue.project_id) if issue.project_id else None
        if reach.sees_issue(issue, project):
            found.append(issue)
    return found


__all__ = ["IssueDetail", "IssueFilter", "IssuePage", "IssueRow", "LogLine", "instance_issues", "issue_clause",
           "issue_detail", "issue_page", "record_of", "user_names", "visible_issue", "warn_times"]
