"""Move a running workflow onto another version's specs, or say exactly why that would not be safe.

SpiffWorkflow 3.2.0 keeps a task's spec by *name* in the serialized state, so a state can be
restored against another version's specs when every name it refers to exists there. Its own
`SpiffWorkflow.bpmn.util.diff.migrate_workflow` resets READY and WAITING tasks (`reset_branch`): that
restarts timers (their due time lives in `internal_data`) and loses a multi-instance item's data,
so jzflow does not use it. Instead (conservative, docs/decisions/0005-instance-migration.md):

- every finished task must find its spec by name in the target (the history stays readable);
- every live task (READY, WAITING, STARTED) must find a spec of the same type, and nothing it is
  waiting on may have changed: a timer or message definition, the flows into a waiting join, a
  multi-instance's collection and items, the process a running subprocess calls, the boundary
  events around an active task;
- predicted tasks (FUTURE, LIKELY, MAYBE) are dropped and predicted again from the target, so an
  added task after the waiting one, a changed condition or SLA take effect.
Task ids, task data and timers' due times are kept; nothing runs during the move.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask
from SpiffWorkflow.specs.base import TaskSpec
from SpiffWorkflow.specs.Join import Join
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from SpiffWorkflow.workflow import Workflow

from engine.spiff.serializer import SERIALIZER, Specs

LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED | TaskState.ERROR
AHEAD = TaskState.FUTURE | TaskState.PREDICTED_MASK
MULTI_INSTANCE_KEYS = ("task_spec", "cardinality", "data_input", "data_output", "input_item", "output_item",
                       "condition", "typename")
BOUNDARY_SPLIT = ".BoundaryEventSplit"


@dataclass(frozen=True)
class LiveTask:
    """A task the instance is at (READY, WAITING or STARTED) and whether it maps onto the target."""

    task_id: str
    bpmn_id: str
    name: str
    state: str
    manual: bool  # a user or manual task (what people see in their inbox)
    reason: str | None  # why it does not map; None when it does

    @property
    def maps(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Check:
    live: list[LiveTask]
    problems: list[str]  # every reason the move is refused, each naming the task

    @property
    def ok(self) -> bool:
        return not self.problems


def _label(spec: TaskSpec) -> str:
    bpmn_id = getattr(spec, "bpmn_id", None) or spec.name
    name = getattr(spec, "bpmn_name", None)
    return f"'{name}' ({bpmn_id})" if name else f"'{bpmn_id}'"


def _convert(spec: Any) -> dict[str, Any]:
    converted: dict[str, Any] = SERIALIZER.registry.convert(spec)
    return converted


def _pairs(workflow: BpmnWorkflow, specs: Specs) -> list[tuple[Workflow, BpmnProcessSpec | None]]:
    """Return each (sub)workflow of the instance with its spec in the target (None when it has none)."""
    spec, subs = specs
    pairs: list[tuple[Workflow, BpmnProcessSpec | None]] = [(workflow, spec)]
    pairs.extend((sub, subs.get(sub.spec.name)) for sub in workflow.subprocesses.values())
    return pairs


def check(workflow: BpmnWorkflow, specs: Specs, target: str) -> Check:
    """Tell which live tasks map onto the target specs and every reason the move would not be safe.

    `target` names the target in messages (e.g. "version 3").
    """
    live: list[LiveTask] = []
    problems: list[str] = []
    for sub, new_spec in _pairs(workflow, specs):
        if new_spec is None:
            problems.append(f"subprocess '{sub.spec.name}' is running but does not exist in {target}")
            continue
        for task in sub.tasks.values():
            if task.has_state(AHEAD):
                continue  # predicted only: rebuilt from the target
            new = new_spec.task_specs.get(task.task_spec.name)
            reason: str | None = None
            if not task.has_state(LIVE):
                if new is None:
                    reason = (f"completed step {_label(task.task_spec)} does not exist in {target}: the instance's "
                              "history refers to it")
            elif new is None:
                reason = f"{TaskState.get_name(task.state).lower()} task {_label(task.task_spec)} does not exist in {target}"
            elif type(new) is not type(task.task_spec):
                reason = (f"task {_label(task.task_spec)} changed type in {target} "
                          f"({type(task.task_spec).__name__} → {type(new).__name__})")
            else:
                reason = _live_change(task, new, sub.spec, new_spec, target)
            if task.has_state(LIVE) and not _internal(task.task_spec):
                live.append(LiveTask(task_id=str(task.id), bpmn_id=getattr(task.task_spec, "bpmn_id", None) or
                                     task.task_spec.name, name=getattr(task.task_spec, "bpmn_name", None) or "",
                                     state=TaskState.get_name(task.state), manual=bool(task.task_spec.manual),
                                     reason=reason))
            if reason is not None:
                problems.append(reason)
    return Check(live=live, problems=list(dict.fromkeys(problems)))


def _internal(spec: TaskSpec) -> bool:
    """Tell whether a spec is one SpiffWorkflow generates (joins of boundary events, the end join)."""
    return getattr(spec, "bpmn_id", None) is None


def _live_change(task: Task, new: TaskSpec, old_process: BpmnProcessSpec, new_process: BpmnProcessSpec,
                 target: str) -> str | None:
    old = task.task_spec
    label = _label(old)
    if task.has_state(TaskState.ERROR):
        return f"task {label} is in error: resolve the incident first"
    if isinstance(old, CatchingEvent) and task.has_state(TaskState.WAITING):
        before, after = _convert(old), _convert(new)
        if before.get("event_definition") != after.get("event_definition"):
            return f"{label} is waiting for its event, whose definition (timer, message …) changed in {target}"
        if before.get("cancel_activity") != after.get("cancel_activity"):
            return f"{label} is waiting and changed between interrupting and non-interrupting in {target}"
    # Generated joins (the end join, a boundary event's join) do not count their inputs: skip them.
    if isinstance(old, Join) and not _internal(old) and task.has_state(TaskState.WAITING) \
            and sorted(s.name for s in old.inputs) != sorted(s.name for s in new.inputs):
        return f"join {label} is waiting for its incoming flows, which changed in {target}"
    if isinstance(old, LoopTask) and task.has_state(TaskState.STARTED):
        before, after = _convert(old), _convert(new)
        changed = [k for k in MULTI_INSTANCE_KEYS if before.get(k) != after.get(k)]
        if changed:
            return (f"multi-instance task {label} is running and its shape changed in {target} "
                    f"({', '.join(changed)})")
    if isinstance(old, SubWorkflowTask) and task.has_state(TaskState.STARTED) \
            and getattr(old, "spec", None) != getattr(new, "spec", None):
        return f"subprocess {label} is running and calls a different process in {target}"
    if _boundary(old, old_process) != _boundary(new, new_process):
        return f"the boundary events of active task {label} changed in {target}"
    return None


def _boundary(spec: TaskSpec, process: BpmnProcessSpec) -> list[str]:
    """Return the names of the boundary events attached to a task (none: an empty list)."""
    split = process.task_specs.get(f"{spec.name}{BOUNDARY_SPLIT}")
    if split is None or not any(s.name == split.name for s in spec.inputs):
        return []
    return sorted(s.name for s in split.outputs if s.name != spec.name)


def apply(workflow: BpmnWorkflow, specs: Specs) -> None:
    """Point every task at the target's specs and predict again (call only when `check` found nothing)."""
    spec, subs = specs
    pairs = _pairs(workflow, specs)
    workflow.subprocess_specs = subs
    for sub, new_spec in pairs:
        assert new_spec is not None  # check() refused otherwise
        sub.spec = new_spec
        # Drop predicted subtrees below live tasks (their shape is the old version's; they are predicted
        # again below) and any other predicted subtree naming a spec the target does not have.
        roots = [t for t in sub.tasks.values() if t.has_state(AHEAD) and not t.triggered
                 and t.parent is not None and not t.parent.has_state(AHEAD)]
        for root in roots:
            stale = root.parent.has_state(LIVE) or any(t.task_spec.name not in new_spec.task_specs for t in root)
            if stale and root.id in sub.tasks:
                sub._remove_task(root.id)
        for task in sub.tasks.values():
            task.task_spec = new_spec.task_specs[task.task_spec.name]
        for task in [t for t in sub.tasks.values() if t.has_state(LIVE)]:
            if any(c.has_state(LIVE) and not c.triggered for c in task.children):
                continue  # an event gateway's waiting events: predicting would overwrite their state
            task.task_spec._predict_hook(task)
            for child in task.children:
                if child.has_state(AHEAD):
                    child.task_spec._predict(child, mask=AHEAD)
        if sub.last_task is not None and sub.last_task.id not in sub.tasks:
            sub.last_task = None
    workflow.spec = spec


__all__ = ["Check", "LiveTask", "apply", "check"]
