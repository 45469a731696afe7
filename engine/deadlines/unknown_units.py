"""Tell the process owners once that a task's escalationUnit names no unit (督办升级单位不存在).

The unit head's rung of such a task names nobody and passes to the rung above (`escalation.named`), and each step's
audit event records the name. The process owners (the administrators when there is none) are told once per process,
element and name, however many tasks climb past it, in this sweep or a later one: an audit event on the instance and
an in-app note, through `engine.runtime.assignment`'s notes to process owners, whose dedupe keys remember it. A batch
tells at most MAX_REPORTS of them (a later batch that meets the others tells them). Two workers' batches meeting the
same element at once (different tasks: SKIP LOCKED) meet on the notes' unique key: the second waits for the first and
takes it as told (a savepoint), rather than failing its batch. The name, the element and the process come from the
model: they are shown as `told_name` shows a name (printable, cut).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import audit
from engine.deadlines.objects import UnitUnknown
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM
from engine.runtime.owner_notes import MAX_TOLD, note_owners, owners, told_keys, told_name

MAX_REPORTS = MAX_TOLD  # elements told per batch


def _key(found: UnitUnknown) -> str:
    digest = hashlib.sha256(f"{found.process_key}\0{found.bpmn_id}\0{found.name}".encode()).hexdigest()[:40]
    return f"escalation_unit_unknown:{digest}"


def _told_before(session: Session, keys: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    for i in range(0, len(keys), 900):
        seen.update(k for k in session.scalars(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.dedupe_key.in_(keys[i:i + 900]))) if k)
    return seen


def tell(session: Session, found: Sequence[UnitUnknown]) -> int:
    """Tell the process owners of each element and name not told before, at most MAX_REPORTS; return how many."""
    distinct = list({(u.process_key, u.bpmn_id, u.name): u for u in reversed(found)}.values())[::-1]
    if not distinct:
        return 0
    told_to = owners(session)
    seen = _told_before(session, [k for u in distinct for o in told_to for k in told_keys(_key(u), o)])
    told = 0
    for u in distinct:
        if told >= MAX_REPORTS:
            break
        key = _key(u)
        if any(k in seen for o in told_to for k in told_keys(key, o)):
            continue
        process, element, task = told_name(u.process_key), told_name(u.bpmn_id), told_name(u.task_name)
        args = {"process": process, "element": element, "task": task, "name": u.name}
        try:
            with session.begin_nested():  # another worker's batch may be telling it now: its key wins, ours waits
                note_owners(session, told_to, u.instance_id, "escalation_unit_unknown", args, key=key)
        except IntegrityError:
            continue  # told by the other batch, which committed first
        audit.record(session, SYSTEM, "task.escalation_unit_unknown", stream=f"instance:{u.instance_id}",
                     object_type="process_instance", object_id=u.instance_id,
                     after={"process_key": process, "bpmn_id": element, "property": "escalationUnit", "name": u.name})
        told += 1
    return told


__all__ = ["MAX_REPORTS", "tell"]
