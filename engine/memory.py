"""A per-process memory ceiling for web and worker processes (JZFLOW_MEMORY_LIMIT_MB).

Size guards stop single allocations (engine.limits); many allocations each under the caps still add
up. With RLIMIT_DATA set, such growth raises MemoryError inside the engine run, which the runtime
records as an incident (kind `out_of_memory`) instead of the kernel killing the worker. Applied at
process start by the entry points (web.wsgi, the Celery worker's process init), never on import.
"""
from __future__ import annotations

import resource

from engine import config


def apply_limit(megabytes: int | None = None) -> int | None:
    """Cap this process's data segment at megabytes (default: the setting; 0 = no cap); return the bytes set."""
    mb = config.load().memory_limit_mb if megabytes is None else megabytes
    if mb <= 0:
        return None
    limit = mb * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return limit


__all__ = ["apply_limit"]
