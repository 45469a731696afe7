"""Moving an instance to another version while a submission, the timer sweep or 终止 acts on it (PostgreSQL: row locks).

`versions.migrate_one` loaded the instance without a lock: its save's UPDATE took the instance's row and then it
rewrote the open task rows (form, SLA, lane of the new version). A submission share-locks the instance in its first
read (FOR KEY SHARE, which a plain UPDATE does not wait for), then its save locks its task's row and updates the
instance: run at once, each waited for the other until PostgreSQL ended one as a deadlock. Against the sweep and 终止
(the instance FOR UPDATE first) the unlocked migration lost every time: it computed the move on a state they had
already replaced and was refused (ConcurrentModification) after they committed. Now a migration takes the instance in
its load's one read (`runtime.load(…, lock=True)`), as every other writer does, before any task row: whichever comes
second waits, and then works on the state the first left (or, the sweep, passes the instance by and fires on the new
version at its next run). `versions.migrate` (the 迁移实例 page's) locked its list in id order before it loaded, and
passed these cases before too: its runs ("many") keep it so.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, runtime
from engine.audit.models import AuditEvent
from engine.deploy import versions
from engine.errors import InstanceBusy, InstanceNotRunning
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import core as runtime_core
from engine.runtime import projection, timers
from engine.runtime.models import ProcessInstance, ProcessVersion
from tests.engine.test_cosigners_closed import TIMED, _fire_at_once, start
from tests.engine.test_lock_order import _race, _steps, _submit, _terminate, _verified
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)

# the same process, its review with an SLA of its own: the migration rewrites the review's open row
TIMED_V2 = TIMED.replace(
    'targetNamespace="t"', 'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" targetNamespace="t"'
).replace('<bpmn:userTask id="review" name="部门审查">',
          '<bpmn:userTask id="review" name="部门审查"><bpmn:extensionElements><spiffworkflow:properties>'
          '<spiffworkflow:property name="sla" value="5wd" /></spiffworkflow:properties></bpmn:extensionElements>')


@pytest.fixture(autouse=True)
def _fresh_spec_cache() -> Iterator[None]:
    runtime._spec_cache.clear()  # version ids repeat across the throwaway databases
    yield
    runtime._spec_cache.clear()


class Case(NamedTuple):
    instance: int
    review: int
    target: int  # the new version's id
    old: int  # version numbers: the one the instance started on, the one it may move to
    new: int


def started(session: Session, org: dict[str, Actor]) -> Case:
    """Start one on the process as it was (fg has claimed its review), then deploy it with the review's new SLA
    (commits, closes). Each call deploys both anew: the versions go on counting."""
    instance_id, review = start(session, org)
    deploy.deploy(session, {"timed.bpmn": TIMED_V2.encode()}, actor=SYSTEM)
    session.commit()
    target = deploy.latest_version(session, "timed_review")
    assert target is not None
    case = Case(instance_id, review.id, target.id, target.version - 1, target.version)
    session.close()
    return case


def _migrate(instance_id: int, target_id: int, how: str = "one") -> Work:
    """Move it with `migrate_one`, or with the page's `migrate` of a list (its refusal raised as migrate_one's)."""
    def many(s: Session) -> None:
        report = versions.migrate(s, [instance_id], target_id, actor_for(s, "admin"))
        if instance_id in report.refused:
            raise versions.MigrationRefused(instance_id, report.refused[instance_id])
        assert report.migrated == [instance_id], report

    if how == "many":
        return many
    return lambda s: versions.migrate_one(s, instance_id, target_id, actor_for(s, "admin"))


def _version(factory: sessionmaker[Session], instance_id: int) -> int:
    with factory() as s:
        return int(s.scalar(select(ProcessVersion.version).join(ProcessInstance,
                                                                 ProcessInstance.version_id == ProcessVersion.id)
                            .where(ProcessInstance.id == instance_id)) or 0)


def _actions(factory: sessionmaker[Session], instance_id: int) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"instance:{instance_id}")
                              .order_by(AuditEvent.seq)))


@pytest.mark.parametrize("how", ["one", "many"])
def test_a_submission_made_while_a_migration_rewrites_the_open_rows_waits_and_completes_on_the_new_version(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile, how: str) -> None:  # noqa: F811
    """The migration has saved the moved state and is rewriting the review's row when fg submits (was: the submission
    locked the review's row and waited for the instance, the migration waited for the review's row: a deadlock). The
    submission waits for the migration, then completes the review on version 2."""
    instance_id, review, target, *_ = started(session, review_org)
    meanwhile.at(versions, "_refresh_open_tasks", _submit(review))
    assert _act(factory, lambda s, a: _migrate(instance_id, target, how)(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == ("completed", {"review": "completed"})
    assert _version(factory, instance_id) == 2
    assert _actions(factory, instance_id)[-2:] == ["instance.migrate", "task.complete"]
    _verified(factory)


@pytest.mark.parametrize("how", ["one", "many"])
def test_a_migration_made_while_a_submission_is_under_way_waits_and_is_refused_naming_why(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile, how: str) -> None:  # noqa: F811
    """fg's submission has read its task (the instance key-share locked) when the migration comes: the migration waits
    for it (was: it went through, and the person's submission was refused), then finds the instance completed and
    refuses, saying so; nothing of it is written."""
    instance_id, review, target, *_ = started(session, review_org)
    meanwhile.at(projection, "write_postgres", _migrate(instance_id, target, how))
    assert _act(factory, lambda s, a: _submit(review)(s)) == "done"
    [migrated] = meanwhile.join()
    assert isinstance(migrated, versions.MigrationRefused) and migrated.http_status == 409, migrated
    assert "completed" in migrated.message
    assert _steps(factory, instance_id) == ("completed", {"review": "completed"})
    assert _version(factory, instance_id) == 1 and "instance.migrate" not in _actions(factory, instance_id)
    _verified(factory)


@pytest.mark.parametrize("how", ["one", "many"])
def test_a_migration_made_while_the_sweep_fires_waits_and_moves_the_state_the_timer_left(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, how: str) -> None:  # noqa: F811
    """The sweep holds the instance (take_due) when the migration comes: the migration waits, then moves the instance
    as the timer left it (the leader's 督办 open) — it was refused, having computed the move on the state before."""
    instance_id, _review, target, *_ = started(session, review_org)
    clock.advance(timedelta(hours=2))
    meanwhile.at(timers, "fire_taken", _migrate(instance_id, target, how))
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == ("running", {"review": "cancelled", "escalate": "ready"})
    assert _version(factory, instance_id) == 2
    assert _actions(factory, instance_id)[-2:] == ["timer.fire", "instance.migrate"]
    _verified(factory)


@pytest.mark.parametrize("how", ["one", "many"])
def test_the_sweep_passes_by_an_instance_being_migrated_and_fires_on_the_new_version(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, how: str) -> None:  # noqa: F811
    """The migration has read the instance when the sweep runs: the sweep passes it by (SKIP LOCKED; was: it fired,
    and the migration was refused), the migration moves it, and the next sweep fires its timer on version 2."""
    instance_id, _review, target, *_ = started(session, review_org)
    clock.advance(timedelta(hours=2))
    meanwhile.at(versions, "_move", lambda s: _fire_at_once(s))
    assert _act(factory, lambda s, a: _migrate(instance_id, target, how)(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == ("running", {"review": "ready"}) and _version(factory, instance_id) == 2
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    assert _steps(factory, instance_id) == ("running", {"review": "cancelled", "escalate": "ready"})
    assert _actions(factory, instance_id)[-2:] == ["instance.migrate", "timer.fire"]
    _verified(factory)


@pytest.mark.parametrize("how", ["one", "many"])
def test_a_migration_made_while_an_admin_terminates_waits_and_is_refused_naming_why(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile, how: str) -> None:  # noqa: F811
    """终止 has read the instance when the migration comes: the migration waits, then finds it terminated and says so
    (was: a bare 'someone else just acted' after it had computed the move on the running state)."""
    instance_id, _review, target, *_ = started(session, review_org)
    meanwhile.at(runtime_core, "load", _migrate(instance_id, target, how), after=True)
    assert _act(factory, lambda s, a: _terminate(instance_id)(s)) == "done"
    [migrated] = meanwhile.join()
    assert isinstance(migrated, versions.MigrationRefused) and "terminated" in migrated.message, migrated
    assert _steps(factory, instance_id) == ("terminated", {"review": "cancelled"})
    assert _version(factory, instance_id) == 1
    _verified(factory)


@pytest.mark.parametrize("how", ["one", "many"])
def test_an_admin_terminating_while_a_migration_is_under_way_waits_and_terminates_the_moved_instance(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile, how: str) -> None:  # noqa: F811
    """The migration has read the instance when the admin terminates: 终止 waits (was: it went through and the
    migration was refused), then terminates the instance on version 2."""
    instance_id, _review, target, *_ = started(session, review_org)
    meanwhile.at(versions, "_move", _terminate(instance_id))
    assert _act(factory, lambda s, a: _migrate(instance_id, target, how)(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == ("terminated", {"review": "cancelled"})
    assert _version(factory, instance_id) == 2
    assert _actions(factory, instance_id)[-2:] == ["instance.migrate", "instance.terminate"]
    _verified(factory)


@pytest.mark.parametrize("other", ["submission", "timer", "terminate"])
@pytest.mark.parametrize("how", ["one", "many"])
def test_migrations_racing_a_submission_the_sweep_or_terminate_never_deadlock(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        meanwhile: Meanwhile, other: str, how: str) -> None:  # noqa: F811
    """Started at once, a few times over, in both orders: never a deadlock (nor a lock wait ended by PostgreSQL); one
    wins whole and the other applies on the state it left, or is refused cleanly (409) changing nothing."""
    for round_ in range(4):
        instance_id, review, target, old, new = started(session, review_org)
        if other == "timer":
            clock.advance(timedelta(hours=2))
            rival: Work = lambda s: _fire_at_once(s)  # noqa: E731
        else:
            rival = _submit(review) if other == "submission" else _terminate(instance_id)
        migrate = _migrate(instance_id, target, how)
        works = [migrate, rival] if round_ % 2 else [rival, migrate]
        outcomes: list[Any] = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        migrated, rivalled = (outcomes[0], outcomes[1]) if round_ % 2 else (outcomes[1], outcomes[0])
        assert migrated == "done" or isinstance(migrated, versions.MigrationRefused), outcomes
        assert _version(factory, instance_id) == (new if migrated == "done" else old), outcomes
        if other == "timer":
            assert rivalled == "done", outcomes
            _act(factory, lambda s, a: _fire_at_once(s))  # the next sweep, if this one passed it by
            assert _steps(factory, instance_id) == ("running", {"review": "cancelled", "escalate": "ready"})
        elif other == "submission":
            assert rivalled == "done", outcomes  # first, or after the migration on the new version
            assert _steps(factory, instance_id) == ("completed", {"review": "completed"})
        else:
            assert rivalled == "done" or isinstance(rivalled, InstanceNotRunning), outcomes
            assert _steps(factory, instance_id) == ("terminated", {"review": "cancelled"})
    _verified(factory)


@pytest.mark.parametrize("how", ["one", "many"])
def test_a_migration_after_the_instance_moved_since_its_preview_checks_it_again(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: Any,
        how: str) -> None:
    """The preview said the review maps; the timer has fired since (lock_version moved): the migration checks the
    state as it is now, not the preview's — here the 督办 that opened maps too, so it moves; a completed one is
    refused naming why and nothing of it is written."""
    instance_id, _review, target, *_ = started(session, review_org)
    with factory() as s:
        seen = versions.preview(s, instance_id, target)
        assert seen.ok and "review" in [t.bpmn_id for t in seen.tasks]
    clock.advance(timedelta(hours=2))
    assert _act(factory, lambda s, a: _fire_at_once(s)) == "done"
    assert _act(factory, lambda s, a: _migrate(instance_id, target, how)(s)) == "done"
    assert _version(factory, instance_id) == 2
    with factory() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}",
                                                  AuditEvent.action == "instance.migrate"))
        assert event is not None
        assert {t["bpmn_id"] for t in event.after["tasks"]} == {"escalate"}, event.after  # not the preview's review

    done = started(session, review_org)
    with factory() as s:
        assert versions.preview(s, done.instance, done.target).ok
    assert _act(factory, lambda s, a: _submit(done.review)(s)) == "done"
    refused = _act(factory, lambda s, a: _migrate(done.instance, done.target, how)(s))
    assert isinstance(refused, versions.MigrationRefused) and "completed" in refused.message, refused
    assert _version(factory, done.instance) == done.old and "instance.migrate" not in _actions(factory, done.instance)
    _verified(factory)


@pytest.mark.parametrize("how", ["one", "many"])
def test_a_migration_of_an_instance_a_long_transaction_holds_is_named_busy_and_moves_nothing(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile, monkeypatch: pytest.MonkeyPatch, how: str) -> None:  # noqa: F811 (PostgreSQL only)
    """A transaction that does not end (a long job, a stuck request) holds the instance: `migrate_one` waited for it
    as long as that lasted (here: until the session's own lock_timeout, a database error). Now it waits
    LOCK_WAIT_SECONDS, as the page's `migrate` does, then refuses naming the instance (409 instance_busy, try again)
    and moves nothing; tried again once the holder is done, it moves it, and the session's lock_timeout is kept."""
    monkeypatch.setattr(versions, "LOCK_WAIT_SECONDS", 0.5)
    instance_id, _review, target, old, new = started(session, review_org)
    holder = factory()
    holder.execute(select(ProcessInstance.id).where(ProcessInstance.id == instance_id).with_for_update())
    try:
        with factory() as s:
            s.execute(text("SET lock_timeout = '4s'"))  # the old code's unbounded wait ends here, as an error
            began = time.monotonic()
            with pytest.raises(InstanceBusy) as busy:
                _migrate(instance_id, target, how)(s)
            assert time.monotonic() - began < 3
            assert busy.value.http_status == 409 and busy.value.code == "instance_busy"
            assert busy.value.details["instance_id"] == instance_id
            assert f"流程实例 {instance_id} 正在被其他操作处理，请稍后重试" in busy.value.message
            s.rollback()
        assert _version(factory, instance_id) == old
        assert "instance.migrate" not in _actions(factory, instance_id)
    finally:
        holder.rollback()
        holder.close()
    with factory() as s:
        s.execute(text("SET lock_timeout = '20s'"))
        _migrate(instance_id, target, how)(s)
        assert s.scalar(text("SHOW lock_timeout")) == "20s"
        s.commit()
    assert _version(factory, instance_id) == new
    _verified(factory)
