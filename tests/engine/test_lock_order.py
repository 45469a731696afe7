"""A submission and the timer sweep, 终止 or a message delivery at once (PostgreSQL: row locks; SQLite has one writer).

A submission locked its task's row and then the instance's; the sweep and 终止 the instance's and then the task's.
Run at once, each waited for the other until PostgreSQL ended one as a deadlock (after a second: a 40x and a stall).
Now every writer takes the instance first (a submission FOR KEY SHARE in its first read): one waits for the other,
one wins whole, the other is refused cleanly (409) or, the sweep, fires at its next run.
"""
from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, tasks
from engine.errors import EngineError, InstanceNotRunning
from engine.org.actors import Actor, actor_for
from engine.runtime import core as runtime_core
from engine.runtime import instances, projection, timers
from engine.runtime.models import ProcessInstance
from engine.tasks import lookup
from engine.tasks.models import HumanTask
from tests.engine.test_cosigners_closed import _fire_at_once, start
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)


def _submit(task_id: int) -> Work:
    return lambda s: tasks.complete(s, task_id=task_id, actor=actor_for(s, "fg"), data={"fg_says": "同意"})


def _terminate(instance_id: int) -> Work:
    return lambda s: instances.terminate(s, instance_id=instance_id, actor=actor_for(s, "admin"))


def _steps(factory: sessionmaker[Session], instance_id: int) -> tuple[str, dict[str, str]]:
    with factory() as s:
        row = s.get(ProcessInstance, instance_id)
        assert row is not None
        return row.status, {t.bpmn_id: t.state for t in s.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.kind == "bpmn"))}


def _refused(outcome: object) -> None:
    assert isinstance(outcome, lookup.TaskAlreadyDone), outcome
    assert outcome.http_status == 409 and outcome.code == "task_already_done"


def _verified(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        assert audit.verify(s).ok


def test_a_submission_made_while_the_sweep_fires_its_timer_waits_and_is_refused(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """The sweep holds the instance (take_due) when fg submits: the submission waits for it (was: a deadlock, one of
    the two ended by PostgreSQL), then finds the review closed by the timer (409) and writes nothing."""
    instance_id, review = start(session, review_org)
    session.close()
    clock.advance(timedelta(hours=2))
    meanwhile.at(timers, "fire_taken", _submit(review.id))
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    [submitted] = meanwhile.join()
    _refused(submitted)
    assert _steps(factory, instance_id) == ("running", {"review": "cancelled", "escalate": "ready"})
    _verified(factory)


def test_the_sweep_passes_by_an_instance_whose_task_is_being_submitted_and_the_submission_wins(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """fg's submission has read its task (the instance key-share locked) when the sweep runs: the sweep skips the
    instance (SKIP LOCKED), the submission completes the review, and the next sweep has nothing left to fire."""
    instance_id, review = start(session, review_org)
    session.close()
    clock.advance(timedelta(hours=2))
    meanwhile.at(projection, "write_postgres", lambda s: _fire_at_once(s))
    assert _act(factory, lambda s, a: _submit(review.id)(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == ("completed", {"review": "completed"})
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    assert _steps(factory, instance_id) == ("completed", {"review": "completed"})
    _verified(factory)


def test_a_submission_made_while_an_admin_terminates_waits_and_is_refused(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """终止 has read the instance when fg submits: the submission waits for it, then finds the review cancelled (409)."""
    instance_id, review = start(session, review_org)
    session.close()
    meanwhile.at(runtime_core, "load", _submit(review.id), after=True)
    assert _act(factory, lambda s, a: _terminate(instance_id)(s)) == "done"
    [submitted] = meanwhile.join()
    _refused(submitted)
    assert _steps(factory, instance_id) == ("terminated", {"review": "cancelled"})
    _verified(factory)


def test_an_admin_terminating_while_a_submission_is_under_way_waits_for_it(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """fg's submission has read its task when the admin terminates: 终止 waits, then finds the instance completed."""
    instance_id, review = start(session, review_org)
    session.close()
    meanwhile.at(projection, "write_postgres", _terminate(instance_id))
    assert _act(factory, lambda s, a: _submit(review.id)(s)) == "done"
    [terminated] = meanwhile.join()
    assert isinstance(terminated, InstanceNotRunning) and terminated.http_status == 409, terminated
    assert _steps(factory, instance_id) == ("completed", {"review": "completed"})
    _verified(factory)


def _race(factory: sessionmaker[Session], works: list[Work]) -> list[object]:
    """Run the works at once, each in its own session and thread (a barrier before each begins); deadlock_timeout short
    so a deadlock shows at once."""
    barrier, outcomes = threading.Barrier(len(works)), [None] * len(works)

    def run(i: int, work: Work) -> None:
        with factory() as s:
            s.execute(text("SET lock_timeout = '20s'"))
            barrier.wait(10)
            try:
                work(s)
                s.commit()
                outcomes[i] = "done"  # type: ignore[call-overload]
            except (EngineError, OperationalError) as exc:
                s.rollback()
                outcomes[i] = exc  # type: ignore[call-overload]

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(works)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return list(outcomes)


@pytest.mark.parametrize("other", ["timer", "terminate"])
def test_submissions_racing_the_sweep_or_terminate_never_deadlock(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, other: str) -> None:  # noqa: F811
    """Started at once, a few times over, in both orders: never a deadlock; one wins whole, the other is refused
    cleanly (409), or the sweep fires the timer at its next run (here: nothing left when the submission won)."""
    for round_ in range(4):
        instance_id, review = start(session, review_org)
        session.close()
        if other == "timer":
            clock.advance(timedelta(hours=2))
            rival: Work = lambda s: _fire_at_once(s)  # noqa: E731
        else:
            rival = _terminate(instance_id)
        works = [_submit(review.id), rival] if round_ % 2 else [rival, _submit(review.id)]
        outcomes = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        submitted = outcomes[0] if round_ % 2 else outcomes[1]
        if other == "timer":
            _act(factory, lambda s, a: _fire_at_once(s))  # the next sweep
        status, steps = _steps(factory, instance_id)
        if submitted == "done":
            assert (status, steps) == ("completed", {"review": "completed"})
        else:
            _refused(submitted)
            assert steps["review"] == "cancelled"
            assert status == ("running" if other == "timer" else "terminated")
    _verified(factory)
