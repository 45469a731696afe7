"""Applications built on the engine plug in through the `jzflow.extensions` entry point group.

Each entry point names a function taking no arguments that registers what its application adds:
service-task modules (`service_modules`), watched object kinds (`engine.deadlines.sources`),
Celery task modules and beat entries (`task_modules`, `beat`), and CLI commands (`commands`).
They run once per process, on first need; the engine never imports an application by name.
"""
from __future__ import annotations

import threading
from importlib.metadata import entry_points
from typing import Any

GROUP = "jzflow.extensions"

service_modules: list[str] = []       # modules whose @effects.service functions a BPMN service task may call
task_modules: list[str] = []          # Celery task modules the worker imports
beat: dict[str, dict[str, Any]] = {}  # beat schedule entries (Celery's format), by name
commands: list[Any] = []              # click commands added to `jzflow`

_loaded = False
_lock = threading.RLock()


def load() -> None:
    """Run every installed extension's registration once (idempotent, thread-safe)."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        _loaded = True
        for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            entry.load()()
