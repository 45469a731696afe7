"""What auditors read: the audit trail filtered and paged, one instance's timeline, exports, the chain check.

Nothing here writes. Only auditors (审计督查) and admins read the trail (`require_auditor`).
Pages are keyset pages on the event id, newest first; exports walk the same filter oldest first.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from engine import clock
from engine.archive import core as archive
from engine.audit import core as audit
from engine.audit.models import AuditEvent
from engine.errors import Forbidden, InstanceNotFound, InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import User
from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion
from engine.tasks.collab_models import Comment

AUDITOR_ROLE = "auditor"
MAX_PAGE = 200
MAX_EXPORT = 100_000
OPINION_KEYS = ("opinion", "comment", "意见")  # form fields whose names contain these carry the opinion
EXPORT_COLUMNS = ("id", "at", "actor", "actor_name", "action", "object_type", "object_id", "stream", "seq", "before",
                  "after", "hash")


def may_audit(session: Session, actor: Actor) -> bool:
    """Auditors and admins read the audit trail."""
    if actor.is_admin or actor.is_system:
        return True
    return AUDITOR_ROLE in actor.role_codes


def is_read_only_actor(actor: Actor) -> bool:
    """Tell whether an actor is an auditor and no admin, from the roles read with the actor (no query)."""
    return not actor.is_admin and AUDITOR_ROLE in actor.role_codes


def require_auditor(session: Session, actor: Actor) -> None:
    """Refuse unless the actor is an auditor or an admin.

    Raises: Forbidden
    """
    if not may_audit(session, actor):
        raise Forbidden("只有审计人员和管理员可以查看审计记录 (auditors and admins only)")


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None  # a username or display name
    action: str | None = None  # exact, or a prefix ending in "." or "*" (task.*)
    process_key: str | None = None
    instance_id: int | None = None
    object_type: str | None = None
    object_id: str | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in vars(self).values())


@dataclass(frozen=True)
class EventRow:
    id: int
    stream: str
    seq: int
    at: datetime
    actor: str  # display name (or the recorded name when the user is gone; 系统 for the system)
    actor_name: str
    action: str
    object_type: str
    object_id: str
    before: Any
    after: Any
    hash: str

    @property
    def instance_id(self) -> int | None:
        kind, _, ident = self.stream.partition(":")
        return int(ident) if kind == "instance" and ident.isdigit() else None


@dataclass(frozen=True)
class Page:
    rows: list[EventRow]
    next_after: int | None  # the id to continue below; None on the last page


def _conditions(flt: AuditFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if flt.since is not None:
        conds.append(AuditEvent.at >= flt.since)
    if flt.until is not None:
        conds.append(AuditEvent.at < flt.until)
    if flt.actor:
        by_name = select(User.id).where(or_(User.username == flt.actor, User.display_name == flt.actor))
        conds.append(or_(AuditEvent.actor_name == flt.actor, AuditEvent.actor_id.in_(by_name)))
    if flt.action:
        action = flt.action.rstrip("*")
        if flt.action.endswith(("*", ".")):
            escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append(AuditEvent.action.like(escaped + "%", escape="\\"))
        else:
            conds.append(AuditEvent.action == action)
    if flt.process_key:
        streams = (select(literal("instance:") + cast(ProcessInstance.id, String))
                   .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                   .where(ProcessDefinition.key == flt.process_key))
        conds.append(or_(AuditEvent.stream == f"process:{flt.process_key}", AuditEvent.stream.in_(streams)))
    if flt.instance_id is not None:
        conds.append(AuditEvent.stream == f"instance:{flt.instance_id}")
    if flt.object_type:
        conds.append(AuditEvent.object_type == flt.object_type)
    if flt.object_id:
        conds.append(AuditEvent.object_id == flt.object_id)
    return conds


def _display_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {uid: display or username for uid, username, display in session.execute(
        select(User.id, User.username, User.display_name).where(User.id.in_(ids)))}


def _rows(session: Session, events: list[AuditEvent]) -> list[EventRow]:
    names = _display_names(session, {e.actor_id for e in events if e.actor_id is not None})
    return [EventRow(id=e.id, stream=e.stream, seq=e.seq, at=clock.as_utc(e.at),
                     actor=names.get(e.actor_id, e.actor_name) if e.actor_id is not None else "系统",
                     actor_name=e.actor_name, action=e.action, object_type=e.object_type, object_id=e.object_id,
                     before=e.before, after=e.after, hash=e.hash) for e in events]


def events(session: Session, flt: AuditFilter, *, after: int | None = None, limit: int = 50) -> Page:
    """Return one page of matching events, newest first, continuing below event id `after`."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(AuditEvent).where(*_conditions(flt))
    if after is not None:
        query = query.where(AuditEvent.id < after)
    found = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    rows = _rows(session, found[:limit])
    return Page(rows=rows, next_after=rows[-1].id if len(found) > limit else None)


def require_exportable(session: Session, flt: AuditFilter) -> None:
    """Refuse an export of more events than MAX_EXPORT, before its first byte: the file would be cut short, and one
    cut without a word is taken for the whole trail. Counts at most MAX_EXPORT + 1 rows.

    Raises: InvalidInput (field `since`: a narrower time range is the way out)
    """
    cap = MAX_EXPORT
    found = session.scalar(select(func.count()).select_from(
        select(AuditEvent.id).where(*_conditions(flt)).limit(cap + 1).subquery()))
    if (found or 0) > cap:
        raise InvalidInput(f"符合条件的审计记录超过 {cap} 条，无法一次导出，请缩小时间范围或筛选条件 "
                           f"(more than {cap} events match: narrow the time range or the filter)", field="since",
                           limit=cap)


def iter_events(session: Session, flt: AuditFilter, *, batch: int = 1000, cap: int | None = None) -> Iterator[EventRow]:
    """Yield every matching event oldest first (at most `cap`, MAX_EXPORT by default), reading in batches.

    Ends the session's (read-only) transaction after each batch: a long export must not hold SQLite's
    write lock (transactions begin IMMEDIATE there) while the rows travel to the client.
    """
    cap = MAX_EXPORT if cap is None else cap
    last, sent = 0, 0
    while sent < cap:
        found = list(session.scalars(select(AuditEvent).where(*_conditions(flt), AuditEvent.id > last)
                                     .order_by(AuditEvent.id).limit(min(batch, cap - sent))))
        rows = _rows(session, found)
        session.rollback()  # nothing was written; releases the lock and the loaded rows
        if not rows:
            return
        yield from rows
        sent += len(rows)
        last = rows[-1].id


def event(session: Session, event_id: int) -> EventRow:
    """Return one event.

    Raises: NotFound
    """
    found = session.get(AuditEvent, event_id)
    if found is None:
        raise NotFound(f"审计记录不存在 (no such event): {event_id}", event_id=event_id)
    return _rows(session, [found])[0]


def actions(session: Session) -> list[str]:
    """Return the actions that occur, for the filter's choices."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def object_types(session: Session) -> list[str]:
    """Return the object types that occur, for the filter's choices."""
    return list(session.scalars(select(AuditEvent.object_type).distinct().order_by(AuditEvent.object_type)))


# --- one instance's timeline -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    event: EventRow
    task_name: str | None
    bpmn_id: str | None
    opinion: str | None


@dataclass(frozen=True)
class Timeline:
    instance_id: int
    title: str
    process_key: str
    version: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    steps: list[Step] = field(default_factory=list)


def _task_id(ev: EventRow) -> int | None:
    if ev.object_type == "human_task" and ev.object_id.isdigit():
        return int(ev.object_id)
    value = ev.after.get("task_id") if isinstance(ev.after, dict) else None
    return value if isinstance(value, int) else None


def _opinion_from(data: Any) -> str | None:
    if not isinstance(data, Mapping):
        return None
    found = [str(v) for k, v in data.items() if isinstance(v, str) and v.strip()
             and any(word in str(k).lower() for word in OPINION_KEYS)]
    return "；".join(found) or None


def timeline(session: Session, instance_id: int) -> Timeline:
    """Return every audited step of one instance in order, with its actor, time, task and opinion.

    Raises: InstanceNotFound
    """
    found = session.execute(select(ProcessInstance, ProcessDefinition.key, ProcessVersion.version)
                            .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                            .join(ProcessVersion, ProcessVersion.id == ProcessInstance.version_id)
                            .where(ProcessInstance.id == instance_id)).first()
    if found is None:
        raise InstanceNotFound(f"流程实例不存在 (no such instance): {instance_id}", instance_id=instance_id)
    row, key, version = found
    raw = list(session.scalars(select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}")
                               .order_by(AuditEvent.seq)))
    actor_ids = {e.id: e.actor_id for e in raw}
    rows = _rows(session, raw)
    names = {t.id: (t.name, t.bpmn_id) for t in archive.tasks_of(session, instance_id)}  # archived steps too
    # Opinions by task and author: a delegated task carries the delegate's note and the completer's own opinion.
    opinions: dict[tuple[int, int | None], list[Comment]] = {}
    for comment in session.scalars(select(Comment).where(Comment.instance_id == instance_id, Comment.kind == "opinion",
                                                         Comment.task_id.is_not(None)).order_by(Comment.id)):
        opinions.setdefault((int(comment.task_id or 0), comment.author_id), []).append(comment)
    steps: list[Step] = []
    for ev in rows:
        task_id = _task_id(ev)
        task_name, bpmn_id = names.get(task_id, (None, None)) if task_id is not None else (None, None)
        if bpmn_id is None and isinstance(ev.after, dict) and isinstance(ev.after.get("bpmn_id"), str):
            bpmn_id = ev.after["bpmn_id"]
        opinion = None
        after = ev.after if isinstance(ev.after, dict) else {}
        if ev.action == "task.complete":
            given = [c.body for c in opinions.get((task_id or -1, actor_ids.get(ev.id)), [])]
            opinion = "；".join(given) if given else _opinion_from(after.get("data"))
        elif ev.action == "task.delegation_resolved" and isinstance(after.get("opinion"), str):
            opinion = after["opinion"] or None
        steps.append(Step(event=ev, task_name=task_name, bpmn_id=bpmn_id, opinion=opinion))
    return Timeline(instance_id=row.id, title=row.title, process_key=key, version=version, status=row.status,
                    started_at=clock.as_utc(row.started_at),
                    ended_at=clock.as_utc(row.ended_at) if row.ended_at else None, steps=steps)


# --- exports and the chain check -----------------------------------------------------------------------

def _cell(value: Any) -> str:
    """Return a cell's text: JSON for structures, and never a spreadsheet formula (CSV injection)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _values(row: EventRow) -> list[str]:
    at = row.at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
    # actor: who acted (the username recorded with the event); actor_name: their name as shown today
    return [str(row.id), at, _cell(row.actor_name), _cell(row.actor), _cell(row.action), _cell(row.object_type),
            _cell(row.object_id), _cell(row.stream), str(row.seq),
            _cell(row.before) if row.before is not None else "", _cell(row.after) if row.after is not None else "",
            row.hash]


def csv_chunks(rows: Iterator[EventRow]) -> Iterator[str]:
    """Yield a CSV (UTF-8 with BOM, so spreadsheet programs read Chinese right) piece by piece."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(EXPORT_COLUMNS)
    for i, row in enumerate(rows):
        writer.writerow(_values(row))
        if i % 500 == 499:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def xlsx_bytes(rows: Iterator[EventRow]) -> bytes:
    """Return the rows as an .xlsx workbook (every cell a string: no formulas)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)
    sheet = book.create_sheet("audit")
    sheet.append(list(EXPORT_COLUMNS))
    for row in rows:
        cells = []
        for value in _values(row):
            cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value)[:32767])
            cell.data_type = "s"
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@dataclass(frozen=True)
class Verification:
    report: audit.VerifyReport
    first_bad: EventRow | None  # the first altered or out-of-chain row, when there is one


def verify(session: Session) -> Verification:
    """Walk every chain and checkpoint; name the first broken row."""
    report = audit.verify(session)
    bad = None
    if report.first_bad_event_id is not None:
        found = session.get(AuditEvent, report.first_bad_event_id)
        bad = _rows(session, [found])[0] if found is not None else None
    return Verification(report=report, first_bad=bad)


__all__ = ["AuditFilter", "EventRow", "Page", "Step", "Timeline", "Verification", "actions", "csv_chunks", "event",
           "events", "iter_events", "may_audit", "object_types", "require_auditor", "require_exportable", "timeline",
           "verify", "xlsx_bytes"]
