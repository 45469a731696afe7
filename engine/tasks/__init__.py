"""Human tasks: claim, unclaim and complete (the names below), and every inbox operation.

Modules: `operations` (转办, 委派, 加签, 催办), `sendback` (退回, 撤回), `collab` (抄送, comments, attachments),
`access` (who may see what), `inbox` and `queries` (the lists), `taskview` (one task's page), `models` and `collab_models`.
"""
from engine.tasks.core import (
    Completion,
    TaskBlocked,
    claim,
    complete,
    get_open,
    is_candidate,
    open_tasks,
    read_to_complete,
    require_holder,
    unclaim,
)

__all__ = [
    "Completion",
    "TaskBlocked",
    "claim",
    "complete",
    "get_open",
    "is_candidate",
    "open_tasks",
    "read_to_complete",
    "require_holder",
    "unclaim",
]
