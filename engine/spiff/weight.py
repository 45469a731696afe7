"""What a workflow's saved state holds, weighed: the characters each element's and each data key's values take.

Read only when a state is over JZFLOW_MAX_STATE_KB (engine/runtime/oversize.py), to name what made it so. The
serializer writes a task's data as the keys it changed from its parent's (SpiffWorkflow's delta) and the tree's
root in full: a key a loop's script changes on every round weighs once per round kept. The root's data is counted
for its keys but not for its element (after compaction the root is any earlier task, holding everyone's data).

When a workflow — the instance's, or a called process's — completes, SpiffWorkflow 3.2.0 copies its last task's data
into the workflow's own data (`Workflow._mark_complete`), which the state writes in full: `end_copies` weighs that
repetition, which the limit does not count. A large value is not counted there: the state writes it once anyway
(engine.spiff.repeats), the repetition costs a reference.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.util.deep_merge import DeepMerge

from engine.spiff.repeats import LARGE
from engine.spiff.serializer import encoded_size
from engine.spiff.workflow import Workflow, all_tasks


@dataclass(frozen=True)
class Element:
    bpmn_id: str
    name: str  # the element's name in the diagram, "" without one
    size: int  # characters of the data its tasks changed, as the state holds them


@dataclass(frozen=True)
class Weight:
    elements: list[Element]  # heaviest first
    keys: list[tuple[str, int]]  # (data key, characters), heaviest first


def _sizes(values: dict[Any, Any]) -> list[tuple[str, int]]:
    return [(str(key), len(str(key)) + 4 + encoded_size(value)) for key, value in values.items()]


def weigh(workflow: Workflow) -> Weight:
    """Weigh the data the workflow's state holds by element (BPMN id) and by data key (a walk as long as a save)."""
    by_element: Counter[tuple[str, str]] = Counter()
    by_key: Counter[str] = Counter()
    for task in all_tasks(workflow):
        parent = task.parent
        changed = task.data if parent is None else DeepMerge.get_updated_keys(parent.data, task.data)
        sizes = _sizes(changed) + _sizes(task.internal_data or {})
        for key, size in sizes:
            by_key[key] += size
        spec = task.task_spec
        bpmn_id = getattr(spec, "bpmn_id", None)
        if parent is not None and bpmn_id:
            by_element[(str(bpmn_id), str(getattr(spec, "bpmn_name", None) or ""))] += sum(s for _k, s in sizes)
    for key, size in _sizes(workflow.data or {}):  # data objects
        by_key[key] += size
    return Weight(elements=[Element(b, n, s) for (b, n), s in by_element.most_common() if s],
                  keys=by_key.most_common())


def end_copies(workflow: Workflow) -> int:
    """Return the characters the state spends repeating, in a completed workflow's (or subprocess's) own data, the data
    of the End task it was copied from: each key the End task holds with the same value, but a large one (written
    once: `LARGE` characters or more, a list or dict)."""
    total = 0
    for flow in (workflow, *getattr(workflow, "subprocesses", {}).values()):
        last = flow.last_task
        if not flow.completed or last is None or last.task_spec.name != "End":
            continue
        kept = last.data
        for key, value in (flow.data or {}).items():
            if key in kept and (kept[key] is value or kept[key] == value):
                size = encoded_size(value)
                if not (isinstance(value, (list, dict)) and size >= LARGE):
                    total += len(str(key)) + 4 + size
    return total


__all__ = ["Element", "Weight", "end_copies", "weigh"]
