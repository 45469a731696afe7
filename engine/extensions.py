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

_loaded = False  # every registration has run: the fast path
_started = False  # a registration runs now (one that needs load() again, in its own thread, goes on)
_lock = threading.RLock()


def load() -> None:
    """Run every installed extension's registration once (idempotent, thread-safe).

    Another thread asking meanwhile waits until it has run: a web process's first requests come at once, and one
    that went on before the plan had registered its sections read escalation.yaml as if they were unknown.
    """
    global _loaded, _started
    if _loaded:
        return
    with _lock:
        if _loaded or _started:  # done, or asked again from within a registration (the lock is re-entrant)
            return
        _started = True
        try:
            for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
                entry.load()()
            _loaded = True
        finally:
            _started = False
