"""Backup and restore of a database that holds archived instances, on SQLite and PostgreSQL.

Running, completed and archived instances with their audit trail go through `jzflow backup` and `jzflow restore`
into a fresh database: archived instances still open read-only and equal what they were, the archive rows are
byte-identical, running instances finish (their new steps take ids no archived step has, so the archive can take
them later), and `audit-verify` passes. An archive whose database part was altered or cut short is refused with a
message naming that part, and the target database is left as it was.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sqlite3
import tarfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, config, deploy, runtime
from engine.archive import core as archive
from engine.audit.models import AuditEvent
from engine.db import make_engine, make_sessionmaker
from engine.ops import backup, restore
from engine.ops.backup import ArchiveRefused
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances, timeline
from engine.runtime.models import ArchivedState, ProcessInstance, archived_history
from engine.spiff import serializer
from engine.tasks.models import HumanTask, archived_candidates, archived_tasks
from tests.conftest import PgDatabases, read_fixture_dir
from tests.steps import do, only_task

APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial",
               "start_date": "2025-10-09"}
ARCHIVE_TABLES: tuple[Table, ...] = (ArchivedState.__table__, archived_tasks, archived_candidates,  # type: ignore[assignment]
                                     archived_history)
SQLITE_DUMP = "database/jzflow.sqlite"


@pytest.fixture(autouse=True)
def _fresh_spec_cache() -> Iterator[None]:
    runtime._spec_cache.clear()  # version ids repeat across the source and the restored database
    yield
    runtime._spec_cache.clear()


def _start(session: Session, people: dict[str, Actor], title: str) -> int:
    row = instances.start(session, process_key="review_process", actor=people["applicant"], title=title)
    session.commit()
    return row.id


def _submit(session: Session, people: dict[str, Actor], instance_id: int) -> None:
    do(session, only_task(session, instance_id, "submit_application"), people["applicant"], APPLICATION)


def _reject(session: Session, people: dict[str, Actor], instance_id: int) -> None:
    do(session, only_task(session, instance_id, "accept"), people["window"], {"decision": "reject"})


@pytest.fixture
def world(session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor], frozen: object) -> dict[str, Any]:
    """Instances in every condition; the archived ones hold the highest step ids (they were made last).

    completed: submitted, then 不予受理 400 days later (stays hot); running: waits for its application;
    archived: two applications 不予受理 at once, ended over a year ago, then archived.
    """
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    session.commit()
    completed = _start(session, review_org, "一年内办结的申请")
    _submit(session, review_org, completed)
    running = _start(session, review_org, "在办的申请")
    archived = []
    for title in ("一年多以前的申请甲", "一年多以前的申请乙"):
        archived.append(_start(session, review_org, title))
        _submit(session, review_org, archived[-1])
        _reject(session, review_org, archived[-1])
    clock.advance(timedelta(days=400))
    _reject(session, review_org, completed)
    assert audit.seal(session) is not None
    session.commit()
    assert archive.run(factory, after_days=365, batch=10).moved == 2
    session.expire_all()
    return {"completed": completed, "running": running, "archived": archived}


@pytest.fixture
def empty_target(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of the source's kind (never initialised)."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'restored' / 'jzflow.sqlite'}"
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    name = f"{dbs.prefix}_arch_{uuid.uuid4().hex[:6]}"
    dbs._create(name)
    request.addfinalizer(lambda: dbs.drop(dbs.url(name)))
    return dbs.url(name)


def _look(session: Session, instance_id: int) -> dict[str, Any]:
    """What a reader sees of an instance: its workflow as loaded read-only, its diagram, data and steps."""
    session.expire_all()
    running = runtime.load(session, instance_id, read_only=True)
    return {"workflow": serializer.dump_state(running.workflow),
            "states": timeline.diagram_states(session, running), "data": timeline.instance_data(running),
            "steps": [(t.id, t.bpmn_id, t.state, t.completed_by_id) for t in timeline.human_tasks(session, instance_id)],
            "row": (running.row.status, running.row.archived_at, running.row.lock_version)}


def _archive_rows(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every archive table's rows, in primary-key order, with the state text as bytes."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table in ARCHIVE_TABLES:
        query = select(table).order_by(*table.primary_key.columns)
        rows[table.name] = [tuple(v.encode("utf-8") if isinstance(v, str) else v for v in r)
                            for r in session.execute(query)]
    return rows


def _people(session: Session) -> dict[str, Actor]:
    from engine.org.actors import actor_for
    return {u: actor_for(session, u) for u in ("applicant", "window", "admin")}


def test_archived_instances_survive_backup_and_restore(session: Session, world: dict[str, Any], db_url: str,
                                                       empty_target: str, tmp_path: Path) -> None:
    looks = {i: _look(session, i) for i in (world["completed"], world["running"], *world["archived"])}
    rows = _archive_rows(session)
    assert len(rows["archive_instance_state"]) == 2 and len(rows["archive_human_task"]) == 4
    assert rows["archive_task_candidate"]
    events = int(session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) or 0)
    session.rollback()
    source = dataclasses.replace(config.load(), database_url=db_url, instance_dir=tmp_path / "instance-a")
    made = backup.backup(tmp_path / "b.tar.gz", source)
    assert made.events == events

    target = dataclasses.replace(source, database_url=empty_target, instance_dir=tmp_path / "instance-b")
    restore.restore(made.path, settings=target)
    engine = make_engine(empty_target)
    try:
        factory = make_sessionmaker(engine)
        with factory() as restored:
            assert _archive_rows(restored) == rows  # byte for byte
            for instance_id, look in looks.items():
                assert _look(restored, instance_id) == look, instance_id
            report = audit.verify(restored)
            assert report.ok and report.events == events, report.problems
            restored.rollback()
            _finish_and_archive(restored, factory, world, rows)
    finally:
        engine.dispose()


def _finish_and_archive(session: Session, factory: sessionmaker[Session], world: dict[str, Any],
                        rows: dict[str, list[tuple[Any, ...]]]) -> None:
    """The running instance finishes on the restored database; its steps get ids of their own; all can be archived."""
    people = _people(session)
    running = world["running"]
    archived_ids = {r[0] for r in rows["archive_human_task"]}
    _submit(session, people, running)
    accept = only_task(session, running, "accept")
    assert accept.id not in archived_ids, f"new step {accept.id} reuses an archived step's id"
    _reject(session, people, running)
    assert session.scalar(select(ProcessInstance.status).where(ProcessInstance.id == running)) == "completed"
    steps = list(session.scalars(select(HumanTask.id).where(HumanTask.instance_id == running)))
    assert len(steps) == 2 and not set(steps) & archived_ids
    session.commit()
    clock.advance(timedelta(days=400))
    assert archive.run(factory, after_days=365, batch=10).moved == 2  # the completed one and the one finished here
    session.expire_all()
    assert len(list(session.execute(select(archived_tasks.c.id)))) == 8
    for instance_id in (world["completed"], running, *world["archived"]):
        assert runtime.load(session, instance_id, read_only=True).row.archived_at is not None
    assert audit.verify(session).ok


# --- hostile archives ------------------------------------------------------------------------------------------

def _rewrite(archive_path: Path, out: Path, member: str, change: Any) -> Path:
    """Copy an archive, passing `member`'s bytes through `change` (the manifest is left as it was)."""
    with tarfile.open(archive_path) as src, tarfile.open(out, "w:gz") as dst:
        for m in src:
            fh = src.extractfile(m)
            data = fh.read() if fh else b""
            if m.name == member:
                data = change(data)
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def _in_copy(dump: bytes, statement: str, tmp: Path) -> bytes:
    """Run one statement on the archive's database copy, as someone with sqlite3 at hand would, and return the file."""
    copy = tmp / f"edit-{uuid.uuid4().hex[:6]}.sqlite"
    copy.write_bytes(dump)
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute(statement).rowcount > 0, statement
        conn.commit()
    finally:
        conn.close()
    return copy.read_bytes()


def _reseal(altered: Path, out: Path, member: str) -> Path:
    """The altered archive with its manifest's size and SHA-256 of `member` made to match (its MAC left as it was)."""
    with tarfile.open(altered) as tar:
        fh = tar.extractfile(member)
        assert fh is not None
        data = fh.read()

    def fix(raw: bytes) -> bytes:
        manifest = json.loads(raw)
        manifest["files"][member] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return json.dumps(manifest).encode()
    return _rewrite(altered, out, "manifest.json", fix)


def _snapshot(url: str) -> Any:
    """What the target holds: the file's bytes (SQLite), or every table with its row count (PostgreSQL)."""
    if url.startswith("sqlite"):
        path = backup.sqlite_path(url)
        files = (path, path.with_name(path.name + "-wal"))
        return [hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None for f in files]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            names = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).scalars()
            return {n: conn.execute(text(f'SELECT count(*) FROM "{n}"')).scalar() for n in list(names)}
    finally:
        engine.dispose()


def test_an_archive_with_its_database_part_altered_or_cut_short_is_refused_and_changes_nothing(
        session: Session, world: dict[str, Any], db_url: str, empty_target: str, tmp_path: Path) -> None:
    session.rollback()
    source = dataclasses.replace(config.load(), database_url=db_url, instance_dir=tmp_path / "instance-a")
    good = backup.backup(tmp_path / "b.tar.gz", source).path
    member = SQLITE_DUMP if db_url.startswith("sqlite") else backup.PG_DUMP
    if member == SQLITE_DUMP:  # the archive tables themselves: one state edited, one archived step removed
        altered = _rewrite(good, tmp_path / "altered.tar.gz", member, lambda d: _in_copy(
            d, "UPDATE archive_instance_state SET state = replace(state, 'reject', 'accept')", tmp_path))
        cut = _rewrite(good, tmp_path / "cut.tar.gz", member, lambda d: _in_copy(
            d, "DELETE FROM archive_human_task WHERE id = (SELECT max(id) FROM archive_human_task)", tmp_path))
    else:  # pg_dump's custom format is compressed: a flipped byte, and the dump cut in half
        altered = _rewrite(good, tmp_path / "altered.tar.gz", member, lambda d: d[:4000] + bytes([d[4000] ^ 1]) + d[4001:])
        cut = _rewrite(good, tmp_path / "cut.tar.gz", member, lambda d: d[: len(d) // 2])
    half = _rewrite(good, tmp_path / "half.tar.gz", member, lambda d: d[: len(d) // 2])
    gone = _rewrite(good, tmp_path / "gone.tar.gz", member, lambda d: b"")
    resealed = _reseal(altered, tmp_path / "resealed.tar.gz", member)  # checksums redone, without the audit key
    whole = tmp_path / "whole-cut.tar.gz"
    whole.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])

    # An empty target, and one that already holds a restored database (replaced only with --force).
    fresh = dataclasses.replace(source, database_url=empty_target, instance_dir=tmp_path / "instance-b")
    for force in (False, True):
        if force:
            restore.restore(good, settings=fresh)
        before = _snapshot(empty_target)
        files = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "instance-b").rglob("*"))
        for path, words in ((altered, f"{member}: its checksum does not match"),
                            (cut, f"{member}: its checksum does not match"),
                            (half, f"{member}: its checksum does not match"),
                            (gone, f"{member}: its checksum does not match"),
                            (resealed, "the manifest's MAC does not match under the audit key (tampered)"),
                            (whole, "not a readable backup archive (corrupt or truncated)")):
            with pytest.raises(ArchiveRefused) as refused:
                restore.restore(path, settings=fresh, force=force)
            assert words in str(refused.value), (path.name, str(refused.value))
            assert _snapshot(empty_target) == before, path.name
            assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "instance-b").rglob("*")) == files
    engine = make_engine(empty_target)
    try:
        with make_sessionmaker(engine)() as restored:  # still the good restore, untouched by the refused ones
            assert restored.scalar(select(ProcessInstance.archived_at).where(
                ProcessInstance.id == world["archived"][0])) is not None
            assert audit.verify(restored).ok
    finally:
        engine.dispose()
