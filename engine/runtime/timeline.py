"""Read-side of one instance's page: timeline, diagram states, data, tasks, incidents and its BPMN."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.archive import core as archive
from engine.audit.models import AuditEvent
from engine.org import actors
from engine.runtime import core as runtime
from engine.runtime.models import Incident, ProcessFile
from engine.spiff import workflow as spiff
from engine.tasks import access
from engine.tasks.collab_models import CarbonCopy, Comment
from engine.tasks.models import HumanTask
from engine.tasks.queries import UserNames

# Shown as their own rows (with the text): the audit event would only repeat them.
COVERED_ACTIONS = ("instance.comment", "instance.cc")
# What an applicant from outside sees of an instance (besides their own doings): its lifecycle, the decisions
# taken on its steps, and 补正 / 退回 requests with their reasons.
PUBLIC_ACTIONS = ("instance.start", "instance.terminate", "task.complete", "task.send_back", "task.withdraw")
PUBLIC_NOTES = ("send_back",)


@dataclass(frozen=True)
class Entry:
    """One row of an instance's timeline."""

    at: datetime
    kind: str  # event | comment | cc
    action: str  # the audit action, the comment's kind (an applicant's opinion: applicant_opinion), or "cc"
    actor: str
    task_name: str | None = None
    text: str = ""  # a comment's body, a CC's recipients and note
    status: str | None = None  # lifecycle events: the status after
    details: Any = None  # the event's before/after values: only for who may see the data


def _task_of(ev: AuditEvent) -> int | None:
    if ev.object_type == "human_task" and ev.object_id.isdigit():
        return int(ev.object_id)
    after = ev.after if isinstance(ev.after, dict) else {}
    value = after.get("task_id")
    return value if isinstance(value, int) else None


def _public(events: list[AuditEvent], comments: list[Comment], copies: list[CarbonCopy], tasks: list[HumanTask],
            viewer_id: int | None) -> tuple[list[AuditEvent], list[Comment], list[CarbonCopy]]:
    # An applicant sees decisions and 补正 / 退回 requests and what they did themselves; not internal comments,
    # 抄送 notes, delegates' or co-signers' remarks, nor the data of other people's steps.
    decided = {t.id: t.completed_by_id for t in tasks if t.kind == "bpmn" and t.state == "completed"}
    events = [e for e in events if e.action in PUBLIC_ACTIONS or (viewer_id is not None and e.actor_id == viewer_id)]
    comments = [c for c in comments if (c.author_id == viewer_id and viewer_id is not None)
                or c.kind in PUBLIC_NOTES
                or (c.kind == "opinion" and c.task_id in decided and decided[c.task_id] == c.author_id)]
    copies = [c for c in copies if viewer_id is not None and c.from_user_id == viewer_id]
    return events, comments, copies


def timeline(session: Session, instance_id: int, *, with_details: bool, public_for: int | None = None,
             public: bool = False) -> list[Entry]:
    """Return the instance's audit events, comments and CCs in time order (details only when allowed).

    `public`: only what an applicant from outside may see (`public_for`: their user id, whose own entries show).
    """
    events = list(session.scalars(select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}")
                                  .order_by(AuditEvent.seq)).all())
    comments = list(session.scalars(select(Comment).where(Comment.instance_id == instance_id)
                                    .order_by(Comment.created_at, Comment.id)).all())
    copies = list(session.scalars(select(CarbonCopy).where(CarbonCopy.instance_id == instance_id)
                                  .order_by(CarbonCopy.created_at, CarbonCopy.id)).all())
    rows = archive.tasks_of(session, instance_id)
    task_names = {t.id: t.name for t in rows}
    if public:
        events, comments, copies = _public(events, comments, copies, rows, public_for)
        with_details = False
    users = UserNames().load(session, [e.actor_id for e in events] + [c.author_id for c in comments]
                             + [c.from_user_id for c in copies] + [c.user_id for c in copies])
    # An applicant's own opinion at their step is their 申请说明, not a 审批意见 (the departments').
    outside = {uid for uid in {c.author_id for c in comments if c.kind == "opinion"} if uid is not None
               and (held := actors.user_with_actor(session, uid)) is not None and access.is_external(session, held[1])}
    entries: list[Entry] = []
    for ev in events:
        if ev.action in COVERED_ACTIONS:
            continue
        after = ev.after if isinstance(ev.after, dict) else {}
        task_id = _task_of(ev)
        entries.append(Entry(
            at=clock.as_utc(ev.at), kind="event", action=ev.action,
            actor=users.get(ev.actor_id) or ("系统" if ev.actor_id is None else ev.actor_name),
            task_name=task_names.get(task_id) if task_id is not None else None,
            status=after.get("status") if isinstance(after.get("status"), str) else None,
            details={"before": ev.before, "after": ev.after} if with_details else None))
    for c in comments:
        kind = "applicant_opinion" if c.kind == "opinion" and c.author_id in outside else c.kind
        entries.append(Entry(at=clock.as_utc(c.created_at), kind="comment", action=kind,
                             actor=users.get(c.author_id) or "系统",
                             task_name=task_names.get(c.task_id) if c.task_id is not None else None, text=c.body))
    for cc in copies:
        entries.append(Entry(at=clock.as_utc(cc.created_at), kind="cc", action="cc",
                             actor=users.get(cc.from_user_id) or "系统",
                             task_name=task_names.get(cc.task_id) if cc.task_id is not None else None,
                             text=f"→ {users.get(cc.user_id) or cc.user_id}" + (f": {cc.note}" if cc.note else "")))
    order = {"event": 0, "comment": 1, "cc": 2}
    entries.sort(key=lambda e: (e.at, order[e.kind]))
    return entries


@dataclass(frozen=True)
class DiagramStates:
    current: list[str]
    completed: list[str]
    cancelled: list[str]
    heat: dict[str, int]  # bpmn id → seconds its human tasks took (or have waited so far), the longest


def diagram_states(session: Session, running: runtime.Running) -> DiagramStates:
    """Colour BPMN elements by their tasks' states: the human_task projection and SpiffWorkflow's tree."""
    current: set[str] = set()
    completed: set[str] = set()
    cancelled: set[str] = set()
    for task in spiff.all_tasks(running.workflow):
        bpmn_id = getattr(task.task_spec, "bpmn_id", None)
        if not bpmn_id:
            continue
        state = spiff.task_state_name(task)
        if state in spiff.CURRENT_STATES:
            current.add(bpmn_id)
        elif state == "COMPLETED":
            completed.add(bpmn_id)
        elif state == "CANCELLED":
            cancelled.add(bpmn_id)
    heat: dict[str, int] = {}
    now = clock.now()
    steps = [(t.bpmn_id, t.state, clock.as_utc(t.created_at), clock.as_utc(t.completed_at) if t.completed_at else None)
             for t in archive.tasks_of(session, running.row.id) if t.kind == "bpmn"]
    for bpmn_id, state, created, finished in steps:
        {"ready": current, "suspended": current, "completed": completed, "cancelled": cancelled}.get(
            state, set()).add(bpmn_id)
        if state in ("ready", "suspended", "completed"):
            took = int(((finished or now) - created).total_seconds())
            heat[bpmn_id] = max(heat.get(bpmn_id, 0), took)
    if running.row.status in ("terminated", "completed"):
        cancelled |= current  # nothing waits on an ended instance
        current = set()
    completed -= current
    cancelled -= current | completed
    return DiagramStates(sorted(current), sorted(completed), sorted(cancelled), dict(sorted(heat.items())))


def instance_data(running: runtime.Running) -> dict[str, Any]:
    """Return the instance's data as it stands: the last finished step's, then what waits now (later wins)."""
    every = spiff.all_tasks(running.workflow)
    waiting = [t for t in every if spiff.task_state_name(t) in spiff.CURRENT_STATES]
    finished = [t for t in every if spiff.is_completed(t)]
    latest = [max(finished, key=lambda t: t.last_state_change)] if finished else []
    data: dict[str, Any] = dict(running.workflow.data or {})
    for task in sorted(latest + waiting, key=lambda t: t.last_state_change):
        data.update(task.data)
    return dict(sorted(data.items()))


def human_tasks(session: Session, instance_id: int) -> list[HumanTask]:
    """Return the instance's tasks (open and done, and an archived instance's from the archive), oldest first."""
    return archive.tasks_of(session, instance_id)


def incidents(session: Session, instance_id: int) -> list[Incident]:
    """Return the instance's incidents, newest first."""
    return list(session.scalars(select(Incident).where(Incident.instance_id == instance_id)
                                .order_by(Incident.created_at.desc(), Incident.id.desc())))


def open_incidents(session: Session, *, limit: int = 100) -> list[Incident]:
    """Return unresolved incidents of every instance, newest first."""
    return list(session.scalars(select(Incident).where(Incident.resolved_at.is_(None))
                                .order_by(Incident.created_at.desc(), Incident.id.desc()).limit(limit)))


def bpmn_text(session: Session, version_id: int, process_key: str) -> str | None:
    """Return the BPMN file of a version that holds the process (the diagram to draw)."""
    files = session.execute(select(ProcessFile.name, ProcessFile.text).where(
        ProcessFile.version_id == version_id, ProcessFile.kind == "bpmn").order_by(ProcessFile.name)).all()
    for _name, text in files:
        if f'id="{process_key}"' in text:
            return str(text)
    return str(files[0][1]) if files else None


__all__ = ["DiagramStates", "Entry", "bpmn_text", "diagram_states", "human_tasks", "incidents", "instance_data",
           "open_incidents", "timeline"]
