"""Idempotency keys of API POSTs: the first answer is stored with its work and returned to every retry.

The record is written in the caller's transaction, next to the work it answers for, so a commit holds
both or neither: a client whose connection broke at commit retries with the same key and either gets the
stored answer (it committed) or runs the work for the first time (it did not). The same key with another
request is refused. Two requests with one key at once (a double click, a proxy retrying before the answer): on
PostgreSQL the second waits at its lookup, on a lock of its (user, key) held until the first commits, and then finds
the first answer; on SQLite every transaction holds the write lock already. The unique (user, key) constraint stays
the last line.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import advisory_lock
from engine.errors import InvalidInput
from engine.org.token_models import IdempotencyRecord

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Answer:
    """A stored answer: HTTP status and JSON text."""

    status: int
    body: str


def check_key(key: str) -> str:
    """Return the key when it is 1–255 printable ASCII characters.

    Raises: InvalidInput
    """
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " < ch <= "~" for ch in key):
        raise InvalidInput(f"Idempotency-Key 须为 1–{MAX_KEY_LENGTH} 个可见 ASCII 字符 "
                           f"(1–{MAX_KEY_LENGTH} printable ASCII characters)", field="Idempotency-Key")
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Return the sha256 of what makes two requests the same request."""
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def find(session: Session, *, user_id: int, key: str, fingerprint: str) -> Answer | None:
    """Return the stored answer for this key, None when the key is new.

    Raises: IdempotencyKeyReused (the key was used for another request)
    """
    advisory_lock(session, f"idempotency\0{user_id}\0{key}")  # a twin of this request waits here (see the module)
    row = session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id,
                                                         IdempotencyRecord.key == key))
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise IdempotencyKeyReused("此 Idempotency-Key 已用于另一请求 (this Idempotency-Key was used for a "
                                   "different request)", field="Idempotency-Key")
    return Answer(status=row.status, body=row.body)


def remember(session: Session, *, user_id: int, key: str, fingerprint: str, answer: Answer) -> None:
    """Store the answer in the caller's transaction (flushes: a racing twin fails here, on the unique key)."""
    session.add(IdempotencyRecord(user_id=user_id, key=key, fingerprint=fingerprint, status=answer.status,
                                  body=answer.body))
    session.flush()
