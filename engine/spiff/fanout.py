"""Bound a multi-instance's fan-out and a loop's rounds: at most JZFLOW_MAX_MULTI_INSTANCE, refused before making any.

SpiffWorkflow 3.2.0 makes whatever a multi-instance asks for: a parallel one creates every instance in one
`_update_hook` (cardinality 5,000 took 28.6 s, each engine step then walking all of them; 10⁵ never returned),
a sequential one runs them all inside one `do_engine_steps`; a standard loop with no loopMaximum whose
condition stays true never returns (its rounds hang flat under the loop task, so the depth guard never sees
them). None of that is script code, so the script budget (engine.spiff.sandbox) does not see it either — a
script with no loop never even checks its deadline — and a multi-instance user task puts one inbox row per
instance.

Literal `loopCardinality` and `loopMaximum` over the cap are refused at deploy (engine.spiff.expressions). At run
time the patches below count what is about to be made and raise TooManyInstances, which engine.runtime turns into
an incident of kind `too_many_instances` on the multi-instance or loop task:

- parallel: `create_children`, SpiffWorkflow's own with the count (the cardinality, or the length of the input
  collection, read after the preScript that may build it) checked between evaluating and creating. The
  cardinality is evaluated once: counting by a second evaluation would let an expression that grows a list as
  it runs count small and make many;
- sequential: `add_next_child`, checking what SpiffWorkflow's `_update_hook` has just stored (`cardinality`,
  `remaining`) before it makes the first instance;
- standard loop: `create_child`, refusing the round past the cap.

A multi-instance or loop inside another's instances (a multi-instance subprocess or call activity) counts once
per outer instance: 200 × 200 nested took 15.7 s and ended in `state_too_large`, where 500 × 500 would not end.

A parallel multi-instance subprocess or call activity also starts every instance with a copy of the workflow's data
(SpiffWorkflow deep-copies it into each subprocess; a restored state gives each its own copy). The saved state writes a
repeated value once (engine.spiff.repeats), so the state limit no longer saw the copies: 100 instances over 150 KB of
data saved 0.5 MB and held 120 MB, rebuilt on every load. `check_copies` counts them as held — instances (nested ones
multiplied) × the data each starts with — against JZFLOW_MAX_STATE_KB before the first is made: CopiesTooLarge, an
incident of kind `state_too_large`. A sequential one or a loop over a subprocess counts the instances whose subprocess
the workflow still holds, and the next: a finished one's leaves the live state at the next save
(engine.spiff.serializer.compact), but one run of script-only instances held all of them (100 × 150 KB: 230 MB, and
the completed instance's state rebuilt them, 440 MB, on every look).

The plan's own multi-instances make one instance per department (a few dozen of the city's ~46 units), per
plan item (the 审定 form allows 50) or per bidding unit (40), none nested: 500 leaves room and no more.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence, Sized
from decimal import Decimal
from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import (
    LoopTask,
    MultiInstanceTask,
    ParallelMultiInstanceTask,
    SequentialMultiInstanceTask,
    StandardLoopTask,
)
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity, SubWorkflowTask
from SpiffWorkflow.task import Task

from engine import config
from engine.spiff import patching

SETTING = "JZFLOW_MAX_MULTI_INSTANCE"
_WHOLE_DIGITS = 18  # a Decimal cardinality this long is past any cap: counted as sys.maxsize, never converted


class TooManyInstances(WorkflowTaskException):  # type: ignore[misc]
    """A multi-instance or loop would make more instances than JZFLOW_MAX_MULTI_INSTANCE allows."""

    def __init__(self, task: Task, count: int, limit: int, source: str, outer: int = 1) -> None:
        bpmn_id = task.task_spec.bpmn_id
        if isinstance(task.task_spec, StandardLoopTask):
            zh, en = f"循环任务 {bpmn_id} 要运行第 {count} 次", f"loop {bpmn_id} would run {count} times"
        else:
            zh, en = (f"多实例任务 {bpmn_id} 要创建 {count} 个实例（{source}）",
                      f"multi-instance {bpmn_id} would create {count} instances from {source}")
        if outer > 1:
            zh += f"，在外层 {outer} 个实例中共 {count * outer} 个"
            en += f", {count * outer} in all inside the {outer} instances it is nested in"
        super().__init__(f"{zh}，超过上限 {limit} ({en}, limit {limit}: {SETTING})", task=task)
        self.count = count
        self.outer = outer
        self.limit = limit


class CopiesTooLarge(WorkflowTaskException):  # type: ignore[misc]
    """A multi-instance or loop over a subprocess would hold more copies of the workflow data than JZFLOW_MAX_STATE_KB."""

    def __init__(self, task: Task, count: int, each: int, limit: int) -> None:
        bpmn_id = task.task_spec.bpmn_id
        held = -(-count * each // 1024)
        zh, en = ("循环", "loop") if isinstance(task.task_spec, StandardLoopTask) else ("多实例", "multi-instance")
        super().__init__(
            f"{zh}子流程 {bpmn_id} 要为 {count} 个实例各复制一份 {-(-each // 1024)} KB 的流程数据，共 {held} KB，"
            f"超过 {limit // 1024} KB 的上限（JZFLOW_MAX_STATE_KB）({en} {bpmn_id} would copy "
            f"{-(-each // 1024)} KB of workflow data into each of {count} instances, {held} KB in all, over the "
            f"{limit // 1024} KB limit: JZFLOW_MAX_STATE_KB)", task=task)


def planned(task: Task) -> int:
    """Return how many instances the multi-instance or loop `task` makes in all (a loop: iterations so far)."""
    spec = task.task_spec
    made = sum(1 for _ in spec._instances(task))
    if isinstance(spec, SequentialMultiInstanceTask):
        if spec.data_input is not None:
            return made + len(task.internal_data.get("remaining", ()))
        return max(made, whole(task.internal_data.get("cardinality")) or 0)
    return max(made, 1)


def enclosing(task: Task) -> int:
    """Return the product of the instance counts of the multi-instances and loops the task runs inside."""
    product = 1
    workflow = task.workflow
    while (parent_id := getattr(workflow, "parent_task_id", None)) is not None:  # a subprocess or call activity
        started_by = workflow.top_workflow.get_task_from_id(parent_id)
        holder = started_by.parent
        if holder is not None and isinstance(holder.task_spec, LoopTask):
            product *= planned(holder)
        workflow = started_by.workflow
    return product


def check(spec: MultiInstanceTask | StandardLoopTask, task: Task, count: int) -> None:
    """Refuse a multi-instance or loop that would make more instances than the cap, nested ones multiplied.

    Raises: TooManyInstances
    """
    limit = config.load().max_multi_instance
    outer = enclosing(task) if count > 0 else 1
    if count * outer > limit:
        source = (f"loopDataInputRef {spec.data_input.bpmn_id}" if spec.data_input is not None
                  else f"loopCardinality {spec.cardinality}") if isinstance(spec, MultiInstanceTask) \
            else "standardLoopCharacteristics"
        raise TooManyInstances(task, count, limit, source, outer)


def copied(spec: MultiInstanceTask | StandardLoopTask, task: Task) -> int:
    """Characters of the data each instance of `spec` starts its subprocess with; 0: its instances are no subprocess."""
    child = task.workflow.spec.task_specs.get(spec.task_spec)
    if not isinstance(child, SubWorkflowTask):
        return 0
    data: Any = task.data
    if isinstance(child, CallActivity):  # with data inputs, a called process is given those alone
        called = task.workflow.top_workflow.subprocess_specs.get(child.spec)
        inputs = called.io_specification.data_inputs if called is not None and called.io_specification else ()
        if inputs:
            data = {var.bpmn_id: task.data.get(var.bpmn_id) for var in inputs}
    try:  # characters, as memory holds them (a Chinese character one, where the saved state's `\uXXXX` takes six)
        return len(json.dumps(data, default=str, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):  # keys JSON cannot write, a value holding itself: its text
        return len(repr(data))


def check_copies(spec: MultiInstanceTask | StandardLoopTask, task: Task, count: int) -> None:
    """Refuse `count` instances of a multi-instance or loop over a subprocess holding more data than the state limit.

    Raises: CopiesTooLarge
    """
    if count < 2:
        return
    each = copied(spec, task)
    total = count * enclosing(task)
    limit = config.load().max_state_kb * 1024
    if each and total * each > limit:
        raise CopiesTooLarge(task, total, each, limit)


def held(spec: SequentialMultiInstanceTask | StandardLoopTask, task: Task) -> int:
    """Instances of `spec` made so far whose subprocess the workflow still holds (not compacted out)."""
    subprocesses = task.workflow.top_workflow.subprocesses
    return sum(1 for child in spec._instances(task) if child.id in subprocesses)


def _check_items(spec: MultiInstanceTask, task: Task, items: Any) -> None:
    if isinstance(items, Sized):  # else SpiffWorkflow reports it (missing, not iterable); task data holds no generator
        check(spec, task, len(items))


def whole(cardinality: Any) -> int | None:
    """Return the instances a cardinality makes, None when SpiffWorkflow refuses it (not a number)."""
    # A sequential multi-instance counts `current < cardinality`: 2.5 makes 3, 1e9 as many as 10**9.
    if isinstance(cardinality, bool) or not isinstance(cardinality, (int, float, Decimal)):
        return None
    if isinstance(cardinality, Decimal) and cardinality.is_finite() and cardinality.adjusted() >= _WHOLE_DIGITS:
        return sys.maxsize  # math.ceil would build the integer: Decimal('1e999999999') in one C step, for ever
    try:
        return math.ceil(cardinality)
    except (OverflowError, ValueError, ArithmeticError):  # infinity or NaN
        return sys.maxsize


def _check_cardinality(spec: MultiInstanceTask, task: Task, cardinality: Any) -> None:
    count = whole(cardinality)
    if count is not None:
        check(spec, task, count)


# --- parallel ---------------------------------------------------------------------------------------

_spiff_create_children = ParallelMultiInstanceTask.create_children


def _create_children(self: ParallelMultiInstanceTask, my_task: Task) -> None:
    """SpiffWorkflow 3.2.0's create_children, with the count checked before the first child is made."""
    children: Any
    if self.data_input is not None:
        data_input = self.data_input.get(my_task)
        _check_items(self, my_task, data_input)
        if isinstance(data_input, Sized):
            check_copies(self, my_task, len(data_input))
        # We have to preserve the key or index for maps/sequences, in case we're updating in place, or the output
        # is a mapping
        if isinstance(data_input, Mapping):
            children = data_input.items()
        elif isinstance(data_input, Sequence):
            children = enumerate(data_input)
        else:
            # We can use other iterables as inputs, but key or index isn't meaningful
            children = ((None, item) for item in data_input)
    else:
        # For tasks specifying the cardinality, use the index as the "item"
        cardinality = my_task.workflow.script_engine.evaluate(my_task, self.cardinality)
        _check_cardinality(self, my_task, cardinality)
        check_copies(self, my_task, whole(cardinality) or 0)
        children = ((idx, idx) for idx in range(cardinality))

    if self.data_output is not None:
        if self.data_input is not None:
            self.init_data_output_with_input_data(my_task, self.data_input.get(my_task))
        else:
            self.init_data_output_with_cardinality(my_task)

    for key_or_index, item in children:
        self.create_child(my_task, item, key_or_index)


# --- sequential -------------------------------------------------------------------------------------

_spiff_add_next_child = SequentialMultiInstanceTask.add_next_child


def _add_next_child(self: SequentialMultiInstanceTask, my_task: Task) -> None:
    """Check the count SpiffWorkflow's _update_hook just stored before the first instance, then add the next."""
    if not any(self._instances(my_task)):  # the first: later ones only count down what was checked
        if self.data_input is not None:
            check(self, my_task, len(my_task.internal_data.get("remaining", ())))
        else:
            _check_cardinality(self, my_task, my_task.internal_data.get("cardinality"))
    check_copies(self, my_task, held(self, my_task) + 1)
    _spiff_add_next_child(self, my_task)


# --- standard loops -------------------------------------------------------------------------------

_spiff_loop_create_child = StandardLoopTask.create_child


def _loop_create_child(self: StandardLoopTask, my_task: Task) -> None:
    """Refuse the iteration past the cap (a loop with no loopMaximum whose condition never ends), then add it."""
    check(self, my_task, len(my_task.internal_data.get("merged", ())) + 1)
    check_copies(self, my_task, held(self, my_task) + 1)
    _spiff_loop_create_child(self, my_task)


# --- installation -------------------------------------------------------------------------------------

_PATCHES: tuple[patching.Patch, ...] = (
    (ParallelMultiInstanceTask, "create_children", _spiff_create_children, _create_children),
    (SequentialMultiInstanceTask, "add_next_child", _spiff_add_next_child, _add_next_child),
    (StandardLoopTask, "create_child", _spiff_loop_create_child, _loop_create_child),
)


def install() -> None:
    """Check every multi-instance's count before SpiffWorkflow makes its instances (idempotent)."""
    patching.apply(_PATCHES)


def uninstall() -> None:
    """Let SpiffWorkflow make as many instances as asked (tests use this to show the unbounded fan-out)."""
    patching.restore(_PATCHES)


def installed() -> bool:
    """Return whether every patch is in place."""
    return patching.applied(_PATCHES)
