"""Compact a workflow's history out of its live task tree, so a save costs what changed, not the history.

SpiffWorkflow 3.2.0 keeps every task it ever ran in one tree, and a loop grows it by one level per
task run: every engine step walks the whole tree and every save serialises it (≈400 bytes a task).
The part of the tree that no longer influences the run is a finished *earlier round* far above
the live tasks (ready, waiting, started, predicted) on their paths: the engine reads a live task's
ancestors only a few levels up (its parent's data, a join's inputs and split, a boundary event's
split), and those stay. A finished task leaves the tree when it is more than `keep` levels above
every live task below it, on a single live path (one child leads to live tasks: never a split with
live branches), not the root nor the parent of a human step's last round, and — if it is a human
step — a later round of the same step stays below it: 退回 (send back) offers the completed human
steps on the current task's path at their latest round, and 撤回 the step just done. The run is
spliced out: the task below it hangs from the task above it, so
every kept task keeps all its kept ancestors (joins and inclusive gateways compare ancestry). A
process without loops is never compacted. Subprocesses started by cut tasks go with them.

Finished subprocesses go too, loop or not. SpiffWorkflow keeps the subprocess of a multi-instance child, an embedded
subprocess or a call activity in `workflow.subprocesses` after it completed (it drops them only on a reset): a period
of ④ 认领 with dozens of plan items carried one of ~4 KB per claimed item. One leaves when it completed and its parent
task completed too (the task took its outputs; a multi-instance merges its children's task data, not their
subprocesses), except the `SUBPROCESS_KEEP` latest of each subprocess task (the diagram colours a finished child's
service steps from them, and 撤回 of a claim just made needs no history read); a compacted one is read back from the
history by 撤回 and the task page (engine.runtime.history), never by the engine: nothing waits in a completed subprocess
(no timer, boundary event or message catch), and a reset above it drops it anyway.

`compact` returns what it cut, serialised (for the instance's history table), or None when there
was nothing worth cutting (fewer than `batch` tasks, or `SUBPROCESS_BATCH` subprocesses: compaction is amortised
over several saves).
"""
from __future__ import annotations

from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

FINISHED = TaskState.COMPLETED | TaskState.CANCELLED
SUBPROCESS_KEEP = 2  # finished subprocesses kept per subprocess task (the latest)
SUBPROCESS_BATCH = 4  # finished subprocesses cut at once


def _finished(task: Task) -> bool:
    return bool(task.state & FINISHED)


def _distances(workflow: BpmnWorkflow) -> dict[Any, int]:
    """Map every unfinished task and each of its ancestors to its distance (in levels) to the nearest one below."""
    # Ids and the tasks dict, not Task.parent/children: each of those is a property building Task objects from ids
    # (a dict lookup, a UUID hash in Python, per id); this walk runs on every save of a loop instance.
    tasks = workflow.tasks
    dist: dict[Any, int] = {}
    for task_id, task in tasks.items():
        if task.state & FINISHED:
            continue
        node_id: Any = task_id
        d = 0
        while dist.get(node_id, d + 1) > d:
            dist[node_id] = d
            parent = tasks[node_id]._parent
            if parent is None or parent not in tasks:  # the root (Task.parent: no such task)
                break
            node_id = parent
            d += 1
    return dist


def _specs_below(workflow: BpmnWorkflow, dist: dict[Any, int]) -> dict[Any, frozenset[str]]:
    """Map each task on a live path to the names of the human steps strictly below it on live paths."""
    tasks = workflow.tasks
    below: dict[Any, frozenset[str]] = {}
    order: list[tuple[Any, list[Any]]] = []  # (task id, its children on live paths), parents before children
    root = workflow.task_tree
    stack = [root.id] if root is not None and root.id in dist else []
    while stack:
        task_id = stack.pop()
        live = [c for c in tasks[task_id]._children if c in dist]
        order.append((task_id, live))
        stack.extend(live)
    for task_id, live in reversed(order):
        names: set[str] = set()
        for child_id in live:
            names |= below[child_id]
            spec = tasks[child_id].task_spec
            if spec.manual:
                names.add(spec.name)
        below[task_id] = frozenset(names)
    return below


def removable(workflow: BpmnWorkflow, keep: int) -> list[Task]:
    """Return the finished tasks on live paths that may leave the tree, top-down.

    A task may go when it is finished, more than `keep` levels above every live task below it, on a
    single live path (one child leads to live tasks), and — a human step — has a later round below.
    """
    dist = _distances(workflow)
    below = _specs_below(workflow, dist)
    out: list[Task] = []
    for task_id, d in dist.items():
        if d <= keep:
            continue
        task = workflow.tasks[task_id]
        if not _finished(task):
            continue
        live_children = [c for c in task.children if c.id in dist]
        if len(live_children) != 1 or task is workflow.task_tree:
            continue  # a split of live branches, or the root
        if live_children[0].task_spec.manual and live_children[0].task_spec.name not in below[live_children[0].id]:
            continue  # the parent of a human step's last round: 退回 resets that step (boundary events included)
        if task.task_spec.manual and task.task_spec.name not in below[task_id]:
            continue
        out.append(task)
    return out


def least_tasks(keep: int, batch: int) -> int:
    """The fewest tasks a tree that has `batch` removable tasks holds.

    Each removable task is more than `keep` levels above a live task; below it on that path lie the live task and
    its `keep` nearest ancestors, none of them removable (their distance is at most `keep`).
    """
    return batch + keep + 1


def _subtree(task: Task, keep_ids: set[Any]) -> list[Task]:
    found: list[Task] = []
    stack = [task]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(c for c in node.children if c.id not in keep_ids)
    return found


def _task(workflow: BpmnWorkflow, task_id: Any) -> Task | None:
    if task_id in workflow.tasks:
        return workflow.tasks[task_id]
    return next((s.tasks[task_id] for s in workflow.subprocesses.values() if task_id in s.tasks), None)


def finished_subprocesses(workflow: BpmnWorkflow, keep: int = SUBPROCESS_KEEP) -> list[Any]:
    """Return the ids of the completed subprocesses whose parent task completed, but the `keep` latest of each task."""
    groups: dict[str, list[tuple[float, str, Any]]] = {}
    for sub_id, sub in workflow.subprocesses.items():
        if not sub.is_completed():
            continue
        parent = _task(workflow, sub_id)
        if parent is None or parent.state != TaskState.COMPLETED:
            continue  # still to take its outputs (or a reset is making it again)
        groups.setdefault(parent.task_spec.name, []).append((parent.last_state_change, str(sub_id), sub_id))
    out: list[Any] = []
    for found in groups.values():
        found.sort()
        out.extend(sub_id for _at, _key, sub_id in found[:max(len(found) - keep, 0)])
    return out


def _with_nested(workflow: BpmnWorkflow, ids: list[Any]) -> dict[Any, Any] | None:
    """The subprocesses with these ids and the ones they started; None when one of them still runs."""
    gone = {sub_id: workflow.subprocesses[sub_id] for sub_id in ids}
    changed = True
    while changed:
        changed = False
        for sub_id, sub in workflow.subprocesses.items():
            if sub_id not in gone and any(sub.parent_task_id in s.tasks for s in gone.values()):
                gone[sub_id] = sub
                changed = True
    return None if any(not s.is_completed() for s in gone.values()) else gone


def compact_subprocesses(workflow: BpmnWorkflow, *, convert: Any, keep: int = SUBPROCESS_KEEP,
                         batch: int = SUBPROCESS_BATCH) -> dict[str, Any] | None:
    """Cut finished subprocesses whose parent task took their outputs; return them serialised, or None (under `batch`)."""
    if len(workflow.subprocesses) < keep + batch:
        return None  # no walk: most saves, and every process without subprocesses
    ids = finished_subprocesses(workflow, keep)
    if len(ids) < batch:
        return None
    gone = _with_nested(workflow, ids)
    if gone is None:
        return None
    archived = {"tasks": [], "subprocesses": {str(k): convert(v) for k, v in gone.items()}}
    for sub_id in gone:
        del workflow.subprocesses[sub_id]
    return archived


def compact(workflow: BpmnWorkflow, *, keep: int, batch: int, convert: Any) -> dict[str, Any] | None:
    """Cut finished earlier rounds and finished subprocesses out of the live state; return them serialised, or None."""
    rounds = compact_rounds(workflow, keep=keep, batch=batch, convert=convert)
    subs = compact_subprocesses(workflow, convert=convert)
    if subs is None:
        return rounds
    if rounds is None:
        return subs
    rounds["subprocesses"].update(subs["subprocesses"])
    return rounds


def compact_rounds(workflow: BpmnWorkflow, *, keep: int, batch: int, convert: Any) -> dict[str, Any] | None:
    """Cut finished earlier rounds out of the live paths of the tree; return them serialised, or None.

    Each cut run of tasks is spliced out: the task below it becomes a child of the task above it (or the
    root), so every kept task keeps its kept ancestors. `convert` turns a task or a subworkflow into its
    serialised dict (the serializer's registry).
    """
    if len(workflow.tasks) < least_tasks(keep, batch):
        return None  # too small to hold a batch: no walk of the tree (a process without loops, most saves)
    cut = removable(workflow, keep)
    if len(cut) < batch:
        return None
    cut_ids = {t.id for t in cut}
    live_paths = set(_distances(workflow))
    removed: list[Task] = []
    for task in cut:
        removed.append(task)
        for child in task.children:  # finished side branches hanging off a cut task go with it
            if child.id not in live_paths:
                removed.extend(_subtree(child, set()))
    removed_ids = {t.id for t in removed}
    if any(not _finished(t) for t in removed):
        return None  # never cut a live task (cannot happen: side branches off live paths are finished)
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
    archived = {"tasks": [convert(t) for t in sorted(removed, key=lambda t: t.last_state_change)],
                "subprocesses": {str(k): convert(v) for k, v in gone_subs.items()}}
    # Splice: each kept task on a live path below a cut run hangs from the kept task above the run.
    splices: list[tuple[Task | None, Task, Any]] = []
    for task in cut:
        parent = task.parent
        if parent is not None and parent.id in cut_ids:
            continue  # not the top of its run
        top = task
        node = task
        while node.id in cut_ids:
            node = next(c for c in node.children if c.id in live_paths)
        splices.append((parent, node, top.id))
    for parent, child, top_id in splices:
        child._parent = parent.id if parent is not None else None
        if parent is None:
            workflow.task_tree = child
        else:
            parent._children = [child.id if c == top_id else c for c in parent._children]
    for sub_id in gone_subs:
        del workflow.subprocesses[sub_id]
    for task_id in removed_ids:
        del workflow.tasks[task_id]
    if workflow.last_task is not None and workflow.last_task.id in removed_ids:
        workflow.last_task = None
    return archived


__all__ = ["compact", "compact_rounds", "compact_subprocesses", "finished_subprocesses", "removable"]
