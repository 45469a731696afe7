"""Archive tables mirror hot tables: the heavy parts of long-ended instances, out of what the inbox and sweeps scan.

The small process_instance row stays where it is (id, key, title, status, dates, `archived_at`), so every
foreign key to an instance stays valid and lists and search still find it. What moves: the serialized state
(`archive_instance_state`, runtime's models), the compacted history rounds and the instance's human_task rows
with their candidates. Each of these archive tables is built here from its hot table's columns, next to the hot
table's model (so a new hot column is a new archive column, and the migration test notices a migration that
forgot it); ids are kept, so audit events, comments and CCs naming a step still resolve.

Only engine.orm is imported here: the models modules call `mirror` while they are being imported.
"""
from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Column, ForeignKey, Index, Table

from engine.orm import Base


def table_of(model: Any) -> Table:
    """Return a mapped class's Table (typed)."""
    return cast(Table, model.__table__)


def mirror(hot: Table, name: str, references: dict[str, str], index: str) -> Table:
    """Return an archive table with `hot`'s columns, foreign keys only where `references` says (column → target),
    and an index on column `index`."""
    columns = [Column(c.name, c.type, *([ForeignKey(references[c.name])] if c.name in references else []),
                      primary_key=c.primary_key, nullable=c.nullable, autoincrement=False)
               for c in hot.columns]
    table = Table(name, Base.metadata, *columns)
    Index(f"ix_{name}_{index}", table.c[index])
    return table
