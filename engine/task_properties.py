"""The literal properties of a user task, `sla` and `priority`: one reading at deploy and when a task is made.

`sla` is `5wd`, `2d` or `48h` within `calendar.SLA_LIMITS` (about ten years: `99999999d` overflowed the save and
`3000000wd` walked two million days first); `priority` is a whole number from 0 to MAX_PRIORITY (the column's
default, 50, when empty: 99999999999999999999 overflowed the integer column).
"""
from __future__ import annotations

from engine.deadlines import calendar

DEFAULT_PRIORITY, MAX_PRIORITY = 50, 1000


def priority_of(text: str | None) -> int:
    """Read a `priority` property; DEFAULT_PRIORITY when empty.

    Raises: ValueError
    """
    text = (text or "").strip()
    if not text:
        return DEFAULT_PRIORITY
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_PRIORITY:
        raise ValueError(f"priority '{text[:40]}' is not a whole number from 0 to {MAX_PRIORITY}")
    return int(text)


def problem(name: str, value: str) -> str | None:
    """Say what is wrong with a literal `sla` or `priority` property (None when it is fine, empty, or another one)."""
    if not value.strip():
        return None
    try:
        if name == "sla":
            calendar.parse_sla(value)
        elif name == "priority":
            priority_of(value)
    except ValueError as exc:
        return str(exc)
    return None


__all__ = ["DEFAULT_PRIORITY", "MAX_PRIORITY", "priority_of", "problem"]
