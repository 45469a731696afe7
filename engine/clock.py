"""The only reader of the wall clock, so tests (and the timer sweep) can freeze time."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

__all__ = ["SHANGHAI", "UTC", "advance", "as_utc", "freeze", "frozen_at", "now", "unfreeze"]

_lock = threading.Lock()
_frozen: datetime | None = None


def now() -> datetime:
    """Return the current time, timezone-aware UTC (frozen in tests)."""
    frozen = _frozen
    if frozen is not None:
        return frozen
    return datetime.now(UTC)


def frozen_at() -> datetime | None:
    """Return the time the clock is frozen at, or None when it follows the wall clock."""
    return _frozen


def freeze(at: datetime) -> None:
    """Stop the clock at `at` (must be timezone-aware)."""
    global _frozen
    if at.tzinfo is None:
        raise ValueError("freeze() needs a timezone-aware datetime")
    with _lock:
        _frozen = at.astimezone(UTC)


def advance(by: timedelta) -> datetime:
    """Move a frozen clock forward and return the new time."""
    global _frozen
    with _lock:
        if _frozen is None:
            raise RuntimeError("advance() needs a frozen clock")
        _frozen = _frozen + by
        return _frozen


def unfreeze() -> None:
    """Let the clock follow the wall clock again."""
    global _frozen
    with _lock:
        _frozen = None


def as_utc(value: datetime) -> datetime:
    """Return `value` as aware UTC; naive values (SQLite returns them) are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
