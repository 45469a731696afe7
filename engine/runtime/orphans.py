"""Co-signers (加签) and 申请延期 left waiting on a step that is already closed: repaired after an upgrade.

Since migration 0039's release a save that closes a step closes its waiting co-signers and pending requests with it
(engine/runtime/linked.py). A database from before kept them: a co-signer's task stayed in their inbox for good, to be
refused when signed, and a leader was still asked to decide a request about a step nobody can act on any more.

`close_orphans` finds them and closes them as the save would have, one instance at a time: the instance row first
(the lock order of every unit of work that changes an instance), the waiting rows read again under that lock, then
`linked.close`, one audit event on the instance's stream naming what it closed, and a 任务已取消 notice to each
co-signer who had been asked. Run again, it finds nothing: `jzflow migrate` (and `init-db`) runs it after every
upgrade, in ordinary transactions, because a migration cannot record audit events (the audit chain is appended when
the unit of work commits, and alembic commits on its own).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from engine import audit, clock
from engine.deadlines.models import ExtensionRequest
from engine.org.actors import SYSTEM
from engine.runtime import linked
from engine.runtime.models import ProcessInstance
from engine.tasks.models import OPEN_STATES, HumanTask

ACTION = "task.orphans_close"
REASON = "所属任务已结束，此加签任务不再需要办理 (the task it was added to has ended: nothing is left to sign)"
BATCH = 200  # instances per transaction

_parent = aliased(HumanTask, name="parent")
_COSIGNERS = (select(_parent.instance_id, _parent.id)
              .join(HumanTask, HumanTask.parent_task_id == _parent.id)
              .where(HumanTask.kind == "cosign", HumanTask.state.in_(linked.WAITING),
                     _parent.state.not_in(OPEN_STATES), _parent.kind == "bpmn"))
_REQUESTS = (select(HumanTask.instance_id, HumanTask.id)
             .join(ExtensionRequest, ExtensionRequest.object_id == HumanTask.id)
             .where(ExtensionRequest.object_type == "task", ExtensionRequest.status == "pending",
                    HumanTask.state.not_in(OPEN_STATES), HumanTask.kind == "bpmn"))


@dataclass
class Repaired:
    instances: int = 0
    cosigners: int = 0
    requests: int = 0


def find(session: Session) -> dict[int, list[int]]:
    """The closed steps that still have a waiting co-signer or a pending 申请延期, by instance."""
    found: dict[int, set[int]] = defaultdict(set)
    for statement in (_COSIGNERS, _REQUESTS):
        for instance_id, task_id in session.execute(statement):
            found[instance_id].add(task_id)
    return {instance_id: sorted(ids) for instance_id, ids in sorted(found.items())}


def close_orphans(session: Session, *, commit: bool = True) -> Repaired:
    """Close what `find` finds, instance by instance, committing every BATCH instances when `commit` (else the
    caller commits); return what was closed."""
    repaired = Repaired()
    for n, (instance_id, parents) in enumerate(find(session).items(), start=1):
        _close(session, instance_id, parents, repaired)
        if commit and n % BATCH == 0:
            session.commit()
    if commit:
        session.commit()
    return repaired


def _close(session: Session, instance_id: int, parents: list[int], repaired: Repaired) -> None:
    session.execute(select(ProcessInstance.id).where(ProcessInstance.id == instance_id).with_for_update())
    # read again under the instance's lock: another repair, or the rows' own people, may have closed them since
    cosigners = set(session.scalars(select(HumanTask.id).where(
        HumanTask.parent_task_id.in_(parents), HumanTask.kind == "cosign", HumanTask.state.in_(linked.WAITING))))
    requests = set(session.scalars(select(ExtensionRequest.id).where(
        ExtensionRequest.object_type == "task", ExtensionRequest.status == "pending",
        ExtensionRequest.object_id.in_(parents + sorted(cosigners)))))
    if not cosigners and not requests:
        return
    was = linked.close(session, parents, clock.now())
    asked = [c for c, state in was if state in linked.ASKED]
    audit.record(session, SYSTEM, ACTION, stream=f"instance:{instance_id}", object_type="process_instance",
                 object_id=instance_id, after={"tasks": parents, "cosigners": [c for c, _ in was],
                                               "extension_requests": sorted(requests)})
    linked.tell_cancelled(session, asked, REASON)  # the co-signers who had been asked
    repaired.instances += 1
    repaired.cosigners += len(was)
    repaired.requests += len(requests)


__all__ = ["ACTION", "Repaired", "close_orphans", "find"]
