"""Re-key an audit trail written before the chain was keyed (migration 0009).

Decision: re-key at migration rather than keep verifying old rows as "legacy". The old chain was plain
SHA-256, which proves nothing against whoever can write the table, and two kinds of row in one chain
would leave a door open (an attacker would mark rewritten rows "legacy"). So the migration first checks
the old chain exactly as the old `audit-verify` did, refuses to go on when it is broken (unless
JZFLOW_AUDIT_REKEY_BROKEN=1: a person looked and accepts the trail as it is), then recomputes every
event's and checkpoint's hash with the key and anchors the new heads outside the database.
"""
from __future__ import annotations

import hashlib
import json
import os
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Table, func, select, update

from engine.audit import anchor as audit_anchor
from engine.audit import core as audit
from engine.audit.models import AuditCheckpoint, AuditEvent

EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]
CHECKPOINTS: Table = AuditCheckpoint.__table__  # type: ignore[assignment]


class BrokenLegacyTrail(RuntimeError):
    """The unkeyed chain is already broken: re-keying it would seal the damage."""


def _legacy_hash(prev_hash: str, row: Any) -> str:
    return hashlib.sha256(audit.event_body(prev_hash, row).encode("utf-8")).hexdigest()


def _heads_digest(conn: Connection, max_id: int) -> str:
    last = (select(EVENTS.c.stream, func.max(EVENTS.c.seq).label("seq"))
            .where(EVENTS.c.id <= max_id).group_by(EVENTS.c.stream).subquery())
    rows = conn.execute(select(EVENTS.c.stream, EVENTS.c.seq, EVENTS.c.hash)
                        .join(last, (EVENTS.c.stream == last.c.stream) & (EVENTS.c.seq == last.c.seq))
                        .order_by(EVENTS.c.stream)).all()
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.stream}\t{row.seq}\t{row.hash}\n".encode())
    return digest.hexdigest()


def rekey(conn: Connection) -> int:
    """Check the unkeyed chain, then rewrite every hash as an HMAC under the audit key; return the events re-keyed.

    Raises: BrokenLegacyTrail
    """
    if conn.scalar(select(func.count()).select_from(EVENTS)) == 0:
        return 0
    key = audit_anchor.key()
    force = os.environ.get("JZFLOW_AUDIT_REKEY_BROKEN") == "1"
    old: dict[str, tuple[int, str]] = {}
    new: dict[str, tuple[int, str]] = {}
    count = 0
    for row in conn.execute(select(EVENTS).order_by(EVENTS.c.id)).all():
        seq, prev = old.get(row.stream, (0, audit.GENESIS))
        intact = row.seq == seq + 1 and row.prev_hash == prev and _legacy_hash(row.prev_hash, row) == row.hash
        if not intact and not force:
            raise BrokenLegacyTrail(f"audit event #{row.id} (stream {row.stream} seq {row.seq}) breaks the unkeyed "
                                    "chain: look at it, then set JZFLOW_AUDIT_REKEY_BROKEN=1 to re-key it as it is")
        old[row.stream] = (row.seq, row.hash)
        new_prev = new.get(row.stream, (0, audit.GENESIS))[1]
        content = SimpleNamespace(**row._mapping)
        digest = audit.event_hash(new_prev, content, key)
        conn.execute(update(EVENTS).where(EVENTS.c.id == row.id).values(prev_hash=new_prev, hash=digest))
        new[row.stream] = (row.seq, digest)
        count += 1
    prev_cp = audit.GENESIS
    last_cp: list[Any] | None = None
    for cp in conn.execute(select(CHECKPOINTS).order_by(CHECKPOINTS.c.id)).all():
        sealed = json.loads(cp.heads)
        sealed["digest"] = _heads_digest(conn, sealed["max_id"])
        heads = json.dumps(sealed, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = audit.checkpoint_hash(prev_cp, heads, key)
        conn.execute(update(CHECKPOINTS).where(CHECKPOINTS.c.id == cp.id)
                     .values(heads=heads, prev_hash=prev_cp, hash=digest))
        prev_cp = digest
        last_cp = [cp.id, digest, sealed["max_id"]]
    audit_anchor.append_heads(audit_anchor.scope_of(conn.engine),
                              {s: [seq, h] for s, (seq, h) in new.items()}, last_cp)
    return count
