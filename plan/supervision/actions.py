"""督办: what a leader does about an object in their area (`plan.supervision.area`).

Actions, each audited on the object's stream and notified through the outbox: urge (催办, with a new
deadline if given; at most once an hour per leader and object), reassign (改派), grant or refuse an
extension (批准/不批准延期), escalate one rung higher (升级). A ledger issue's 申请延期 is its
process's own `decide_extension` task: deciding it here completes that task, so issue_ledger.bpmn and
plan.ledger record the decision as they always do.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock, notify, tasks
from engine.deadlines import escalation, requests, sla
from engine.deadlines.escalation import Target
from engine.deadlines.models import DeadlineAction, EscalationStep, ExtensionRequest
from engine.errors import Conflict, Forbidden, InvalidInput, NotYourTask, RateLimited
from engine.org.actors import Actor
from engine.org.models import User
from engine.tasks import duties, lookup, operations, people
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask, TaskCandidate
from plan.dates import YEARS, require_year
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue
from plan.projects.deadlines import NEXT_STAGE
from plan.projects.fields import PLANNED_FIELDS, check_planned
from plan.projects.models import Project
from plan.stale import require_fresh, version
from plan.supervision import reach
from plan.supervision.area import ISSUE_TASKS, issue_tasks, open_target, pending_extension, requester_of, target_of

URGE_INTERVAL = timedelta(hours=1)
NOTE_LIMIT = 2000  # characters of a 督办 note (改派, 升级), as of 催办's message and an opinion
_ROWS: dict[str, type[HumanTask | LedgerIssue | InvestmentLead | Project]] = {
    "task": HumanTask, "issue": LedgerIssue, "lead": InvestmentLead, "project": Project}
# An item a process carries (问题台账, 招商线索): its row, its process, the steps that carry its deadline, the steps
# its handler holds.
_ITEMS: dict[str, tuple[type[LedgerIssue] | type[InvestmentLead], str, tuple[str, ...], tuple[str, ...]]] = {
    "issue": (LedgerIssue, "issue_ledger", ISSUE_TASKS, ("respond", *ISSUE_TASKS)),  # 响应 too, as a lead's
    "lead": (InvestmentLead, "investment_lead", ("contact", "feedback"), ("respond", "contact", "feedback")),
}


def _item(session: Session, object_type: str, object_id: int) -> LedgerIssue | InvestmentLead:
    """The issue or lead behind a target (by its own type: ids of different kinds overlap)."""
    row = session.get(_ITEMS[object_type][0], object_id)
    assert isinstance(row, (LedgerIssue, InvestmentLead))  # open_target found it
    return row


def _lock(session: Session, object_type: str, object_id: int) -> None:
    """Lock the object's row, first: two actions on one object at once take turns, each checking what the other did.

    PostgreSQL holds the row until the commit; SQLite renders no FOR UPDATE, its BEGIN IMMEDIATE queues every writer.
    """
    if object_type == "task":  # the instance's row first, as the engine's writers take them
        operations.lock_task(session, object_id)
        return
    model = _ROWS.get(object_type)
    if model is not None:  # an unknown type is open_target's to refuse
        session.execute(select(model.id).where(model.id == object_id).with_for_update())


def _log(session: Session, actor: Actor, target: Target, action: str, *, note: str = "", before: datetime | None = None,
         after: datetime | None = None, to: int | None = None, cross_unit: bool = False) -> None:
    session.add(DeadlineAction(object_type=target.object_type, object_id=target.object_id, action=action,
                               actor_id=actor.user_id, at=clock.now(), note=note, due_before=before, due_after=after,
                               target_user_id=to))
    session.flush()
    audit.record(session, actor, f"supervision.{action}", stream=target.stream, object_type=target.audit_type,
                 object_id=target.object_id, before={"due_at": before} if before else None,
                 after={"note": note, "due_at": after, "to_user_id": to, **({"cross_unit": True} if cross_unit else {})})


def _note(text: str) -> str:
    """Return a note as given, refusing one past NOTE_LIMIT: it goes whole into a notification and the audit trail."""
    if len(text) > NOTE_LIMIT:
        raise InvalidInput(f"说明（note）超过 {NOTE_LIMIT} 字 (note too long)", field="note")
    return text


def _new_deadline(day: date | None, now: datetime) -> datetime | None:
    if day is None:
        return None
    # 9999-12-31 would overflow the escalation ladder after it
    require_year(day.year, field="due_date", message=f"新的期限 {day} 超出范围 {YEARS} 年 (date out of range)")
    due = sla.deadline_of(day)
    if due <= now:
        raise InvalidInput("新的期限须晚于现在 (the new deadline must be in the future)", field="due_date")
    return due


def _extended(day: date | None, now: datetime) -> datetime | None:
    """The deadline an extension (申请延期, its grant) moves to: a day after today (Asia/Shanghai), as for an issue's."""
    if day is not None and day <= now.astimezone(clock.SHANGHAI).date():
        raise InvalidInput(f"延期后的期限 {day} 须晚于今天 (an extension must be to a day after today)", field="due_date")
    return _new_deadline(day, now)


def set_deadline(session: Session, target: Target, due: datetime, *, now: datetime) -> None:
    """Move an object's deadline (a task's due, an issue's due and its tasks', a project's next planned date)."""
    policy = sla.load_policies().get(target.object_type, target.policy)
    if target.object_type == "task":
        task = session.get(HumanTask, target.object_id)
        assert task is not None
        task.due_at, task.warn_at = due, sla.warn_time(now, due, policy.yellow)
    elif target.object_type in _ITEMS:
        item = _item(session, target.object_type, target.object_id)
        item.due_at = due
        _, process_key, carrying, _ = _ITEMS[target.object_type]
        task_policy = sla.load_policies().get("task", process_key)
        for task in issue_tasks(session, item, carrying):
            task.due_at, task.warn_at = due, sla.warn_time(now, due, task_policy.yellow)
    else:
        assert target.object_type == "project", target.object_type
        project = session.get(Project, target.object_id)
        assert project is not None
        column = NEXT_STAGE[project.stage][1]
        day = due.astimezone(clock.SHANGHAI).date()
        check_planned({f: day if f == column else getattr(project, f) for f in PLANNED_FIELDS})  # as the entry form
        setattr(project, column, day)
    session.flush()


def deadline_version(target: Target) -> str:
    """The `seen` of the 催办 form (`plan.stale`): the deadline the page showed, which a new one replaces."""
    return version(target.due_at)


def holder_version(target: Target) -> str:
    """The `seen` of the 改派 form: who the page showed holding the object."""
    return version(*sorted(target.handler_ids))


def level_version(level: int) -> str:
    """The `seen` of the 升级 button: the rung of the ladder the page showed."""
    return version(level)


def extension_version(pending: ExtensionRequest | HumanTask | None) -> str:
    """The `seen` of the 审批延期 form: the request the page showed (a new one, asked since, is another)."""
    return version(type(pending).__name__, pending.id if pending is not None else None)


def urge(session: Session, *, actor: Actor, object_type: str, object_id: int, message: str = "",
         due_date: date | None = None, seen: str | None) -> int:
    """催办: remind the handler, optionally with a new deadline (a new round of the ladder); return how many were told.

    `seen`: the `deadline_version` the page showed; a new deadline over one set since is refused (a reminder alone
    overwrites nothing and is not).

    Raises: NotFound, Forbidden, Conflict, InvalidInput, RateLimited
    """
    now = clock.now()
    _lock(session, object_type, object_id)  # two urges at once: the second counts the first
    target = open_target(session, actor, object_type, object_id)
    if object_type == "task":  # one rule with the task page's 催办: its urge comments count, 督办's among them
        urged = session.get(HumanTask, object_id)
        assert urged is not None  # open_target found it open
        operations.require_not_urged(session, urged, actor)
    elif session.scalar(select(DeadlineAction.id).where(
            DeadlineAction.object_type == object_type, DeadlineAction.object_id == object_id,
            DeadlineAction.action == "urge", DeadlineAction.actor_id == actor.user_id,
            DeadlineAction.at >= now - URGE_INTERVAL).limit(1)) is not None:
        raise RateLimited("一小时内已催办过 (already urged within the hour)", object_type=object_type, object_id=object_id)
    text = message.strip()
    if len(text) > NOTE_LIMIT:  # never cut: the end of a reminder was lost without a word
        raise InvalidInput(f"催办内容（message）超过 {NOTE_LIMIT} 字 (message too long)", field="message")
    due = _new_deadline(due_date, now)
    before = target.due_at
    if due is not None:
        require_fresh(seen, deadline_version(target), what=f"{target.title} 的期限", changes=due != before)
        set_deadline(session, target, due, now=now)
    if object_type == "task":
        task = session.get(HumanTask, object_id)
        assert task is not None
        session.add(Comment(instance_id=task.instance_id, task_id=task.id, author_id=actor.user_id, kind="urge",
                            body=text or "督办催办"))
    _log(session, actor, target, "urge", note=text, before=before, after=due)
    said = {"actor": actor.display_name, "title": target.title}
    if due is not None:  # the note, then the new deadline, one space between
        said.update(note=f"{text} " if text else "", due=f"{due.astimezone(clock.SHANGHAI):%Y-%m-%d}")
    else:
        said.update(note=text)
    # its handlers, as the ladder's handler rung reaches them: a deactivated one passes to the rung above, never told
    policy = sla.load_policies().get(object_type, target.policy)
    told = escalation.recipients("handler", target, escalation.Org.load(session), policy, session)
    notify.send_many(session, [notify.worded(u, "urge", "supervised_due" if due is not None else "supervised", said,
                                             link=target.link, unit_id=target.unit_id) for u in told])
    if due is not None:
        escalation.follow(session, object_type, object_id, now=now)
    return len(told)


def _user(session: Session, username: str) -> User:
    if not username:
        raise InvalidInput("改派给（to_username）：请选择人员 (reassign to: choose a person)", field="to_username")
    return operations.user_named(session, username, field="to_username", what="改派给")


@dataclass(frozen=True)
class Reassignable:
    """What 改派 of an object may do: the object, the case whose people may be chosen (its instance), and a
    task of that case for the picker's search (`/people/search?task=`), when it has one open."""

    target: Target
    instance_id: int | None
    task_id: int | None

    @property
    def seen(self) -> str:
        """The version the 改派 form carries: who holds the object now."""
        return holder_version(self.target)


def reassignable(session: Session, *, actor: Actor, object_type: str, object_id: int) -> Reassignable:
    """Return an object the actor may reassign (改派), with the case the picker offers people of.

    Raises: NotFound, Forbidden, Conflict, InvalidInput
    """
    if object_type == "project":
        raise InvalidInput("项目不能改派，请调整责任单位 (projects are not reassigned)", field="object_type")
    if object_type == "task" and (actor.is_admin or actor.is_system):
        # Administrators reach every open task, a suspended one of an instance in incident included.
        target = target_of(session, object_type, object_id)
        task = tasks.get_open(session, object_id)
        return Reassignable(target, task.instance_id, task.id)
    target = open_target(session, actor, object_type, object_id)
    if object_type == "task":
        task = tasks.get_open(session, object_id)
        return Reassignable(target, task.instance_id, task.id)
    item = _item(session, object_type, object_id)
    open_tasks = issue_tasks(session, item, _ITEMS[object_type][3])
    return Reassignable(target, item.instance_id, open_tasks[0].id if open_tasks else None)


def _give_task(session: Session, task: HumanTask, user: User) -> None:
    # not over a completion, a claim or another 改派 committed since the task was read (TaskAlreadyDone, TaskChanged)
    lookup.reassign(session, task, assignee_id=user.id, owner_id=user.id, delegation_state=None)
    if not any(c.user_id == user.id for c in task.candidates):
        task.candidates.append(TaskCandidate(user_id=user.id))


def reassign(session: Session, *, actor: Actor, object_type: str, object_id: int, to_username: str,
             note: str = "", seen: str | None) -> User:
    """改派: give a task, or an issue or lead and its open tasks, to another handler in the actor's scope (the picker's).

    `seen`: the `holder_version` the 改派 page showed; when someone else handed the object on since, refused.

    Raises: NotFound, Forbidden, Conflict, UserNotFound, InvalidInput
    """
    if object_type in _ITEMS:  # two 改派 at once: the second compares with what the first did (a task's own
        _lock(session, object_type, object_id)  # compare-and-set, lookup.reassign, covers the moment after the read)
    found = reassignable(session, actor=actor, object_type=object_type, object_id=object_id)
    target, note = found.target, _note(note)
    user = _user(session, to_username.strip())
    people.require_in_scope(session, actor, user, field="to_username", what="改派给", instance_id=found.instance_id)
    cross_unit = reach.require_in_unit(session, actor, target, user)
    require_fresh(seen, found.seen, what=f"{target.title} 的办理人", changes=True)
    if object_type == "task":
        task = tasks.get_open(session, object_id)
        if task.assignee_id == user.id:
            raise InvalidInput("已由此人办理 (already theirs)", field="to_username")
        duties.require_not_barred(session, task, user.id, field="to_username", who="改派给")
        _give_task(session, task, user)
    else:
        item = _item(session, object_type, object_id)
        item.handler_id = user.id
        for task in issue_tasks(session, item, _ITEMS[object_type][3]):
            _give_task(session, task, user)
    session.flush()
    if found.instance_id is not None:  # who handled it changed: a step now barred to them (核验) is not theirs
        duties.reapply(session, actor, found.instance_id)
    _log(session, actor, target, "reassign", note=note, to=user.id, cross_unit=cross_unit)
    notify.send(session, notify.worded(user.id, "reassign", "reassigned",
                                       {"actor": actor.display_name, "title": target.title, "note": note},
                                       link=target.link, unit_id=target.unit_id))
    return user


def request_extension(session: Session, *, actor: Actor, task_id: int, due_date: date, reason: str) -> ExtensionRequest:
    """申请延期 of a task by its holder (issues ask through their own process). The reason is kept whole: past
    NOTE_LIMIT it is refused naming `reason`, never cut.

    Raises: TaskNotFound, TaskAlreadyDone, NotYourTask, InvalidInput, Conflict
    """
    # The asker's row before the step's, as a move (调岗) or 停用 of theirs takes them; their units and roles read
    # again under it: the Actor they came with may still show a unit a move has taken them out of meanwhile.
    asker = requests.asker(session, actor)
    _lock(session, "task", task_id)  # asked twice at once (a double click): the second finds the first pending
    task = tasks.get_open(session, task_id)
    try:
        tasks.require_holder(task, asker)
    except NotYourTask as refused:  # named: it may be a step they held a moment ago (given back by a move)
        raise NotYourTask(f"不能对“{task.name}”申请延期：{refused}"[:500], task_id=task.id) from None
    reason = reason.replace("\r\n", "\n").strip()  # a line break counts as one, as the browser counts it
    if not reason:
        raise InvalidInput("请填写延期理由 (a reason is required)", field="reason")
    if len(reason) > NOTE_LIMIT:  # never cut: the end of why the holder asked was lost without a word
        raise InvalidInput(f"延期理由（reason）超过 {NOTE_LIMIT} 字，请删减后重新提交 (reason is longer than "
                           f"{NOTE_LIMIT} characters)", field="reason", limit=NOTE_LIMIT)
    due = _extended(due_date, clock.now())
    assert due is not None
    if task.due_at is not None and due <= task.due_at:
        raise InvalidInput("申请的期限须晚于现有期限 (later than the current deadline)", field="due_date")
    if session.scalar(select(ExtensionRequest.id).where(ExtensionRequest.object_type == "task",
                                                        ExtensionRequest.object_id == task_id,
                                                        ExtensionRequest.status == "pending")) is not None:
        raise Conflict("已有待审批的延期申请 (a request is pending)", task_id=task_id)
    request = ExtensionRequest(object_type="task", object_id=task_id, requested_by_id=actor.user_id,
                               requested_due_at=due, reason=reason, created_at=clock.now())
    session.add(request)
    session.flush()
    audit.record(session, actor, "supervision.extension_request", stream=f"instance:{task.instance_id}",
                 object_type="human_task", object_id=task.id, after={"requested_due_at": due, "reason": request.reason})
    # who decides it: the unit's head (their area), as the ladder's rung reaches them (none, or 停用: the rung above);
    # a head asking does not decide their own: the responsible leader is told
    target, org = target_of(session, "task", task_id), escalation.Org.load(session)
    policy = sla.load_policies().get("task", target.policy)
    told = [u for step in ("unit_head", "responsible_leader")
            for u in escalation.recipients(step, target, org, policy, session) if u != actor.user_id][:1]
    said = {"actor": actor.display_name, "title": target.title, "due": f"{due.astimezone(clock.SHANGHAI):%Y-%m-%d}",
            "note": reason}
    notify.send_many(session, [notify.worded(u, "extension", "extension_requested", said, link=target.link,
                                             unit_id=target.unit_id) for u in told])
    return request


def decide_extension(session: Session, *, actor: Actor, object_type: str, object_id: int, grant: bool,
                     due_date: date | None = None, opinion: str, seen: str | None = None) -> None:
    """Grant (with the new deadline) or refuse a pending 申请延期 (flushes).

    `seen`: the `extension_version` the page showed; a request decided since and asked anew is another (409).

    Raises: NotFound, Forbidden, Conflict, InvalidInput, and for issues what completing a task raises
    """
    now = clock.now()
    target = open_target(session, actor, object_type, object_id)
    if not opinion.strip():
        raise InvalidInput("请填写审批意见 (an opinion is required)", field="opinion")
    if len(opinion.strip()) > NOTE_LIMIT:  # never cut: what the leader decided stands in his words or not at all
        raise InvalidInput(f"审批意见（opinion）超过 {NOTE_LIMIT} 字 (opinion too long)", field="opinion")
    due = _extended(due_date, now) if grant else None
    if grant and due is None:
        raise InvalidInput("批准延期须填写新的期限 (the new deadline is required)", field="due_date")
    pending = pending_extension(session, object_type, object_id)
    if pending is None:
        raise Conflict("没有待审批的延期申请 (no pending request)", object_type=object_type, object_id=object_id)
    if requester_of(session, pending) == actor.user_id:  # his area covers his own unit: someone else decides
        raise Forbidden("不能审批本人的延期申请 (you may not decide your own extension request)",
                        object_type=object_type, object_id=object_id)
    if isinstance(pending, ExtensionRequest):  # two leaders at once: the second waits here, then finds it decided
        session.refresh(pending, with_for_update=True)
        if pending.status != "pending":
            raise Conflict("该延期申请刚被他人处理 (already decided)", object_type=object_type, object_id=object_id)
    require_fresh(seen, extension_version(pending), what=f"{target.title} 的延期申请", changes=True)
    decision = "grant" if grant else "refuse"
    before = target.due_at
    if isinstance(pending, HumanTask):  # a ledger issue: its process's own decision task
        if pending.assignee_id not in (None, actor.user_id) or not tasks.is_candidate(pending, actor):
            pending.assignee_id = actor.user_id  # a leader above takes the decision over, audited below
            session.flush()
        tasks.complete(session, task_id=pending.id, actor=actor,
                       data={"extension_decision": decision, "leader_opinion": opinion.strip(),
                             **({"new_due_date": due_date.isoformat()} if grant and due_date else {})})
        issue = session.get(LedgerIssue, object_id)
        assert issue is not None
        due = issue.due_at if grant else None
        if grant:  # the issue's new tasks carry the deadline already; older open ones follow it
            for task in issue_tasks(session, issue, ISSUE_TASKS):
                if task.due_at != issue.due_at and issue.due_at is not None:
                    set_deadline(session, target, issue.due_at, now=now)
                    break
    else:
        pending.status = "granted" if grant else "refused"
        pending.decided_by_id, pending.decided_at, pending.opinion = actor.user_id, now, opinion.strip()
        if due is not None:
            set_deadline(session, target, due, now=now)
        if pending.requested_by_id is not None:
            decided = {"title": target.title, "note": opinion.strip(),
                       **({"due": f"{due.astimezone(clock.SHANGHAI):%Y-%m-%d}"} if due else {})}
            notify.send(session, notify.worded(
                pending.requested_by_id, "extension",
                f"extension_{'granted' if grant else 'refused'}{'_due' if due else ''}", decided,
                link=target.link, unit_id=target.unit_id))
    _log(session, actor, target, f"extension_{decision}", note=opinion.strip(), before=before, after=due)
    if due is not None:
        escalation.follow(session, object_type, object_id, now=now)


def escalate(session: Session, *, actor: Actor, object_type: str, object_id: int, note: str = "",
             seen: str | None) -> EscalationStep:
    """升级: apply the next rung of the ladder now.

    `seen`: the `level_version` the page showed. Sent twice (a double click, two leaders), each climbed a rung;
    the second now finds the rung it saw gone and is refused.

    Raises: NotFound, Forbidden, Conflict
    """
    now = clock.now()
    _lock(session, object_type, object_id)  # two at once: the second compares with the rung the first reached
    target, note = open_target(session, actor, object_type, object_id), _note(note)
    watch = escalation.follow(session, object_type, object_id, now=now)  # bring the round up to date first
    require_fresh(seen, level_version(watch.level if watch else 0), what=f"{target.title} 的督办级别", changes=True)
    step = escalation.escalate(session, object_type=object_type, object_id=object_id, actor=actor, now=now, note=note)
    _log(session, actor, target, "escalate", note=note)
    return step


__all__ = ["Reassignable", "deadline_version", "decide_extension", "escalate", "holder_version", "level_version",
           "reassign", "reassignable", "request_extension", "set_deadline", "urge"]
