"""督办: a leader's view of everything overdue or escalated in their area, and what they can do about it.

A leader's area: the units they head (org_unit.leader_id) or are responsible for
(org_unit.responsible_leader_id: 责任领导 / 市级领导包挂), with their sub-units; admins and 督查
(role auditor) see everything. Actions, each audited on the object's stream and notified through the
outbox: urge (催办, with a new deadline if given; at most once an hour per leader and object), reassign
(改派), grant or refuse an extension (批准/不批准延期), escalate one rung higher (升级). A ledger issue's
申请延期 is its process's own `decide_extension` task: deciding it here completes that task, so
issue_ledger.bpmn and plan/ledger/core.py record the decision as they always do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import audit, clock, notify, tasks
from engine.deadlines import escalation, sla
from engine.deadlines.escalation import Target
from engine.deadlines.models import DeadlineAction, DeadlineWatch, EscalationStep, ExtensionRequest
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, UserNotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, Role, User
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask, TaskCandidate
from plan.ledger.models import LedgerIssue
from plan.projects.deadlines import NEXT_STAGE
from plan.projects.models import Project

URGE_INTERVAL = timedelta(hours=1)
SUPERVISE_ALL_ROLES = ("auditor",)  # 审计督查 sees every unit
ISSUE_TASKS = ("handle", "feedback")  # the issue's tasks that carry its deadline


@dataclass(frozen=True)
class Area:
    everything: bool
    unit_ids: frozenset[int]

    def covers(self, unit_id: int | None) -> bool:
        return self.everything or (unit_id is not None and unit_id in self.unit_ids)


def area(session: Session, actor: Actor) -> Area:
    """Return the units a leader supervises (with their sub-units), or everything for admins and 督查."""
    if actor.is_admin or actor.is_system:
        return Area(True, frozenset())
    if actor.role_ids and set(session.scalars(select(Role.code).where(Role.id.in_(actor.role_ids)))) & set(
            SUPERVISE_ALL_ROLES):
        return Area(True, frozenset())
    units = list(session.execute(select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.leader_id, OrgUnit.responsible_leader_id)))
    mine = {u.id for u in units if actor.user_id is not None and actor.user_id in (u.leader_id, u.responsible_leader_id)}
    children: dict[int, list[int]] = {}
    for u in units:
        if u.parent_id is not None:
            children.setdefault(u.parent_id, []).append(u.id)
    todo = list(mine)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in mine:
                mine.add(child)
                todo.append(child)
    return Area(False, frozenset(mine))


def is_supervisor(session: Session, actor: Actor) -> bool:
    """Tell whether the actor has a 督办 area at all."""
    found = area(session, actor)
    return found.everything or bool(found.unit_ids)


def _target(session: Session, object_type: str, object_id: int) -> Target:
    if object_type not in escalation.object_types():
        raise InvalidInput(f"未知的督办对象 (unknown object type): {object_type}", field="object_type")
    target = escalation.load_targets(session, [(object_type, object_id)]).get((object_type, object_id))
    if target is None:
        raise NotFound(f"督办对象不存在 (not found): {object_type} {object_id}", object_type=object_type,
                       object_id=object_id)
    return target


def require_supervisor(session: Session, actor: Actor, target: Target) -> None:
    """Refuse unless the object is in the actor's area (or they are its responsible leader).

    Raises: Forbidden
    """
    if area(session, actor).covers(target.unit_id) or (actor.user_id and actor.user_id == target.responsible_leader_id):
        return
    raise Forbidden("不在您的督办范围内 (not in your area)", object_type=target.object_type, object_id=target.object_id)


def _open_target(session: Session, actor: Actor, object_type: str, object_id: int) -> Target:
    target = _target(session, object_type, object_id)
    require_supervisor(session, actor, target)
    if not target.open:
        raise Conflict("该事项已办结 (already closed)", object_type=object_type, object_id=object_id)
    return target


def _log(session: Session, actor: Actor, target: Target, action: str, *, note: str = "", before: datetime | None = None,
         after: datetime | None = None, to: int | None = None) -> None:
    session.add(DeadlineAction(object_type=target.object_type, object_id=target.object_id, action=action,
                               actor_id=actor.user_id, at=clock.now(), note=note, due_before=before, due_after=after,
                               target_user_id=to))
    session.flush()
    audit.record(session, actor, f"supervision.{action}", stream=target.stream, object_type=target.audit_type,
                 object_id=target.object_id, before={"due_at": before} if before else None,
                 after={"note": note, "due_at": after, "to_user_id": to})


def _new_deadline(day: date | None, now: datetime) -> datetime | None:
    if day is None:
        return None
    due = sla.deadline_of(day)
    if due <= now:
        raise InvalidInput("新的期限须晚于现在 (the new deadline must be in the future)", field="due_date")
    return due


def _issue_tasks(session: Session, issue: LedgerIssue, bpmn_ids: tuple[str, ...]) -> list[HumanTask]:
    if issue.instance_id is None:
        return []
    return list(session.scalars(select(HumanTask).where(HumanTask.instance_id == issue.instance_id,
                                                        HumanTask.state == "ready", HumanTask.bpmn_id.in_(bpmn_ids))))


def set_deadline(session: Session, target: Target, due: datetime, *, now: datetime) -> None:
    """Move an object's deadline (a task's due, an issue's due and its tasks', a project's next planned date)."""
    policy = sla.load_policies().get(target.object_type, target.policy)
    if target.object_type == "task":
        task = session.get(HumanTask, target.object_id)
        assert task is not None
        task.due_at, task.warn_at = due, sla.warn_time(now, due, policy.yellow)
    elif target.object_type == "issue":
        issue = session.get(LedgerIssue, target.object_id)
        assert issue is not None
        issue.due_at = due
        task_policy = sla.load_policies().get("task", "issue_ledger")
        for task in _issue_tasks(session, issue, ISSUE_TASKS):
            task.due_at, task.warn_at = due, sla.warn_time(now, due, task_policy.yellow)
    else:
        project = session.get(Project, target.object_id)
        assert project is not None
        column = NEXT_STAGE[project.stage][1]
        setattr(project, column, due.astimezone(clock.SHANGHAI).date())
    session.flush()


def urge(session: Session, *, actor: Actor, object_type: str, object_id: int, message: str = "",
         due_date: date | None = None) -> int:
    """催办: remind the handler, optionally with a new deadline (a new round of the ladder); return how many were told.

    Raises: NotFound, Forbidden, Conflict, InvalidInput, RateLimited
    """
    now = clock.now()
    target = _open_target(session, actor, object_type, object_id)
    recent = session.scalar(select(DeadlineAction.id).where(
        DeadlineAction.object_type == object_type, DeadlineAction.object_id == object_id,
        DeadlineAction.action == "urge", DeadlineAction.actor_id == actor.user_id,
        DeadlineAction.at >= now - URGE_INTERVAL).limit(1))
    if recent is not None:
        raise RateLimited("一小时内已催办过 (already urged within the hour)", object_type=object_type, object_id=object_id)
    due = _new_deadline(due_date, now)
    before = target.due_at
    if due is not None:
        set_deadline(session, target, due, now=now)
    text = message.strip()[:2000]
    if object_type == "task":
        task = session.get(HumanTask, object_id)
        assert task is not None
        session.add(Comment(instance_id=task.instance_id, task_id=task.id, author_id=actor.user_id, kind="urge",
                            body=text or "督办催办"))
    _log(session, actor, target, "urge", note=text, before=before, after=due)
    when = f"新的期限 {due.astimezone(clock.SHANGHAI):%Y-%m-%d}。" if due else ""
    notify.send_many(session, [notify.Note(user_id=u, kind="urge", title=f"{actor.display_name}督办: {target.title}"[:300],
                                           body=" ".join(p for p in (text, when) if p), link=target.link)
                               for u in target.handler_ids])
    if due is not None:
        escalation.follow(session, object_type, object_id, now=now)
    return len(target.handler_ids)


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        raise UserNotFound(f"用户不存在或已停用: {username}", field="username", username=username)
    return user


def _give_task(task: HumanTask, user: User) -> None:
    task.assignee_id = task.owner_id = user.id
    task.delegation_state = None
    if not any(c.user_id == user.id for c in task.candidates):
        task.candidates.append(TaskCandidate(user_id=user.id))


def reassign(session: Session, *, actor: Actor, object_type: str, object_id: int, to_username: str,
             note: str = "") -> User:
    """改派: give a task, or an issue and its open tasks, to another handler.

    Raises: NotFound, Forbidden, Conflict, UserNotFound, InvalidInput
    """
    if object_type == "project":
        raise InvalidInput("项目不能改派，请调整责任单位 (projects are not reassigned)", field="object_type")
    if object_type == "task" and (actor.is_admin or actor.is_system):
        # Administrators reach every open task, a suspended one of an instance in incident included.
        target = _target(session, object_type, object_id)
        tasks.get_open(session, object_id)
    else:
        target = _open_target(session, actor, object_type, object_id)
    user = _user(session, to_username)
    if object_type == "task":
        task = tasks.get_open(session, object_id)
        if task.assignee_id == user.id:
            raise InvalidInput("已由此人办理 (already theirs)", field="to_username")
        _give_task(task, user)
    else:
        issue = session.get(LedgerIssue, object_id)
        assert issue is not None
        issue.handler_id = user.id
        for task in _issue_tasks(session, issue, ISSUE_TASKS):
            _give_task(task, user)
    session.flush()
    _log(session, actor, target, "reassign", note=note, to=user.id)
    notify.send(session, notify.Note(user_id=user.id, kind="reassign", title=f"{actor.display_name}改派给您: {target.title}",
                                     body=note, link=target.link))
    return user


def request_extension(session: Session, *, actor: Actor, task_id: int, due_date: date, reason: str) -> ExtensionRequest:
    """申请延期 of a task by its holder (issues ask through their own process).

    Raises: TaskNotFound, TaskAlreadyDone, NotYourTask, InvalidInput, Conflict
    """
    task = tasks.get_open(session, task_id)
    tasks.require_holder(task, actor)
    if not reason.strip():
        raise InvalidInput("请填写延期理由 (a reason is required)", field="reason")
    due = _new_deadline(due_date, clock.now())
    assert due is not None
    if task.due_at is not None and due <= task.due_at:
        raise InvalidInput("申请的期限须晚于现有期限 (later than the current deadline)", field="due_date")
    if session.scalar(select(ExtensionRequest.id).where(ExtensionRequest.object_type == "task",
                                                        ExtensionRequest.object_id == task_id,
                                                        ExtensionRequest.status == "pending")) is not None:
        raise Conflict("已有待审批的延期申请 (a request is pending)", task_id=task_id)
    request = ExtensionRequest(object_type="task", object_id=task_id, requested_by_id=actor.user_id,
                               requested_due_at=due, reason=reason.strip()[:2000], created_at=clock.now())
    session.add(request)
    session.flush()
    audit.record(session, actor, "supervision.extension_request", stream=f"instance:{task.instance_id}",
                 object_type="human_task", object_id=task.id, after={"requested_due_at": due, "reason": request.reason})
    return request


def pending_extension(session: Session, object_type: str, object_id: int) -> ExtensionRequest | HumanTask | None:
    """Return the pending 申请延期 of a task (a request) or of an issue (its decide_extension task)."""
    if object_type == "task":
        return session.scalar(select(ExtensionRequest).where(ExtensionRequest.object_type == "task",
                                                             ExtensionRequest.object_id == object_id,
                                                             ExtensionRequest.status == "pending"))
    if object_type == "issue":
        issue = session.get(LedgerIssue, object_id)
        found = _issue_tasks(session, issue, ("decide_extension",)) if issue else []
        return found[0] if found else None
    return None


def decide_extension(session: Session, *, actor: Actor, object_type: str, object_id: int, grant: bool,
                     due_date: date | None = None, opinion: str) -> None:
    """Grant (with the new deadline) or refuse a pending 申请延期 (flushes).

    Raises: NotFound, Forbidden, Conflict, InvalidInput, and for issues what completing a task raises
    """
    now = clock.now()
    target = _open_target(session, actor, object_type, object_id)
    if not opinion.strip():
        raise InvalidInput("请填写审批意见 (an opinion is required)", field="opinion")
    due = _new_deadline(due_date, now) if grant else None
    if grant and due is None:
        raise InvalidInput("批准延期须填写新的期限 (the new deadline is required)", field="due_date")
    pending = pending_extension(session, object_type, object_id)
    if pending is None:
        raise Conflict("没有待审批的延期申请 (no pending request)", object_type=object_type, object_id=object_id)
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
            for task in _issue_tasks(session, issue, ISSUE_TASKS):
                if task.due_at != issue.due_at and issue.due_at is not None:
                    set_deadline(session, target, issue.due_at, now=now)
                    break
    else:
        pending.status = "granted" if grant else "refused"
        pending.decided_by_id, pending.decided_at, pending.opinion = actor.user_id, now, opinion.strip()[:2000]
        if due is not None:
            set_deadline(session, target, due, now=now)
        if pending.requested_by_id is not None:
            notify.send(session, notify.Note(
                user_id=pending.requested_by_id, kind="extension",
                title=f"延期申请{'已批准' if grant else '未获批准'}: {target.title}"[:300],
                body=opinion.strip() + (f" 新的期限 {due.astimezone(clock.SHANGHAI):%Y-%m-%d}。" if due else ""),
                link=target.link))
    _log(session, actor, target, f"extension_{decision}", note=opinion.strip()[:2000], before=before, after=due)
    if due is not None:
        escalation.follow(session, object_type, object_id, now=now)


def escalate(session: Session, *, actor: Actor, object_type: str, object_id: int, note: str = "") -> EscalationStep:
    """升级: apply the next rung of the ladder now.

    Raises: NotFound, Forbidden, Conflict
    """
    now = clock.now()
    target = _open_target(session, actor, object_type, object_id)
    escalation.follow(session, object_type, object_id, now=now)  # bring the round up to date first
    step = escalation.escalate(session, object_type=object_type, object_id=object_id, actor=actor, now=now, note=note)
    _log(session, actor, target, "escalate", note=note)
    return step


# -- the 督办 view ----------------------------------------------------------------------------------

@dataclass
class Item:
    target: Target
    watch: DeadlineWatch | None
    light: str | None
    level: int
    step: str
    overdue_days: int
    extension: ExtensionRequest | HumanTask | None = None

    @property
    def key(self) -> str:
        return f"{self.target.object_type}-{self.target.object_id}"


@dataclass
class UnitGroup:
    unit_id: int | None
    unit_name: str
    items: list[Item] = field(default_factory=list)

    @property
    def red(self) -> int:
        return sum(1 for i in self.items if i.light == "red")


def overview(session: Session, actor: Actor, *, now: datetime | None = None, limit: int = 500) -> list[UnitGroup]:
    """Return everything overdue, escalated or waiting for an extension decision in the actor's area, by unit."""
    from engine.deadlines import calendar
    now = now or clock.now()
    scope = area(session, actor)
    if not scope.everything and not scope.unit_ids:
        return []
    query = select(DeadlineWatch).where(DeadlineWatch.active.is_(True), or_(
        DeadlineWatch.due_at < now, DeadlineWatch.level > 0, DeadlineWatch.light == "red"))
    if not scope.everything:
        query = query.where(DeadlineWatch.unit_id.in_(scope.unit_ids))
    watches = {(w.object_type, w.object_id): w for w in session.scalars(query.order_by(DeadlineWatch.due_at).limit(limit))}
    keys = set(watches)
    keys |= {("task", r) for r in session.scalars(select(ExtensionRequest.object_id).where(
        ExtensionRequest.object_type == "task", ExtensionRequest.status == "pending").limit(limit))}
    keys |= {("issue", i) for i in session.scalars(select(LedgerIssue.id).join(
        HumanTask, HumanTask.instance_id == LedgerIssue.instance_id).where(
        HumanTask.bpmn_id == "decide_extension", HumanTask.state == "ready").limit(limit))}
    targets = escalation.load_targets(session, keys)
    units = {u.id: u.name for u in session.scalars(select(OrgUnit))}
    groups: dict[int | None, UnitGroup] = {}
    for key, target in targets.items():
        watch = watches.get(key) or session.scalar(select(DeadlineWatch).where(
            DeadlineWatch.object_type == key[0], DeadlineWatch.object_id == key[1]))
        unit_id = target.unit_id or (watch.unit_id if watch else None)
        if not target.open or (not scope.covers(unit_id) and actor.user_id != target.responsible_leader_id):
            continue
        due = target.due_at
        light = sla.level(due, watch.warn_at if watch else target.warn_at, now)
        level = watch.level if watch else 0
        step = escalation.STEP_NAMES[sla.LADDER[level - 1]] if level else ""
        late = -calendar.working_days_left(now, due) if due and now > due else 0
        item = Item(target, watch, light, level, step, late, pending_extension(session, *key))
        groups.setdefault(unit_id, UnitGroup(unit_id, units.get(unit_id or -1, "未明确单位"))).items.append(item)
    for group in groups.values():
        group.items.sort(key=lambda i: (-i.level, i.target.due_at or now))
    return sorted(groups.values(), key=lambda g: (-g.red, -len(g.items), g.unit_name))


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    what: str
    who: str
    note: str


def history(session: Session, object_type: str, object_id: int) -> list[HistoryLine]:
    """Return the steps and 督办 actions of an object, oldest first."""
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    lines = [HistoryLine(s.at, escalation.STEP_NAMES.get(s.step, s.step) + ("（手动）" if s.manual else ""),
                         names.get(s.actor_id or -1, "系统"), "、".join(names.get(u, str(u)) for u in s.recipients or []))
             for s in session.scalars(select(EscalationStep).where(EscalationStep.object_type == object_type,
                                                                   EscalationStep.object_id == object_id))]
    labels = {"urge": "催办", "reassign": "改派", "extension_grant": "批准延期", "extension_refuse": "不批准延期",
              "escalate": "升级"}
    lines += [HistoryLine(a.at, labels.get(a.action, a.action), names.get(a.actor_id or -1, "系统"), a.note)
              for a in session.scalars(select(DeadlineAction).where(DeadlineAction.object_type == object_type,
                                                                    DeadlineAction.object_id == object_id))]
    return sorted(lines, key=lambda line: line.at)


__all__ = ["Area", "HistoryLine", "Item", "UnitGroup", "area", "decide_extension", "escalate", "history",
           "is_supervisor", "overview", "pending_extension", "reassign", "request_extension", "require_supervisor",
           "set_deadline", "urge"]
