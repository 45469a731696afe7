"""The inbox lists — 待办 / 已办 / 我发起的 / 抄送我的 — filtered and keyset-paginated (filters and saved
filters: engine.tasks.filters, re-exported here).

Every list pages on a key the indexes already order (never OFFSET), so page 1000 costs what page 1
costs. 待办 is two index range scans merged here — tasks held by the actor and unclaimed tasks they
may claim, both on ix_human_task_assignee_open (assignee_id, state, due_at) — rather than one
OR query the database would have to sort whole. Due dates come first, undated tasks last.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from engine import audit, clock
from engine.deadlines import sla
from engine.errors import NotFound
from engine.org.actors import Actor
from engine.org.models import User
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.tasks.collab_models import CarbonCopy
from engine.tasks.filters import LISTS, NO_FILTER, Filter, delete_filter, save_filter, saved_filters
from engine.tasks.models import HumanTask, TaskCandidate
from engine.tasks.queries import cursor_int, cursor_time, decode_cursor, encode_cursor

PAGE_SIZE = 50
MAX_PAGE = 200
COUNT_CAP = 1000  # counts stop here ("999+"): a count must not cost more than a page
_EPOCH = datetime(1970, 1, 1, tzinfo=clock.UTC)


@dataclass(frozen=True)
class TaskRow:
    task: HumanTask
    title: str
    business_key: str | None
    instance_status: str

    def light(self, now: datetime) -> str:
        """Return red (overdue), yellow (past the warning time) or green."""
        return light_of(self.task.due_at, self.task.warn_at, now)


@dataclass(frozen=True)
class StartedRow:
    instance: ProcessInstance
    process_name: str
    current: list[HumanTask] = field(default_factory=list)

    def light(self, now: datetime) -> str:
        lights = [light_of(t.due_at, t.warn_at, now) for t in self.current]
        return "red" if "red" in lights else "yellow" if "yellow" in lights else "green"


@dataclass(frozen=True)
class CcRow:
    cc: CarbonCopy
    title: str
    business_key: str | None
    from_name: str | None


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_cursor: str | None


def light_of(due_at: datetime | None, warn_at: datetime | None, now: datetime) -> str:
    """Return the traffic light of a deadline (sla.level's); a task without a deadline is green."""
    return sla.level(due_at, warn_at, now) or "green"


def _size(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


def _task_filters(flt: Filter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.process:
        conditions.append(HumanTask.process_key == flt.process)
    if flt.stage:
        conditions.append(or_(HumanTask.bpmn_id == flt.stage, HumanTask.name.startswith(flt.stage, autoescape=True)))
    if flt.due == "overdue":
        conditions.append(HumanTask.due_at < now)
    elif flt.due == "warn":
        conditions.append(and_(HumanTask.warn_at < now, or_(HumanTask.due_at.is_(None), HumanTask.due_at >= now)))
    if flt.q:
        # Correlated on the instance's primary key: one lookup per candidate row, no join to sort.
        conditions.append(or_(HumanTask.name.icontains(flt.q, autoescape=True), exists().where(
            ProcessInstance.id == HumanTask.instance_id,
            or_(ProcessInstance.title.icontains(flt.q, autoescape=True),
                ProcessInstance.business_key.icontains(flt.q, autoescape=True)))))
    return conditions


def _todo_branches(actor: Actor) -> list[ColumnElement[bool]]:
    """The two halves of 待办, each a range of ix_human_task_assignee_open."""
    mine = and_(HumanTask.assignee_id == actor.user_id, HumanTask.state == "ready")
    candidate = exists().where(TaskCandidate.task_id == HumanTask.id).where(or_(
        TaskCandidate.user_id == actor.user_id,
        TaskCandidate.org_unit_id.in_(sorted(actor.org_unit_ids) or [-1]),
        TaskCandidate.role_id.in_(sorted(actor.role_ids) or [-1])))
    claimable = and_(HumanTask.assignee_id.is_(None), HumanTask.state == "ready", candidate)
    return [mine, claimable] if actor.user_id is not None else []


def _todo_ids(session: Session, where: Sequence[ColumnElement[bool]], after: tuple[datetime | None, int] | None,
              size: int) -> list[tuple[datetime | None, int]]:
    """Return up to `size` (due_at, id) keys after the cursor, dated tasks first."""
    keys: list[tuple[datetime | None, int]] = []
    if after is None or after[0] is not None:
        dated: list[ColumnElement[bool]] = [HumanTask.due_at.is_not(None)]
        if after is not None and after[0] is not None:
            due, last = after
            # Spelled so the index serves it: a range on due_at, the id only to break ties.
            dated.append(and_(HumanTask.due_at >= due, or_(HumanTask.due_at > due, HumanTask.id > last)))
        keys += session.execute(select(HumanTask.due_at, HumanTask.id).where(*where, *dated)
                                .order_by(HumanTask.due_at, HumanTask.id).limit(size)).all()
    if len(keys) < size:
        undated: list[ColumnElement[bool]] = [HumanTask.due_at.is_(None)]
        if after is not None and after[0] is None:
            undated.append(HumanTask.id > after[1])
        keys += session.execute(select(HumanTask.due_at, HumanTask.id).where(*where, *undated)
                                .order_by(HumanTask.id).limit(size - len(keys))).all()
    return keys


def _sort_key(key: tuple[datetime | None, int]) -> tuple[int, datetime, int]:
    due, task_id = key
    return (1, _EPOCH, task_id) if due is None else (0, clock.as_utc(due), task_id)


def _task_rows(session: Session, ids: Sequence[int]) -> list[TaskRow]:
    if not ids:
        return []
    found = {t.id: TaskRow(t, title, key, status) for t, title, key, status in session.execute(
        select(HumanTask, ProcessInstance.title, ProcessInstance.business_key, ProcessInstance.status)
        .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id).where(HumanTask.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def todo_page(session: Session, actor: Actor, flt: Filter = NO_FILTER, *, after: str | None = None,
              limit: int = PAGE_SIZE) -> Page:
    """Return 待办: the actor's open tasks and the unclaimed ones they may claim, by due date (undated last).

    Raises: InvalidInput (a bad cursor)
    """
    size = _size(limit)
    cursor: tuple[datetime | None, int] | None = None
    if after:
        due, last = decode_cursor(after, 2)
        cursor = (None if due is None else cursor_time(due), cursor_int(last))
    filters = _task_filters(flt, clock.now())
    keys: list[tuple[datetime | None, int]] = []
    for branch in _todo_branches(actor):
        keys += _todo_ids(session, [branch, *filters], cursor, size + 1)
    keys = sorted(set(keys), key=_sort_key)[:size + 1]
    rows = _task_rows(session, [k[1] for k in keys[:size]])
    next_cursor = None
    if len(keys) > size:
        due, last = keys[size - 1]
        next_cursor = encode_cursor([clock.as_utc(due).isoformat() if due else None, last])
    return Page(rows, next_cursor)


def done_page(session: Session, actor: Actor, flt: Filter = NO_FILTER, *, after: str | None = None,
              limit: int = PAGE_SIZE) -> Page:
    """Return 已办: tasks the actor completed, most recent first, keyset on (completed_at, id).

    Raises: InvalidInput (a bad cursor)
    """
    size = _size(limit)
    where = [HumanTask.completed_by_id == actor.user_id, HumanTask.state == "completed",
             HumanTask.completed_at.is_not(None), *_task_filters(replace(flt, due=""), clock.now())]
    if after:
        at, last = decode_cursor(after, 2)
        at_time, last_id = cursor_time(at), cursor_int(last)
        where.append(and_(HumanTask.completed_at <= at_time,
                          or_(HumanTask.completed_at < at_time, HumanTask.id < last_id)))
    keys = session.execute(select(HumanTask.completed_at, HumanTask.id).where(*where)
                           .order_by(HumanTask.completed_at.desc(), HumanTask.id.desc()).limit(size + 1)).all()
    rows = _task_rows(session, [k[1] for k in keys[:size]])
    next_cursor = None
    if len(keys) > size:
        at_value, last_id = keys[size - 1]
        next_cursor = encode_cursor([clock.as_utc(at_value).isoformat() if at_value else None, last_id])
    return Page(rows, next_cursor)


def _open_task_exists(flt: Filter, now: datetime) -> ColumnElement[bool] | None:
    conditions = _task_filters(replace(flt, process="", q=""), now)
    if not conditions:
        return None
    return exists().where(HumanTask.instance_id == ProcessInstance.id, HumanTask.state == "ready", *conditions)


def _definition_filter(flt: Filter) -> list[ColumnElement[bool]]:
    if not flt.process:
        return []
    return [ProcessInstance.definition_id.in_(select(ProcessDefinition.id).where(ProcessDefinition.key == flt.process))]


def _text_filter(flt: Filter) -> list[ColumnElement[bool]]:
    if not flt.q:
        return []
    return [or_(ProcessInstance.title.icontains(flt.q, autoescape=True),
                ProcessInstance.business_key.icontains(flt.q, autoescape=True))]


def started_page(session: Session, actor: Actor, flt: Filter = NO_FILTER, *, after: str | None = None,
                 limit: int = PAGE_SIZE) -> Page:
    """Return 我发起的: instances the actor started, newest first (keyset on id), with their open steps.

    Raises: InvalidInput (a bad cursor)
    """
    size = _size(limit)
    # Archived instances (long ended, see engine/archive) leave 我发起的; the instance search still finds them.
    where = [ProcessInstance.started_by_id == actor.user_id, ProcessInstance.archived_at.is_(None),
             *_definition_filter(flt), *_text_filter(flt)]
    open_step = _open_task_exists(flt, clock.now())
    if open_step is not None:
        where.append(open_step)
    if after:
        (last,) = decode_cursor(after, 1)
        where.append(ProcessInstance.id < cursor_int(last))
    found = session.execute(select(ProcessInstance, ProcessDefinition.name)
                            .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                            .where(*where).order_by(ProcessInstance.id.desc()).limit(size + 1)).all()
    ids = [row.id for row, _ in found[:size]]
    current: dict[int, list[HumanTask]] = {i: [] for i in ids}
    if ids:
        for task in session.scalars(select(HumanTask).where(HumanTask.instance_id.in_(ids), HumanTask.state == "ready",
                                                            HumanTask.kind == "bpmn").order_by(HumanTask.id)):
            current[task.instance_id].append(task)
    rows = [StartedRow(row, name, current[row.id]) for row, name in found[:size]]
    next_cursor = encode_cursor([ids[-1]]) if len(found) > size else None
    return Page(rows, next_cursor)


_SENDER = aliased(User, name="sender")  # one alias for every call: statements stay cached


def cc_page(session: Session, actor: Actor, flt: Filter = NO_FILTER, *, after: str | None = None,
            limit: int = PAGE_SIZE) -> Page:
    """Return 抄送我的: carbon copies to the actor, newest first, keyset on (created_at, id).

    Raises: InvalidInput (a bad cursor)
    """
    size = _size(limit)
    sender = _SENDER
    where = [CarbonCopy.user_id == actor.user_id, *_definition_filter(flt)]
    if flt.unread:
        where.append(CarbonCopy.read_at.is_(None))
    if flt.q:
        where.append(or_(*_text_filter(flt), CarbonCopy.note.icontains(flt.q, autoescape=True)))
    if after:
        at, last = decode_cursor(after, 2)
        at_time, last_id = cursor_time(at), cursor_int(last)
        where.append(and_(CarbonCopy.created_at <= at_time, or_(CarbonCopy.created_at < at_time, CarbonCopy.id < last_id)))
    found = session.execute(select(CarbonCopy, ProcessInstance.title, ProcessInstance.business_key, sender.display_name)
                            .join(ProcessInstance, ProcessInstance.id == CarbonCopy.instance_id)
                            .outerjoin(sender, sender.id == CarbonCopy.from_user_id)
                            .where(*where).order_by(CarbonCopy.created_at.desc(), CarbonCopy.id.desc())
                            .limit(size + 1)).all()
    rows = [CcRow(cc, title, key, name) for cc, title, key, name in found[:size]]
    next_cursor = None
    if len(found) > size:
        last_cc = rows[-1].cc
        next_cursor = encode_cursor([clock.as_utc(last_cc.created_at).isoformat(), last_cc.id])
    return Page(rows, next_cursor)


def _capped(session: Session, query: Select[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(query.limit(COUNT_CAP).subquery())) or 0)


def counts(session: Session, actor: Actor) -> dict[str, int]:
    """Return each list's size, counted at most up to COUNT_CAP (待办 open, 抄送我的 unread)."""
    todo = sum(_capped(session, select(HumanTask.id).where(branch)) for branch in _todo_branches(actor))
    return {
        "index": min(todo, COUNT_CAP),
        "done": _capped(session, select(HumanTask.id).where(HumanTask.completed_by_id == actor.user_id,
                                                            HumanTask.state == "completed")),
        "started": _capped(session, select(ProcessInstance.id).where(ProcessInstance.started_by_id == actor.user_id,
                                                                     ProcessInstance.archived_at.is_(None))),
        "cc": _capped(session, select(CarbonCopy.id).where(CarbonCopy.user_id == actor.user_id,
                                                           CarbonCopy.read_at.is_(None))),
    }


def processes(session: Session) -> list[tuple[str, str]]:
    """Return (key, name) of every deployed process, for the filter's choices."""
    return list(session.execute(select(ProcessDefinition.key, ProcessDefinition.name)
                                .order_by(ProcessDefinition.name)).all())


# --- 抄送 read marks --------------------------------------------------------------------------------------

def mark_cc_read(session: Session, actor: Actor, cc_id: int | None = None) -> int:
    """Mark one carbon copy (or all of them) to the actor as read; return how many changed (flushes).

    Raises: NotFound (not a copy to this actor)
    """
    where = [CarbonCopy.user_id == actor.user_id, CarbonCopy.read_at.is_(None)]
    if cc_id is not None:
        owner = session.scalar(select(CarbonCopy.user_id).where(CarbonCopy.id == cc_id))
        if owner is None or owner != actor.user_id:
            raise NotFound(f"抄送不存在 (no such carbon copy): {cc_id}", cc_id=cc_id)
        where.append(CarbonCopy.id == cc_id)
    result = session.execute(update(CarbonCopy).where(*where).values(read_at=clock.now())
                             .execution_options(synchronize_session=False))
    changed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if changed:
        audit.record(session, actor, "cc.read", stream=f"user:{actor.user_id}", object_type="carbon_copy",
                     object_id=cc_id if cc_id is not None else "all", after={"count": changed})
    return changed


__all__ = ["LISTS", "CcRow", "Filter", "Page", "StartedRow", "TaskRow", "cc_page", "counts", "delete_filter",
           "done_page", "light_of", "mark_cc_read", "processes", "save_filter", "saved_filters", "started_page",
           "todo_page"]
