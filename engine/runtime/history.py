"""Finished steps compacted out of an instance's live state (engine.spiff.compaction) read back from history."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.runtime.models import ProcessStateHistory


def compacted_task_data(session: Session, instance_id: int, task_guid: str,
                        base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The data to show for a task compacted out of the live state into history (None: not there either).

    SpiffWorkflow keeps a task's data as a change (`delta`) over its parent's, and the parents of a compacted
    round are compacted too; so this is the instance's current data (`base`) with the task's own change
    applied: the values the step itself set are exact, the rest is as the instance holds them now.
    """
    rows = session.scalars(select(ProcessStateHistory.tasks).where(ProcessStateHistory.instance_id == instance_id)
                           .order_by(ProcessStateHistory.id.desc()))
    for text in rows:
        if task_guid not in text:
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
