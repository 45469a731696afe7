"""Audit trail: append-only events hash-chained per stream, sealed by checkpoints, verifiable."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from engine import clock
from engine.audit.models import AuditCheckpoint, AuditEvent
from engine.db import is_postgres
from engine.org.actors import Actor

GENESIS = "0" * 64


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


def event_hash(prev_hash: str, ev: AuditEvent) -> str:
    """Hash an event's content together with the previous hash of its stream."""
    body = [prev_hash, ev.stream, ev.seq, clock.as_utc(ev.at).isoformat(), ev.actor_id, ev.actor_name,
            ev.action, ev.object_type, ev.object_id, ev.before, ev.after]
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def record(session: Session, actor: Actor, action: str, *, stream: str, object_type: str, object_id: str | int,
           before: Any = None, after: Any = None) -> AuditEvent:
    """Append an event to its stream in the caller's transaction (flushes, never commits)."""
    head = session.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.stream == stream)
                           .order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
    # Microseconds survive both SQLite and PostgreSQL, so the hash input is stable.
    ev = AuditEvent(stream=stream, seq=seq, at=clock.now(), actor_id=actor.user_id, actor_name=actor.username,
                    action=action, object_type=object_type, object_id=str(object_id),
                    before=jsonable(before), after=jsonable(after), prev_hash=prev)
    ev.hash = event_hash(prev, ev)
    session.add(ev)
    session.flush()
    return ev


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
        # Wait for in-flight writers so no lower id commits after we read the maximum.
        session.execute(text("LOCK TABLE audit_event IN SHARE MODE"))
    max_id = session.scalar(select(func.max(AuditEvent.id))) or 0
    prev = session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))
    if prev is not None and json.loads(prev.heads)["max_id"] == max_id:
        return None
    digest, streams = _heads_digest(session, max_id)
    heads = _canonical({"max_id": max_id, "streams": streams, "digest": digest})
    prev_hash = prev.hash if prev else GENESIS
    cp = AuditCheckpoint(at=clock.now(), heads=heads, prev_hash=prev_hash,
                         hash=hashlib.sha256(f"{prev_hash}{heads}".encode()).hexdigest())
    session.add(cp)
    session.flush()
    return cp


@dataclass
class VerifyReport:
    ok: bool
    events: int
    streams: int
    checkpoints: int
    problem: str | None = None
    first_bad_event_id: int | None = None


def verify(session: Session, *, batch: int = 5000) -> VerifyReport:
    """Walk every stream and checkpoint; report the first broken row, if any."""
    expected: dict[str, tuple[int, str]] = {}
    count = 0
    first_bad: tuple[int, str] | None = None
    last_id = 0
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
            problem = None
            if ev.seq != seq + 1:
                problem = f"stream {ev.stream}: expected seq {seq + 1}, found {ev.seq} (a row was deleted)"
            elif ev.prev_hash != prev:
                problem = f"stream {ev.stream} seq {ev.seq}: prev_hash does not match the row before it"
            elif event_hash(ev.prev_hash, ev) != ev.hash:
                problem = f"stream {ev.stream} seq {ev.seq}: content does not match its hash (altered)"
            if problem and first_bad is None:
                first_bad = (ev.id, problem)
            expected[ev.stream] = (ev.seq, ev.hash)
        session.expunge_all()
    checkpoints = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)
                                  .execution_options(populate_existing=True)).all()
    if first_bad is not None:
        return VerifyReport(False, count, len(expected), len(checkpoints), f"event #{first_bad[0]}: {first_bad[1]}",
                            first_bad[0])
    prev_hash = GENESIS
    for cp in checkpoints:
        if cp.prev_hash != prev_hash or hashlib.sha256(f"{cp.prev_hash}{cp.heads}".encode()).hexdigest() != cp.hash:
            return VerifyReport(False, count, len(expected), len(checkpoints),
                                f"checkpoint #{cp.id}: altered or out of chain")
        sealed = json.loads(cp.heads)
        digest, streams = _heads_digest(session, sealed["max_id"])
        if digest != sealed["digest"]:
            return VerifyReport(False, count, len(expected), len(checkpoints),
                                f"checkpoint #{cp.id}: stream heads changed since sealing "
                                f"({sealed['streams']} streams sealed, {streams} now): a stream was deleted or rewritten")
        prev_hash = cp.hash
    return VerifyReport(True, count, len(expected), len(checkpoints))
