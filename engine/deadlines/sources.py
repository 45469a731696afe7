"""Kinds of watched objects besides human tasks, registered by the application (e.g. its cases or assets).

A source says how to find its open objects' deadlines (for `sla.watch_all`) and how the escalation
ladder sees one of them (`Target`: title, link, people, unit). Its policies are the section of the
escalation file named by `section`. The engine knows no kind but `task` by itself.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import extensions
from engine.deadlines.objects import Deadline, Org, Target

DeadlineReader = Callable[[Session, Sequence[int] | None], dict[int, Deadline]]
TargetReader = Callable[[Session, Sequence[int], Org], dict[int, Target]]


@dataclass(frozen=True)
class Source:
    """How the deadline sweep reads one kind of object."""

    object_type: str
    section: str
    deadlines: DeadlineReader
    targets: TargetReader


_sources: dict[str, Source] = {}
_lock = threading.Lock()


def register(source: Source) -> None:
    """Add (or replace) the source of one object type; `task` is the engine's own."""
    if source.object_type == "task":
        raise ValueError("object type 'task' belongs to the engine")
    with _lock:
        _sources[source.object_type] = source


def registered() -> list[Source]:
    """Return the registered sources, in the order they were added."""
    extensions.load()
    return list(_sources.values())


def get(object_type: str) -> Source | None:
    """Return the source of an object type, None when no extension registered it."""
    return next((s for s in registered() if s.object_type == object_type), None)


def section_of(object_type: str) -> str:
    """Return the escalation file's section holding an object type's policies."""
    if object_type == "task":
        return "tasks"
    source = get(object_type)
    return source.section if source else f"{object_type}s"
