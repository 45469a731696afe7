"""A save walks the settled task tree once for its READY user tasks and once for its next timer.

The audit event's summary (`waiting_summary`) and the projection both need the READY user tasks, and the summary
and the state row both need the next timer: each was a walk of the tree of its own, two more a completion.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import runtime
from engine.audit.models import AuditEvent
from engine.org.actors import Actor
from engine.runtime import core as runtime_core
from engine.runtime.models import ProcessInstance
from engine.spiff import timers
from engine.spiff import workflow as spiff
from tests.engine.test_hot_instances import _complete, _fresh_cache, _open, _start, clerk  # noqa: F401 # fixtures

__all__: list[str] = []


def _counting(monkeypatch: pytest.MonkeyPatch, walks: Counter[str], module: Any, name: str) -> None:
    real: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        walks[name] += 1
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, counted)


def test_a_completion_walks_the_tree_once_for_each(monkeypatch: pytest.MonkeyPatch, factory: sessionmaker[Session],
                                                   session: Session, clerk: Actor) -> None:  # noqa: F811
    instance_id = _start(session, clerk)
    walks: Counter[str] = Counter()
    _counting(monkeypatch, walks, spiff, "ready_user_tasks")
    _counting(monkeypatch, walks, timers, "next_timer_at")
    _complete(factory, instance_id, clerk)
    assert walks == {"ready_user_tasks": 1, "next_timer_at": 1}
    with factory() as check:  # what the one walk found went everywhere: the summary, the projection, the row
        event = check.scalars(select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}")
                              .order_by(AuditEvent.seq.desc())).first()
        assert event is not None
        after = json.loads(event.after) if isinstance(event.after, str) else event.after
        assert after["ready"] == [_open(check, instance_id).bpmn_id]
        row = check.get(ProcessInstance, instance_id)
        assert row is not None
        assert after["next_timer_at"] is None and row.next_timer_at is None


def test_the_walks_are_not_kept_past_the_save(factory: sessionmaker[Session], session: Session,
                                              clerk: Actor) -> None:  # noqa: F811
    instance_id = _start(session, clerk)
    seen: list[Any] = []
    with factory() as s:
        running = runtime.load(s, instance_id)

        def failing_event() -> Any:
            seen.append(running.settled)
            raise RuntimeError("the audit event failed")
        with pytest.raises(RuntimeError):
            runtime_core.save(s, running, event=failing_event)
        assert seen and seen[0] is not None  # the event saw the walks …
        assert running.settled is None  # … and a failed save does not leave them for a later summary
