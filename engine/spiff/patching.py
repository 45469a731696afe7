"""Methods of SpiffWorkflow replaced by ours (the guards', the fan-out cap's), and put back for tests.

A patch is (the class, the method's name, SpiffWorkflow's method, ours).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Patch = tuple[type[Any], str, Callable[..., Any], Callable[..., Any]]


def apply(patches: Sequence[Patch]) -> None:
    """Put our methods in place (idempotent)."""
    for owner, name, _original, patched in patches:
        setattr(owner, name, patched)


def restore(patches: Sequence[Patch]) -> None:
    """Put SpiffWorkflow's own methods back."""
    for owner, name, original, _patched in patches:
        setattr(owner, name, original)


def applied(patches: Sequence[Patch]) -> bool:
    """Return whether every one of our methods is in place."""
    return all(owner.__dict__.get(name) is patched for owner, name, _original, patched in patches)


__all__ = ["Patch", "applied", "apply", "restore"]
