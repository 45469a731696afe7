"""Archive tables: the heavy parts of long-ended instances, out of the hot tables the inbox and sweeps scan.

The small process_instance row stays where it is (id, key, title, status, dates, `archived_at`), so every
foreign key to an instance stays valid and lists and search still find it. What moves: the serialized state,
the compacted history rounds, and the instance's human_task rows with their candidates. Each archive table
mirrors its hot table column for column (built from it, so a new hot column is a new archive column and the
migration test notices a missing one); ids are kept, so audit events naming a task still resolve.
"""
from __future__ import annotations

from typing import cast

from sqlalchemy import Column, ForeignKey, Index, Table

from engine.orm import Base
from engine.runtime.models import ArchivedState, ProcessStateHistory
from engine.tasks.models import HumanTask, TaskCandidate


def _mirror(hot: Table, name: str, references: dict[str, str]) -> Table:
    """Return an archive table with `hot`'s columns; foreign keys only where `references` says (column → target)."""
    columns = [Column(c.name, c.type, *([ForeignKey(references[c.name])] if c.name in references else []),
                      primary_key=c.primary_key, nullable=c.nullable, autoincrement=False)
               for c in hot.columns]
    return Table(name, Base.metadata, *columns)


hot_tasks = cast(Table, HumanTask.__table__)
hot_candidates = cast(Table, TaskCandidate.__table__)
hot_history = cast(Table, ProcessStateHistory.__table__)
archived_tasks = _mirror(hot_tasks, "archive_human_task", {"instance_id": "process_instance.id"})
Index("ix_archive_human_task_instance_id", archived_tasks.c.instance_id)
archived_candidates = _mirror(hot_candidates, "archive_task_candidate", {"task_id": "archive_human_task.id"})
Index("ix_archive_task_candidate_task_id", archived_candidates.c.task_id)
archived_history = _mirror(hot_history, "archive_process_state_history", {"instance_id": "process_instance.id"})
Index("ix_archive_process_state_history_instance_id", archived_history.c.instance_id)

# hot table → its archive, in the order rows are copied (parents first); deleted in the reverse order.
MIRRORS: tuple[tuple[Table, Table], ...] = (
    (hot_tasks, archived_tasks),
    (hot_candidates, archived_candidates),
    (hot_history, archived_history),
)

__all__ = ["MIRRORS", "ArchivedState", "archived_candidates", "archived_history", "archived_tasks", "hot_candidates",
           "hot_history", "hot_tasks"]
