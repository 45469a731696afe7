"""A completion's first read through Core (engine/tasks/first_read.py) gives what the ORM's read gives.

The rows become the session's persistent objects as if the ORM had loaded them: every column as stored, the
candidates loaded, nothing dirty, nothing for a flush to write, lazy relationships still loading. A session that
holds one of the rows already gets the ORM's read, which refreshes it (populate_existing) — never a second object
for the same row.
"""
from __future__ import annotations

from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks import first_read, lookup
from engine.tasks.models import HumanTask
from tests.engine.conftest import staff
from tests.engine.test_flat_reads import _tuples_read

COLUMNS = [c.key for c in HumanTask.__mapper__.column_attrs]
INSTANCE_COLUMNS = [c.key for c in ProcessInstance.__mapper__.column_attrs]


def _open(factory: sessionmaker[Session]) -> tuple[int, list[int]]:
    people = staff(factory, 1)
    with factory() as session:
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()
        ids = list(session.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                              HumanTask.state == "ready").order_by(HumanTask.id)))
    return instance_id, ids


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
