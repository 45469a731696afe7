"""督办: a leader's view of everything overdue or escalated in their area, and where work waits.

The area (`area`: the units a leader heads or is responsible for, with their sub-units) and the
leader's actions (`actions`: urge, reassign, extensions, escalate) live in modules of their own;
this module builds the 督办 page (`overview`, `history`) and the wait heatmap of a process version.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import clock
from engine.deadlines import calendar, escalation, sla
from engine.deadlines.escalation import Target
from engine.deadlines.models import DeadlineAction, DeadlineWatch, EscalationStep, ExtensionRequest
from engine.errors import NotFound
from engine.org.actors import Actor
from engine.org.models import OrgUnit, Role, User
from engine.runtime.models import ProcessDefinition, ProcessVersion
from engine.tasks import access
from engine.tasks.models import HumanTask
from plan.ledger.models import LedgerIssue
from plan.supervision.actions import deadline_version, extension_version, level_version
from plan.supervision.area import area, is_supervisor, pending_extension

HEAT_ROLES = ("process_owner",)  # besides those who read everything and the supervisors


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

    @property
    def seen(self) -> dict[str, str]:
        """The versions its forms carry (`plan.stale`): the deadline 催办 may move, the rung 升级 climbs from, the
        申请延期 审批延期 decides."""
        return {"deadline": deadline_version(self.target), "level": level_version(self.level),
                "extension": extension_version(self.extension)}


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
    note: str | tuple[str, ...]  # a step's recipients: names, joined by the page in its reader's language


def history(session: Session, object_type: str, object_id: int) -> list[HistoryLine]:
    """Return the steps and 督办 actions of an object, oldest first."""
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    lines = [HistoryLine(s.at, escalation.STEP_NAMES.get(s.step, s.step) + ("（手动）" if s.manual else ""),
                         names.get(s.actor_id or -1, "系统"), tuple(names.get(u, str(u)) for u in s.recipients or []))
             for s in session.scalars(select(EscalationStep).where(EscalationStep.object_type == object_type,
                                                                   EscalationStep.object_id == object_id))]
    labels = {"urge": "催办", "reassign": "改派", "extension_grant": "批准延期", "extension_refuse": "不批准延期",
              "escalate": "升级"}
    lines += [HistoryLine(a.at, labels.get(a.action, a.action), names.get(a.actor_id or -1, "系统"), a.note)
              for a in session.scalars(select(DeadlineAction).where(DeadlineAction.object_type == object_type,
                                                                    DeadlineAction.object_id == object_id))]
    return sorted(lines, key=lambda line: line.at)


# -- the wait heatmap --------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeatMap:
    """How long human tasks waited at each BPMN element of one process version."""

    process_key: str
    version: int
    stats: dict[str, sla.Heat]


def can_see_heat(session: Session, actor: Actor) -> bool:
    """Tell whether the actor may see wait heatmaps: who reads every instance, process owners, supervisors."""
    codes = set(session.scalars(select(Role.code).where(Role.id.in_(actor.role_ids)))) if actor.role_ids else set()
    return access.reads_everything(session, actor) or bool(codes & set(HEAT_ROLES)) or is_supervisor(session, actor)


def wait_heat(session: Session, process_key: str, version: int | None = None) -> HeatMap:
    """Return the wait heatmap of a process's version (the latest when none is given).

    Raises: NotFound
    """
    query = select(ProcessVersion).join(ProcessDefinition, ProcessDefinition.id == ProcessVersion.definition_id).where(
        ProcessDefinition.key == process_key)
    query = query.where(ProcessVersion.version == version) if version else \
        query.order_by(ProcessVersion.version.desc())
    found = session.scalar(query.limit(1))
    if found is None:
        raise NotFound(f"流程不存在 (no such process): {process_key}", process_key=process_key)
    return HeatMap(process_key, found.version, sla.wait_heat(session, found.id))


__all__ = ["HEAT_ROLES", "HeatMap", "HistoryLine", "Item", "UnitGroup", "can_see_heat", "history", "overview",
           "wait_heat"]
