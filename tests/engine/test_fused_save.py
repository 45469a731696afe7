"""PostgreSQL: a completion writes its state, its projection and its audit event in one statement.

The statement is the optimistic lock (nothing of it lands when the lock_version moved, even if the caller commits
anyway), writes only the open rows that changed (an unchanged sibling held by another writer must not make the
completion wait: it deadlocked), and leaves the new rows persistent and loaded. The audit event chains onto the
head the first read saw; when another writer moved that head in between, or holds it, the event waits for the
commit and chains onto the head it then locks. The statement never waits for the head, and takes it only after
the rows it writes: a writer that holds one of them and appends to the stream at its commit must not deadlock.
"""
from __future__ import annotations

import gc
import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, org, runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import ConcurrentModification
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.spiff import nesting
from engine.tasks import operations
from engine.tasks.models import HumanTask, TaskCandidate
from tests.engine.conftest import SIBLINGS, staff


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _started(factory: sessionmaker[Session]) -> tuple[list[Actor], int, dict[str, int]]:
    people = staff(factory, 2)
    with factory() as session:
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()
        open_ids = {h.bpmn_id: h.id for h in session.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready"))}
    return people, instance_id, open_ids


def _rows(session: Session, instance_id: int) -> list[tuple[str, str, int | None, list[int | None]]]:
    return [(h.bpmn_id, h.state, h.completed_by_id, [c.org_unit_id for c in h.candidates])
            for h in session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)
                                     .order_by(HumanTask.id).execution_options(populate_existing=True))]


def _columns(obj: HumanTask | TaskCandidate) -> dict[str, object]:
    values = {c.key: getattr(obj, c.key) for c in obj.__table__.columns}
    return {k: clock.as_utc(v) if isinstance(v, datetime) else v for k, v in values.items()}


def _completer(factory: sessionmaker[Session], task_id: int, actor: Actor, *, lock_timeout: str = "20s",
               saved: threading.Event | None = None) -> tuple[threading.Thread, list[object]]:
    """A thread (not started) completing the task and committing; its outcome: "done" or the exception."""
    outcome: list[object] = []

    def complete() -> None:
        with factory() as session:
            session.execute(text(f"SET LOCAL lock_timeout = '{lock_timeout}'"))
            try:
                tasks.complete(session, task_id=task_id, actor=actor, data={"stop": True})
                if saved is not None:
                    saved.set()
                session.commit()
                outcome.append("done")
            except Exception as exc:
                outcome.append(exc)

    return threading.Thread(target=complete), outcome


def test_a_completion_is_one_read_and_one_write_with_its_audit_event(pg: Engine,
                                                                      pg_factory: sessionmaker[Session]) -> None:
    people, instance_id, open_ids = _started(pg_factory)
    with pg_factory() as session:  # held: submitting an unclaimed group task claims it first, by compare-and-set
        tasks.claim(session, task_id=open_ids["task_a"], actor=people[0])  # (one UPDATE more: test_concurrency)
        session.commit()
    # The identity map holds rows weakly and a new row is in a reference cycle with its candidates: without this a
    # collection between the completion and the get below may drop it, and the get reads it again.
    gc.disable()
    try:
        with pg_factory() as session, statements(pg) as seen:
            done = tasks.complete(session, task_id=open_ids["task_a"], actor=people[0], data={"stop": False})
            new = session.get(HumanTask, done.next_tasks[0])
            assert new is not None
            session.commit()
            with statements(pg) as after:  # the new row is persistent and loaded: reading it asks nothing
                assert (new.bpmn_id, new.state, new.due_at is not None,
                        [c.org_unit_id is not None for c in new.candidates]) == ("task_a", "ready", True, [True])
                held = _columns(new), [_columns(c) for c in new.candidates]
                assert not session.dirty and not session.new  # and nothing is left for a flush to write
            assert after == []
    finally:
        gc.enable()
    with pg_factory() as session:  # every column as the row holds it, the candidates' too
        stored = session.get(HumanTask, done.next_tasks[0])
        assert stored is not None
        assert held == (_columns(stored), [_columns(c) for c in stored.candidates])
    assert [s.split(" ")[0] for s in seen] == ["SELECT", "WITH"], seen
    assert "INSERT INTO human_task" in seen[1] and "INSERT INTO task_candidate" in seen[1]
    assert "INSERT INTO audit_event" in seen[1]
    with pg_factory() as session:
        rows = _rows(session, instance_id)
        assert ("task_a", "completed", people[0].user_id, [rows[0][3][0]]) in rows
        assert [r[:2] for r in rows].count(("task_a", "ready")) == 1 and len(rows) == 5
        assert session.scalar(select(HumanTask.id).where(HumanTask.bpmn_id == "task_a",
                                                         HumanTask.state == "ready")) == done.next_tasks[0]
        assert session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == instance_id)) == 2
        assert audit.verify(session).ok


def test_a_stale_lock_writes_nothing_even_when_the_caller_commits(pg_factory: sessionmaker[Session]) -> None:
    people, instance_id, open_ids = _started(pg_factory)
    with pg_factory() as session:
        before = _rows(session, instance_id)
        session.rollback()
        task = session.get(HumanTask, open_ids["task_a"])
        assert task is not None
        running = runtime.load(session, instance_id)
        runtime.complete_user_task(running, task.task_guid, {"stop": False}, people[0])
        runtime.run(session, running, people[0])
        with pg_factory() as other:  # a sibling completed meanwhile: lock_version moves on
            tasks.complete(other, task_id=open_ids["task_b"], actor=people[1], data={"stop": True})
            other.commit()
        with pytest.raises(ConcurrentModification):
            runtime.save(session, running)
        session.commit()  # a caller that swallows the conflict must not publish half a save
    with pg_factory() as session:
        rows = _rows(session, instance_id)
        assert [r for r in rows if r[0] == "task_a"] == [r for r in before if r[0] == "task_a"]
        assert session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == instance_id)) == 2


def test_a_column_the_save_did_not_change_keeps_what_another_writer_put_there(
        pg_factory: sessionmaker[Session]) -> None:
    """The completed row's assignee, changed by another writer after our read, is not written back (as a flush)."""
    people, instance_id, open_ids = _started(pg_factory)
    with pg_factory() as session:
        task = session.get(HumanTask, open_ids["task_a"])
        assert task is not None and task.assignee_id is None
        running = runtime.load(session, instance_id)
        runtime.complete_user_task(running, task.task_guid, {"stop": True}, people[0])
        runtime.run(session, running, people[0])
        with pg_factory() as other:
            other.execute(text("UPDATE human_task SET assignee_id = :u WHERE id = :id"),
                          {"u": people[1].user_id, "id": task.id})
            other.commit()
        runtime.save(session, running)
        session.commit()
    with pg_factory() as session:
        row = session.get(HumanTask, open_ids["task_a"])
        assert row is not None and (row.state, row.assignee_id, row.completed_by_id) == (
            "completed", people[1].user_id, people[0].user_id)


def test_an_unchanged_sibling_locked_elsewhere_does_not_hold_the_completion(pg_factory: sessionmaker[Session]) -> None:
    """Writing every open row locked siblings the completion did not change: with a writer that held one and
    waited for the instance's row, that was a deadlock (the 16-way suite found it)."""
    people, _instance, open_ids = _started(pg_factory)
    with pg_factory() as holder:
        holder.execute(text("UPDATE human_task SET priority = priority WHERE id = :id"), {"id": open_ids["task_b"]})
        # the lock timeout, had it waited for task_b, ends up in outcome
        worker, outcome = _completer(pg_factory, open_ids["task_a"], people[0], lock_timeout="5s")
        worker.start()
        worker.join(timeout=30)
        holder.rollback()
    assert outcome == ["done"]


def _chain(factory: sessionmaker[Session], stream: str) -> list[str]:
    with factory() as session:
        chain = session.execute(select(AuditEvent.seq, AuditEvent.action).where(AuditEvent.stream == stream)
                                .order_by(AuditEvent.seq)).all()
        assert [seq for seq, _ in chain] == list(range(1, len(chain) + 1))
        assert audit.verify(session).ok
        return [action for _, action in chain]


def test_the_audit_event_chains_onto_a_head_that_moved_after_the_first_read(
        pg: Engine, pg_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    people, instance_id, open_ids = _started(pg_factory)
    stream = f"instance:{instance_id}"
    save = runtime.save

    def save_after_another_writer(session: Session, running: runtime.Running, **kwargs: object) -> None:
        with pg_factory() as other:  # another writer appends to the instance's stream between our read and save
            audit.record(other, SYSTEM, "test.note", stream=stream, object_type="note", object_id=1)
            other.commit()
        save(session, running, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime, "save", save_after_another_writer)
    with pg_factory() as session:
        with statements(pg) as seen:
            tasks.complete(session, task_id=open_ids["task_a"], actor=people[0], data={"stop": True})
            session.commit()
        assert any("FOR UPDATE" in s for s in seen)  # the seen head was stale: the locked path ran at the commit
    assert _chain(pg_factory, stream)[-2:] == ["test.note", "task.complete"]
    with pg_factory() as session:
        assert session.scalar(select(TaskCandidate.id).join(HumanTask).where(
            HumanTask.instance_id == instance_id, HumanTask.state == "ready").limit(1)) is not None


def test_a_writer_of_the_stream_after_the_save_follows_the_completion(pg_factory: sessionmaker[Session]) -> None:
    """The save took the stream's head: another writer's append waits for the completion's commit, then follows."""
    people, instance_id, open_ids = _started(pg_factory)
    stream = f"instance:{instance_id}"
    outcome: list[object] = []

    def note() -> None:
        with pg_factory() as other:
            other.execute(text("SET LOCAL lock_timeout = '20s'"))
            audit.record(other, SYSTEM, "test.note", stream=stream, object_type="note", object_id=1)
            other.commit()
            outcome.append("noted")

    with pg_factory() as session:
        tasks.complete(session, task_id=open_ids["task_a"], actor=people[0], data={"stop": True})
        writer = threading.Thread(target=note)
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive() and outcome == []  # waiting for our head
        session.commit()
    writer.join(timeout=20)
    assert outcome == ["noted"]
    assert _chain(pg_factory, stream)[-2:] == ["task.complete", "test.note"]


def test_a_head_another_writer_holds_is_not_waited_for_by_the_statement(pg: Engine,
                                                                       pg_factory: sessionmaker[Session]) -> None:
    """SKIP LOCKED: with the head held elsewhere the save goes on; its event waits for the commit's locked path."""
    people, instance_id, open_ids = _started(pg_factory)
    stream = f"instance:{instance_id}"
    saved = threading.Event()
    with pg_factory() as holder:
        assert holder.execute(text("SELECT seq FROM audit_head WHERE stream = :s FOR UPDATE"),
                              {"s": stream}).scalar() is not None
        worker, outcome = _completer(pg_factory, open_ids["task_a"], people[0], saved=saved)
        worker.start()
        assert saved.wait(timeout=10)  # the save did not wait for the held head
        worker.join(timeout=0.5)
        assert worker.is_alive()  # its commit does, on the locked path
        holder.rollback()
    worker.join(timeout=20)
    assert outcome == ["done"]
    assert _chain(pg_factory, stream)[-1] == "task.complete"


def test_a_writer_holding_the_task_and_appending_at_its_commit_does_not_deadlock_the_completion(
        pg_factory: sessionmaker[Session]) -> None:
    """The completion's statement waits for the task's row, which another writer holds (an administrator urging
    the task's holder, 催办); that writer's commit then appends to the instance's stream. Had the statement taken the
    stream's head before the rows, that was a deadlock. (A writer that changes the row no longer serves: the
    statement then refuses the completion, test_task_lost_updates; nor does a claim: a completion of an unclaimed
    task claims it by compare-and-set first, and that waits instead: test_concurrency.)"""
    people, instance_id, open_ids = _started(pg_factory)
    with pg_factory() as session:
        org.add_user(session, username="admin", display_name="管理员", is_admin=True)
        tasks.claim(session, task_id=open_ids["task_a"], actor=people[0])
        session.commit()
        admin = actor_for(session, "admin")
    with pg_factory() as releaser:
        operations.urge(releaser, task_id=open_ids["task_a"], actor=admin)  # holds task_a's row
        releaser_pid = releaser.execute(text("SELECT pg_backend_pid()")).scalar()
        # DeadlockDetected, had the head been taken first, ends up in outcome
        worker, outcome = _completer(pg_factory, open_ids["task_a"], people[0])
        worker.start()
        with pg_factory() as watcher:  # its own transactions: pg_stat_activity is a snapshot within one
            for _ in range(200):  # until the completion's statement waits for task_a's row
                waiting = watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> :me"
                    " AND datname = current_database()"), {"me": releaser_pid}).scalar()
                watcher.rollback()
                if waiting:
                    break
                worker.join(timeout=0.05)
        assert waiting, f"the completion never waited for the held row: {outcome}"
        releaser.commit()  # appends task.urge to the instance's stream
    worker.join(timeout=30)
    assert outcome == ["done"]
    assert _chain(pg_factory, f"instance:{instance_id}")[-2:] == ["task.urge", "task.complete"]


@pytest.mark.parametrize(("note", "subject", "title"), [
    ("引号\"'\\反斜杠 {\"a\": [1]} 🚀 \u202e", "note", "甲项 · 引号\"'\\反斜杠 {\"a\": [1]} 🚀 \u202e"),
    ("空\x00字节", "note", "甲项 · 空字节"),
    ("孤", "note + chr(0xd800) + '代理'", "甲项 · 孤代理"),  # a script's lone surrogate (the web refuses one in JSON)
    ("  ", "note", "甲项")])
def test_what_a_task_title_takes_from_data_survives_the_statement(pg_factory: sessionmaker[Session], tmp_path: Path,
                                                                  note: str, subject: str, title: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The new rows travel as JSON: quotes, backslashes, JSON-looking text and emoji arrive as they were, and what
    PostgreSQL's text cannot hold (NUL, a lone surrogate) is left out of the title, not a failed save. (The sandbox
    now refuses a lone surrogate in an expression's value, nesting.unstorable: let through here, as data saved
    before that could hold one.)"""
    monkeypatch.setattr(nesting, "unstorable", lambda value: None)
    bpmn = (SIBLINGS / "siblings.bpmn").read_text(encoding="utf-8").replace(
        '<spiffworkflow:property name="sla" value="3wd" />',
        '<spiffworkflow:property name="sla" value="3wd" />'
        f'<spiffworkflow:property name="subject" value="{html.escape(subject)}" />', 1)
    (tmp_path / "siblings.bpmn").write_text(bpmn, encoding="utf-8")
    people = staff(pg_factory, 1, bpmn_dir=tmp_path)
    with pg_factory() as session:
        instance_id = instances.start(session, process_key="siblings", actor=people[0], data={"note": "起始"}).id
        session.commit()
        first = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                       HumanTask.bpmn_id == "task_a"))
        assert first is not None and first.name.startswith("甲项 · 起始")
        done = tasks.complete(session, task_id=first.id, actor=people[0], data={"stop": False, "note": note})
        session.commit()
    with pg_factory() as session:
        again = session.get(HumanTask, done.next_tasks[0])
        assert again is not None and again.bpmn_id == "task_a" and again.name == title
        assert [c.org_unit_id is not None for c in again.candidates] == [True]


def test_a_completion_in_a_savepoint_rolled_back_leaves_no_event_and_counts_nothing(
        pg_factory: sessionmaker[Session]) -> None:
    """The event the save wrote goes with the savepoint: not in the chain, not anchored, not counted."""
    from prometheus_client import REGISTRY

    from engine.ops import metrics  # noqa: F401 # counts committed audit actions

    def completions() -> float:
        return REGISTRY.get_sample_value("jzflow_task_completions_total") or 0.0

    people, instance_id, open_ids = _started(pg_factory)
    before = completions()
    with pg_factory() as session:
        savepoint = session.begin_nested()
        tasks.complete(session, task_id=open_ids["task_a"], actor=people[0], data={"stop": True})
        savepoint.rollback()
        session.commit()
    assert completions() == before
    assert "task.complete" not in _chain(pg_factory, f"instance:{instance_id}")
    with pg_factory() as session:
        tasks.complete(session, task_id=open_ids["task_a"], actor=people[0], data={"stop": True})
        session.commit()
    assert completions() == before + 1
    assert _chain(pg_factory, f"instance:{instance_id}")[-1] == "task.complete"


def test_a_unit_of_work_that_loads_its_instance_appends_its_event_in_one_statement(
        pg: Engine, pg_factory: sessionmaker[Session]) -> None:
    """`runtime.load` reads the stream's head with the row (a message delivery, a timer, a sweep): the commit's
    append starts from it, one statement, no lock taken first."""
    _people, instance_id, _open = _started(pg_factory)
    with pg_factory() as session:
        running = runtime.load(session, instance_id)
        runtime.record(session, running, SYSTEM, "test.touch")
        with statements(pg) as seen:
            session.commit()
    assert not any("FOR UPDATE" in s or "pg_advisory" in s for s in seen), seen
    assert len([s for s in seen if "audit_event" in s]) == 1
    assert _chain(pg_factory, f"instance:{instance_id}")[-1] == "test.touch"


def test_a_start_reads_no_rows_of_its_new_instance_and_starts_its_stream_in_one_statement(
        pg: Engine, pg_factory: sessionmaker[Session]) -> None:
    people = staff(pg_factory, 1)
    with pg_factory() as session, statements(pg) as seen:
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()
    assert not [s for s in seen if s.startswith("SELECT human_task.")], seen  # it has none yet
    audit_statements = [s for s in seen if ("audit_" in s or "advisory" in s) and not s.startswith("WITH claim AS")]
    assert len(audit_statements) == 1 and "FOR UPDATE" not in audit_statements[0], audit_statements
    assert _chain(pg_factory, f"instance:{instance_id}") == ["instance.start"]
    with pg_factory() as session:
        assert len(_rows(session, instance_id)) == 4  # the projection's rows, as before


def test_the_statement_finds_what_closes_with_a_step_by_index_however_many_requests_wait(
        pg: Engine, pg_factory: sessionmaker[Session]) -> None:
    """The 申请延期 that close with a step are found through their index: a scan of every request ran in each
    completion (20 ms at 200,000 requests)."""
    people, _instance_id, open_ids = _started(pg_factory)
    with pg.begin() as conn:  # requests of other tasks, most of them decided
        conn.execute(text("INSERT INTO extension_request (object_type, object_id, requested_due_at, reason, status, "
                          "created_at, opinion) SELECT 'task', 1000000 + i, now(), 'r', CASE WHEN i % 10 = 0 "
                          "THEN 'pending' ELSE 'granted' END, now(), '' FROM generate_series(1, 5000) i"))
        conn.execute(text("ANALYZE extension_request"))
    captured: list[tuple[str, object]] = []

    def before(_conn: object, _cursor: object, statement: str, parameters: object, *_args: object) -> None:
        if statement.startswith("WITH claim"):
            captured.append((statement, parameters))

    event.listen(pg, "before_cursor_execute", before)
    try:
        with pg_factory() as session:
            tasks.complete(session, task_id=open_ids["task_a"], actor=people[0], data={"stop": False})
            statement, parameters = captured[0]
            plan = "\n".join(r[0] for r in session.connection().exec_driver_sql(f"EXPLAIN {statement}", parameters))
            session.rollback()
    finally:
        event.remove(pg, "before_cursor_execute", before)
    assert "on extension_request" in plan
    assert "Seq Scan on extension_request" not in plan, plan
    assert "Seq Scan on human_task" not in plan, plan
