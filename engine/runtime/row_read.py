"""An instance's row as `runtime.load` reads it: with its audit head, its open bpmn rows when asked, locked when asked.

The state travels once, and not at all when this process holds the workflow at the row's lock_version
(hot.kept_lock_version): it is used only when the hot-instance cache has no workflow at that version. With several
processes and no affinity that is often, and reading it afterwards cost a round trip more, so it comes along then;
but with the open rows it came once per row of the join (a 并联审批 with six departments at work carried its 88 KB six
times), and for an instance this process holds hot (a page looked at, a message delivered to an instance this worker
saved) it was read for nothing. The state column is deferred on the row: left out, it is expired, not NULL, and read
in the transaction when something asks for it (the workflow was taken or evicted meanwhile).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, func, null, or_, select
from sqlalchemy.orm import Session, aliased, defer
from sqlalchemy.orm.attributes import set_committed_value

from engine.audit.models import AuditHead
from engine.runtime import hot
from engine.runtime.models import INSTANCE_MOVED, INSTANCE_STREAM, ProcessInstance
from engine.tasks.models import HumanTask, is_open

_other = aliased(HumanTask, name="first_open")
_FIRST_OPEN = (select(func.min(_other.id)).where(_other.instance_id == bindparam("instance_id"), _other.kind == "bpmn",
                                                 is_open(_other.state)).scalar_subquery())


def _statement(with_open_rows: bool, lock: bool) -> Any:
    """Build one of the reads (once: their cache keys are then computed once)."""
    sent = ProcessInstance.lock_version.is_distinct_from(bindparam("hot_lv", type_=Integer))
    if with_open_rows:  # on the first open row's line only (or the one line of an instance with none)
        sent = and_(sent, or_(HumanTask.id.is_(None), HumanTask.id == _FIRST_OPEN))
    statement = (select(ProcessInstance, AuditHead.seq, AuditHead.hash,
                        case((sent, ProcessInstance.state), else_=null()).label("state_once"))
                 .outerjoin(AuditHead, AuditHead.stream == INSTANCE_STREAM)
                 .where(ProcessInstance.id == bindparam("instance_id"))
                 .options(defer(ProcessInstance.state)).execution_options(populate_existing=True))
    if with_open_rows:  # through uq_human_task_guid_open: a looping instance's finished rows are never read
        statement = statement.add_columns(HumanTask).outerjoin(HumanTask, and_(
            HumanTask.instance_id == ProcessInstance.id, HumanTask.kind == "bpmn", is_open(HumanTask.state)))
    if lock:
        statement = statement.add_columns(INSTANCE_MOVED).with_for_update(of=ProcessInstance)
    return statement


_READS = {(w, lk): _statement(w, lk) for w in (False, True) for lk in (False, True)}


def read(session: Session, instance_id: int, *, with_open_rows: bool, lock: bool) -> list[Any]:
    """Run the read; its rows are (instance, head seq, head hash, state or None, [open row], [moved]), the
    instance's state set as read or expired (read when asked for)."""
    statement = _READS[(with_open_rows, lock)]
    params = {"instance_id": instance_id, "hot_lv": hot.kept_lock_version(session, instance_id)}
    found = session.execute(statement, params).all()
    # A locked read that waited for a save gets the row as committed but its open rows and the head from its
    # snapshot: INSTANCE_MOVED tells, and it reads again, the lock held.
    if lock and found and found[0][-1]:
        found = session.execute(statement, params).all()
    if found:
        row = found[0][0]
        state = next((r[3] for r in found if r[3] is not None), None)
        if state is not None:
            set_committed_value(row, "state", state)
        else:  # hot here, or an instance without one: read if asked for
            session.expire(row, ["state"])
    return list(found)


__all__ = ["read"]
