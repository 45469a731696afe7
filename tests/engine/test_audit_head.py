"""audit_head: an append reads and locks its stream's head row; the row is never trusted, the events are."""
from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import audit
from engine.audit.models import AuditEvent, AuditHead
from engine.org.actors import SYSTEM


def _note(session: Session, stream: str, n: int = 1) -> None:
    for i in range(n):
        audit.record(session, SYSTEM, "test.note", stream=stream, object_type="note", object_id=i, after={"i": i})
    session.commit()


def _events_head(session: Session, stream: str) -> tuple[int, str]:
    row = session.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.stream == stream)
                          .order_by(AuditEvent.seq.desc()).limit(1)).one()
    return row.seq, row.hash


def test_the_head_row_follows_every_append_of_its_stream(session: Session) -> None:
    _note(session, "test:a", 3)
    _note(session, "test:b")
    audit.record(session, SYSTEM, "test.note", stream="test:a", object_type="note", object_id=9)
    audit.record(session, SYSTEM, "test.note", stream="test:b", object_type="note", object_id=9)
    session.commit()  # one transaction, two streams
    for stream, seq in (("test:a", 4), ("test:b", 2)):
        head = session.get(AuditHead, stream, populate_existing=True)
        assert head is not None and (head.seq, head.hash) == _events_head(session, stream) and head.seq == seq
    assert audit.verify(session).ok


def test_a_stream_without_a_head_row_continues_from_its_events(session: Session) -> None:
    """Events written before the head table (or by a bulk load) have no head row: the first append reads them."""
    _note(session, "test:old", 2)
    session.execute(text("DELETE FROM audit_head WHERE stream = 'test:old'"))
    session.commit()
    _note(session, "test:old")
    assert session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.stream == "test:old")) == 3
    head = session.get(AuditHead, "test:old", populate_existing=True)
    assert head is not None and head.seq == 3
    assert audit.verify(session).ok


def test_an_altered_head_row_is_named_by_verify_not_trusted(session: Session) -> None:
    """Whoever edits a head makes the next event chain onto a wrong hash (or seq): verify names the stream."""
    _note(session, "test:x", 2)
    session.execute(text("UPDATE audit_head SET hash = :h WHERE stream = 'test:x'"), {"h": "f" * 64})
    session.commit()
    _note(session, "test:x")
    report = audit.verify(session)
    assert not report.ok and any("test:x" in p for p in report.problems), report.problems
    _note(session, "test:y", 2)
    session.execute(text("UPDATE audit_head SET seq = 0 WHERE stream = 'test:y'"))  # pretend it is empty
    session.commit()
    with pytest.raises(IntegrityError):
        _note(session, "test:y")  # seq 1 again: the unique (stream, seq) refuses, nothing is written
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.stream == "test:y")) == 2


def test_a_new_stream_seen_empty_appends_in_one_statement_and_a_stream_with_events_is_never_restarted(
        session: Session) -> None:
    """A transaction that made the stream's object (a new instance) saw it empty: its commit appends from the
    start in one statement on PostgreSQL. Events without a head row, or a head another writer made, are never
    chained over: the locked path then reads what is there."""
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    audit.saw_head(session, "test:new", 0, audit.GENESIS)
    audit.record(session, SYSTEM, "test.note", stream="test:new", object_type="note", object_id=1)
    event.listen(session.get_bind(), "before_cursor_execute", before)
    try:
        session.commit()
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", before)
    if session.get_bind().dialect.name == "postgresql":
        assert len([s for s in seen if "audit_event" in s or "audit_head" in s or "advisory" in s]) == 1, seen
    _note(session, "test:old", 2)
    session.execute(text("DELETE FROM audit_head WHERE stream = 'test:old'"))
    session.commit()
    for stream in ("test:old", "test:new"):  # events without a head row; a head row that exists
        audit.saw_head(session, stream, 0, audit.GENESIS)
        audit.record(session, SYSTEM, "test.note", stream=stream, object_type="note", object_id=9)
        session.commit()
    assert session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.stream == "test:old")) == 3
    assert session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.stream == "test:new")) == 2
    assert audit.verify(session).ok
