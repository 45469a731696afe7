"""What the engine does with a running workflow and its tasks, named: the rest of the engine never touches
SpiffWorkflow's classes or states itself.

`Workflow` and `Task` are the types to annotate with; every question about them is a function here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow as Workflow
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.exceptions import SpiffWorkflowException, TaskNotFoundException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

# A task still on its way: waiting, ready or running (the states a diagram colours as "current").
CURRENT_STATES = frozenset({"READY", "WAITING", "STARTED", "ERROR"})


def is_spiff_error(exc: BaseException) -> bool:
    """Tell whether an error was raised by SpiffWorkflow itself (a script, an expression, a gateway)."""
    return isinstance(exc, SpiffWorkflowException)


def find_task(workflow: Workflow, task_guid: str) -> Task | None:
    """Return the task with this guid, or None when it is gone (cancelled subtrees are dropped)."""
    try:
        task: Task | None = workflow.get_task_from_id(UUID(task_guid))
    except TaskNotFoundException:
        return None
    return task


def ready_user_tasks(workflow: Workflow) -> list[Task]:
    """Return the READY manual tasks: those a person completes (user and manual tasks)."""
    return list(workflow.get_tasks(state=TaskState.READY, manual=True))


def put_start_data(workflow: Workflow, data: Mapping[str, Any]) -> None:
    """Put a new workflow's initial data on its READY tasks (the start event), before any engine step."""
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data.update(data)


def task_state_name(task: Task) -> str:
    """Return the task's state by name: READY, WAITING, COMPLETED, CANCELLED, …"""
    return str(TaskState.get_name(task.state))


def is_ready(task: Task) -> bool:
    """Tell whether the task may run now (`task.run()` does not check this itself)."""
    return bool(task.state == TaskState.READY)


def is_completed(task: Task) -> bool:
    """Tell whether the task ran to completion (not cancelled)."""
    return bool(task.state == TaskState.COMPLETED)


def multi_instance_item(task: Task) -> Any:
    """Return the item a multi-instance task's instance works on (its input item), or None for other tasks."""
    parent_spec = task.parent.task_spec if task.parent is not None else None
    if isinstance(parent_spec, MultiInstanceTask) and parent_spec.input_item is not None:
        return task.data.get(parent_spec.input_item.bpmn_id)
    return None


def all_tasks(workflow: Workflow) -> list[Task]:
    """Return every task of the workflow and its subprocesses.

    Walks the task dictionaries, not the tree: TaskIterator stops silently below depth 1000.
    """
    every = list(workflow.tasks.values())
    for sub in workflow.subprocesses.values():
        every.extend(sub.tasks.values())
    return every


def run_engine_steps(workflow: Workflow, *, refresh_timers: bool = False,
                     did_complete_task: Callable[[Task], None] | None = None) -> None:
    """Run engine steps until the workflow waits; timers are passive, so refresh them first when asked."""
    if refresh_timers:
        workflow.refresh_timers()
    workflow.do_engine_steps(did_complete_task=did_complete_task)


def reset_to(workflow: Workflow, task_id: UUID, data: dict[str, Any] | None) -> list[Task]:
    """Reopen a finished task (退回, 撤回): drop what followed it and make it runnable again with `data`.

    SpiffWorkflow 3.2.0's `reset_from_task_id` sets only the top workflow's `last_task` (to the reopened task's
    parent, in whichever workflow it is) and leaves a subprocess it reopens as it was: a finished one still `completed`,
    its `last_task` on the End task the reset dropped. The live workflow then dumped an id its restored copy reads as
    none, and a subprocess said completed had a task to do (not refreshed with the active ones). So each workflow from
    the task's up to the top is reopened here: its last task is the one above the step reopened in it.
    """
    task = workflow.get_task_from_id(task_id)
    dropped: list[Task] = workflow.reset_from_task_id(task_id, data)
    while True:
        flow = task.workflow
        flow.last_task, flow.completed = task.parent, False
        if flow is workflow or flow.parent_task_id is None:
            return dropped
        task = workflow.get_task_from_id(flow.parent_task_id)


__all__ = ["CURRENT_STATES", "Task", "Workflow", "all_tasks", "find_task", "is_completed", "is_ready",
           "is_spiff_error", "multi_instance_item", "put_start_data", "ready_user_tasks", "reset_to", "run_engine_steps",
           "task_state_name"]
