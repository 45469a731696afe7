"""Putting a finished file in place without replacing one that another process put there first."""
from __future__ import annotations

import os
from pathlib import Path


def place_new(made: Path, path: Path) -> bool:
    """Give the finished file `made` the name `path` unless a file already has it; return whether it was placed.

    `made` keeps its own name too: the caller removes it. A hard link is made at once, whole, and never replaces
    a file, so of processes racing for one name exactly one wins and a reader never sees a file half written. A
    filesystem without hard links (some network shares) gets a rename instead, which could still replace a file
    made there in the same instant.
    """
    try:
        os.link(made, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        if path.exists() or path.is_symlink():
            return False
        os.replace(made, path)
        return True


__all__ = ["place_new"]
