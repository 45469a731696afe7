"""Separation of duties (职责分离): who may not take or finish a step because of what they did on the same case.

An application registers a rule per process key (`register`; e.g. whoever handled a case neither confirms nor checks
it). Given a task it answers a `Duty`: the people barred from it, the rule in words, and whom the step goes to when
nobody else may take it. The engine applies it

  where the step is assigned      a barred assignee is passed over; a barred person is no candidate (a unit or role
                                  that holds them is offered as its other active people); with nobody left, the
                                  `fallback` people (e.g. the unit's head and responsible leader: 督办) — audited
                                  `task.duty_barred` on the instance (the case's facts, not the model's fault)
  where it is claimed, completed  refused (DutyRefused, 403, naming the rule), nothing changed
  where it is handed on           转办, 委派, 加签 to a barred person: refused naming the field
  (and engine.tasks.fit's check)  the same places refuse one who cannot complete the step (what it acts on out of reach)
  when the rule's facts change    `reapply` (the plan calls it after 改派 changed who handled the case): an open step
                                  a now barred person holds goes back to its candidates, and they are no longer one

The rule is the application's and reads its own rows, so a model that names a barred person by expression, or a
form that routes around the step's name, changes nothing: the application's own service refuses too (raising
DutyRefused inside a run refuses the completion instead of stopping the instance).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import DutyRefused
from engine.org.actors import Actor
from engine.org.models import Membership, User
from engine.tasks import fit
from engine.tasks.models import OPEN_STATES, HumanTask, TaskCandidate


@dataclass(frozen=True)
class Duty:
    """Who may not take a step (`barred`), why (`rule`, Chinese then English), and whom it goes to instead when no one
    else remains (`fallback`, in order; a barred or deactivated one is skipped)."""

    barred: frozenset[int]
    rule: str
    fallback: tuple[int, ...] = ()


Rule = Callable[[Session, int, str], "Duty | None"]  # (session, instance id, the step's BPMN id)
_RULES: dict[str, Rule] = {}


def register(process_key: str, rule: Rule) -> None:
    """Make `rule` decide who is barred from the steps of the process's instances (one rule per process key)."""
    _RULES[process_key] = rule


def duty_of(session: Session, task: HumanTask) -> Duty | None:
    """Return the duty a task's step carries (a co-signer's task: its parent's), None when no rule bars anyone."""
    rule = _RULES.get(task.process_key)
    if rule is None or task.instance_id is None:
        return None
    duty = rule(session, task.instance_id, task.bpmn_id)
    return duty if duty is not None and duty.barred else None


def require_not_barred(session: Session, task: HumanTask, user_id: int | None, *, field: str | None = None,
                       who: str = "", completes: bool = True) -> None:
    """Refuse a barred person taking, finishing or being handed the task, naming the rule (and the field); and one
    who cannot complete it (engine.tasks.fit: what its services act on is out of their reach) unless they will not
    complete it (`completes` false: a co-signer only signs).

    Raises: DutyRefused, StepOutOfReach
    """
    if user_id is None:
        return
    duty = duty_of(session, task)
    if duty is None or user_id not in duty.barred:
        if completes:
            fit.require_fit(session, task, user_id, field=field, who=who)
        return
    prefix = f"{who}（{field}）：" if field else ""
    details: dict[str, object] = {"task_id": task.id, "rule": duty.rule}
    if field:
        details["field"] = field
    raise DutyRefused(f"{prefix}{duty.rule}", **details)


def _people(session: Session, candidate: TaskCandidate) -> list[int]:
    """The active people a unit or role candidate reaches (its unit's members or its role's holders, as
    `lookup.is_candidate` reads it)."""
    reach = []
    if candidate.org_unit_id is not None:
        reach.append(Membership.org_unit_id == candidate.org_unit_id)
    if candidate.role_id is not None:
        reach.append(Membership.role_id == candidate.role_id)
    query = select(Membership.user_id).join(User, User.id == Membership.user_id).where(
        User.is_active.is_(True), or_(*reach))
    return list(dict.fromkeys(session.scalars(query.order_by(Membership.user_id))))


def _active(session: Session, ids: Iterable[int]) -> list[int]:
    wanted = list(dict.fromkeys(ids))
    found = set(session.scalars(select(User.id).where(User.id.in_(wanted or [-1]), User.is_active.is_(True))))
    return [i for i in wanted if i in found]


def narrow(session: Session, human: HumanTask, duty: Duty | None = None,
           passed: list[int] | None = None) -> tuple[Duty, list[int]] | None:
    """Keep a task's barred people off it (`duty`: the task's, read when not given): not its assignee, no candidate;
    with nobody left, its duty's fallback. `passed`: barred people the caller already passed over (an assignee).

    Returns the duty and whom it passed over when it passed anyone over, else None. Flushes nothing.
    """
    duty = duty or duty_of(session, human)
    if duty is None:
        return None
    passed = list(passed or [])
    if human.assignee_id in duty.barred:
        passed.append(human.assignee_id)
        human.assignee_id = None
        if human.kind != "cosign":
            human.owner_id = None
        human.delegation_state = None
    kept: list[TaskCandidate] = []
    for candidate in list(human.candidates):
        if candidate.user_id is not None:
            if candidate.user_id in duty.barred:
                passed.append(candidate.user_id)
                continue
            kept.append(candidate)
            continue
        reached = _people(session, candidate)
        if not duty.barred & set(reached):
            kept.append(candidate)
            continue
        passed += [u for u in reached if u in duty.barred]
        kept += [TaskCandidate(user_id=u) for u in reached if u not in duty.barred]  # its other people, by name
    if not passed:
        return None
    if not kept and human.assignee_id is None:
        kept = [TaskCandidate(user_id=u) for u in _active(session, duty.fallback) if u not in duty.barred]
    unique: dict[tuple[int | None, int | None, int | None], TaskCandidate] = {}
    for candidate in kept:
        unique.setdefault((candidate.user_id, candidate.org_unit_id, candidate.role_id), candidate)
    human.candidates[:] = list(unique.values())
    return duty, list(dict.fromkeys(passed))


def record(session: Session, actor: Actor, human: HumanTask, duty: Duty, passed: list[int]) -> None:
    """Audit what `narrow` did on the instance's stream (`task.duty_barred`)."""
    audit.record(session, actor, "task.duty_barred", stream=f"instance:{human.instance_id}",
                 object_type="process_instance", object_id=human.instance_id,
                 after={"bpmn_id": human.bpmn_id, "task_id": human.id, "rule": duty.rule, "barred": passed,
                        "candidates": [c.user_id for c in human.candidates if c.user_id is not None]})


def reapply(session: Session, actor: Actor, instance_id: int) -> list[int]:
    """After the facts a rule reads changed (改派 made someone else the handler): narrow the instance's open steps
    again, each audited; return the tasks changed. The caller holds the instance's rows it writes (its lock order)."""
    changed = []
    for human in session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                         HumanTask.state.in_(OPEN_STATES))
                                 # locked, as they are now: a step handed to them at the same moment (督办's 改派 of
                                 # the task) is waited for and read, then narrowed
                                 .order_by(HumanTask.id).with_for_update(of=HumanTask)
                                 .execution_options(populate_existing=True)):
        done = narrow(session, human)
        if done is None:
            continue
        session.flush()
        record(session, actor, human, *done)
        changed.append(human.id)
    return changed


__all__ = ["Duty", "Rule", "duty_of", "narrow", "reapply", "record", "register", "require_not_barred"]
