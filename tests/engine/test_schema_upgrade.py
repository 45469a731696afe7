"""Schema migrations on a SQLite database full of work: every row survives the upgrade to head with its values,
references and integrity hold, and the work goes on; a database whose references are already broken is refused
and left exactly as it was (migrations/env.py checks `PRAGMA foreign_key_check` before the upgrade commits)."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from engine import audit, clock, deploy, migrate, runtime
from engine.archive import core as archive
from engine.audit.models import AuditHead
from engine.db import make_engine, make_sessionmaker
from engine.ops import health
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask, TaskCandidate, archived_candidates, archived_tasks
from tests.conftest import read_fixture_dir
from tests.steps import do, only_task

OLD = "0020"
APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial",
               "start_date": "2025-10-09"}


@pytest.fixture(autouse=True)
def _fresh_spec_cache() -> Iterator[None]:
    runtime._spec_cache.clear()  # version ids repeat across the databases of this test
    yield
    runtime._spec_cache.clear()


def _path(url: str) -> Path:
    return Path(url.split("///", 1)[1])


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                       "'sqlite_%' AND name != 'alembic_version' ORDER BY name")]


def _rows(conn: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """Every row as stored (no type conversion), sorted."""
    names = ", ".join(f'"{c}"' for c in columns)
    return sorted(conn.execute(f'SELECT {names} FROM "{table}"').fetchall(), key=repr)  # nosec B608


Copied = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def _fill_old(source: Path, old: Path) -> Copied:
    """Copy, as stored, every row of the tables the old schema has (its columns only); return what was copied."""
    copied: Copied = {}
    with _raw(source) as src, _raw(old) as dst:
        dst.execute("BEGIN")
        for table in _tables(dst):
            columns = _columns(dst, table)
            rows = _rows(src, table, columns)
            names, marks = ", ".join(f'"{c}"' for c in columns), ", ".join("?" for _ in columns)
            dst.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)  # nosec B608
            copied[table] = (columns, rows)
        dst.execute("COMMIT")
    return copied


@pytest.fixture
def work(session: Session, review_org: dict[str, Actor], frozen: object) -> dict[str, int]:
    """A database at head with users, a deployed process, instances running and ended, open and done steps with
    candidates, and an audit trail with a seal."""
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    session.commit()
    ids = {}
    for name in ("waiting", "submitted", "rejected"):
        ids[name] = instances.start(session, process_key="review_process", actor=review_org["applicant"],
                                    title=f"申请（{name}）").id
        session.commit()
    for name in ("submitted", "rejected"):
        do(session, only_task(session, ids[name], "submit_application"), review_org["applicant"], APPLICATION)
    do(session, only_task(session, ids["rejected"], "accept"), review_org["window"], {"decision": "reject"})
    assert audit.seal(session) is not None
    session.commit()
    return ids


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_filled_database_upgrades_from_0020_to_head_with_every_row(db_url: str, work: dict[str, int],
                                                                      tmp_path: Path) -> None:
    old_url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    migrate.upgrade(old_url, OLD)
    copied = _fill_old(_path(db_url), _path(old_url))
    for table in ("app_user", "org_unit", "membership", "process_definition", "process_version", "process_file",
                  "process_instance", "human_task", "task_candidate", "audit_event", "audit_checkpoint"):
        assert copied[table][1], f"nothing to carry in {table}"
    migrate.upgrade(old_url)

    with _raw(_path(old_url)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (",".join(sorted(migrate_heads())),)]
        for table, (columns, rows) in copied.items():
            assert _rows(conn, table, columns) == rows, table
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    engine = make_engine(old_url)
    try:
        with make_sessionmaker(engine)() as session:
            highest = max(r[0] for r in copied["human_task"][1])
            waiting = runtime.load(session, work["waiting"])
            assert waiting.row.status == "running"
            session.rollback()
            applicant, window = actor_for(session, "applicant"), actor_for(session, "window")
            do(session, only_task(session, work["waiting"], "submit_application"), applicant, APPLICATION)
            do(session, only_task(session, work["submitted"], "accept"), window, {"decision": "reject"})
            assert session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == work["submitted"])) \
                == "completed"
            accept = only_task(session, work["waiting"], "accept")
            assert accept.id > highest
            assert session.scalar(select(HumanTask.completed_by_id).where(
                HumanTask.instance_id == work["submitted"], HumanTask.bpmn_id == "accept")) == window.user_id
            report = audit.verify(session)
            assert report.ok, report.problems
    finally:
        engine.dispose()


def migrate_heads() -> set[str]:
    return set(health.code_heads())


def _schema_and_rows(path: Path) -> tuple[list[tuple[Any, ...]], dict[str, list[tuple[Any, ...]]]]:
    with _raw(path) as conn:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        return schema, {t: _rows(conn, t, _columns(conn, t)) for t in [*_tables(conn), "alembic_version"]}


@pytest.mark.parametrize(("table", "parent", "row"), [
    ("task_candidate", "human_task", "INSERT INTO task_candidate (id, task_id, user_id) VALUES (7, 999, NULL)"),
    ("human_task", "process_instance",
     "INSERT INTO human_task (id, instance_id, task_guid, bpmn_id, name, process_key, state, priority, created_at, "
     "kind, blocked) VALUES (5, 424242, 'g', 'b', 'n', 'k', 'ready', 0, '2025-01-01 00:00:00', 'bpmn', 0)"),
])
def test_an_upgrade_that_would_leave_a_broken_reference_is_refused_and_changes_nothing(
        tmp_path: Path, table: str, parent: str, row: str) -> None:
    url = f"sqlite:///{tmp_path / 'orphan.sqlite'}"
    migrate.upgrade(url, OLD)
    with _raw(_path(url)) as conn:
        conn.execute(row)  # foreign keys off: an orphan, as a bad import or an old bug could leave one
    before = _schema_and_rows(_path(url))
    with pytest.raises(RuntimeError, match=rf"nothing changed.* 1 broken references \({table} row \d+ → {parent}\)"):
        migrate.upgrade(url)
    assert _schema_and_rows(_path(url)) == before  # still at 0020, not half-way
    with _raw(_path(url)) as conn:
        conn.execute(f"DELETE FROM {table}")  # nosec B608
    migrate.upgrade(url)  # repaired: the upgrade goes through
    with _raw(_path(url)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (",".join(sorted(migrate_heads())),)]


def _add_later_columns(engine: Any) -> list[tuple[str, str]]:
    """Add to the steps' tables (hot and archive) the columns today's models have and this schema lacks."""
    added = []
    with engine.begin() as conn:
        for table in (HumanTask.__table__, archived_tasks):
            have = {c["name"] for c in inspect(conn).get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" '
                                         f'{column.type.compile(engine.dialect)}')
                    added.append((table.name, column.name))
    return added


def _drop_columns(engine: Any, columns: list[tuple[str, str]]) -> None:
    with engine.begin() as conn:
        for table, column in columns:
            conn.exec_driver_sql(f'ALTER TABLE {table} DROP COLUMN "{column}"')


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_after_0026_no_new_row_takes_an_id_the_archive_holds(db_url: str, work: dict[str, int], tmp_path: Path) -> None:
    """Archived at 0025 while its steps held the highest ids; upgraded; new steps and candidates start past them."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    migrate.upgrade(url, OLD)
    copied = _fill_old(_path(db_url), _path(url))
    migrate.upgrade(url, "0025")
    engine = make_engine(url)
    try:
        # Today's code archives (and audits) here: it moves audit heads, a table that arrives with 0027, and the
        # steps' columns later revisions add (0040: escalation_unit_unknown); they go again before the upgrade.
        AuditHead.__table__.create(engine)
        later = _add_later_columns(engine)
        factory = make_sessionmaker(engine)
        day = (clock.now() + timedelta(days=1)).astimezone(clock.SHANGHAI).date()
        assert archive.run(factory, after_days=0, batch=10, before=day).moved == 1  # the rejected one
        with factory() as session:
            held = set(session.scalars(select(archived_tasks.c.id)))
            assert max(held) == max(r[0] for r in copied["human_task"][1])  # the newest steps went to the archive
            held_candidates = set(session.scalars(select(archived_candidates.c.id)))
        AuditHead.__table__.drop(engine)  # 0027 creates it again, filled from the events
        _drop_columns(engine, later)
        engine.dispose()
        migrate.upgrade(url)
        with factory() as session:
            applicant, window = actor_for(session, "applicant"), actor_for(session, "window")
            do(session, only_task(session, work["waiting"], "submit_application"), applicant, APPLICATION)
            accept = only_task(session, work["waiting"], "accept")
            assert accept.id > max(held), (accept.id, held)
            do(session, only_task(session, work["submitted"], "accept"), window, {"decision": "reject"})
            assert archive.run(factory, after_days=0, batch=10, before=day).moved == 1  # no primary key collision
            assert len(set(session.scalars(select(archived_tasks.c.id)))) == len(held) + 2
            fresh = set(session.scalars(select(TaskCandidate.id).where(TaskCandidate.task_id == accept.id)))
            assert fresh and min(fresh) > max(held_candidates), (fresh, held_candidates)
    finally:
        engine.dispose()
