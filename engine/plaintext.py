"""Text someone else wrote, as jzflow prints it where it cannot be escaped: on paper (a PDF) and in a mail's subject.

Control characters (C0 but tab and line feed, DEL, C1) print as boxes or nothing, or end a mail header; bidi controls
reorder what follows them (a right-to-left override, U+202E, makes "审批单.exe" read "exe.单批审"): a submitted value,
a case's title or a BPMN task name a process owner wrote keeps none of them in an official document
(`engine.documents.pdf`) or a mail subject (`engine.jobs.one_line`). One table for both, so they cannot drift.
"""
from __future__ import annotations

from typing import Any

# C0 but tab and line feed, DEL, C1; the bidi embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069) and
# marks (U+200E, U+200F, U+061C)
UNPRINTED = {**dict.fromkeys([*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0)]),
             **dict.fromkeys([*range(0x202a, 0x202f), *range(0x2066, 0x206a), 0x200e, 0x200f, 0x061c])}


def printed(value: Any) -> str:
    """Return a value as the paper prints it: line breaks kept (as LF), control characters and bidi controls
    dropped, a lone surrogate "?"."""
    raw = str(value if value is not None else "").replace("\r\n", "\n").replace("\r", "\n")
    return raw.translate(UNPRINTED).encode("utf-8", "replace").decode("utf-8")


__all__ = ["UNPRINTED", "printed"]
