"""New human_task rows and their candidates written with Core statements, then attached to the session as loaded.

The ORM's unit of work cost about a millisecond of every completion for these two INSERTs (bench/engine.py
--profile). Here the rows go in with one INSERT … RETURNING id per table (several rows in one statement), and
the objects built for them become persistent without another statement: `make_transient_to_detached` gives
them their identity, `session.add` attaches them, and nothing is left for a flush to write.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, make_transient_to_detached

from engine.archive.mirror import table_of
from engine.tasks.models import HumanTask, TaskCandidate

_TASKS, _CANDIDATES = table_of(HumanTask), table_of(TaskCandidate)
_INSERT = {table.name: insert(table).returning(table.c.id, sort_by_parameter_order=True)
           for table in (_TASKS, _CANDIDATES)}


def _rows(objects: Sequence[Any], table: Table) -> list[dict[str, Any]]:
    """Column values of each object, column defaults applied to the object too; all-None columns left out.

    Leaving them out makes them SQL NULL, as the ORM would (a JSON column given None would store JSON null).
    """
    rows: list[dict[str, Any]] = []
    for obj in objects:
        row: dict[str, Any] = {}
        for column in table.columns:
            if column.primary_key:
                continue
            value = getattr(obj, column.key)
            default = column.default
            if value is None and default is not None and (default.is_scalar or default.is_callable):
                value = default.arg if default.is_scalar else default.arg(None)  # type: ignore[attr-defined]
                setattr(obj, column.key, value)
            row[column.key] = value
        rows.append(row)
    unused = {key for key in rows[0] if all(row[key] is None for row in rows)}
    return [{key: value for key, value in row.items() if key not in unused} for row in rows]


def _insert(session: Session, objects: Sequence[Any], table: Table) -> None:
    ids = session.execute(_INSERT[table.name], _rows(objects, table)).scalars().all()
    for obj, new_id in zip(objects, ids, strict=True):
        obj.id = new_id


def insert_tasks(session: Session, tasks: Sequence[HumanTask]) -> None:
    """Insert new (transient) human tasks and their candidates and make them persistent, as a flush would."""
    if not tasks:
        return
    _insert(session, tasks, _TASKS)
    candidates = [c for task in tasks for c in task.candidates]
    for task in tasks:
        for candidate in task.candidates:
            candidate.task_id = task.id
    if candidates:
        _insert(session, candidates, _CANDIDATES)
    for candidate in candidates:
        make_transient_to_detached(candidate)
    for task in tasks:
        make_transient_to_detached(task)
        session.add(task)  # the candidates come along (cascade): detached, so nothing to insert


__all__ = ["insert_tasks"]
