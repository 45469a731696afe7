"""An audit event written by the statement that writes what it records: a completion's save, on PostgreSQL.

A completion records one event on its instance's stream, whose head its first read saw (`saw_head`). Chained onto
that head, the event can go into the save's own statement instead of a statement of its own at the commit: a round
trip less. Only as long as nothing else waits: the statement takes the head only when no other writer holds it and
only after every row it writes (see `statement_ctes`); otherwise the event waits for the commit like any other.
"""
from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from engine.audit import anchor as audit_anchor
from engine.audit.core import _COLUMNS, _EVENTS, APPENDED, _chain, _row
from engine.audit.models import AuditEvent
from engine.db import is_postgres

_CTES = """audit_head_moved AS (
  UPDATE audit_head SET seq = %(e_seq)s::INTEGER, hash = %(e_hash)s::VARCHAR
  WHERE stream = (SELECT stream FROM audit_head WHERE stream = %(e_stream)s::VARCHAR
    AND seq = %(e_prev_seq)s::INTEGER AND hash = %(e_prev_head)s::VARCHAR AND {when}
    FOR UPDATE SKIP LOCKED) RETURNING stream),
audit_written AS (
  INSERT INTO audit_event ({names})
  SELECT {values} FROM audit_head_moved RETURNING id)"""


def statement_ctes(when: str) -> str:
    """Two CTEs that write a `for_statement` event within the caller's statement, only if the SQL `when` holds.

    The event goes in only while its stream's head is the one this transaction saw and no other writer holds it:
    SKIP LOCKED, so the statement never waits for the head (the commit's locked path then appends the event). The
    caller's `when` must make every row lock of its statement come first (a scalar subquery over each writing
    CTE): a writer holding one of those rows that appends to the stream at its commit would otherwise wait for the
    head while we wait for its row. Its one row of output: the event's id.
    """
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return _CTES.format(  # nosec B608 # the caller's condition and the table's columns: every value is a parameter
        when=when, names=", ".join(_COLUMNS),
        values=", ".join(f"%(e_{name})s::{_EVENTS.c[name].type.compile(dialect=dialect)}" for name in _COLUMNS))


NO_EVENT: dict[str, Any] = {**{f"e_{name}": None for name in _COLUMNS}, "e_prev_seq": None, "e_prev_head": None}


_JSON_PROCESSORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _json_processor(dialect: Any) -> Any:
    """The JSON column's bind processor for the dialect, built once per dialect (not anew for every event)."""
    try:
        return _JSON_PROCESSORS[dialect]
    except KeyError:
        processor = _JSON_PROCESSORS[dialect] = _EVENTS.c.after.type.dialect_impl(dialect).bind_processor(dialect)
        return processor


def for_statement(session: Session, ev: AuditEvent) -> dict[str, Any] | None:
    """Chain an event onto the head this transaction saw of its stream, as `statement_ctes`' parameters.

    None when it must wait for the commit: not PostgreSQL, no head seen, or events of the stream wait already (this
    one must follow them).
    """
    seen = session.info.get(audit_anchor.HEAD_SEEN, {}).get(ev.stream)
    waiting = session.info.get(audit_anchor.DEFERRED, [])
    if seen is None or not is_postgres(session) or any(other.stream == ev.stream for _tx, other in waiting):
        return None
    _chain([ev], {ev.stream: seen}, audit_anchor.key())
    params = {f"e_{name}": value for name, value in _row(ev).items()}
    to_json = _json_processor(session.get_bind().dialect)
    if to_json is not None:  # as the ORM and Core write a JSON column
        params.update(e_before=to_json(ev.before), e_after=to_json(ev.after))
    params.update(e_prev_seq=seen[0], e_prev_head=seen[1])
    return params


def written_by_statement(session: Session, ev: AuditEvent, event_id: int | None) -> None:
    """Finish an event a statement wrote (`event_id`), or keep it for the commit when the statement did not."""
    if event_id is None:  # the head moved since the read, or another writer holds it
        audit_anchor.defer(session, ev)  # chained again at the commit, onto the head it then locks
        return
    ev.id = event_id
    session.info.setdefault(audit_anchor.HEAD_SEEN, {})[ev.stream] = (ev.seq, ev.hash)  # a later event starts here
    audit_anchor.note_event(session, ev.stream, ev.seq, ev.hash)
    for hook in APPENDED:
        hook(session, [ev])
