"""Who gets a new user task: its `assignee` and `candidates` expressions, its lane, else the initiator.

Rule (Trust II 9): a user task nobody could otherwise reach — no assignee or candidates that resolve and
no mapped lane — is offered to the instance's initiator (发起人). An instance the system started has
none: its task waits for an administrator, who sees every open task and may reassign it (改派).
Names resolve in one query, at most MAX_NAMES of them. An expression that fails, or gives something
other than a name or a list of names, is a problem too (Trust II 10): never a silent fallback.

A deactivated person (停用) never becomes a new task's assignee or candidate, nor its initiator's fallback: their
name resolves as a name nobody has (the next candidates, the lane, the initiator, else the administrators), and the
process owners are told which element names whom (`tell`: an audit event on the instance, an in-app note), so
that the model or its data can be put right. The instance runs on: nothing is wrong with it but a name.

A name nobody has (no person, unit or role; a misspelt username, a person never created) is passed over the same way
and told the same way (`task.assignee_unknown`), instead of vanishing: the task could otherwise end with nobody but
the initiator, or an administrator, and nobody would learn why. The names come from the model and its data, so the
process owner who drew it could fill the trail and the notes: they are told once per element and property, naming at
most MAX_TOLD names of at most NAME_TOLD_CHARS printable characters each, and counting the rest. The notes are text
(pages escape them); how they are told is `engine.runtime.owner_notes`.

`escalationUnit` names the unit the escalation ladder climbs from, by code or name (a person or a role of that name is
no unit). A name that is no unit is kept on the task as told (`escalation_unit_unknown`): its unit head's rung passes
to the rung above, and the ladder tells the process owners when it gets there (engine.deadlines.unknown_units).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import literal, select, union_all
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.deadlines import sla
from engine.org.actors import SYSTEM
from engine.org.models import OrgUnit, Role, User
from engine.runtime.owner_notes import MAX_TOLD, NAME_TOLD_CHARS, note_owners, owners, told_name
from engine.tasks import duties
from engine.tasks.models import HumanTask, TaskCandidate

MAX_NAMES = 500  # names one `candidates` or `assignee` expression may give
# Deadlines a `due` expression may give: 9999-12-31T23:00-14:00 overflowed in the save, and any date near the ends of
# `datetime` overflows where the warning and escalation times are computed from it.
DUE_RANGE = (datetime(1970, 1, 1, tzinfo=clock.UTC), datetime(3000, 1, 1, tzinfo=clock.UTC))


class ExpressionFailed(Exception):
    """A task property expression failed or gave the wrong kind of value; `task` names the task."""

    def __init__(self, message: str, task: Any) -> None:
        super().__init__(message)
        self.task = task


@dataclass(frozen=True)
class PassedOver:
    """A deactivated person a new task's `assignee` or `candidates` (or its initiator fallback) named."""

    instance_id: int
    process_key: str
    bpmn_id: str
    task_name: str
    prop: str  # assignee | candidates | initiator
    user_id: int
    username: str


@dataclass(frozen=True)
class Unnamed:
    """Where a new task's `assignee` or `candidates` named names nobody has: the instance, process, element, property."""

    instance_id: int
    process_key: str
    bpmn_id: str
    task_name: str
    prop: str  # assignee | candidates
    kind: str = "unknown"  # unknown: names nobody has; group: an assignee naming a unit or role, not a person


@dataclass
class Problems:
    """What went wrong while assigning this unit of work's new tasks; the first error becomes the incident, and the
    deactivated people and unknown names passed over are told to the process owners (`tell`)."""

    errors: list[ExpressionFailed]
    passed_over: list[PassedOver] = field(default_factory=list)
    unknown: dict[Unnamed, dict[str, None]] = field(default_factory=dict)  # names nobody has, in order, per element
    barred: list[tuple[HumanTask, duties.Duty, list[int]]] = field(default_factory=list)  # 职责分离: engine.tasks.duties

    @property
    def to_tell(self) -> bool:
        """Whether `tell` has something to write (then the save is not fused: the flush tells it)."""
        return bool(self.passed_over or self.unknown or self.barred)

    def pass_over(self, human: HumanTask, prop: str, people: Sequence[tuple[int, str]]) -> None:
        self.passed_over += [PassedOver(human.instance_id, human.process_key, human.bpmn_id, human.name, prop, user_id,
                                        username) for user_id, username in people]

    def name_unknown(self, human: HumanTask, prop: str, names: Sequence[str], kind: str = "unknown") -> None:
        if names:  # the tasks of a multi-instance share one entry
            where = Unnamed(human.instance_id, human.process_key, human.bpmn_id, human.name, prop, kind)
            self.unknown.setdefault(where, {}).update(dict.fromkeys(names))

    def add(self, task: Any, prop: str, expression: str, detail: str) -> None:
        bpmn_id = task.task_spec.bpmn_id or task.task_spec.name
        self.errors.append(ExpressionFailed(
            f"任务 {bpmn_id} 的 {prop} 表达式出错 (task '{bpmn_id}': {prop} expression '{expression}' failed): "
            f"{detail}", task))


def _evaluate(engine: Any, task: Any, prop: str, expression: str, problems: Problems) -> Any:
    try:
        return engine.evaluate(task, expression)
    except Exception as exc:  # every failure is reported, as an incident
        cause = getattr(exc, "exception", None) or exc
        problems.add(task, prop, expression, f"{type(cause).__name__}: {cause}")
        return None


def evaluate_names(engine: Any, task: Any, prop: str, expression: str, problems: Problems) -> list[str]:
    """Evaluate a `candidates` or `assignee` expression to a list of names (a problem if it is not one)."""
    value = _evaluate(engine, task, prop, expression, problems)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, (str, int, type(None))) for v in value):
        names = list(dict.fromkeys(str(v) for v in value if v is not None))  # None: an optional name left empty
        if len(names) > MAX_NAMES:
            problems.add(task, prop, expression, f"gave {len(names)} names (limit {MAX_NAMES})")
            return []
        return names
    problems.add(task, prop, expression, f"gave a {type(value).__name__}, not a name or a list of names")
    return []


def resolve(session: Session, names: Sequence[str], inactive: list[tuple[int, str]] | None = None,
            unknown: list[str] | None = None, groups: list[str] | None = None) -> list[TaskCandidate]:
    """Turn names (user, then org unit code/name, then role code/name) into candidates, in one query.

    A deactivated user's name resolves as a name nobody has; `inactive` collects (id, username) of those, `unknown`
    the names nobody has (not a blank one: a name left empty, as None is), `groups` those that are a unit or a role.
    """
    if not names:
        return []
    query = union_all(
        select(literal(0).label("rank"), User.id.label("id"), User.username.label("key"),
               User.is_active.label("active")).where(User.username.in_(names)),
        select(literal(1), OrgUnit.id, OrgUnit.code, literal(True)).where(OrgUnit.code.in_(names)),
        select(literal(1), OrgUnit.id, OrgUnit.name, literal(True)).where(OrgUnit.name.in_(names)),
        select(literal(2), Role.id, Role.code, literal(True)).where(Role.code.in_(names)),
        select(literal(2), Role.id, Role.name, literal(True)).where(Role.name.in_(names)),
    )
    best: dict[str, tuple[int, int]] = {}
    deactivated: dict[str, int] = {}
    for rank, id_, key, active in session.execute(query):
        if not active:
            deactivated[key] = id_
        elif key not in best or (rank, id_) < best[key]:
            best[key] = (rank, id_)
    out: list[TaskCandidate] = []
    seen: set[tuple[int, int]] = set()
    for name in names:
        found = best.get(name)
        if found is None and name in deactivated and inactive is not None:
            inactive.append((deactivated[name], name))
        elif found is None and name not in deactivated and unknown is not None and name.strip():
            unknown.append(name)
        if found is not None and found[0] > 0 and groups is not None:
            groups.append(name)
        if found is None or found in seen:
            continue
        seen.add(found)
        rank, id_ = found
        out.append(TaskCandidate(user_id=id_) if rank == 0 else TaskCandidate(org_unit_id=id_) if rank == 1
                   else TaskCandidate(role_id=id_))
    return out


def unit_named(session: Session, names: Sequence[str]) -> int | None:
    """Return the first of the names that is a unit's code or name (a person or a role of that name is no unit)."""
    if not names:
        return None
    found = {key: id_ for id_, key in session.execute(union_all(
        select(OrgUnit.id, OrgUnit.code.label("key")).where(OrgUnit.code.in_(names)),
        select(OrgUnit.id, OrgUnit.name).where(OrgUnit.name.in_(names))))}
    return next((found[n] for n in names if n in found), None)


def tell(session: Session, problems: Problems) -> None:
    """Audit each deactivated person a new task named on the instance, and tell the process owners (administrators
    when there is none) in-app, once per task element and person; names nobody has, once per element and property."""
    if not problems.to_tell:
        return
    for human, duty, passed in problems.barred:  # the case's own facts, not the model's fault: audited, not told
        duties.record(session, SYSTEM, human, duty, passed)
    if not (problems.passed_over or problems.unknown):
        return
    told = owners(session)
    _tell_inactive(session, problems.passed_over, told)
    for where, names in problems.unknown.items():
        _tell_unknown(session, where, list(names), told)


def _tell_inactive(session: Session, passed_over: Sequence[PassedOver], owners: Sequence[int]) -> None:
    if not passed_over:
        return
    names = {user_id: name for user_id, name in session.execute(select(User.id, User.display_name).where(
        User.id.in_({p.user_id for p in passed_over})))}
    for p in dict.fromkeys(passed_over):
        who = f"{names.get(p.user_id, '')}（{p.username}）"
        audit.record(session, SYSTEM, "task.assignee_inactive", stream=f"instance:{p.instance_id}",
                     object_type="process_instance", object_id=p.instance_id,
                     after={"bpmn_id": p.bpmn_id, "property": p.prop, "username": p.username, "user_id": p.user_id})
        note_owners(session, owners, p.instance_id, "assignee_inactive", {
            "process": p.process_key, "element": p.bpmn_id, "task": p.task_name, "who": who, "prop": p.prop,
            "username": p.username})


def _shown(names: list[str]) -> list[str]:
    """The names an audit event and a note name: at most MAX_TOLD, each as told_name shows it. How many there are in
    all is the note's `count`, worded by its text (the `_more` one) in the reader's language."""
    return [told_name(n) for n in names[:MAX_TOLD]]


def _tell(session: Session, where: Unnamed, owners: Sequence[int], action: str, listed: dict[str, Any], text: str,
          shown: list[str], count: int) -> None:
    audit.record(session, SYSTEM, action, stream=f"instance:{where.instance_id}", object_type="process_instance",
                 object_id=where.instance_id, after={"bpmn_id": where.bpmn_id, "property": where.prop, **listed})
    note_owners(session, owners, where.instance_id, f"{text}_more" if count > len(shown) else text, {
        "process": where.process_key, "element": where.bpmn_id, "task": where.task_name, "who": shown,
        "prop": where.prop, "count": count})


def _tell_unknown(session: Session, where: Unnamed, names: list[str], owners: Sequence[int]) -> None:
    if where.kind == "group":
        _tell_group(session, where, names, owners)
        return
    shown = _shown(names)
    _tell(session, where, owners, "task.assignee_unknown", {"usernames": shown, "count": len(names)},
          "assignee_unknown", shown, len(names))


def _tell_group(session: Session, where: Unnamed, names: list[str], owners: Sequence[int]) -> None:
    shown = _shown(names)
    _tell(session, where, owners, "task.assignee_not_user", {"names": shown, "count": len(names)},
          "assignee_not_user", shown, len(names))


def due_time(value: object) -> datetime | None:
    """Turn a date (end of that day, Asia/Shanghai), a datetime (naive = Shanghai) or ISO text of either into UTC.

    None for anything else, and for a time outside DUE_RANGE.
    """
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value.strip()) == 10 else datetime.fromisoformat(value)
        except ValueError:
            return None
    try:
        if isinstance(value, datetime):
            due = clock.as_utc(value if value.tzinfo else value.replace(tzinfo=clock.SHANGHAI))
        elif isinstance(value, date):
            due = clock.as_utc(datetime.combine(value, time(23, 59, 59), tzinfo=clock.SHANGHAI))
        else:
            return None
    except (OverflowError, ValueError):  # the UTC time is before year 1 or after 9999
        return None
    return due if DUE_RANGE[0] <= due < DUE_RANGE[1] else None


def apply_due(engine: Any, task: Any, expression: str, human: HumanTask, now: datetime, problems: Problems) -> None:
    """Set the deadline from the `due` property (an expression giving a date or datetime), overriding `sla`."""
    value = _evaluate(engine, task, "due", expression, problems)
    if value is None:
        return
    due = due_time(value)
    if due is None:
        problems.add(task, "due", expression, f"gave {type(value).__name__} {str(value)[:80]!r}, not a date from "
                     f"{DUE_RANGE[0].year} to {DUE_RANGE[1].year - 1}")
        return
    human.due_at = due
    try:
        human.warn_at = sla.task_warn_time(human.escalation_policy, now, due)
    except (ArithmeticError, ValueError) as exc:
        problems.add(task, "due", expression, f"{type(exc).__name__}: {exc}")


def assign(session: Session, engine: Any, task: Any, human: HumanTask, props: dict[str, str],
           lane_map: dict[str, dict[str, int]], initiator_id: int | None, problems: Problems) -> None:
    """Set the new task's assignee or candidates (and its escalation unit); see the module's rule. Then keep off it
    whom the application's separation of duties bars (engine.tasks.duties), whatever the model named."""
    duty = duties.duty_of(session, human)
    skipped: list[int] = []
    _assign(session, engine, task, human, props, lane_map, initiator_id, problems,
            duty.barred if duty else frozenset(), skipped)
    narrowed = duties.narrow(session, human, duty, skipped) if duty else None
    if narrowed is not None:
        problems.barred.append((human, *narrowed))


def _assign(session: Session, engine: Any, task: Any, human: HumanTask, props: dict[str, str],
            lane_map: dict[str, dict[str, int]], initiator_id: int | None, problems: Problems,
            barred: frozenset[int], skipped: list[int]) -> None:
    if props.get("escalationUnit"):  # the unit code or name the escalation ladder climbs from
        names = [n for n in evaluate_names(engine, task, "escalationUnit", props["escalationUnit"], problems)
                 if n.strip()]  # None or blank: no unit named, the ladder's own rule
        human.escalation_unit_id = unit_named(session, names)
        # Named, but no unit: the unit head's rung passes to the rung above (engine.deadlines.unknown_units tells it)
        human.escalation_unit_unknown = told_name(names[0]) if names and human.escalation_unit_id is None else None
    if props.get("assignee"):
        names = evaluate_names(engine, task, "assignee", props["assignee"], problems)
        inactive: list[tuple[int, str]] = []
        unknown: list[str] = []
        groups: list[str] = []
        users = [c for c in resolve(session, names, inactive, unknown, groups) if c.user_id is not None]
        problems.pass_over(human, "assignee", inactive)
        problems.name_unknown(human, "assignee", unknown)
        problems.name_unknown(human, "assignee", groups, kind="group")  # a unit or role: candidates' business
        if users and users[0].user_id in barred:  # 职责分离: as a name nobody has, the candidates' turn
            skipped.append(int(users[0].user_id))
        elif users:
            human.assignee_id = human.owner_id = users[0].user_id
            human.candidates.append(TaskCandidate(user_id=users[0].user_id))
            return
    candidates: list[TaskCandidate] = []
    if props.get("candidates"):
        inactive, unknown = [], []
        candidates = resolve(session, evaluate_names(engine, task, "candidates", props["candidates"], problems),
                             inactive, unknown)
        problems.pass_over(human, "candidates", inactive)
        problems.name_unknown(human, "candidates", unknown)
    if not candidates and task.task_spec.lane in lane_map:
        target = lane_map[task.task_spec.lane]
        candidates.append(TaskCandidate(org_unit_id=target.get("org_unit_id"), role_id=target.get("role_id")))
    if not candidates and initiator_id is not None:
        starter = session.execute(select(User.username, User.is_active).where(User.id == initiator_id)).first()
        if starter is None or starter.is_active:
            candidates.append(TaskCandidate(user_id=initiator_id))  # nobody else can reach it: 发起人
        else:  # a deactivated 发起人: the task waits for an administrator, as one the system started does
            problems.pass_over(human, "initiator", [(initiator_id, starter.username)])
    human.candidates.extend(candidates)


__all__ = ["DUE_RANGE", "MAX_NAMES", "MAX_TOLD", "NAME_TOLD_CHARS", "ExpressionFailed", "PassedOver", "Problems",
           "Unnamed", "apply_due", "assign", "due_time", "evaluate_names", "note_owners", "owners", "resolve", "tell",
           "told_name", "unit_named"]
