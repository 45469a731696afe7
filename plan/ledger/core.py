"""问题台账: the service tasks of issue_ledger.bpmn, and plain queries of the ledger_issue table.

Each step of the process calls one service here, so `ledger_issue` (status, unit, handler, deadline,
close time) is always in step with the instance and reports never deserialize a workflow. Every
change is audited on the issue's own stream `ledger_issue:<id>`. A service acts only on the issue
of the instance that calls it, and refuses a step the issue's status does not allow (the instance
then stops with an incident). Data a person entered that a service refuses names the field as the
step's form names it (InvalidInput field=…): the person's submission is refused then, and nothing is
kept (engine/runtime/refusal.py). Each returns a snapshot of the issue (`ledger` in the task data).

Lifecycle: registered 登记 → dispatched 派单 → accepted 响应 (or returned 退回 → dispatched again)
→ in_progress 办理 → feedback 反馈 → closed 销号 (or back to in_progress when 核验 fails).
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.deadlines import calendar
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, User
from engine.runtime import due_time
from engine.runtime.effects import RunContext, service
from engine.runtime.models import ProcessVersion
from plan.dates import YEARS, require_not_past, require_year
from plan.ledger.duties import require_separate
from plan.ledger.models import LedgerIssue
from plan.projects.acting import issue_project, issue_reporter
from plan.status_moves import Lifecycle

SOURCES = ("service_visit", "project", "manual")
OPEN_STATES = ("registered", "dispatched", "accepted", "in_progress", "feedback", "confirmed", "returned")
# status → the statuses it may be reached from
TRANSITIONS: dict[str, frozenset[str]] = {
    "dispatched": frozenset({"registered", "returned"}),
    "accepted": frozenset({"dispatched"}),
    "returned": frozenset({"dispatched"}),
    "in_progress": frozenset({"accepted", "in_progress", "feedback", "confirmed"}),
    "feedback": frozenset({"accepted", "in_progress"}),
    "confirmed": frozenset({"feedback"}),  # 回访: the person who raised it confirms the fix
    "closed": frozenset({"confirmed"}),  # 销号 only after 回访
}
# taken again after 退回 or 撤回, a step may move the issue back to its own status (plan/status_moves.py)
RANK = {"registered": 0, "dispatched": 1, "returned": 2, "accepted": 2, "in_progress": 3, "feedback": 4,
        "confirmed": 5, "closed": 6}
LIFECYCLE = Lifecycle(TRANSITIONS, RANK, ended=frozenset({"closed"}))
HANDLING = ("accepted", "in_progress", "feedback", "confirmed")  # 办理 may be open (again) in these
MAX_WORKING_DAYS = 250
YELLOW_WORKING_DAYS = 2  # default: yellow within two working days of the deadline


# -- helpers ------------------------------------------------------------------------------------

def _text(value: Any, field: str, *, required: bool = False, limit: int = 4000) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise InvalidInput(f"{field} 不能为空 (required)", field=field)
    if len(text) > limit:
        raise InvalidInput(f"{field} 超过 {limit} 字 (too long)", field=field)
    return text


def _date(value: Any, field: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        day = value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{field} 不是日期 YYYY-MM-DD (not a date): {value!r}", field=field) from None
    # 9999-12-31 would stop the instance at a bare assert
    require_year(day.year, field=field, message=f"{field} 超出范围 {YEARS} 年 (date out of range): {value!r}")
    return day


def deadline(day: date) -> datetime:
    """Return the deadline instant of a due date: the end of that day in Asia/Shanghai, as UTC."""
    due = due_time(day)
    assert due is not None
    return due


def _local_date(value: datetime | None) -> str | None:
    return clock.as_utc(value).astimezone(clock.SHANGHAI).date().isoformat() if value else None


def _iso(value: datetime | None) -> str | None:
    return clock.as_utc(value).isoformat() if value else None


def _username(session: Session, user_id: int | None) -> str | None:
    return session.scalar(select(User.username).where(User.id == user_id)) if user_id else None


def _unit(session: Session, code: str) -> OrgUnit | None:
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code)) if code else None


def snapshot(session: Session, issue: LedgerIssue, actor: Actor) -> dict[str, Any]:
    """Describe the issue as JSON for the task data (`at`/`by`: when and by whom this step was taken)."""
    unit = session.get(OrgUnit, issue.unit_id) if issue.unit_id else None
    return {"id": issue.id, "code": issue.code, "title": issue.title, "status": issue.status,
            "unit_code": unit.code if unit else None, "unit_name": unit.name if unit else None,
            "leader": _username(session, issue.responsible_leader_id),
            "handler": _username(session, issue.handler_id),
            "reporter": _username(session, issue.reported_by_id),
            "due_at": _iso(issue.due_at), "due_date": _local_date(issue.due_at), "closed_at": _iso(issue.closed_at),
            "at": clock.now().isoformat(), "by": actor.username, "by_name": actor.display_name or actor.username}


def _state(issue: LedgerIssue) -> dict[str, Any]:
    return {"status": issue.status, "unit_id": issue.unit_id, "handler_id": issue.handler_id,
            "due_at": _iso(issue.due_at), "closed_at": _iso(issue.closed_at)}


def _record(ctx: RunContext, issue: LedgerIssue, action: str, before: dict[str, Any] | None,
            **extra: Any) -> dict[str, Any]:
    ctx.session.flush()
    after = _state(issue)
    changed_before = {k: v for k, v in (before or {}).items() if after.get(k) != v}
    audit.record(ctx.session, ctx.actor, action, stream=f"ledger_issue:{issue.id}", object_type="ledger_issue",
                 object_id=issue.id, before=changed_before or None,
                 after={"code": issue.code, "instance_id": issue.instance_id, **after, **extra})
    return snapshot(ctx.session, issue, ctx.actor)


def _own_issue(ctx: RunContext, issue_id: Any) -> LedgerIssue:
    issue = ctx.session.get(LedgerIssue, int(issue_id))
    if issue is None:
        raise NotFound(f"问题不存在 (no such issue): {issue_id}", issue_id=issue_id)
    if issue.instance_id != ctx.running.row.id:
        raise Forbidden(f"问题 {issue.code} 不属于本流程实例 (not this instance's issue)", issue_id=issue.id)
    return issue


def _move(issue: LedgerIssue, status: str) -> None:
    if not LIFECYCLE.allows(issue.status, status):
        raise Conflict(f"问题 {issue.code} 状态为 {issue.status}，不能转为 {status} (transition not allowed)",
                       issue_id=issue.id, status=issue.status, to=status)
    issue.status = status


# -- service tasks ------------------------------------------------------------------------------

def _name_instance(ctx: RunContext, issue: LedgerIssue) -> None:
    """Give an instance started without a title (it bears the process's name) the issue's, as 走访 and the demo name
    theirs (企业：问题): else every hand-registered issue reads 问题台账销号 in 待办 and the lists."""
    row = ctx.running.row
    version = ctx.session.get(ProcessVersion, row.version_id)
    untitled = {"", f"{version.name if version else ''} {row.business_key or ''}".strip()[:300]}
    if (row.title or "") in untitled:
        row.title = f"{issue.enterprise or '问题'}：{issue.title}"[:300]


@service("ledger_register")
def register(ctx: RunContext, title: str, description: str = "", enterprise: str = "", unit_code: str | None = None,
             project_code: str | None = None, source: str = "manual", due_date: str | None = None,
             reporter: str | None = None) -> dict[str, Any]:
    """登记: create the instance's ledger_issue row with a code WT-<year>-<id> (again: update it)."""
    session = ctx.session
    if source not in SOURCES:
        raise InvalidInput(f"来源 source 须为 {'/'.join(SOURCES)} (source: one of {', '.join(SOURCES)}): {source!r}",
                           field="source")
    unit = _unit(session, _text(unit_code, "unit_code", limit=80))  # a suggestion; 派单 decides
    requested = require_not_past(_date(due_date, "due_date"), field="due_date")
    code = _text(project_code, "project_code", limit=40)
    # NOPE-1 was accepted and linked nothing; another unit's project was linked by whoever typed its code
    project_id = issue_project(session, ctx.actor, code).id if code else None
    values: dict[str, Any] = dict(
        title=_text(title, "title", required=True, limit=300), description=_text(description, "description"),
        enterprise=_text(enterprise, "enterprise", limit=200), source=source,
        project_id=project_id,
        unit_id=unit.id if unit else None, responsible_leader_id=unit.responsible_leader_id if unit else None,
        reported_by_id=issue_reporter(session, ctx.actor, _text(reporter, "reporter", limit=100)),
        due_at=deadline(requested) if requested else None)
    issue = session.scalar(select(LedgerIssue).where(LedgerIssue.instance_id == ctx.running.row.id))
    before = _state(issue) if issue else None
    if issue is None:
        # The number comes from the row id, so concurrent registrations can never collide.
        issue = LedgerIssue(code=f"WT-new-{uuid4().hex[:24]}", instance_id=ctx.running.row.id, status="registered",
                            created_at=clock.now(), **values)
        session.add(issue)
        session.flush()
        issue.code = f"WT-{clock.now().astimezone(clock.SHANGHAI).year}-{issue.id:04d}"
    else:
        for key, value in values.items():
            setattr(issue, key, value)
    _name_instance(ctx, issue)
    return _record(ctx, issue, "ledger.register", before, title=issue.title, source=source,
                   project_code=code or None, unit_code=unit_code)


@service("ledger_dispatch")
def dispatch(ctx: RunContext, issue_id: int, unit_code: str, deadline_kind: str, due_date: str | None = None,
             working_days: int | None = None, note: str | None = None) -> dict[str, Any]:
    """派单: give the issue to a responsible unit with a deadline (a date, or N working days from now)."""
    issue = _own_issue(ctx, issue_id)
    unit = _unit(ctx.session, _text(unit_code, "unit_code", required=True, limit=80))
    if unit is None:
        raise InvalidInput(f"责任单位不存在 (no such unit): {unit_code}", field="unit_code")  # the officer's choice
    if deadline_kind == "working_days":
        if not isinstance(working_days, int) or not 1 <= working_days <= MAX_WORKING_DAYS:
            raise InvalidInput(f"工作日数须为 1–{MAX_WORKING_DAYS} (working days)", field="working_days")
        day = calendar.add_working_days(clock.now(), working_days).astimezone(clock.SHANGHAI).date()
    elif deadline_kind == "date":
        picked = _date(due_date, "due_date")
        if picked is None:
            raise InvalidInput("请填写办结期限 (due_date required)", field="due_date")
        day = require_not_past(picked, field="due_date") or picked
    else:
        raise InvalidInput(f"期限方式须为 date 或 working_days (deadline_kind: date or working_days): "
                           f"{deadline_kind!r}", field="deadline_kind")
    before = _state(issue)
    _move(issue, "dispatched")
    issue.unit_id, issue.responsible_leader_id, issue.handler_id = unit.id, unit.responsible_leader_id, None
    issue.due_at = deadline(day)
    return _record(ctx, issue, "ledger.dispatch", before, unit_code=unit.code, due_date=day.isoformat(),
                   note=_text(note, "dispatch_note"))


@service("ledger_respond")
def respond(ctx: RunContext, issue_id: int, response: str, reason: str | None = None) -> dict[str, Any]:
    """响应: the unit accepts (the acting user becomes the handler) or returns it as not theirs (退回)."""
    issue = _own_issue(ctx, issue_id)
    before = _state(issue)
    if response == "accept":
        _move(issue, "accepted")
        issue.handler_id = ctx.actor.user_id
    elif response == "return":
        _move(issue, "returned")
        issue.handler_id = None
    else:
        raise InvalidInput(f"响应须为 accept 或 return (response: accept or return): {response!r}", field="response")
    text = _text(reason, "return_reason", required=response == "return")
    return _record(ctx, issue, f"ledger.{issue.status}", before, reason=text)


@service("ledger_progress")
def progress(ctx: RunContext, issue_id: int, text: str, percent: int | None = None) -> dict[str, Any]:
    """办理: record a progress report; the issue is in progress from the first one."""
    issue = _own_issue(ctx, issue_id)
    before = _state(issue)
    _move(issue, "in_progress")
    return _record(ctx, issue, "ledger.progress", before, text=_text(text, "progress", required=True),
                   percent=percent)


@service("ledger_done")
def done(ctx: RunContext, issue_id: int) -> dict[str, Any]:
    """办结: the handler ends 办理; the snapshot is read again, so 反馈 goes to the handler as a 改派 left it."""
    issue = _own_issue(ctx, issue_id)
    if issue.status not in HANDLING:
        raise Conflict(f"问题 {issue.code} 状态为 {issue.status}，不能办结 "
                       f"(issue {issue.code} is {issue.status}: it cannot be closed)",
                       issue_id=issue.id, status=issue.status)
    return snapshot(ctx.session, issue, ctx.actor)


def _after_today(day: date, field: str, *, due_at: datetime | None = None) -> None:
    """Refuse a new deadline that is not after today (Asia/Shanghai), nor after the issue's deadline `due_at`."""
    today = clock.now().astimezone(clock.SHANGHAI).date()
    if day <= today:
        raise InvalidInput(f"新的期限 {day} 须晚于今天 {today} (the new deadline must be after today)", field=field)
    current = _local_date(due_at)
    if current is not None and day.isoformat() <= current:
        raise InvalidInput(f"申请的期限 {day} 须晚于现有期限 {current} (later than the current deadline)", field=field)


@service("ledger_extension_request")
def extension_request(ctx: RunContext, issue_id: int, requested_due_date: str | None = None,
                      reason: str | None = None) -> dict[str, Any]:
    """申请延期: the handler's request, checked before it goes to the leader (recorded with the leader's decision).

    A date not after today or the current deadline refuses the handler's submission, naming requested_due_date.
    """
    issue = _own_issue(ctx, issue_id)
    if issue.status not in HANDLING:
        raise Conflict(f"问题 {issue.code} 状态为 {issue.status}，不能延期 "
                       f"(issue {issue.code} is {issue.status}: its deadline cannot be extended)",
                       issue_id=issue.id, status=issue.status)
    day = _date(requested_due_date, "requested_due_date")
    if day is None:
        raise InvalidInput("请填写申请的期限 (requested_due_date required)", field="requested_due_date")
    _after_today(day, "requested_due_date", due_at=issue.due_at)
    _text(reason, "extension_reason", required=True, limit=2000)
    return snapshot(ctx.session, issue, ctx.actor)


@service("ledger_extension")
def extension(ctx: RunContext, issue_id: int, decision: str, requested_due_date: str | None = None,
              due_date: str | None = None, reason: str | None = None, opinion: str | None = None) -> dict[str, Any]:
    """申请延期: the responsible leader's decision; a grant moves the deadline to `due_date`."""
    issue = _own_issue(ctx, issue_id)
    if issue.status not in HANDLING:
        raise Conflict(f"问题 {issue.code} 状态为 {issue.status}，不能延期 "
                       f"(issue {issue.code} is {issue.status}: its deadline cannot be extended)",
                       issue_id=issue.id, status=issue.status)
    before = _state(issue)
    if decision == "grant":
        day = _date(due_date, "new_due_date")
        if day is None:
            raise InvalidInput("批准延期须填写新的期限 (new_due_date required)", field="new_due_date")
        _after_today(day, "new_due_date")  # a date already past: the leader's form comes back (no incident)
        issue.due_at = deadline(day)
    elif decision != "refuse":
        raise InvalidInput(f"延期决定须为 grant 或 refuse (extension_decision: grant or refuse): {decision!r}",
                           field="extension_decision")
    requested = _date(requested_due_date, "requested_due_date")
    return _record(ctx, issue, f"ledger.extension.{decision}", before,
                   requested_due_date=requested.isoformat() if requested else None,
                   reason=_text(reason, "extension_reason"), opinion=_text(opinion, "leader_opinion"))


@service("ledger_feedback")
def feedback(ctx: RunContext, issue_id: int, evidence: str, attachments: Sequence[str] | None = None) -> dict[str, Any]:
    """反馈: the handler reports the issue solved, with evidence, for 核验."""
    issue = _own_issue(ctx, issue_id)
    before = _state(issue)
    _move(issue, "feedback")
    return _record(ctx, issue, "ledger.feedback", before, evidence=_text(evidence, "evidence", required=True),
                   attachments=[_text(a, "attachments", limit=255) for a in attachments or []])


@service("ledger_revisit")
def revisit(ctx: RunContext, issue_id: int, result: str, opinion: str | None = None) -> dict[str, Any]:
    """回访: the person who raised the issue confirms the fix (then 核验 and 销号) or sends it back to 办理; never the
    handler (plan.ledger.duties)."""
    issue = _own_issue(ctx, issue_id)
    require_separate(ctx, issue, "revisit")
    before = _state(issue)
    if result == "satisfied":
        _move(issue, "confirmed")
    elif result == "unsatisfied":
        _move(issue, "in_progress")
    else:
        raise InvalidInput(f"回访结论须为 satisfied 或 unsatisfied (revisit: satisfied or unsatisfied): {result!r}",
                           field="revisit")
    text = _text(opinion, "revisit_opinion", required=result == "unsatisfied")
    return _record(ctx, issue, "ledger.confirmed" if result == "satisfied" else "ledger.revisit_failed", before,
                   opinion=text)


@service("ledger_verify")
def verify(ctx: RunContext, issue_id: int, verdict: str, opinion: str | None = None) -> dict[str, Any]:
    """核验: pass closes the issue (销号; only after 回访); fail sends it back to 办理 with the reason; never by whoever
    handled it (plan.ledger.duties)."""
    issue = _own_issue(ctx, issue_id)
    require_separate(ctx, issue, "verify")
    before = _state(issue)
    if verdict == "pass":
        _move(issue, "closed")
        issue.closed_at = clock.now()
    elif verdict == "fail":
        _move(issue, "in_progress")
    else:
        raise InvalidInput(f"核验结论须为 pass 或 fail (verdict: pass or fail): {verdict!r}", field="verdict")
    text = _text(opinion, "verify_opinion", required=verdict == "fail")
    return _record(ctx, issue, "ledger.closed" if verdict == "pass" else "ledger.reopened", before, opinion=text)


# -- queries for the web and the reports ----------------------------------------------------------

def get_issue(session: Session, *, issue_id: int | None = None, code: str | None = None) -> LedgerIssue:
    """Return an issue by id or code (WT-2025-0001).

    Raises: NotFound
    """
    query = select(LedgerIssue).where(LedgerIssue.id == issue_id if issue_id is not None else LedgerIssue.code == code)
    issue = session.scalar(query)
    if issue is None:
        raise NotFound(f"问题不存在 (no such issue): {issue_id or code}", issue_id=issue_id, code=code)
    return issue


def list_issues(session: Session, *, status: str | None = None, unit_code: str | None = None, open_only: bool = False,
                overdue_at: datetime | None = None, limit: int = 100, offset: int = 0) -> Sequence[LedgerIssue]:
    """Return issues, the earliest deadline first; `overdue_at` keeps open ones past their deadline then."""
    query = select(LedgerIssue)
    if status:
        query = query.where(LedgerIssue.status == status)
    if open_only or overdue_at is not None:
        query = query.where(LedgerIssue.status.in_(OPEN_STATES))
    if overdue_at is not None:
        query = query.where(LedgerIssue.due_at < overdue_at)
    if unit_code:
        query = query.join(OrgUnit, OrgUnit.id == LedgerIssue.unit_id).where(OrgUnit.code == unit_code)
    query = query.order_by(LedgerIssue.due_at.is_(None), LedgerIssue.due_at, LedgerIssue.id)
    return session.scalars(query.limit(limit).offset(offset)).all()


__all__ = ["HANDLING", "OPEN_STATES", "SOURCES", "TRANSITIONS", "YELLOW_WORKING_DAYS", "deadline", "dispatch", "done",
           "extension", "extension_request", "feedback", "get_issue", "list_issues", "progress", "register", "respond",
           "snapshot", "verify"]
