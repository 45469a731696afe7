"""Trust I hole 8: an audit trail that could be erased or rewritten unnoticed. Each attack is named by verify."""
from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from engine import audit, cli, config
from engine.audit import anchor as audit_anchor
from engine.audit.models import AuditCheckpoint, AuditEvent
from engine.db import is_postgres
from engine.org.actors import SYSTEM


def _events(session: Session, stream: str, n: int) -> None:
    for i in range(n):
        audit.record(session, SYSTEM, "test.step", stream=stream, object_type="thing", object_id=i, after={"i": i})


@pytest.fixture
def trail(session: Session) -> Session:
    _events(session, "instance:1", 3)
    _events(session, "instance:2", 2)
    session.commit()
    assert audit.seal(session) is not None
    session.commit()
    return session


def _bypassing_triggers(session: Session, *statements: str | tuple[str, dict[str, object]]) -> None:
    """What someone who owns the database can do: switch triggers off and write the tables."""
    if is_postgres(session):
        session.execute(text("SET LOCAL session_replication_role = replica"))
    for statement in statements:
        sql, params = statement if isinstance(statement, tuple) else (statement, {})
        session.execute(text(sql), params)
    session.commit()


def test_hole8_truncate_is_refused(trail: Session) -> None:
    if not is_postgres(trail):
        pytest.skip("SQLite has no TRUNCATE; the statement trigger is PostgreSQL's")
    with pytest.raises(DBAPIError, match="append-only"):
        trail.execute(text("TRUNCATE audit_event, audit_checkpoint"))
    trail.rollback()
    assert audit.verify(trail).ok


def test_hole8_truncate_with_triggers_bypassed_is_named(trail: Session, db_url: str) -> None:
    erase = "TRUNCATE audit_event, audit_checkpoint" if is_postgres(trail) else "DELETE FROM audit_event"
    _bypassing_triggers(trail, *([erase] if is_postgres(trail) else [erase, "DELETE FROM audit_checkpoint"]))
    report = audit.verify(trail)
    assert not report.ok and report.events == 0
    assert any("stream instance:1: all 3 events missing" in p for p in report.problems), report.problems
    assert any("stream instance:2: all 2 events missing" in p for p in report.problems)
    assert any("checkpoint #1: missing" in p for p in report.problems)
    trail.rollback()
    result = CliRunner().invoke(cli.main, ["audit-verify"], env={"JZFLOW_DATABASE_URL": db_url})
    assert result.exit_code == 1 and "intact" not in result.output
    assert "instance:1: all 3 events missing" in result.output


def test_hole8_events_after_the_last_seal_deleted_are_named(trail: Session) -> None:
    _events(trail, "instance:1", 2)  # seq 4 and 5, committed after the seal, not sealed yet
    trail.commit()
    _bypassing_triggers(trail, "DELETE FROM audit_event WHERE stream = 'instance:1' AND seq > 3")
    report = audit.verify(trail)
    assert not report.ok
    assert report.problem is not None and "stream instance:1: seq 4–5 missing" in report.problem
    assert "the database ends at seq 3" in report.problem


def _unkeyed(prev: str, row: AuditEvent) -> str:
    return hashlib.sha256(audit.event_body(prev, row).encode()).hexdigest()


def test_hole8_sealed_event_rewritten_with_chain_and_checkpoint_recomputed_is_named(trail: Session) -> None:
    # The attacker rewrites the second event of a sealed stream, recomputes the stream's (unkeyed) chain
    # and the checkpoint exactly as the old code did: nothing in the database disagrees any more.
    rows = list(trail.scalars(select(AuditEvent).where(AuditEvent.stream == "instance:1").order_by(AuditEvent.seq)))
    statements: list[tuple[str, dict[str, object]]] = []
    prev = audit.GENESIS
    for row in rows:
        if row.seq == 2:
            row.after = {"i": 99}
        digest = _unkeyed(prev, row)
        statements.append(("UPDATE audit_event SET after = :after, prev_hash = :prev, hash = :hash WHERE id = :id",
                           {"after": json.dumps(row.after), "prev": prev, "hash": digest, "id": row.id}))
        prev = digest
    trail.expunge_all()
    _bypassing_triggers(trail, *statements)
    cp = trail.scalars(select(AuditCheckpoint)).one()
    sealed = json.loads(cp.heads)
    sealed["digest"] = audit._heads_digest(trail, sealed["max_id"])[0]
    heads = json.dumps(sealed, sort_keys=True, separators=(",", ":"))
    cp_hash = hashlib.sha256(f"{cp.prev_hash}{heads}".encode()).hexdigest()
    trail.expunge_all()
    _bypassing_triggers(trail, ("UPDATE audit_checkpoint SET heads = :heads, hash = :hash WHERE id = :id",
                                {"heads": heads, "hash": cp_hash, "id": cp.id}))
    report = audit.verify(trail)
    assert not report.ok and report.first_bad_event_id == rows[0].id  # the whole rewritten stream fails its key
    assert "instance:1 seq 1: content does not match its keyed hash (altered)" in (report.problem or "")
    assert any("seq 2: content does not match" in p for p in report.problems)
    assert any("checkpoint #1: altered" in p for p in report.problems)
    assert any("differs from its anchor" in p for p in report.problems)  # the head anchored outside


def test_hole8_anchor_line_altered_is_named(trail: Session) -> None:
    path = config.load().anchor_path
    scope = audit_anchor.scope_of(trail.get_bind())
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    mine = max(i for i, line in enumerate(lines) if json.dumps(scope) in line)
    body, tag = lines[mine].rstrip("\n").rsplit("\t", 1)
    lines[mine] = body.replace('"heads":{', '"heads":{"instance:9":[1,"00"],', 1) + "\t" + tag + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    report = audit.verify(trail)
    assert not report.ok and any(f"anchor line {mine + 1}: altered" in p for p in report.problems)


def test_hole8_the_anchor_folder_is_made_when_missing_even_after_it_was_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "logs" / "audit" / "anchors.log"
    monkeypatch.setenv("JZFLOW_AUDIT_ANCHOR", str(path))
    audit_anchor.append_heads("test:folder", {"instance:1": [1, "aa"]})
    (first,) = path.read_text(encoding="utf-8").splitlines()
    assert '"instance:1":[1,"aa"]' in first
    path.unlink()
    path.parent.rmdir()  # an operator cleaned up the folder while the process ran
    audit_anchor.append_heads("test:folder", {"instance:1": [2, "bb"]})
    (second,) = path.read_text(encoding="utf-8").splitlines()
    assert '"instance:1":[2,"bb"]' in second


def test_hole8_a_wrong_key_breaks_every_row(trail: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_AUDIT_KEY", "not-the-key")
    report = audit.verify(trail)
    assert not report.ok and "keyed hash (altered)" in (report.problem or "")


def test_hole8_key_file_is_generated_once_outside_the_database(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JZFLOW_AUDIT_KEY")
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path))
    first = audit_anchor.key()
    key_file = tmp_path / "audit.key"
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert audit_anchor.key() == first == key_file.read_text().strip().encode()


def _legacy_trail(url: str, *, break_it: bool = False) -> None:
    """Write an unkeyed (plain SHA-256) trail as the code before migration 0009 did."""
    from datetime import datetime
    from types import SimpleNamespace

    from engine.db import make_engine
    engine = make_engine(url)
    prev = audit.GENESIS
    with engine.begin() as conn:
        for seq in (1, 2, 3):
            row = SimpleNamespace(stream="instance:7", seq=seq, at=datetime(2025, 1, seq, tzinfo=UTC),
                                  actor_id=None, actor_name="system", action="test.step", object_type="thing",
                                  object_id=str(seq), before=None, after={"i": seq})
            digest = hashlib.sha256(audit.event_body(prev, row).encode()).hexdigest()
            if break_it and seq == 2:
                row.after = {"i": 22}  # changed after hashing: the old chain is already broken
            conn.execute(AuditEvent.__table__.insert().values(**vars(row), prev_hash=prev, hash=digest))
            prev = digest
    engine.dispose()


def test_hole8_migration_rekeys_an_intact_legacy_trail(tmp_path: Path) -> None:
    from engine import migrate
    from engine.db import make_engine, make_sessionmaker
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    migrate.upgrade(url, "0008")
    _legacy_trail(url)
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        report = audit.verify(session)
        assert report.ok and report.events == 3 and report.anchors == 1, report.problems
    engine.dispose()


def test_hole8_migration_refuses_to_rekey_a_broken_legacy_trail(tmp_path: Path) -> None:
    from engine import migrate
    from engine.audit.rekey import BrokenLegacyTrail
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    migrate.upgrade(url, "0008")
    _legacy_trail(url, break_it=True)
    with pytest.raises(BrokenLegacyTrail, match="event #2"):
        migrate.upgrade(url)


def test_hole8_events_of_a_rolled_back_savepoint_or_closed_session_are_not_appended(session: Session) -> None:
    _events(session, "instance:5", 1)
    with session.begin_nested() as savepoint:
        _events(session, "instance:5", 2)
        savepoint.rollback()
    session.commit()
    _events(session, "instance:6", 1)
    session.close()  # never committed
    session.commit()
    streams = list(session.scalars(select(AuditEvent.stream).order_by(AuditEvent.id)))
    assert streams == ["instance:5"]
    assert audit.verify(session).ok
