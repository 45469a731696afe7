"""Stale pages: a plan form that overwrites what it showed carries `seen`, a fingerprint of what it showed.

The service compares it with what is stored now, under the row's lock (docs/architecture.md, "Two people on one
plan form"): a change saved since the page was opened is refused (409, reload), so no one silently undoes what
someone else saved. A post that stores exactly what is stored already — the same form sent twice — is not refused.
A post without `seen` (an old page, a script posting the form) is refused the same way: it could only overwrite
blind. `seen=None` is for callers that are not a page (an import, which checks its preview its own way).
"""
from __future__ import annotations

import hashlib

from engine.errors import Conflict


def version(*parts: object) -> str:
    """Fingerprint what a form shows (its values, in a fixed order)."""
    return hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).hexdigest()[:32]


def require_fresh(seen: str | None, now: str, *, what: str, changes: bool) -> None:
    """Refuse a write from a page that did not see what is stored now, or that does not say what it saw.

    `changes`: whether the write would change what is stored (the same values sent twice are let through).

    Raises: Conflict (field `seen`)
    """
    if seen is None:
        return
    if not seen:
        raise Conflict(f"{what}的表单缺少版本（seen），无法判断页面打开后是否已被他人修改，请刷新页面后重新填写 "
                       "(the form carries no version `seen`; reload the page)", field="seen")
    if seen != now and changes:
        raise Conflict(f"{what}已被他人修改，请刷新页面后重新填写 (changed since the page was opened; reload)",
                       field="seen")


__all__ = ["require_fresh", "version"]
