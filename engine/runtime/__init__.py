"""Running instances: load, run and save workflow state with its human_task projection (the names below).

Modules: `instances` (start, suspend, resume, terminate), `effects` (service-task operations), `timers`,
`forms` (server-side form validation), `timeline` (one instance's page), `models` (definitions, versions, instances).
"""
from engine.runtime.core import (
    Running,
    _spec_cache,
    complete_user_task,
    due_time,
    find_task,
    is_engine_error,
    load,
    new_event,
    open_incident,
    record,
    refuse,
    release,
    run,
    save,
    script_engine,
    specs_for,
    version_info,
    waiting_summary,
)
from engine.runtime.history import compacted_task, compacted_task_data, reattach

__all__ = [
    "Running",
    "_spec_cache",
    "compacted_task",
    "compacted_task_data",
    "complete_user_task",
    "due_time",
    "find_task",
    "is_engine_error",
    "load",
    "new_event",
    "open_incident",
    "reattach",
    "record",
    "refuse",
    "release",
    "run",
    "save",
    "script_engine",
    "specs_for",
    "version_info",
    "waiting_summary",
]
