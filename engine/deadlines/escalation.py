"""The escalation ladder (督办升级): remind the handler → unit head → responsible leader → city leader.

The sweep takes `deadline_watch` rows whose `next_at` has come, under a row lock (PostgreSQL:
`FOR UPDATE SKIP LOCKED`, so two workers share the work; SQLite: one writer at a time), re-reads
each object, and applies every step of the round whose time has come — the light turning yellow or
red, then each rung of the ladder — in order and at most once: the row remembers the light and the
level it reached, and `escalation_step` is unique per object, round and step as the last line of
defence. Each step is audited on the object's own stream and notifies its people through
engine.notify (the outbox). A new deadline (urged, extended, a watched object's next milestone)
starts a new round.

Who each rung reaches:
  handler             the task's assignee, else its candidates (users, unit members, role holders);
                      for other objects, the handlers their source names (`engine.deadlines.sources`)
  unit_head           org_unit.leader_id of the object's unit (a task's: its escalationUnit property, else a
                      unit among its candidates, else its handler's first unit); nobody when the escalationUnit
                      named no unit (the process owners are told once, `unknown_units`)
  responsible_leader  the object's responsible leader (from its source), else the unit's (up the parents)
  city_leader         the unit's responsible leader who holds the role city_leader (up the parents)

A deactivated person (停用) is never reached, nor listed among a step's recipients: a leader rung takes the first
active leader it names, and a rung whose people are all deactivated passes to the rung above (the handler's to the
unit head, …), the top one to the unit's active members. The step's audit event lists those passed over (`skipped`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from engine import audit, clock, notify
from engine.db import is_postgres
from engine.deadlines import calendar, sla, sources, unknown_units
from engine.deadlines.models import DeadlineWatch, EscalationStep
from engine.deadlines.objects import MAX_RECIPIENTS, Org, Target, UnitUnknown
from engine.deadlines.sources import TargetReader
from engine.errors import Conflict, NotFound
from engine.org.actors import SYSTEM, Actor
from engine.org.models import Membership
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask

STEP_NAMES = {"yellow": "黄灯临期", "red": "红灯逾期", "handler": "提醒承办人", "unit_head": "单位负责人",
              "responsible_leader": "责任领导", "city_leader": "市级领导"}


def _task_targets(session: Session, ids: Sequence[int], org: Org) -> dict[int, Target]:
    tasks = session.scalars(select(HumanTask).where(HumanTask.id.in_(ids)).options(selectinload(HumanTask.candidates))
                            .execution_options(populate_existing=True)).all()
    people = {t.assignee_id for t in tasks if t.assignee_id} | {c.user_id for t in tasks for c in t.candidates if c.user_id}
    first_unit: dict[int, int] = {}
    for user_id, unit_id in session.execute(select(Membership.user_id, Membership.org_unit_id).where(
            Membership.user_id.in_(sorted(people) or [-1]), Membership.org_unit_id.is_not(None)).order_by(Membership.id)):
        if unit_id is not None:
            first_unit.setdefault(user_id, unit_id)
    instance_ids = {t.instance_id for t in tasks} or {-1}
    cases: dict[int, str] = {i: title for i, title in session.execute(
        select(ProcessInstance.id, ProcessInstance.title).where(ProcessInstance.id.in_(instance_ids)))}
    found = {}
    for t in tasks:
        unit_id = t.escalation_unit_id or next((c.org_unit_id for c in t.candidates if c.org_unit_id), None)
        if unit_id is None:
            holders = [t.assignee_id] if t.assignee_id else [c.user_id for c in t.candidates if c.user_id]
            unit_id = next((first_unit[u] for u in holders if u in first_unit), None)
        if t.assignee_id:
            handlers = [t.assignee_id]
        else:
            handlers = [c.user_id for c in t.candidates if c.user_id]
            for c in t.candidates:
                if c.org_unit_id:
                    handlers += org.members(session, c.org_unit_id)
                elif c.role_id:
                    handlers += org.holders(session, c.role_id)
        case = cases.get(t.instance_id) or ""
        title = f"{t.name}（{case}）" if case and case not in t.name else t.name  # the step and the case it belongs to
        misnamed = UnitUnknown(t.escalation_unit_unknown, t.process_key, t.bpmn_id, t.name, t.instance_id) \
            if t.escalation_unit_unknown else None
        found[t.id] = Target("task", t.id, title[:300], f"/tasks/{t.id}", f"instance:{t.instance_id}", "human_task",
                             t.state == "ready", t.due_at, t.warn_at, t.created_at, t.escalation_policy, unit_id,
                             list(dict.fromkeys(handlers))[:MAX_RECIPIENTS], unit_unknown=misnamed)
    return found


def targets_of(object_type: str) -> TargetReader:
    """Return the reader of one object type's targets: the engine's own for tasks, else its source's.

    Raises: NotFound when no extension registered the type.
    """
    if object_type == "task":
        return _task_targets
    source = sources.get(object_type)
    if source is None:
        raise NotFound(f"没有这类督办对象 (no watched object type '{object_type}')")
    return source.targets


def object_types() -> list[str]:
    """Return every kind of object the sweep watches."""
    return ["task", *(s.object_type for s in sources.registered())]


def load_targets(session: Session, keys: Iterable[tuple[str, int]], org: Org | None = None) -> dict[tuple[str, int], Target]:
    """Load the objects behind watch rows, a few queries per kind."""
    org = org or Org.load(session)
    by_type: dict[str, list[int]] = {}
    for object_type, object_id in keys:
        by_type.setdefault(object_type, []).append(object_id)
    found: dict[tuple[str, int], Target] = {}
    for object_type, ids in by_type.items():
        for i in range(0, len(ids), 900):
            for object_id, target in targets_of(object_type)(session, ids[i:i + 900], org).items():
                found[(object_type, object_id)] = target
    return found


# The rung a step passes to when everyone it names is deactivated (停用); past the top, the object's unit.
ABOVE = {"yellow": "unit_head", "handler": "unit_head", "unit_head": "responsible_leader",
         "responsible_leader": "city_leader"}


def named(step: str, target: Target, org: Org) -> list[int]:
    """Return whom a rung names, deactivated people included: every handler, else the leaders it may reach in the
    order it tries them (the first active one is reached)."""
    if step in ("yellow", "handler"):
        return list(target.handler_ids)
    if step == "unit_head":
        if target.unit_unknown is not None:  # the model named a unit there is none of: not the handler's unit's head
            return []
        unit = org.units.get(target.unit_id) if target.unit_id else None
        return [unit.leader_id] if unit and unit.leader_id else []
    chain = [u.responsible_leader_id for u in org.chain(target.unit_id) if u.responsible_leader_id]
    if step == "responsible_leader":
        return list(dict.fromkeys(([target.responsible_leader_id] if target.responsible_leader_id else []) + chain))
    return list(dict.fromkeys(u for u in [*chain, target.responsible_leader_id] if u in org.city_leaders))


def skipped(step: str, target: Target, org: Org) -> list[int]:
    """Return the deactivated people a step's own rung names (passed over, never notified)."""
    return [u for u in named(step, target, org) if u in org.inactive] if step != "red" else []


def recipients(step: str, target: Target, org: Org, policy: sla.Policy, session: Session) -> list[int]:
    """Return who a step notifies: active people only. A rung whose people are all deactivated passes to the rung
    above (`ABOVE`), and the top one to the unit's active members, rather than to nobody. A leader rung that names
    nobody (a unit without a head: none appointed yet, or 停用 took the mark off the one who left) passes up too; the
    handler's and the top rung's, naming nobody, notify nobody."""
    if step == "red" or (step == "yellow" and not policy.remind_on_yellow):
        return []
    people = named(step, target, org)
    active = [u for u in people if u not in org.inactive]
    if step not in ("yellow", "handler"):
        active = active[:1]
    above = ABOVE.get(step)
    if active or (not people and (above is None or step in ("yellow", "handler"))):
        return active
    return recipients(above, target, org, policy, session) if above else org.members(session, target.unit_id)


# -- audit in bulk ---------------------------------------------------------------------------------

@dataclass
class AuditBatch:
    """Audit events of one batch, chained onto their streams with one query for the heads."""

    items: list[tuple[Actor, str, str, str, int, dict[str, Any]]] = field(default_factory=list)

    def add(self, actor: Actor, action: str, target: Target, after: dict[str, Any]) -> None:
        self.items.append((actor, action, target.stream, target.audit_type, target.object_id, after))

    def flush(self, session: Session, at: datetime) -> None:
        # Chained at commit with every other event of the transaction (one head query for all streams).
        for actor, action, stream, object_type, object_id, after in self.items:
            audit.record(session, actor, action, stream=stream, object_type=object_type, object_id=object_id,
                         after=after, at=at)
        self.items.clear()


# -- applying steps --------------------------------------------------------------------------------

def _local(at: datetime | None) -> str:
    return clock.as_utc(at).astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M") if at else ""


def _note(step: str, target: Target, watch: DeadlineWatch, now: datetime, manual_by: Actor | None,
          text: str) -> tuple[str, str, dict[str, Any]]:
    """The kind, the text id (engine.notify.texts) and the arguments of a rung's notice."""
    due = _local(watch.due_at)
    late = calendar.working_days_left(now, watch.due_at) if watch.due_at else 0
    if step == "yellow":
        return "sla", "due_soon", {"title": target.title, "due": due}
    if step == "handler":
        return "escalation", "overdue", {"title": target.title, "due": due}
    args: dict[str, Any] = {"step": STEP_NAMES[step], "title": target.title, "note": f"\n{text}" if text else ""}
    args.update({"actor": manual_by.display_name} if manual_by else {})
    args.update({"days": -late} if late < 0 else {"due": due})
    return "escalation", f"escalated{'_by' if manual_by else ''}_{'late' if late < 0 else 'due'}", args


def _instance_of(target: Target) -> int | None:
    """The process instance a target belongs to (a task's), whose notice cap its notices count against."""
    return int(target.stream.split(":", 1)[1]) if target.stream.startswith("instance:") else None


@dataclass
class Batch:
    """The steps of one transaction: rows to add, audit events and notifications, written at the end."""

    session: Session
    now: datetime
    org: Org
    policies: sla.Policies
    audit: AuditBatch = field(default_factory=AuditBatch)
    notes: list[notify.Note] = field(default_factory=list)
    steps: list[EscalationStep] = field(default_factory=list)
    misnamed: list[UnitUnknown] = field(default_factory=list)  # unit head rungs passed up: told to process owners

    def apply(self, watch: DeadlineWatch, target: Target, milestone: sla.Milestone, *, actor: Actor = SYSTEM,
              manual: bool = False, text: str = "") -> EscalationStep:
        policy = self.policies.get(watch.object_type, target.policy)
        people = recipients(milestone.step, target, self.org, policy, self.session)
        misnamed = target.unit_unknown if milestone.step == "unit_head" else None  # passed up: named no unit
        step = EscalationStep(watch_id=watch.id, object_type=watch.object_type, object_id=watch.object_id,
                              round=watch.round, step=milestone.step, level=milestone.level, at=self.now,
                              due_at=watch.due_at, manual=manual, actor_id=actor.user_id, recipients=people, note=text)
        self.steps.append(step)
        if milestone.step == "yellow" and watch.light == "green":
            watch.light = "yellow"
        elif milestone.step == "red":
            watch.light = "red"
        if milestone.level > watch.level:
            watch.level = milestone.level
            watch.escalated_at = self.now
        watch.updated_at = self.now
        self.audit.add(actor, f"escalation.{milestone.step}", target, {
            "object": f"{watch.object_type}:{watch.object_id}", "round": watch.round, "level": milestone.level,
            "due_at": watch.due_at, "recipients": people, "manual": manual, "note": text,
            **({"skipped": passed} if (passed := skipped(milestone.step, target, self.org)) else {}),
            **({"escalation_unit_unknown": misnamed.name} if misnamed else {})})
        if misnamed:
            self.misnamed.append(misnamed)
        kind, worded, args = _note(milestone.step, target, watch, self.now, actor if manual else None, text)
        key = f"esc:{watch.object_type}:{watch.object_id}:{watch.round}:{milestone.step}"
        self.notes += [notify.worded(u, kind, worded, args, words=("step",) if "step" in args else (),
                                     link=target.link, key=key, unit_id=target.unit_id,
                                     instance_id=_instance_of(target)) for u in people]
        return step

    def write(self) -> None:
        self.session.add_all(self.steps)
        self.audit.flush(self.session, self.now)
        notify.send_many(self.session, self.notes)
        unknown_units.tell(self.session, self.misnamed)
        self.session.flush()
        self.steps, self.notes, self.misnamed = [], [], []


def done(watch: DeadlineWatch, milestone: sla.Milestone) -> bool:
    """Tell whether the round already took this step."""
    if milestone.step == "yellow":
        return watch.light in ("yellow", "red")
    if milestone.step == "red":
        return watch.light == "red"
    return watch.level >= milestone.level


def refresh(watch: DeadlineWatch, target: Target, policy: sla.Policy, now: datetime) -> None:
    """Follow the object's deadline: a different one starts a new round."""
    if target.unit_id is not None:
        watch.unit_id = target.unit_id
    watch.policy = target.policy
    due = target.due_at
    assert due is not None
    if watch.due_at is not None and clock.as_utc(watch.due_at) == clock.as_utc(due):
        return
    first = watch.due_at is None
    start = (target.started_at or now) if first else now  # a new deadline's time runs from when it was given
    watch.round = 1 if first else (watch.round or 0) + 1
    watch.due_at, watch.started_at = due, start
    watch.warn_at = target.warn_at or sla.warn_time(start, due, policy.yellow)
    watch.light, watch.level, watch.escalated_at = "green", 0, None


def process(batch: Batch, watches: Sequence[DeadlineWatch]) -> int:
    """Apply every step whose time has come to locked watch rows; return how many steps were taken."""
    targets = load_targets(batch.session, [(w.object_type, w.object_id) for w in watches], batch.org)
    taken = 0
    for watch in watches:
        target = targets.get((watch.object_type, watch.object_id))
        if target is None or not target.open or target.due_at is None:
            watch.active, watch.next_at, watch.updated_at = False, None, batch.now
            continue
        policy = batch.policies.get(watch.object_type, target.policy)
        refresh(watch, target, policy, batch.now)
        assert watch.due_at is not None
        later = []
        for milestone in sla.milestones(policy, watch.warn_at, watch.due_at):
            if done(watch, milestone):
                continue
            if milestone.at <= batch.now:
                batch.apply(watch, target, milestone)
                taken += 1
            else:
                later.append(milestone.at)
        watch.active = True
        watch.next_at = min(later, default=None)
        watch.updated_at = batch.now
    batch.write()
    return taken


def claim(session: Session, *, now: datetime, limit: int) -> list[DeadlineWatch]:
    """Lock up to `limit` watch rows that are due (others' locked rows are skipped on PostgreSQL)."""
    query = (select(DeadlineWatch).where(DeadlineWatch.active.is_(True), DeadlineWatch.next_at <= now)
             .order_by(DeadlineWatch.next_at, DeadlineWatch.id).limit(limit).execution_options(populate_existing=True))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


@dataclass
class SweepResult:
    watched: int = 0
    steps: int = 0


def sweep(session: Session, *, now: datetime, batch_size: int = 500, policies: sla.Policies | None = None) -> SweepResult:
    """Bring watches up to date and apply every due step, in the caller's transaction (flushes)."""
    policies = policies or sla.load_policies()
    sla.watch_all(session, now=now, policies=policies)
    result = SweepResult()
    org = Org.load(session)
    while rows := claim(session, now=now, limit=batch_size):
        result.watched += len(rows)
        result.steps += process(Batch(session, now, org, policies), rows)
    return result


# -- by hand ---------------------------------------------------------------------------------------

def watch_of(session: Session, object_type: str, object_id: int, *, lock: bool = True) -> DeadlineWatch:
    """Return an object's watch row, locked.

    Raises: NotFound when the object has no deadline being watched.
    """
    query = select(DeadlineWatch).where(DeadlineWatch.object_type == object_type, DeadlineWatch.object_id == object_id)
    if lock and is_postgres(session):
        query = query.with_for_update()
    watch = session.scalar(query.execution_options(populate_existing=True))
    if watch is None:
        raise NotFound(f"没有需要督办的期限 (no deadline watched): {object_type} {object_id}", object_type=object_type,
                       object_id=object_id)
    return watch


def follow(session: Session, object_type: str, object_id: int, *, now: datetime) -> DeadlineWatch | None:
    """Watch an object now (after its deadline changed) and apply what is due at once (flushes)."""
    policies = sla.load_policies()
    if object_type == "task":
        sla.watch_tasks(session, now=now, policies=policies)
    else:
        sla.watch_all(session, now=now, policies=policies)
    try:
        watch = watch_of(session, object_type, object_id)
    except NotFound:
        return None
    process(Batch(session, now, Org.load(session), policies), [watch])
    return watch


def escalate(session: Session, *, object_type: str, object_id: int, actor: Actor, now: datetime,
             note: str = "") -> EscalationStep:
    """Apply the next rung of the ladder now, by hand (督办升级); the sweep will not repeat it (flushes).

    Raises: NotFound, Conflict when the ladder has no rung left
    """
    watch = watch_of(session, object_type, object_id)
    policies = sla.load_policies()
    batch = Batch(session, now, Org.load(session), policies)
    target = load_targets(session, [(object_type, object_id)], batch.org).get((object_type, object_id))
    if target is None or not target.open or target.due_at is None:
        raise Conflict("该事项已办结或没有期限 (closed or without a deadline)", object_type=object_type,
                       object_id=object_id)
    policy = policies.get(object_type, target.policy)
    refresh(watch, target, policy, now)
    assert watch.due_at is not None
    rung = next((m for m in sla.milestones(policy, watch.warn_at, watch.due_at)
                 if m.level > watch.level), None)
    if rung is None:
        raise Conflict("已升级至最高一级 (already at the top of the ladder)", object_type=object_type, object_id=object_id)
    step = batch.apply(watch, target, rung, actor=actor, manual=True, text=note)
    batch.write()
    return step


__all__ = ["ABOVE", "AuditBatch", "Batch", "Org", "SweepResult", "Target", "claim", "done", "escalate", "follow",
           "load_targets", "named", "process", "recipients", "refresh", "skipped", "sweep", "watch_of"]
