"""Anchors of the audit trail outside the database: an append-only file of keyed stream heads and seals.

Whoever can write the audit tables (with triggers bypassed) can delete the newest events of a stream or
a whole stream, and the database alone cannot tell. So every committed transaction that appended audit
events writes one line here with the new head (stream, seq, hash) of each stream it touched, and every
seal writes the checkpoint's id and hash. Each line carries an HMAC under the audit key, so a line
cannot be forged or altered either. `audit.verify` then requires every anchored head and checkpoint to
be in the database, unchanged. Lines name their database, so one file can serve several.

The file must live where the database's users cannot write (the application host's instance folder,
or `JZFLOW_AUDIT_ANCHOR`); ship it to a log host for more. Lines are appended with O_APPEND in one
write each, so processes can share the file.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, SessionTransaction

from engine import clock, config

PENDING = "jzflow.audit_pending"
DEFERRED = "jzflow.audit_deferred"
HEAD_SEEN = "jzflow.audit_head_seen"  # {stream: (seq, hash)} as a read of this transaction saw them (no lock)
APPEND: Callable[[Session, list[Any]], None] | None = None  # audit.append_deferred (set by engine.audit)


@lru_cache(maxsize=4)
def _key(_env: str, _instance: str) -> bytes:
    return config.audit_key(config.load())


def key() -> bytes:
    """Return the audit key of the current settings (JZFLOW_AUDIT_KEY or the instance folder's key file)."""
    settings = config.load()
    return _key(settings.audit_key, str(settings.instance_dir))


def mac(message: str, under: bytes | None = None) -> str:
    """HMAC-SHA256 of `message` under the audit key (or the key `under`), as hex."""
    return hmac.new(under or key(), message.encode("utf-8"), hashlib.sha256).hexdigest()


def scope_of(bind: Engine | Any) -> str:
    """Name a database the same way whatever driver spelling the URL uses (web and worker may differ)."""
    url = bind.url
    if url.get_backend_name() == "sqlite":
        return "sqlite:" + str(Path(url.database or "").resolve())
    return f"{url.get_backend_name()}://{url.host or ''}:{url.port or 5432}/{url.database}"


def _append(payload: dict[str, Any]) -> None:
    body = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    line = f"{body}\t{mac('anchor' + body)}\n".encode()
    path = config.load().anchor_path
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except FileNotFoundError:  # its folder is missing: made here, once, not checked at every commit
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines of concurrent processes do not interleave
    finally:
        os.close(fd)


# --- collecting what a transaction appended, writing it after the commit --------------------------------

@dataclass
class _Pending:
    tx: SessionTransaction
    stream: str | None = None
    seq: int = 0
    hash: str = ""
    checkpoint: tuple[int, str, int] | None = None  # id, hash, max_id


def _current(session: Session) -> SessionTransaction:
    tx = session.get_nested_transaction() or session.get_transaction()
    return tx if tx is not None else session.begin()


def defer(session: Session, event: Any) -> None:
    """Keep a recorded audit event until the transaction commits (then `APPEND` chains and inserts it)."""
    session.info.setdefault(DEFERRED, []).append((_current(session), event))


def deferred(session: Session) -> list[Any]:
    """The events recorded in this transaction and not written yet (they are chained and inserted at its commit),
    in the order they were recorded: a reader inside the transaction (an issued 审批单) sees them too."""
    return [ev for _tx, ev in session.info.get(DEFERRED, [])]


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # releasing a savepoint: the events wait for the real commit
    deferred: list[tuple[SessionTransaction, Any]] = session.info.pop(DEFERRED, [])
    if deferred and APPEND is not None:
        APPEND(session, [ev for _tx, ev in deferred])


def note_event(session: Session, stream: str, seq: int, digest: str) -> None:
    """Remember an appended event; its stream head is anchored once the transaction commits."""
    session.info.setdefault(PENDING, []).append(_Pending(_current(session), stream, seq, digest))


def note_checkpoint(session: Session, cp_id: int, digest: str, max_id: int) -> None:
    """Remember a seal; it is anchored once the transaction commits."""
    session.info.setdefault(PENDING, []).append(_Pending(_current(session), checkpoint=(cp_id, digest, max_id)))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending: list[_Pending] = session.info.pop(PENDING, [])
    if not pending:
        return
    heads: dict[str, list[Any]] = {}
    checkpoint = None
    for item in pending:
        if item.stream is not None and item.seq > heads.get(item.stream, [0])[0]:
            heads[item.stream] = [item.seq, item.hash]
        if item.checkpoint is not None:
            checkpoint = list(item.checkpoint)
    append_heads(scope_of(session.get_bind()), heads, checkpoint)


def append_heads(scope: str, heads: dict[str, list[Any]], checkpoint: list[Any] | None = None) -> None:
    """Anchor stream heads {stream: [seq, hash]} and a checkpoint [id, hash, max_id] of database `scope`."""
    payload: dict[str, Any] = {"db": scope, "at": clock.now().isoformat(), "heads": heads}
    if checkpoint is not None:
        payload["cp"] = checkpoint
    _append(payload)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous: SessionTransaction) -> None:
    """Forget what the rolled-back transaction (or savepoint) and those inside it recorded."""
    def undone(tx: SessionTransaction | None) -> bool:
        while tx is not None:
            if tx is previous:
                return True
            tx = tx.parent
        return False

    pending: list[_Pending] = session.info.get(PENDING, [])
    if pending:
        kept = [p for p in pending if not undone(p.tx)]
        session.info[PENDING] = kept
    deferred: list[tuple[SessionTransaction, Any]] = session.info.get(DEFERRED, [])
    if deferred:
        session.info[DEFERRED] = [(tx, ev) for tx, ev in deferred if not undone(tx)]


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost ended (after_commit has taken what it writes): start clean
        session.info.pop(DEFERRED, None)
        session.info.pop(PENDING, None)
        session.info.pop(HEAD_SEEN, None)


# --- reading the anchors of one database ------------------------------------------------------------------

@dataclass
class Anchors:
    path: Path
    lines: int = 0
    heads: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # stream -> (seq, hash, at)
    checkpoints: dict[int, tuple[str, int, str]] = field(default_factory=dict)  # id -> (hash, max_id, at)
    problems: list[str] = field(default_factory=list)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)
    except FileNotFoundError:
        return


def _reset(anchors: Anchors, restored: dict[str, Any], at: str) -> None:
    anchors.heads = {stream: (seq, digest, at) for stream, (seq, digest) in restored["heads"].items()}
    anchors.checkpoints = {int(cp_id): (digest, max_id, at) for cp_id, digest, max_id in restored["checkpoints"]}


def append_restore(scope: str, source: str, heads: dict[str, list[Any]], checkpoints: list[list[Any]],
                   archive: str) -> None:
    """Anchor that database `scope` was restored from a backup of `source` whose anchored state was this."""
    _append({"db": scope, "at": clock.now().isoformat(), "heads": {},
             "restored": {"from": source, "archive": archive, "heads": heads, "checkpoints": checkpoints}})


def read_file(path: Path, scope: str, under: bytes | None = None) -> Anchors:
    """Read the anchors of the database `scope` from the file `path` (a backup's copy, say), MACs under `under`."""
    anchors = Anchors(path=path)
    _read_into(anchors, scope, under)
    return anchors


def read(scope: str) -> Anchors:
    """Read the anchors of the database `scope`; a line with a wrong MAC is a problem, never trusted."""
    anchors = Anchors(path=config.load().anchor_path)
    _read_into(anchors, scope)
    return anchors


def _read_into(anchors: Anchors, scope: str, under: bytes | None = None) -> None:
    for number, raw in _lines(anchors.path):
        body, _, tag = raw.rstrip("\n").rpartition("\t")
        if f'"db":{json.dumps(scope, ensure_ascii=False)}' not in body:
            continue
        if not hmac.compare_digest(tag, mac("anchor" + body, under)):
            anchors.problems.append(f"anchor line {number}: altered (its MAC does not match)")
            continue
        payload = json.loads(body)
        if payload.get("db") != scope:
            continue
        anchors.lines += 1
        if "restored" in payload:  # `jzflow restore` put a backup here: what was anchored before is that backup's
            _reset(anchors, payload["restored"], payload["at"])
        for stream, (seq, digest) in payload["heads"].items():
            if seq > anchors.heads.get(stream, (0, "", ""))[0]:
                anchors.heads[stream] = (seq, digest, payload["at"])
        if "cp" in payload:
            cp_id, digest, max_id = payload["cp"]
            anchors.checkpoints[cp_id] = (digest, max_id, payload["at"])
