"""Compact a workflow's history out of its live task tree, so a save costs what changed, not the history.

SpiffWorkflow 3.2.0 keeps every task it ever ran in one tree, and a loop grows it by one level per
task run: every engine step walks the whole tree and every save serialises it (≈400 bytes a task).
The part of the tree that no longer influences the run is the chain of finished *earlier rounds*
above the live part: once every live task (ready, waiting, started, predicted) hangs below one
finished task (the frontier), nothing above it is read again by the engine — joins find their
split at or below the frontier (it is the lowest common ancestor of everything live), data flows
parent to child from there down, and events wait only on live tasks.

What jzflow itself reads above the frontier is 退回 (send back): it offers the completed human steps
on the current task's path, each at its latest round. So a finished task is compacted only when
it is an *earlier round*: every human (manual) step cut away has a later round below the cut, and
the last `keep` levels above the frontier always stay (撤回 and "send back to the previous step"
read them). A process without loops is never compacted. Subprocesses started by cut tasks go with them.

`compact` returns what it cut, serialised (for the instance's history table), or None when there
was nothing worth cutting (fewer than `batch` tasks: compaction is amortised over several saves).
"""
from __future__ import annotations

from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

FINISHED = TaskState.COMPLETED | TaskState.CANCELLED


def _finished(task: Task) -> bool:
    return bool(task.state & FINISHED)


def _live_ancestry(workflow: BpmnWorkflow) -> set[Any]:
    """Return the ids of every unfinished task and all its ancestors."""
    marked: set[Any] = set()
    for task in workflow.tasks.values():
        if _finished(task):
            continue
        node: Task | None = task
        while node is not None and node.id not in marked:
            marked.add(node.id)
            node = node.parent
    return marked


def frontier_path(workflow: BpmnWorkflow) -> list[Task]:
    """Return the finished chain from the root down to the frontier (the task every live task hangs below)."""
    marked = _live_ancestry(workflow)
    node = workflow.task_tree
    path: list[Task] = []
    if node is None or node.id not in marked:
        return path  # nothing live: an ended instance is not compacted
    while _finished(node):
        path.append(node)
        live_children = [c for c in node.children if c.id in marked]
        if len(live_children) != 1:
            break
        node = live_children[0]
    return path


def _cut_index(path: list[Task], keep: int) -> int:
    """Return how many tasks from the top of `path` may go: earlier rounds only, `keep` levels stay."""
    limit = len(path) - 1 - keep  # the frontier and `keep` levels above it stay
    last: dict[str, int] = {}
    for i, task in enumerate(path):
        last[task.task_spec.name] = i
    # Cutting the first `cut` tasks is allowed while every human step among them has a later round at or
    # below `cut` (its last round is the one 退回 offers).
    lowest = len(path)
    cut = 0
    while cut < limit:
        task = path[cut]
        if task.task_spec.manual:
            lowest = min(lowest, last[task.task_spec.name])
        if lowest <= cut:
            break
        cut += 1
    return max(cut, 0)


def compact(workflow: BpmnWorkflow, *, keep: int, batch: int, convert: Any) -> dict[str, Any] | None:
    """Cut finished earlier rounds above the live part of the tree; return them serialised, or None.

    `convert` turns a task or a subworkflow into its serialised dict (the serializer's registry).
    """
    path = frontier_path(workflow)
    cut = _cut_index(path, keep)
    if cut < batch:
        return None
    new_root = path[cut]
    gone_roots = path[:cut]
    removed: list[Task] = []
    stack = list(gone_roots)
    keep_ids = {new_root.id}
    seen: set[Any] = set()
    while stack:  # the cut tasks and their finished side branches (never the new root's subtree)
        task = stack.pop()
        if task.id in seen or task.id in keep_ids:
            continue
        seen.add(task.id)
        removed.append(task)
        stack.extend(c for c in task.children if c.id not in keep_ids)
    removed_ids = {t.id for t in removed}
    if any(not _finished(t) for t in removed):
        return None  # never cut a live task (cannot happen: the frontier is below every live task)
    archived_tasks = [convert(t) for t in sorted(removed, key=lambda t: t.last_state_change)]
    # Subprocesses started by cut tasks (and the ones they started) go with them.
    gone_subs: dict[Any, Any] = {}
    changed = True
    while changed:
        changed = False
        for sub_id, sub in list(workflow.subprocesses.items()):
            if sub_id in gone_subs:
                continue
            if sub.parent_task_id in removed_ids or any(sub.parent_task_id in s.tasks for s in gone_subs.values()):
                if not sub.is_completed():
                    return None  # a running subprocess under a finished task: leave the tree alone
                gone_subs[sub_id] = sub
                changed = True
    archived_subs = {str(k): convert(v) for k, v in gone_subs.items()}
    for sub_id in gone_subs:
        del workflow.subprocesses[sub_id]
    for task_id in removed_ids:
        del workflow.tasks[task_id]
    new_root._parent = None
    workflow.task_tree = new_root
    if workflow.last_task is not None and workflow.last_task.id in removed_ids:
        workflow.last_task = None
    return {"root": str(gone_roots[0].id), "new_root": str(new_root.id), "tasks": archived_tasks,
            "subprocesses": archived_subs}


__all__ = ["compact", "frontier_path"]
