"""Audit trail: append-only events chained per stream under a key, sealed by checkpoints, anchored, verifiable.

Each event's hash is an HMAC-SHA256, under a key the database does not hold (JZFLOW_AUDIT_KEY or the
instance folder's key file), of its content and the previous hash of its stream: whoever rewrites the
table cannot recompute the chain. Appends to one stream are serialised by locking the stream's row in
`audit_head` (its newest seq and hash; a stream's first append takes an advisory lock; SQLite transactions
are IMMEDIATE), so concurrent writers all succeed. Stream heads
and seals are anchored outside the database (`audit_anchor`), so deleted recent events, deleted streams
and a truncated table are named by `verify`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, exists, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine import clock
from engine.audit import anchor as audit_anchor
from engine.audit.models import AuditCheckpoint, AuditEvent, AuditHead
from engine.db import advisory_lock, is_postgres
from engine.org.actors import Actor

GENESIS = "0" * 64
MAX_PROBLEMS = 50


def jsonable(value: Any) -> Any:
    """Return a JSON-safe copy (Decimal and dates as strings) so stored and hashed values agree."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class EventContent(Protocol):
    stream: str
    seq: int
    at: datetime
    actor_id: int | None
    actor_name: str
    action: str
    object_type: str
    object_id: str
    before: Any
    after: Any


def event_body(prev_hash: str, ev: EventContent) -> str:
    """The canonical text an event's hash covers."""
    return _canonical([prev_hash, ev.stream, ev.seq, clock.as_utc(ev.at).isoformat(), ev.actor_id, ev.actor_name,
                       ev.action, ev.object_type, ev.object_id, ev.before, ev.after])


def event_hash(prev_hash: str, ev: EventContent, key: bytes | None = None) -> str:
    """HMAC an event's content together with the previous hash of its stream, under the audit key."""
    return hmac.new(key or audit_anchor.key(), event_body(prev_hash, ev).encode("utf-8"), hashlib.sha256).hexdigest()


def checkpoint_hash(prev_hash: str, heads: str, key: bytes | None = None) -> str:
    """HMAC a checkpoint's sealed heads together with the previous checkpoint's hash."""
    return hmac.new(key or audit_anchor.key(), f"{prev_hash}{heads}".encode(), hashlib.sha256).hexdigest()


def _lock_stream(session: Session, stream: str) -> None:
    """Serialise appends to one stream until the transaction ends (SQLite's IMMEDIATE transactions already do)."""
    advisory_lock(session, f"audit-stream:{stream}")  # prefixed: a stream is named like any other lock


def record(session: Session, actor: Actor, action: str, *, stream: str, object_type: str, object_id: str | int,
           before: Any = None, after: Any = None, at: datetime | None = None) -> AuditEvent:
    """Record an event in the caller's transaction; it is chained onto its stream when the transaction commits.

    Appending at commit time, not here, is what lets any number of writers share a stream: the stream's
    lock is the last lock a transaction takes, held only for its final INSERTs, so it can never close a
    cycle with the row locks the rest of the work holds (as taking it here did: deadlocks under load).
    A savepoint rolled back takes its events with it. The event gets its seq, hash and id at commit.
    """
    session.flush()  # the caller's own changes fail here, not at commit
    ev = new_event(actor, action, stream=stream, object_type=object_type, object_id=object_id, before=before,
                   after=after, at=at)
    audit_anchor.defer(session, ev)
    return ev


def new_event(actor: Actor, action: str, *, stream: str, object_type: str, object_id: str | int,
              before: Any = None, after: Any = None, at: datetime | None = None) -> AuditEvent:
    """An event not recorded yet: `record` keeps it for the commit, `for_statement` lets a save write it."""
    # Microseconds survive both SQLite and PostgreSQL, so the hash input is stable.
    return AuditEvent(stream=stream, at=at or clock.now(), actor_id=actor.user_id, actor_name=actor.username,
                      action=action, object_type=object_type, object_id=str(object_id),
                      before=jsonable(before), after=jsonable(after))


def _stream_heads(session: Session, streams: list[str]) -> dict[str, tuple[int, str]]:
    heads: dict[str, tuple[int, str]] = {}
    for i in range(0, len(streams), 900):
        chunk = streams[i:i + 900]
        last = (select(AuditEvent.stream, func.max(AuditEvent.seq).label("seq"))
                .where(AuditEvent.stream.in_(chunk)).group_by(AuditEvent.stream).subquery())
        for stream, seq, digest in session.execute(select(AuditEvent.stream, AuditEvent.seq, AuditEvent.hash).join(
                last, (AuditEvent.stream == last.c.stream) & (AuditEvent.seq == last.c.seq))):
            heads[stream] = (seq, digest)
    return heads


def _locked_heads(session: Session, streams: list[str]) -> dict[str, tuple[int, str]]:
    """Lock the streams' head rows (in stream order) and return their heads; a stream without one is read from its events.

    Locking the head row serialises appends to a stream: a writer waiting for it reads the head its predecessor
    committed. A stream's first append (no row yet) takes the stream's advisory lock instead, so two first appends
    cannot both start at 1 (SQLite's transactions are IMMEDIATE: one writer at a time anyway).
    """
    heads: dict[str, tuple[int, str]] = {}
    for i in range(0, len(streams), 900):
        chunk = streams[i:i + 900]
        rows = session.execute(select(AuditHead.stream, AuditHead.seq, AuditHead.hash)
                               .where(AuditHead.stream.in_(chunk)).order_by(AuditHead.stream).with_for_update())
        heads.update({stream: (seq, digest) for stream, seq, digest in rows})
    missing = [stream for stream in streams if stream not in heads]
    for stream in missing:  # sorted, like the rows above: two multi-stream writers cannot deadlock here
        _lock_stream(session, stream)
    if missing:
        heads.update(_stream_heads(session, missing))
    return heads


def _head_upsert(dialect: Any) -> Any:
    upsert = dialect.insert(AuditHead.__table__).values(stream=bindparam("h_stream"), seq=bindparam("h_seq"),
                                              hash=bindparam("h_hash"))
    return upsert.on_conflict_do_update(index_elements=["stream"],
                                        set_={"seq": upsert.excluded.seq, "hash": upsert.excluded.hash})


# Built once, so their compiled forms are cached: statements built per call were compiled again each time.
_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment] # Core, not the ORM bulk insert
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)
_MOVE_HEAD_SQLITE = _head_upsert(sqlite)
# PostgreSQL: the event and its stream's new head in one statement (a data-modifying CTE runs though nothing reads it)
_INSERT_EVENT_MOVE_HEAD_PG = insert(_EVENTS).add_cte(_head_upsert(postgresql).cte("moved_head")).returning(_EVENTS.c.id)
_COLUMNS = ("stream", "seq", "at", "actor_id", "actor_name", "action", "object_type", "object_id", "before", "after",
            "prev_hash", "hash")


# PostgreSQL, a stream whose head this transaction saw: the event goes in only if the head is still the one seen,
# and moves it (taking its lock) in the same statement. Nothing inserted: the head moved, the locked path runs.
_HEADS: Table = AuditHead.__table__  # type: ignore[assignment]
_MOVED_FROM_SEEN = (update(_HEADS)
                    .where(_HEADS.c.stream == bindparam("h_stream"), _HEADS.c.seq == bindparam("h_prev_seq"),
                           _HEADS.c.hash == bindparam("h_prev_hash"))
                    .values(seq=bindparam("h_seq"), hash=bindparam("h_hash"))
                    .returning(_HEADS.c.stream).cte("moved_head"))
_INSERT_EVENT_FROM_SEEN_PG = insert(_EVENTS).from_select(
    _COLUMNS, select(*(bindparam(f"e_{name}", type_=_EVENTS.c[name].type) for name in _COLUMNS))
    .where(exists(select(_MOVED_FROM_SEEN.c.stream)))).returning(_EVENTS.c.id)
# A stream this transaction saw empty (it made the stream's object: a new instance): the head row is created, only
# if the stream has no head row and no events. A conflicting head another writer is inserting is waited for, then
# left alone; nothing inserted: the locked path runs.
_NEW_HEAD = (postgresql.insert(_HEADS).from_select(
    ["stream", "seq", "hash"], select(bindparam("h_stream", type_=_HEADS.c.stream.type),
                                      bindparam("h_seq", type_=_HEADS.c.seq.type),
                                      bindparam("h_hash", type_=_HEADS.c.hash.type))
    .where(~exists().where(_EVENTS.c.stream == bindparam("h_stream", type_=_EVENTS.c.stream.type))))
    .on_conflict_do_nothing(index_elements=["stream"]).returning(_HEADS.c.stream).cte("new_head"))
_INSERT_EVENT_NEW_STREAM_PG = insert(_EVENTS).from_select(
    _COLUMNS, select(*(bindparam(f"e_{name}", type_=_EVENTS.c[name].type) for name in _COLUMNS))
    .where(exists(select(_NEW_HEAD.c.stream)))).returning(_EVENTS.c.id)


def saw_head(session: Session, stream: str, seq: int | None, digest: str | None) -> None:
    """Note a stream's head as a read of this transaction saw it (no lock): the commit's append tries it first."""
    if seq is not None and digest is not None:
        session.info.setdefault(audit_anchor.HEAD_SEEN, {})[stream] = (seq, digest)


def _row(ev: AuditEvent) -> dict[str, Any]:
    return {name: getattr(ev, name) for name in _COLUMNS}


def _insert(session: Session, events: list[AuditEvent]) -> None:
    """Insert the chained events in order, each moving its stream's head (one statement each on PostgreSQL)."""
    postgres = is_postgres(session)
    for ev in events:
        head = {"h_stream": ev.stream, "h_seq": ev.seq, "h_hash": ev.hash}
        if postgres:
            ev.id = session.execute(_INSERT_EVENT_MOVE_HEAD_PG, {**_row(ev), **head}).scalar_one()
        else:
            session.execute(_MOVE_HEAD_SQLITE, head)
            ev.id = session.execute(_INSERT_EVENT, _row(ev)).scalar_one()


APPENDED: list[Callable[[Session, list[AuditEvent]], None]] = []  # told of inserted events (the metrics count them)


def _chain(events: list[AuditEvent], heads: dict[str, tuple[int, str]], key: bytes) -> None:
    for ev in events:
        seq, prev = heads.get(ev.stream, (0, GENESIS))
        ev.seq, ev.prev_hash = seq + 1, prev
        ev.hash = event_hash(prev, ev, key)
        heads[ev.stream] = (ev.seq, ev.hash)


def _append_from_seen(session: Session, events: list[AuditEvent], seen: tuple[int, str], key: bytes) -> bool:
    """Append one stream's events onto the head this transaction saw; False (nothing written) if it has moved."""
    _chain(events, {events[0].stream: seen}, key)
    first = events[0]
    params = {f"e_{name}": value for name, value in _row(first).items()}
    params.update(h_stream=first.stream, h_seq=first.seq, h_hash=first.hash, h_prev_seq=seen[0], h_prev_hash=seen[1])
    statement = _INSERT_EVENT_NEW_STREAM_PG if seen[0] == 0 else _INSERT_EVENT_FROM_SEEN_PG
    first_id = session.connection().execute(statement, params).scalar()  # Core: no ORM layer
    if first_id is None:
        return False
    first.id = first_id
    _insert(session, events[1:])  # the head row is ours now
    return True


def append_deferred(session: Session, events: list[AuditEvent]) -> None:
    """Chain recorded events onto their streams and insert them: the last step of a committing transaction.

    One stream whose head a read of this transaction saw (a completion's first read does) is tried from that head
    in one statement; several streams lock their heads in stream order first, so two writers cannot deadlock.
    """
    session.flush()  # what the transaction changed goes first; the audit rows are its last statements
    streams = sorted({ev.stream for ev in events})
    seen = session.info.pop(audit_anchor.HEAD_SEEN, {})
    key = audit_anchor.key()
    if not (len(streams) == 1 and streams[0] in seen and is_postgres(session)
            and _append_from_seen(session, events, seen[streams[0]], key)):
        _chain(events, _locked_heads(session, streams), key)
        _insert(session, events)
    for ev in events:
        audit_anchor.note_event(session, ev.stream, ev.seq, ev.hash)
    for hook in APPENDED:
        hook(session, events)


audit_anchor.APPEND = append_deferred


def _heads_digest(session: Session, max_id: int) -> tuple[str, int]:
    last = (select(AuditEvent.stream, func.max(AuditEvent.seq).label("seq"))
            .where(AuditEvent.id <= max_id).group_by(AuditEvent.stream).subquery())
    rows = session.execute(select(AuditEvent.stream, AuditEvent.seq, AuditEvent.hash)
                           .join(last, (AuditEvent.stream == last.c.stream) & (AuditEvent.seq == last.c.seq))
                           .order_by(AuditEvent.stream)).all()
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.stream}\t{row.seq}\t{row.hash}\n".encode())
    return digest.hexdigest(), len(rows)


def seal(session: Session) -> AuditCheckpoint | None:
    """Seal every stream head into a chained checkpoint; None when nothing changed since the last."""
    if is_postgres(session):
        # One seal at a time (two beats, a slow seal overlapping the next): both chained onto the same last checkpoint,
        # and the fork read as tampering. This mode conflicts with itself, not with readers.
        session.execute(text("LOCK TABLE audit_checkpoint IN SHARE ROW EXCLUSIVE MODE"))
        # Wait for in-flight writers so no lower id commits after we read the maximum.
        session.execute(text("LOCK TABLE audit_event IN SHARE MODE"))
    max_id = session.scalar(select(func.max(AuditEvent.id))) or 0
    prev = session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))
    if prev is not None and json.loads(prev.heads)["max_id"] == max_id:
        return None
    digest, streams = _heads_digest(session, max_id)
    heads = _canonical({"max_id": max_id, "streams": streams, "digest": digest})
    prev_hash = prev.hash if prev else GENESIS
    cp = AuditCheckpoint(at=clock.now(), heads=heads, prev_hash=prev_hash, hash=checkpoint_hash(prev_hash, heads))
    session.add(cp)
    session.flush()
    audit_anchor.note_checkpoint(session, cp.id, cp.hash, max_id)
    return cp


@dataclass
class VerifyReport:
    ok: bool
    events: int
    streams: int
    checkpoints: int
    problem: str | None = None
    first_bad_event_id: int | None = None
    problems: list[str] = field(default_factory=list)  # every problem found (at most MAX_PROBLEMS)
    anchors: int = 0  # anchor lines of this database read


def _walk_events(session: Session, anchored: dict[str, tuple[int, str, str]], problems: list[str],
                 batch: int) -> tuple[int, dict[str, tuple[int, str]], int | None]:
    expected: dict[str, tuple[int, str]] = {}
    count, last_id = 0, 0
    first_bad: int | None = None
    key = audit_anchor.key()
    while True:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.id > last_id)
                               .order_by(AuditEvent.id).limit(batch)
                               .execution_options(populate_existing=True)).all()
        if not rows:
            break
        for ev in rows:
            count += 1
            last_id = ev.id
            seq, prev = expected.get(ev.stream, (0, GENESIS))
            found = []
            if ev.seq != seq + 1:
                found.append(f"stream {ev.stream}: expected seq {seq + 1}, found {ev.seq} (a row was deleted)")
            elif ev.prev_hash != prev:
                found.append(f"stream {ev.stream} seq {ev.seq}: prev_hash does not match the row before it")
            elif not hmac.compare_digest(event_hash(ev.prev_hash, ev, key), ev.hash):
                found.append(f"stream {ev.stream} seq {ev.seq}: content does not match its keyed hash (altered)")
            mark = anchored.get(ev.stream)
            if mark is not None and mark[0] == ev.seq and mark[1] != ev.hash:
                found.append(f"stream {ev.stream} seq {ev.seq}: differs from its anchor of {mark[2]} (rewritten)")
            for problem in found:
                if first_bad is None:
                    first_bad = ev.id
                problems.append(f"event #{ev.id}: {problem}")
            expected[ev.stream] = (ev.seq, ev.hash)
        session.expunge_all()
    return count, expected, first_bad


def _check_checkpoints(session: Session, checkpoints: list[AuditCheckpoint], problems: list[str]) -> None:
    prev_hash = GENESIS
    key = audit_anchor.key()
    for cp in checkpoints:
        if cp.prev_hash != prev_hash or not hmac.compare_digest(checkpoint_hash(cp.prev_hash, cp.heads, key), cp.hash):
            problems.append(f"checkpoint #{cp.id}: altered or out of chain")
        else:
            sealed = json.loads(cp.heads)
            digest, streams = _heads_digest(session, sealed["max_id"])
            if digest != sealed["digest"]:
                problems.append(f"checkpoint #{cp.id}: stream heads changed since sealing ({sealed['streams']} "
                                f"streams sealed, {streams} now): a stream was deleted or rewritten")
        prev_hash = cp.hash


def verify(session: Session, *, batch: int = 5000) -> VerifyReport:
    """Walk every stream, checkpoint and anchor; name what is missing or altered, first broken row first."""
    anchors = audit_anchor.read(audit_anchor.scope_of(session.get_bind()))
    problems: list[str] = []
    count, expected, first_bad = _walk_events(session, anchors.heads, problems, batch)
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)
                                       .execution_options(populate_existing=True)))
    _check_checkpoints(session, checkpoints, problems)
    for stream, (seq, _digest, at) in sorted(anchors.heads.items()):
        have = expected.get(stream, (0, ""))[0]
        if have < seq:
            gone = f"seq {have + 1}–{seq}" if have else f"all {seq} events"
            problems.append(f"stream {stream}: {gone} missing (anchored at {at}, the database ends at seq {have}): "
                            "events were deleted")
    by_id = {cp.id: cp for cp in checkpoints}
    for cp_id, (digest, _max_id, at) in sorted(anchors.checkpoints.items()):
        held = by_id.get(cp_id)
        if held is None:
            problems.append(f"checkpoint #{cp_id}: missing (anchored at {at}): checkpoints were deleted")
        elif not hmac.compare_digest(held.hash, digest):
            problems.append(f"checkpoint #{cp_id}: differs from its anchor of {at} (rewritten)")
    problems.extend(anchors.problems)
    if count and not anchors.lines:
        problems.append(f"no anchor of this database in {anchors.path}: deletions cannot be detected "
                        "(the anchor file was removed or the database was copied)")
    return VerifyReport(not problems, count, len(expected), len(checkpoints), problems[0] if problems else None,
                        first_bad, problems[:MAX_PROBLEMS], anchors.lines)
