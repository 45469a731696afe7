"""The audit trail: append-only events chained per stream, sealed by checkpoints; what auditors read.

The names below are the package's public API (`record`, `verify`, …); `audit_views` is the auditors' read side.
"""
from engine.audit.core import (
    GENESIS,
    _heads_digest,
    event_body,
    event_hash,
    jsonable,
    new_event,
    record,
    saw_head,
    seal,
    verify,
)

__all__ = [
    "GENESIS",
    "_heads_digest",
    "event_body",
    "event_hash",
    "jsonable",
    "new_event",
    "record",
    "saw_head",
    "seal",
    "verify",
]
