"""`jzflow backup` / `jzflow restore` on SQLite and PostgreSQL: audit-verify passes after a restore; bad archives refused."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from engine import audit, cli, config
from engine.audit.models import AuditEvent
from engine.db import is_postgres, make_engine, make_sessionmaker
from engine.ops import backup, restore
from engine.ops.backup import ArchiveRefused
from engine.org.actors import SYSTEM
from engine.org.models import User
from tests.conftest import PgDatabases


def _events(session: Session, stream: str, n: int) -> None:
    for i in range(n):
        audit.record(session, SYSTEM, "test.step", stream=stream, object_type="thing", object_id=i, after={"i": i})


@pytest.fixture
def source(session: Session, review_org: dict[str, Any], db_url: str, tmp_path: Path) -> config.Settings:
    """A database with users, audit streams and a seal; an instance folder with a settings file of its own."""
    _events(session, "instance:1", 3)
    _events(session, "instance:2", 2)
    session.commit()
    assert audit.seal(session) is not None
    session.commit()
    _events(session, "instance:1", 1)  # after the seal: anchored, not sealed
    session.commit()
    instance = tmp_path / "instance-a"
    (instance / "deadlines").mkdir(parents=True)
    (instance / "deadlines" / "policies.yaml").write_text("默认: {}\n", encoding="utf-8")
    (instance / "broker.sqlite").write_bytes(b"queue")  # the embedded broker's queue: not data, not backed up
    return dataclasses.replace(config.load(), database_url=db_url, instance_dir=instance)


@pytest.fixture
def empty_target(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of the same kind as the source (never initialised)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'jzflow.sqlite'}"
        return
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    name = f"{dbs.prefix}_empty_{uuid.uuid4().hex[:6]}"
    dbs._create(name)
    yield dbs.url(name)
    dbs.drop(dbs.url(name))


def _verify(url: str) -> audit.core.VerifyReport:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return audit.verify(session)
    finally:
        engine.dispose()


def _count(url: str, model: Any) -> int:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def test_backup_then_restore_into_an_empty_database_passes_audit_verify(source: config.Settings, empty_target: str,
                                                                         tmp_path: Path) -> None:
    events = _count(source.database_url, AuditEvent)
    report = backup.backup(tmp_path / "b.tar.gz", source)
    assert report.events == events > 6 and report.revision
    with tarfile.open(report.path) as tar:
        names = set(tar.getnames())
    assert "instance/deadlines/policies.yaml" in names and "instance/broker.sqlite" not in names
    assert {"manifest.json", "anchors/audit-anchors.log"} <= names
    target = dataclasses.replace(source, database_url=empty_target, instance_dir=tmp_path / "instance-b")
    done = restore.restore(report.path, settings=target)
    assert done.events == events and done.migrated_to is None
    assert (tmp_path / "instance-b" / "deadlines" / "policies.yaml").read_text(encoding="utf-8") == "默认: {}\n"
    verified = _verify(empty_target)
    assert verified.ok, verified.problems
    assert verified.events == events and verified.checkpoints == 1
    assert _count(empty_target, User) == _count(source.database_url, User) > 0
    if empty_target.startswith("postgresql"):  # pg_restore leaves no statistics: plans made without them go stale
        assert _analysed(empty_target) >= {"audit_event", "app_user"}


def _analysed(url: str) -> set[str]:
    """The tables PostgreSQL holds column statistics for."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(text("SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = 'public'")))
    finally:
        engine.dispose()


def test_the_restored_database_is_held_to_the_backups_anchors(source: config.Settings, empty_target: str,
                                                               tmp_path: Path) -> None:
    archive = backup.backup(tmp_path / "b.tar.gz", source).path
    restore.restore(archive, settings=dataclasses.replace(source, database_url=empty_target,
                                                          instance_dir=tmp_path / "instance-b"))
    engine = make_engine(empty_target)
    with make_sessionmaker(engine)() as session:
        if is_postgres(session):
            session.execute(text("SET LOCAL session_replication_role = replica"))
        session.execute(text("DELETE FROM audit_event WHERE stream = 'instance:1' AND seq = 4"))
        session.commit()
    engine.dispose()
    report = _verify(empty_target)
    assert not report.ok and any("instance:1: seq 4–4 missing" in p for p in report.problems), report.problems


def test_restore_in_place_with_force_after_more_work_passes_audit_verify(source: config.Settings, session: Session,
                                                                          tmp_path: Path) -> None:
    events = _count(source.database_url, AuditEvent)
    archive = backup.backup(tmp_path / "b.tar.gz", source).path
    _events(session, "instance:3", 2)  # work after the backup: anchored, then lost by the restore
    session.commit()
    session.close()
    with pytest.raises(ArchiveRefused, match="not empty"):
        restore.restore(archive, settings=source)
    restore.restore(archive, settings=source, force=True)
    report = _verify(source.database_url)
    assert report.ok, report.problems
    assert report.events == events


def _rewrite(archive: Path, out: Path, change: Any) -> Path:
    """Copy an archive member by member, letting `change(name, data)` return new bytes (or None to drop it)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            fh = src.extractfile(member)
            data = fh.read() if fh else b""
            new = change(member.name, data)
            if new is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(new)
            dst.addfile(info, io.BytesIO(new))
    return out


def _manifest_edit(edit: Any, key: bytes | None = None) -> Any:
    def change(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        edit(manifest)
        manifest["mac"] = backup.manifest_mac(manifest, key or config.audit_key(config.load()))
        return json.dumps(manifest).encode()
    return change


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_corrupt_tampered_newer_and_hostile_archives_are_refused_and_change_nothing(
        source: config.Settings, tmp_path: Path) -> None:
    archive = backup.backup(tmp_path / "b.tar.gz", source).path
    dump = "database/jzflow.sqlite"

    def flip(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name == dump else data

    cases = {
        "checksum does not match": _rewrite(archive, tmp_path / "flip.tar.gz", flip),
        "MAC does not match": _rewrite(archive, tmp_path / "mac.tar.gz", lambda n, d: d.replace(
            b'"anchor_lines": ', b'"anchor_lines": 1') if n == "manifest.json" else d),
        "newer jzflow": _rewrite(archive, tmp_path / "newer.tar.gz", _manifest_edit(
            lambda m: m["database"].update(revision="9999_from_the_future"))),
        "another audit key": _rewrite(archive, tmp_path / "key.tar.gz", _manifest_edit(
            lambda m: m["audit"].update(key_fingerprint="0" * 16))),
        "missing from the archive": _rewrite(archive, tmp_path / "drop.tar.gz",
                                             lambda n, d: None if n == dump else d),
        "not in the manifest": _rewrite(archive, tmp_path / "extra.tar.gz", lambda n, d: d),
        "not a plain relative path": _rewrite(archive, tmp_path / "evil.tar.gz", lambda n, d: d),
        "not a readable backup archive": tmp_path / "truncated.tar.gz",
    }
    _append_member(cases["not in the manifest"], "instance/extra.txt", b"x")
    _append_member(cases["not a plain relative path"], "instance/../../evil.txt", b"x")
    cases["not a readable backup archive"].write_bytes(archive.read_bytes()[:2000])
    target_url = f"sqlite:///{tmp_path / 'target' / 'jzflow.sqlite'}"
    target = dataclasses.replace(source, database_url=target_url, instance_dir=tmp_path / "instance-b")
    for expected, path in cases.items():
        with pytest.raises(ArchiveRefused, match=expected):
            restore.restore(path, settings=target)
        assert not (tmp_path / "instance-b").exists(), expected
        engine = make_engine(target_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type = 'table'")).scalar() == 0
        engine.dispose()
    result = CliRunner().invoke(cli.main, ["restore", str(cases["MAC does not match"])],
                                env={"JZFLOW_DATABASE_URL": target_url, "JZFLOW_INSTANCE_DIR": str(tmp_path / "c")})
    assert result.exit_code == 2 and "tampered" in result.output


def _append_member(archive: Path, name: str, data: bytes) -> None:
    with tarfile.open(archive) as src:
        members = [(m, src.extractfile(m).read()) for m in src]  # type: ignore[union-attr]
    with tarfile.open(archive, "w:gz") as dst:
        for member, body in [*members, (tarfile.TarInfo(name), data)]:
            member.size = len(body)
            dst.addfile(member, io.BytesIO(body))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_cli_backs_up_and_restores(source: config.Settings, empty_target: str, tmp_path: Path) -> None:
    env = {"JZFLOW_DATABASE_URL": source.database_url, "JZFLOW_INSTANCE_DIR": str(source.instance_dir)}
    made = CliRunner().invoke(cli.main, ["backup", str(tmp_path)], env=env)
    assert made.exit_code == 0, made.output
    archive = next(tmp_path.glob("jzflow-backup-*.tar.gz"))
    assert archive.stat().st_mode & 0o077 == 0  # it holds key files: owner-only
    again = CliRunner().invoke(cli.main, ["backup", str(archive)], env=env)
    assert again.exit_code == 2 and "already exists" in again.output
    env_b = {"JZFLOW_DATABASE_URL": empty_target, "JZFLOW_INSTANCE_DIR": str(tmp_path / "instance-b")}
    done = CliRunner().invoke(cli.main, ["restore", str(archive)], env=env_b)
    assert done.exit_code == 0, done.output
    verified = CliRunner().invoke(cli.main, ["audit-verify"], env=env_b)
    assert verified.exit_code == 0 and "intact" in verified.output, verified.output
    assert hashlib.sha256(archive.read_bytes()).hexdigest()  # the archive is still there, unchanged by restore


def test_a_link_planted_where_the_archive_is_written_receives_nothing(source: config.Settings,
                                                                       tmp_path: Path) -> None:
    """A shared backup folder (/tmp, a mounted share): another user plants a link at the name the archive is
    written under first; the archive holds the database and the keys, so nothing may go through the link."""
    shared = tmp_path / "shared"
    shared.mkdir()
    theirs = tmp_path / "theirs.bin"
    theirs.write_bytes(b"")
    (shared / "b.tar.gz.partial").symlink_to(theirs)
    report = backup.backup(shared / "b.tar.gz", source)
    assert theirs.read_bytes() == b""
    assert report.path == shared / "b.tar.gz" and not report.path.is_symlink()
    assert report.path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(report.path) as tar:
        assert "manifest.json" in tar.getnames()


def test_two_backups_to_one_name_at_once_leave_one_whole_archive_and_refuse_the_other(
        source: config.Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "nightly.tar.gz"
    both_checked = threading.Barrier(2, timeout=30)
    add = tarfile.TarFile.add

    def add_together(self: tarfile.TarFile, name: Any, *args: Any, **kwargs: Any) -> None:
        if Path(name).name == "manifest.json":  # both have found no file of that name and are writing
            both_checked.wait()
        add(self, name, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "add", add_together)
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(backup.backup(target, source))
        except ArchiveRefused as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(type(o).__name__ for o in outcomes) == ["ArchiveRefused", "BackupReport"]
    assert "already exists" in str(next(o for o in outcomes if isinstance(o, ArchiveRefused)))
    with tarfile.open(target) as tar:  # whole: every member reads to its end
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None and len(handle.read()) == member.size
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("nightly", ".nightly"))) == \
        ["nightly.tar.gz"]  # no partial file left
