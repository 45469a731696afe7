"""A completion's first read through Core (engine/tasks/first_read.py) gives what the ORM's read gives.

The rows become the session's persistent objects as if the ORM had loaded them: every column as stored, the
candidates loaded, nothing dirty, nothing for a flush to write, lazy relationships still loading. A session that
holds one of the rows already gets the ORM's read, which refreshes it (populate_existing) — never a second object
for the same row.
"""
from __future__ import annotations

import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import instance_dict, set_committed_value

from engine import runtime, tasks
from engine.org.actors import Actor
from engine.runtime import hot, instances
from engine.runtime.models import ProcessInstance
from engine.tasks import first_read, lookup
from engine.tasks.models import HumanTask
from tests.engine.conftest import staff
from tests.engine.test_flat_reads import _tuples_read

COLUMNS = [c.key for c in HumanTask.__mapper__.column_attrs]
INSTANCE_COLUMNS = [c.key for c in ProcessInstance.__mapper__.column_attrs]


def _open(factory: sessionmaker[Session]) -> tuple[int, list[int]]:
    return _open_by(factory)[1:]


def _open_by(factory: sessionmaker[Session]) -> tuple[Actor, int, list[int]]:
    people = staff(factory, 1)
    with factory() as session:
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()
        ids = list(session.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                              HumanTask.state == "ready").order_by(HumanTask.id)))
    return people[0], instance_id, ids


def _orm_read(factory: sessionmaker[Session], task_id: int) -> tuple[dict[int, dict[str, object]], dict[str, object],
                                                                      dict[int, list[tuple[object, ...]]]]:
    with factory() as session:
        rows = session.execute(lookup._TO_COMPLETE, {"task_id": task_id}).unique().all()
        tasks = {r[0].id: {k: getattr(r[0], k) for k in COLUMNS} for r in rows}
        candidates = {r[0].id: sorted((c.id, c.user_id, c.org_unit_id, c.role_id) for c in r[0].candidates)
                      for r in rows}
        instance = {k: getattr(rows[0][1], k) for k in INSTANCE_COLUMNS}
        session.rollback()
    return tasks, instance, candidates


def test_the_core_read_makes_the_rows_the_orm_would(factory: sessionmaker[Session]) -> None:
    instance_id, ids = _open(factory)
    assert len(ids) > 1  # the instance's other open rows come along
    tasks, instance, candidates = _orm_read(factory, ids[0])
    with factory() as session:
        statements: list[str] = []
        event.listen(session.get_bind(), "before_cursor_execute", lambda *a: statements.append(a[2]))
        read = lookup.get_open_to_complete(session, ids[0])
        assert len([s for s in statements if not s.startswith("BEGIN")]) == 1  # one round trip (SQLite: BEGIN IMMEDIATE)
        assert read.task.id == ids[0] and read.instance.id == instance_id and not read.cosigners_waiting
        assert sorted(h.id for h in read.open_rows.values()) == ids
        for task in read.open_rows.values():
            state = inspect(task)
            assert state.persistent and not state.modified and not state.expired_attributes
            assert {k: getattr(task, k) for k in COLUMNS} == tasks[task.id]
            assert sorted((c.id, c.user_id, c.org_unit_id, c.role_id) for c in task.candidates) == candidates[task.id]
            assert all(c.task is task and inspect(c).persistent for c in task.candidates)
            assert session.get(HumanTask, task.id) is task  # the identity map's object, no second one
        assert {k: getattr(read.instance, k) for k in INSTANCE_COLUMNS} == instance
        assert session.get(ProcessInstance, instance_id) is read.instance
        assert read.instance.version.id == read.instance.version_id  # a lazy relationship still loads
        statements.clear()
        session.flush()
        assert statements == []  # nothing changed: nothing to write
        session.rollback()


def test_a_session_holding_a_row_reads_through_the_orm_and_refreshes_it(factory: sessionmaker[Session]) -> None:
    _, ids = _open(factory)
    with factory() as session:
        other = session.get(HumanTask, ids[1])  # one of the instance's other open rows, held before the read
        assert other is not None
        session.commit()
        with factory() as writer:  # changed meanwhile by another transaction
            writer.execute(text("UPDATE human_task SET name = 'renamed' WHERE id = :id"), {"id": ids[1]})
            writer.commit()
        assert first_read.read(session, ids[0]) is None  # the Core read makes no second object for it
        assert not any(isinstance(o, HumanTask) and o.id == ids[0] for o in session.identity_map.values())
        read = lookup.get_open_to_complete(session, ids[0])
        assert read.open_rows[other.task_guid] is other and other.name == "renamed"
        session.rollback()


def test_the_core_read_skips_the_instances_finished_rows(pg_factory: sessionmaker[Session]) -> None:
    """As the ORM's read (test_flat_reads), in fresh sessions: the Core statement runs, prepared after its 5th run."""
    from tests.engine.test_flat_reads import _finished_rows
    _, ids = _open(pg_factory)
    with pg_factory() as session:
        instance_id = session.get(HumanTask, ids[0]).instance_id  # type: ignore[union-attr]
        _finished_rows(session, instance_id, "siblings")
        session.execute(text("ANALYZE human_task"))
        session.commit()
    for plan_mode in ("force_custom_plan", "force_generic_plan"):
        with pg_factory() as session:
            session.execute(text(f"SET plan_cache_mode = {plan_mode}"))
            for _ in range(6):
                assert first_read.read(session, ids[0]) is not None
                session.expunge_all()
            before = _tuples_read(session)
            rows = first_read.read(session, ids[0])
            read = _tuples_read(session) - before
            got = sorted(r[0].id for r in rows or [])
            session.rollback()
        assert got == ids
        assert read < 20, f"the Core read went through {read} human_task rows for {len(ids)} open ones"


def _states_sent(session: Session, task_id: int, hot_lv: int | None) -> list[str]:
    """The state values the first read's statement returned, one per row that carried one."""
    at = first_read._AT_INSTANCE + first_read._INSTANCE_KEYS.index("state")
    return [r[at] for r in first_read._PREPARED.rows(session, {"task_id": task_id, "hot_lv": hot_lv})
            if r[at] is not None]


def test_the_state_comes_once_however_many_rows_and_candidates(pg_factory: sessionmaker[Session]) -> None:
    """A 并联审批 with six departments at work carried its 88 KB state on every row of the join (open row ×
    candidate): now on one, whichever open row is the one completed."""
    instance_id, ids = _open(pg_factory)
    with pg_factory() as session:
        for task_id in ids:  # two more candidates on every open row: the join gives three rows per task
            for role in (None, None):
                session.execute(text("INSERT INTO task_candidate (task_id, user_id, org_unit_id, role_id) "
                                     "VALUES (:t, NULL, NULL, :r)"), {"t": task_id, "r": role})
        session.commit()
        stored = session.get(ProcessInstance, instance_id).state  # type: ignore[union-attr]
    hot.CACHE.clear()
    for task_id in reversed(ids):  # the last open row too, never the join's first
        with pg_factory() as session:
            assert _states_sent(session, task_id, None) == [stored]
            rows = first_read.read(session, task_id)
            assert rows and len({r[0].id for r in rows}) == len(ids)
            assert rows[0][1].state == stored
            session.rollback()


def test_a_hot_instance_is_read_without_its_state_and_reads_it_when_the_workflow_is_gone(
        pg_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is left out when this process holds the workflow at the row's lock_version (the completion takes
    it from the cache); the hint is only a hint: a workflow taken meanwhile, or kept at another lock_version, and the
    state is read, as stored."""
    person, instance_id, ids = _open_by(pg_factory)
    with pg_factory() as session:
        stored = session.get(ProcessInstance, instance_id).state  # type: ignore[union-attr]
        lock_version = session.get(ProcessInstance, instance_id).lock_version  # type: ignore[union-attr]
        assert hot.lock_version_hint(session, ids[0]) == lock_version  # the start's save kept it hot here
        assert _states_sent(session, ids[0], lock_version) == []
        assert _states_sent(session, ids[0], lock_version - 1) == [stored]  # kept at another version: it comes
        rows = first_read.read(session, ids[0])
        assert rows is not None
        instance = rows[0][1]
        assert "state" not in instance_dict(instance) and "state" in inspect(instance).expired_attributes
        hot.CACHE.clear()  # taken by another thread of this process meanwhile, or evicted
        assert instance.state == stored  # read now, in the transaction
        session.rollback()
    with pg_factory() as session:  # the instance hot again
        assert hot.lock_version_hint(session, ids[0]) is None
        load = session.get(ProcessInstance, instance_id)
        assert load is not None
        runtime.load(session, instance_id, row=load, read_only=True)  # kept when the transaction ends
        session.commit()
    taken: list[int] = []

    def taken_meanwhile(session: Session, instance_id: int, *args: object, **kwargs: object) -> None:
        taken.append(instance_id)  # the completion's read left the state out; the workflow is gone when it loads
        return None

    with pg_factory() as session:
        hot.note_tasks(session, instance_id, ids)
        assert hot.lock_version_hint(session, ids[0]) == lock_version
        monkeypatch.setattr(hot, "take", taken_meanwhile)
        done = tasks.complete(session, task_id=ids[0], actor=person, data={})
        session.commit()
        monkeypatch.undo()
    assert taken == [instance_id] and done.instance_id == instance_id
    with pg_factory() as session:  # what it saved is the workflow run from the stored state
        row = session.get(ProcessInstance, instance_id)
        assert row is not None and row.lock_version == lock_version + 1
        assert session.get(HumanTask, ids[0]).state == "completed"  # type: ignore[union-attr]
        hot.CACHE.clear()
        running = runtime.load(session, instance_id)
        assert runtime.find_task(running.workflow, session.get(HumanTask, ids[0]).task_guid).state  # type: ignore
        session.rollback()


def test_loading_a_hot_instance_leaves_its_state_out_and_reads_it_when_the_workflow_is_gone(
        pg_factory: sessionmaker[Session]) -> None:
    """runtime.load's read (a page, a message delivery, a timer) sends the state once with the open rows, none for an
    instance hot here; a workflow gone by the time it is taken, and the state is read then, as stored."""
    _, instance_id, ids = _open_by(pg_factory)
    from engine.runtime import row_read
    with pg_factory() as session:
        stored = session.get(ProcessInstance, instance_id).state  # type: ignore[union-attr]
        lock_version = session.get(ProcessInstance, instance_id).lock_version  # type: ignore[union-attr]
        session.rollback()
    for with_open_rows in (False, True):
        for lock in (False, True):
            hot.CACHE.clear()
            with pg_factory() as session:
                found = row_read.read(session, instance_id, with_open_rows=with_open_rows, lock=lock)
                assert [r[3] for r in found if r[3] is not None] == [stored]
                if with_open_rows:
                    assert sorted(r[4].id for r in found) == ids
                assert found[0][0].state == stored
                session.rollback()
            with pg_factory() as session:  # hot again: the read leaves it out
                runtime.load(session, instance_id, read_only=True)
                session.commit()
            with pg_factory() as session:
                assert hot.kept_lock_version(session, instance_id) == lock_version
                found = row_read.read(session, instance_id, with_open_rows=with_open_rows, lock=lock)
                row = found[0][0]
                assert all(r[3] is None for r in found) and "state" not in instance_dict(row)
                hot.CACHE.clear()  # gone before it is taken: load reads the state, in the transaction
                running = runtime.load(session, instance_id, row=row)
                assert runtime.find_task(running.workflow, session.get(HumanTask, ids[0]).task_guid) is not None  # type: ignore
                assert row.state == stored
                session.rollback()
    with pg_factory() as session:  # a row the session held with an older state is read again, never kept stale
        row = session.get(ProcessInstance, instance_id)
        assert row is not None
        set_committed_value(row, "state", "{}")
        runtime.load(session, instance_id, read_only=True)
        assert row.state == stored
        session.rollback()


def test_a_state_left_out_and_read_after_another_save_never_saves_over_it(pg_factory: sessionmaker[Session]) -> None:
    """Two completions of one hot instance at once in one process: both reads leave the state out (FOR KEY SHARE
    lets the other save go on); the first takes the workflow and commits; the second finds it gone and reads the
    state then — the one the first saved, newer than the lock_version it read. Its save is refused (the lock_version
    compare-and-set), never written over the first's, and run again it completes both."""
    from engine.errors import ConcurrentModification
    person, instance_id, ids = _open_by(pg_factory)
    with pg_factory() as session:
        lock_version = session.get(ProcessInstance, instance_id).lock_version  # type: ignore[union-attr]
        session.rollback()
    late = pg_factory()
    try:
        read = tasks.read_to_complete(late, ids[1], person)
        assert read.instance.lock_version == lock_version and "state" not in instance_dict(read.instance)
        with pg_factory() as first:
            tasks.complete(first, task_id=ids[0], actor=person, data={"stop": True})
            first.commit()
        misses = hot.CACHE.misses
        with pytest.raises(ConcurrentModification):
            tasks.complete(late, task_id=ids[1], actor=person, data={"stop": True}, read=read)
        assert hot.CACHE.misses == misses + 1  # the workflow kept was the first's: the state was read then
        late.rollback()
    finally:
        late.close()
    with pg_factory() as session:  # nothing of the late one was kept; the first's save stands
        row = session.get(ProcessInstance, instance_id)
        assert row is not None and row.lock_version == lock_version + 1
        assert [session.get(HumanTask, i).state for i in ids[:2]] == ["completed", "ready"]  # type: ignore[union-attr]
        tasks.complete(session, task_id=ids[1], actor=person, data={"stop": True})
        session.commit()
    with pg_factory() as session:
        hot.CACHE.clear()
        running = runtime.load(session, instance_id, read_only=True)
        for i in ids[:2]:
            assert runtime.find_task(running.workflow, session.get(HumanTask, i).task_guid).state  # type: ignore
        assert [session.get(HumanTask, i).state for i in ids[:2]] == ["completed", "completed"]  # type: ignore[union-attr]
        session.rollback()


def test_a_group_step_set_aside_while_submitted_is_refused_as_set_aside_not_as_claimed(
        pg_factory: sessionmaker[Session]) -> None:
    """A candidate submits an unclaimed step while a colleague's step of the same instance runs into an incident that
    sets it aside (挂起, state suspended): nobody claimed it, so the refusal says the instance is not running — what a
    submission a moment later is told — never 此任务刚被他人认领."""
    from engine.errors import AlreadyClaimed, InstanceNotRunning
    person, _, ids = _open_by(pg_factory)
    late = pg_factory()
    try:
        read = tasks.read_to_complete(late, ids[1], person)
        with pg_factory() as first:  # no `stop`: its gateway fails, an incident sets the other steps aside
            tasks.complete(first, task_id=ids[0], actor=person, data={})
            first.commit()
        with pytest.raises(InstanceNotRunning) as refused:
            tasks.complete(late, task_id=ids[1], actor=person, data={"stop": True}, read=read)
        assert not isinstance(refused.value, AlreadyClaimed)
        late.rollback()
    finally:
        late.close()
    with pg_factory() as session:
        assert session.get(HumanTask, ids[1]).state == "suspended"  # type: ignore[union-attr]
        with pytest.raises(InstanceNotRunning):
            tasks.complete(session, task_id=ids[1], actor=person, data={"stop": True})
        session.rollback()
