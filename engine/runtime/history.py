"""Finished steps compacted out of an instance's live state (engine.spiff.compaction) read back from history.

Earlier rounds of a loop are read as data only (the task page). A finished subprocess is restored whole: beside the
live workflow for a look (the task page, whether 撤回 may reach a step in it), or back into it for the 撤回 itself.
"""
from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.runtime.models import ProcessStateHistory
from engine.runtime.running import Running
from engine.spiff import serializer
from engine.spiff import workflow as spiff
from engine.spiff.workflow import Task, Workflow, find_task

log = logging.getLogger(__name__)


def compacted_task_data(session: Session, instance_id: int, task_guid: str,
                        base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The data to show for a task compacted out of the live state into history (None: not there either).

    SpiffWorkflow keeps a task's data as a change (`delta`) over its parent's, and the parents of a compacted
    round are compacted too; so this is the instance's current data (`base`) with the task's own change
    applied: the values the step itself set are exact, the rest is as the instance holds them now.
    """
    rows = session.scalars(select(ProcessStateHistory.tasks).where(ProcessStateHistory.instance_id == instance_id,
                                                                   ProcessStateHistory.tasks.contains(task_guid))
                           .order_by(ProcessStateHistory.id.desc()))  # only the rows naming it leave the database
    for text in rows:
        if task_guid not in text:  # SQLite's LIKE ignores case
            continue
        tasks = json.loads(text).get("tasks") or []
        for found in tasks.values() if isinstance(tasks, dict) else tasks:
            if not (isinstance(found, dict) and str(found.get("id")) == task_guid):
                continue
            data = dict(base or {})
            data.update(found.get("data") or {})
            delta = found.get("delta") or {}
            data.update(delta.get("updates") or {})
            for name in delta.get("deletions") or []:
                data.pop(name, None)
            return data
    return None


def _archived_subprocess(session: Session, workflow: Workflow, instance_id: int,
                         task_guid: str) -> tuple[Task, dict[str, Any]] | None:
    """The latest archived copy of the finished subprocess holding the task, and the live task that ran it.

    None when the task is in no compacted subprocess, or in one whose parent task is not live (an earlier round of a
    loop, compacted with it) or that runs again (a reset made it anew since).
    """
    rows = session.scalars(select(ProcessStateHistory.tasks).where(ProcessStateHistory.instance_id == instance_id,
                                                                   ProcessStateHistory.tasks.contains(task_guid))
                           .order_by(ProcessStateHistory.id.desc()))
    for text in rows:
        subprocesses = json.loads(text).get("subprocesses") or {}
        for sub_id, dct in subprocesses.items() if isinstance(subprocesses, dict) else ():
            if not (isinstance(dct, dict) and task_guid in (dct.get("tasks") or {}) and dct.get("completed")):
                continue
            parent = find_task(workflow, sub_id)
            if parent is None or parent.id in workflow.subprocesses or not spiff.is_completed(parent):
                return None
            return parent, dct
    return None


def _restored(instance_id: int, dct: dict[str, Any], parent: Task, workflow: Workflow) -> Workflow | None:
    """Restore a history copy of a subprocess under its live parent task; None when it no longer restores (a later
    version renamed or dropped its steps, or the row is damaged): its steps are then out of reach, as a step the
    process has moved past is (撤回 refused with its reason, never an error)."""
    try:
        sub: Workflow = serializer.SERIALIZER.registry.restore(dct, task=parent, top_workflow=workflow)
    except Exception:  # whatever a stored copy that does not fit the version's specs raises
        log.warning("instance %s: the history copy of subprocess %s does not restore", instance_id, parent.id,
                    exc_info=True)
        return None
    return sub


def compacted_task(session: Session, running: Running, task_guid: str) -> Task | None:
    """A task of a finished subprocess compacted into history, restored beside the live workflow, not into it (a look:
    the task page, whether 撤回 may reach it). None: not there."""
    found = _archived_subprocess(session, running.workflow, running.row.id, task_guid)
    if found is None:
        return None
    parent, dct = found
    sub = _restored(running.row.id, dct, parent, running.workflow)
    task: Task | None = sub.tasks.get(UUID(task_guid)) if sub is not None else None
    return task


def reattach(session: Session, running: Running, task_guid: str) -> Task | None:
    """Put the compacted subprocess holding the task back into the live workflow (撤回 reopens a step in it, as it did
    before the subprocess left); the next saves compact it again once it has finished. None: not there."""
    found = _archived_subprocess(session, running.workflow, running.row.id, task_guid)
    if found is None:
        return None
    parent, dct = found
    workflow = running.workflow
    sub = _restored(running.row.id, dct, parent, workflow)
    if sub is None:
        return None
    workflow.subprocesses[parent.id] = sub
    sub.completed_event.connect(parent.task_spec._on_subworkflow_completed, parent)  # as SpiffWorkflow's restore does
    _in_restore_order(workflow)
    return find_task(workflow, task_guid)


def _in_restore_order(workflow: Workflow) -> None:
    """Order the subprocesses as restoring the saved state does (by their tasks, parents first), so that the workflow
    kept in memory dumps as a restart restores it (engine.runtime.hot)."""
    subs = workflow.subprocesses
    order: list[Any] = []
    stack = [workflow]
    while stack:
        flow = stack.pop()
        found = [t for t in flow.tasks if t in subs and t not in order]
        order.extend(found)
        stack.extend(subs[t] for t in reversed(found))
    kept = {k: subs[k] for k in order + [k for k in subs if k not in order]}
    subs.clear()
    subs.update(kept)
