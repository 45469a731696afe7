"""Read-side queries for the web and the API: instance lists (keyset pages), inbox pages; startable processes
(from `engine.runtime.starts`, re-exported here for the web).

Nothing here changes state. Visibility mirrors `engine.tasks.access`: one rule, two forms
(a yes/no for one instance there, a SQL filter for lists here).
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session, selectinload

from engine import clock
from engine.archive import core as archive
from engine.errors import InvalidInput
from engine.org.actors import Actor
from engine.org.models import User
from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion
from engine.runtime.starts import StartInfo, may_start, start_info, startable
from engine.tasks import access
from engine.tasks import core as tasks
from engine.tasks.collab_models import CarbonCopy
from engine.tasks.models import HumanTask, TaskCandidate

MAX_PAGE = 200
STATUSES = ("running", "suspended", "incident", "completed", "terminated")
# Who may see an instance's data (not only its timeline): besides admins and the starter.
DATA_ROLES = ("process_owner", "auditor")
MAX_ID = 2**31 - 1  # ids are INTEGER columns: a cursor beyond cannot name a row

# --- cursors -----------------------------------------------------------------------------------------

def encode_cursor(values: Sequence[Any]) -> str:
    """Return an opaque, URL-safe cursor for a keyset position."""
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """Return a cursor's values.

    Raises: InvalidInput (field `after`)
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidInput("分页游标无效 (invalid cursor)", field="after")
    return values


def cursor_time(value: Any) -> datetime:
    """Read a time out of a decoded cursor.

    Raises: InvalidInput
    """
    try:
        return clock.as_utc(datetime.fromisoformat(str(value)))
    except ValueError as exc:
        raise InvalidInput("分页游标无效 (invalid cursor)", field="after") from exc


def cursor_int(value: Any) -> int:
    """Read an id out of a decoded cursor.

    Raises: InvalidInput
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise InvalidInput("分页游标无效 (invalid cursor)", field="after")
    return value


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


# --- instances ---------------------------------------------------------------------------------------

def visible_instances(session: Session, actor: Actor) -> ColumnElement[bool]:
    """A filter on ProcessInstance: what `access.can_view_instance` allows, as SQL."""
    if access.reads_everything(session, actor):
        return true()
    if actor.user_id is None:
        return false()
    uid = actor.user_id
    candidate = exists().where(TaskCandidate.task_id == HumanTask.id).where(or_(
        TaskCandidate.user_id == uid,
        TaskCandidate.org_unit_id.in_(list(actor.org_unit_ids) or [-1]),
        TaskCandidate.role_id.in_(list(actor.role_ids) or [-1])))
    involved = exists().where(HumanTask.instance_id == ProcessInstance.id).where(or_(
        HumanTask.assignee_id == uid, HumanTask.completed_by_id == uid, HumanTask.owner_id == uid, candidate))
    copied = exists().where(CarbonCopy.instance_id == ProcessInstance.id, CarbonCopy.user_id == uid)
    archived = and_(ProcessInstance.archived_at.is_not(None), archive.involved(ProcessInstance.id, actor))
    return or_(ProcessInstance.started_by_id == uid, involved, copied, archived)


@dataclass(frozen=True)
class InstanceFilter:
    process_key: str | None = None
    status: str | None = None
    mine: bool = False  # started by me
    text: str | None = None  # in the title or the business key


@dataclass(frozen=True)
class InstanceRow:
    instance: ProcessInstance
    process_key: str
    process_name: str
    version: int
    started_by: str | None  # display name


def instance_page(session: Session, actor: Actor, flt: InstanceFilter, *, after: str | None = None,
                  limit: int = 50) -> Page:
    """Return visible instances, newest first, keyset-paginated on (started_at, id).

    Raises: InvalidInput (a bad status or cursor)
    """
    if flt.status and flt.status not in STATUSES:
        raise InvalidInput(f"状态无效 (unknown status): {flt.status}", field="status")
    q = (select(ProcessInstance, ProcessDefinition.key, ProcessDefinition.name, ProcessVersion.version,
                User.display_name)
         .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
         .join(ProcessVersion, ProcessVersion.id == ProcessInstance.version_id)
         .outerjoin(User, User.id == ProcessInstance.started_by_id)
         .where(visible_instances(session, actor)))
    if flt.process_key:
        q = q.where(ProcessDefinition.key == flt.process_key)
    if flt.status:
        q = q.where(ProcessInstance.status == flt.status)
    if flt.mine:
        q = q.where(ProcessInstance.started_by_id == (actor.user_id if actor.user_id is not None else -1))
    if flt.text and flt.text.strip():
        needle = flt.text.strip()[:200]
        q = q.where(or_(ProcessInstance.title.icontains(needle, autoescape=True),
                        ProcessInstance.business_key.icontains(needle, autoescape=True)))
    if after:
        at, last_id = decode_cursor(after, 2)
        at_time, last = cursor_time(at), cursor_int(last_id)
        q = q.where(or_(ProcessInstance.started_at < at_time,
                        and_(ProcessInstance.started_at == at_time, ProcessInstance.id < last)))
    size = _limit(limit)
    rows = session.execute(q.order_by(ProcessInstance.started_at.desc(), ProcessInstance.id.desc())
                           .limit(size + 1)).all()
    items = [InstanceRow(r[0], r[1], r[2], r[3], r[4]) for r in rows[:size]]
    cursor = None
    if len(rows) > size:
        last_row = items[-1].instance
        cursor = encode_cursor([clock.as_utc(last_row.started_at).isoformat(), last_row.id])
    return Page(items=items, next_cursor=cursor)


def instance_row(session: Session, instance_id: int) -> InstanceRow | None:
    """Return one instance with its process and starter, or None."""
    r = session.execute(select(ProcessInstance, ProcessDefinition.key, ProcessDefinition.name, ProcessVersion.version,
                               User.display_name)
                        .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                        .join(ProcessVersion, ProcessVersion.id == ProcessInstance.version_id)
                        .outerjoin(User, User.id == ProcessInstance.started_by_id)
                        .where(ProcessInstance.id == instance_id)).first()
    return InstanceRow(r[0], r[1], r[2], r[3], r[4]) if r is not None else None


def process_choices(session: Session) -> list[tuple[str, str]]:
    """Return (key, name) of every deployed process, by name (for filters)."""
    rows = session.execute(select(ProcessDefinition.key, ProcessDefinition.name).order_by(ProcessDefinition.name))
    return [(r[0], r[1]) for r in rows]


def may_see_data(session: Session, actor: Actor, instance: ProcessInstance) -> bool:
    """Admins, process owners, auditors and the starter see an instance's data; others only its timeline.

    A starter from outside (an applicant, `access.is_external`) does not: the data holds every step's form values
    merged in, the window's and the departments' opinions among them, which are internal to them (their own steps
    show from `submissions`, the rest as the public history).
    """
    if actor.is_admin or actor.is_system:
        return True
    if access.is_external(session, actor):
        return False
    if actor.user_id is not None and instance.started_by_id == actor.user_id:
        return True
    return bool(actor.role_codes & set(DATA_ROLES))


def may_see_raw_data(actor: Actor) -> bool:
    """Admins, process owners and auditors read an instance's data as stored (流程数据 on its page: keys, codes).

    That is a view for finding faults; a starter from the staff reads the same values as the 审批单 shows them (each
    step's form with its labels, `submissions`), not raw keys, choice codes and usernames.
    """
    return actor.is_admin or actor.is_system or bool(actor.role_codes & set(DATA_ROLES))


def shows_raw_data(session: Session, actor: Actor, instance: ProcessInstance) -> bool:
    """Whether this reader is given the instance's data as stored: 流程数据 on its page, `data` of
    `GET /api/instances/{id}` — one rule for both (`may_see_data` and `may_see_raw_data`), so a staff starter who reads
    the labelled 审批单 on the page does not read the raw keys, codes and usernames through the API instead."""
    return may_see_data(session, actor, instance) and may_see_raw_data(actor)


def first_task_for(session: Session, actor: Actor, instance_id: int) -> HumanTask | None:
    """Return the instance's first open task the actor holds or may claim (to go there after starting)."""
    open_tasks = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                         HumanTask.state == "ready").order_by(HumanTask.id))
    for task in open_tasks:
        if task.assignee_id == actor.user_id or (task.assignee_id is None and tasks.is_candidate(task, actor)):
            return task
    return None


# --- inbox -------------------------------------------------------------------------------------------

def inbox_page(session: Session, actor: Actor, *, after: str | None = None, limit: int = 50) -> Page:
    """Return the actor's 待办 (due first, undated last), keyset-paginated on (due_at, id).

    Raises: InvalidInput (a bad cursor)
    """
    q = tasks.inbox_query(actor)
    if after:
        due, last_id = decode_cursor(after, 2)
        last = cursor_int(last_id)
        if due is None:
            q = q.where(HumanTask.due_at.is_(None), HumanTask.id > last)
        else:
            due_time = cursor_time(due)
            q = q.where(or_(HumanTask.due_at.is_(None), HumanTask.due_at > due_time,
                            and_(HumanTask.due_at == due_time, HumanTask.id > last)))
    size = _limit(limit)
    # `claimable` reads each task's candidates: all of them in one query, not one each
    rows = list(session.scalars(q.options(selectinload(HumanTask.candidates)).limit(size + 1)).unique())
    items = rows[:size]
    cursor = None
    if len(rows) > size:
        last_task = items[-1]
        cursor = encode_cursor([clock.as_utc(last_task.due_at).isoformat() if last_task.due_at else None,
                                last_task.id])
    return Page(items=items, next_cursor=cursor)


@dataclass
class UserNames:
    """Display names of users by id, fetched in one query per batch."""

    names: dict[int, str] = field(default_factory=dict)

    def load(self, session: Session, ids: Sequence[int | None]) -> UserNames:
        wanted = {i for i in ids if i is not None and i not in self.names}
        if wanted:
            for uid, username, display in session.execute(
                    select(User.id, User.username, User.display_name).where(User.id.in_(wanted))):
                self.names[uid] = display or username
        return self

    def get(self, user_id: int | None) -> str | None:
        return self.names.get(user_id) if user_id is not None else None


__all__ = ["InstanceFilter", "InstanceRow", "Page", "StartInfo", "UserNames", "decode_cursor", "encode_cursor",
           "first_task_for", "inbox_page", "instance_page", "instance_row", "may_see_data", "may_see_raw_data",
           "may_start", "process_choices", "shows_raw_data", "start_info", "startable", "visible_instances"]
