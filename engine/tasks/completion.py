"""Finishing a user task: complete its SpiffWorkflow task, run the engine, save, audit (flushes)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine import runtime
from engine.audit import anchor as audit_anchor
from engine.org.actors import Actor
from engine.runtime import linked
from engine.runtime.running import Completing
from engine.tasks.lookup import is_candidate
from engine.tasks.models import HumanTask


@dataclass(frozen=True)
class Completion:
    instance_id: int
    status: str
    incident: str | None
    next_tasks: list[int]
    mine_next: int | None = None  # the first new step the actor holds or may claim: where to take them next


def finish(session: Session, *, task: HumanTask, running: runtime.Running, actor: Actor,
           data: dict[str, Any], submitted_now: bool = True, fields: Iterable[str] = ()) -> Completion:
    """Complete the task's SpiffWorkflow task with validated data, run the engine and save (flushes).

    `submitted_now`: the actor submits the data now, and is refused (FormInvalid, nothing saved) when it would make
    the state too large or a service in the steps that follow refuses a field of it (`fields`: the form's, besides the
    keys of `data`; engine/runtime/refusal.py); False when the holder submitted it earlier (held for co-signers): an
    incident then. A refusal leaves writes in the session: the caller rolls its transaction (or savepoint) back.

    Raises: FormInvalid (the data would make the workflow state too large: engine/runtime/oversize.py),
    SubmissionRefused (a service refused it)
    """
    row = running.row
    running.submitted = data if submitted_now else None
    running.refusable = frozenset(fields) | frozenset(data) if submitted_now else None
    events_before = len(audit_anchor.deferred(session))
    running.completing = Completing(task, data, events_before)
    with session.no_autoflush:  # one flush at the end, not one per query
        try:
            runtime.complete_user_task(running, task.task_guid, data, actor)
        except Exception as exc:  # a postScript failed: the task is done, the instance stops
            if not runtime.is_engine_error(exc):
                raise
            runtime.release(exc)
            runtime.refuse(running, exc)
            runtime.open_incident(session, running, exc, actor)
        if running.row.status == "running":
            runtime.run(session, running, actor)
        if task.assignee_id is None:
            task.assignee_id = actor.user_id  # completing a group task claims it implicitly
        task.completed_by_id = actor.user_id
        # the documents its run issued (联合出证's 联合意见书) stay with the step: every 审批单 names them beside it.
        # Imported here: submissions reaches engine.runtime, whose import (from engine.deploy) reaches this module.
        from engine.tasks import submissions
        issued = submissions.issued_in_run(session, row.id, events_before)
        runtime.save(session, running, event=lambda: runtime.new_event(
            running, actor, "task.complete", after={"task_id": task.id, "bpmn_id": task.bpmn_id, "data": data,
                                                    **({"documents": issued} if issued else {}),
                                                    **runtime.waiting_summary(running)}))
        linked.tell(session, running, actor, "task.complete")  # who held what it cancelled (a gateway, an end)
    return Completion(instance_id=row.id, status=running.row.status,
                      incident=running.incident.message if running.incident else None,
                      next_tasks=[t.id for t in running.created_tasks if t.state == "ready"],
                      mine_next=next((t.id for t in running.created_tasks if t.state == "ready" and (
                          t.assignee_id == actor.user_id or (t.assignee_id is None and is_candidate(t, actor)))),
                                     None))


__all__ = ["Completion", "finish"]
