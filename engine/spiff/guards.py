"""Guards against measured SpiffWorkflow 3.2.0 bugs (docs/architecture.md): deep trees, MI output, recursion, lines.

Each guard has a regression test in tests/engine/spiff/test_guards.py that first shows the bug
with the guard removed (`uninstall()`), then shows the guard fixing or reporting it.

Upgrading SpiffWorkflow: bump SUPPORTED_SPIFF_VERSION and run those tests. A test of the form
"..._without_the_patch" that starts failing means the upgrade fixed that bug: delete the patch
and that test. Patches are installed once, at import of `engine.spiff`, by `install()`.

1. Task trees deeper than 1000. `TaskIterator` (util/task.py, and `BpmnTaskIterator` which
   passes the same default on) silently stops descending at depth 1000. Every tree walk is one
   of these: `get_tasks` (so `do_engine_steps` stops running tasks and the inbox sees no READY
   task), `is_completed()` (returns True with tasks still open, and caches that in
   `workflow.completed`, which the serializer persists), `cancel()`, `update_waiting_tasks()`.
   A looping process grows the tree by one level per task run. Patch: lift the cap (the
   iterator is a loop, not recursion, so the cap buys nothing). Policy on top (docs/architecture.md: keep
   instances short): `check_depth` after each engine run, and `depth_guard` to stop a runaway
   loop inside one `do_engine_steps` call, which can otherwise cross any limit in one go.
2. `MultiInstanceTask.init_data_output_with_cardinality` names `data_ouput` (typo), so a
   cardinality multi-instance whose output collection already exists raises a bare NameError.
   Patch: the same method with the intended checks.
3. Recursion. The parser recurses about two frames per sequential task (RecursionError, wrapped
   in a ValidationException, from about 490 chained tasks); `BpmnWorkflow(spec)` predicts the
   whole chain recursively (from about 980); `cancel()` and `reset_from_task_id()` drop
   subtrees recursively. Serializer and `do_engine_steps` are iterative. Guard: `run_deep`.
4. `ValidationException.__init__` reads `node.line_number`, an attribute lxml elements do not
   have (it is `sourceline`), so element errors never carry a line. Patch: read `sourceline`;
   `locate_validation_error` works with or without the patch.
5. Dropped subprocess tasks. `Task.cancel()` drops a task's unfinished children from the tree
   (`_drop_children` → `Workflow._remove_task`) without cancelling them, so when an interrupting
   boundary event cancels a multi-instance *subprocess*, each instance's subworkflow stays in
   `workflow.subprocesses`, still active, its parent task gone: the next `do_engine_steps` raises
   TaskNotFoundException (`get_task_from_id(subprocess.parent_task_id)`), and waiting events of
   dropped tasks stay in the event manager. Patch: `_remove_task` also cancels and forgets the
   subprocess a removed task started (nested ones too) and unregisters its waiting event.
   Regression test: tests/processes/test_investment_loop.py::test_guard_boundary_on_multi_instance_subprocess.
"""
from __future__ import annotations

import contextvars
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence
from typing import Any, ParamSpec, TypeVar, cast

import SpiffWorkflow.version
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskIterator, TaskState
from SpiffWorkflow.workflow import Workflow

from engine.spiff import patching

SUPPORTED_SPIFF_VERSION = "3.2.0"
SPIFF_MAX_DEPTH = 1000  # TaskIterator's default max_depth in 3.2.0
DEPTH_LIMIT = 900  # policy: below SPIFF_MAX_DEPTH, and every engine step walks the whole tree
DEEP_RECURSION_LIMIT = 50_000  # ~20,000 chained tasks at parse
DEEP_STACK_SIZE = 256 * 1024 * 1024  # virtual; only touched pages are committed

P = ParamSpec("P")
R = TypeVar("R")


class TaskTreeTooDeep(Exception):
    """The instance's task tree is deeper than the policy allows."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(
            f"task tree is {depth} levels deep (limit {limit}): this instance loops too long. SpiffWorkflow "
            f"{SUPPORTED_SPIFF_VERSION} loses sight of tasks past depth {SPIFF_MAX_DEPTH} and every step walks the "
            "whole tree; end the instance and continue in a new one (continue-as-new, one instance per period)"
        )
        self.depth = depth
        self.limit = limit


# --- 1. deep task trees -------------------------------------------------------------------------

def task_depth(task: Task) -> int:
    """Return the task's depth as SpiffWorkflow's iterators count it, subprocess nesting included."""
    depth: int = task.depth  # walks parents in a loop
    workflow = task.workflow
    # A subprocess tree hangs below the task that started it: the iterator adds its root as a child.
    while (parent_id := getattr(workflow, "parent_task_id", None)) is not None:
        parent = workflow.top_workflow.get_task_from_id(parent_id)
        depth += parent.depth + 1
        workflow = parent.workflow
    return depth


def tree_depth(workflow: Workflow) -> int:
    """Return the depth of the deepest task in the workflow's tree, subprocesses included."""
    subprocesses: Mapping[Any, Workflow] = getattr(workflow, "subprocesses", {})
    deepest = 0
    # Ids and each tree's tasks dict, not Task.children (a property building the child Task objects, a UUID hash in
    # Python per id): this walk runs after every engine run.
    stack: list[tuple[Mapping[Any, Task], Any, int]] = [(workflow.tasks, workflow.task_tree.id, 0)]
    while stack:  # explicit stack: a recursive walk would itself hit the recursion limit
        tasks, task_id, depth = stack.pop()
        if depth > deepest:
            deepest = depth
        stack.extend([(tasks, child, depth + 1) for child in tasks[task_id]._children])
        subprocess = subprocesses.get(task_id)
        if subprocess is not None:
            stack.append((subprocess.tasks, subprocess.task_tree.id, depth + 1))
    return deepest


def check_depth(workflow: Workflow, limit: int = DEPTH_LIMIT) -> int:
    """Return the tree depth; call after each engine run.

    Raises: TaskTreeTooDeep
    """
    depth = tree_depth(workflow)
    if depth > limit:
        raise TaskTreeTooDeep(depth, limit)
    return depth


def depth_guard(limit: int = DEPTH_LIMIT) -> Callable[[Task], None]:
    """Return a `did_complete_task` callback for `do_engine_steps` that stops a runaway loop.

    Raises (from the callback): TaskTreeTooDeep, leaving the just-completed task COMPLETED.
    """
    def check(task: Task) -> None:
        depth = task_depth(task)
        if depth > limit:
            raise TaskTreeTooDeep(depth, limit)
    return check


class RunTooLong(Exception):
    """One engine run completed more tasks, or took longer, than JZFLOW_MAX_RUN_TASKS / JZFLOW_RUN_TIME_LIMIT allow."""

    def __init__(self, task: Task, tasks: int, seconds: float, *, too_many: bool, max_tasks: int,
                 time_limit: float) -> None:
        if too_many:
            zh, en = (f"一次引擎运行完成了 {tasks} 个任务，超过上限 {max_tasks}（JZFLOW_MAX_RUN_TASKS）",
                      f"one engine run completed {tasks} tasks, over JZFLOW_MAX_RUN_TASKS={max_tasks}")
        else:
            zh, en = (f"一次引擎运行已用 {seconds:.1f} 秒（完成 {tasks} 个任务），超过时限 {time_limit:g} 秒"
                      "（JZFLOW_RUN_TIME_LIMIT）",
                      f"one engine run took {seconds:.1f} s ({tasks} tasks), over JZFLOW_RUN_TIME_LIMIT={time_limit:g}")
        super().__init__(f"{zh}：流程可能在无人办理的环节之间无限循环、分叉或递归 ({en}: the process probably loops, "
                         "forks or recurses without end between tasks no person has to do)")
        self.task = task  # the incident names the element where the run stopped
        self.tasks = tasks


def run_guard(*, seconds: float, max_tasks: int, depth: int = DEPTH_LIMIT) -> Callable[[Task], None]:
    """Return a `did_complete_task` callback that bounds one engine run: depth, tasks completed and time.

    Only scripts pay the script budget and the depth guard sees only loops that go deeper: a tree that grows
    sideways (a loop under one task, a fork that doubles, recursion in parallel, a timer cycle firing on every
    completion) is stopped here. Create it when the run starts: the clock starts then.

    Raises (from the callback): TaskTreeTooDeep, RunTooLong, leaving the just-completed task COMPLETED.
    """
    check_depth_of = depth_guard(depth)
    began = time.monotonic()
    deadline = began + seconds
    completed = 0

    def check(task: Task) -> None:
        nonlocal completed
        check_depth_of(task)
        completed += 1
        now = time.monotonic()
        if completed > max_tasks or now > deadline:
            raise RunTooLong(task, completed, now - began, too_many=completed > max_tasks, max_tasks=max_tasks,
                             time_limit=seconds)
    return check


def is_really_completed(workflow: Workflow) -> bool:
    """Return whether no task is unfinished, reading the flat task map instead of walking the tree."""
    # Neither the depth-capped iterator nor the sticky `completed` flag, which an unpatched
    # is_completed() may already have set wrongly in stored state.
    return not any(task.has_state(TaskState.NOT_FINISHED_MASK) for task in workflow.tasks.values())


_spiff_iterator_init = TaskIterator.__init__


def _iterator_init(self: TaskIterator, *args: Any, **kwargs: Any) -> None:
    """Build the iterator without the depth cap unless a caller asked for a specific depth."""
    _spiff_iterator_init(self, *args, **kwargs)
    if self.max_depth == SPIFF_MAX_DEPTH:  # nothing in 3.2.0 passes max_depth, so this is the default
        self.max_depth = sys.maxsize


# --- 2. multi-instance output with cardinality ----------------------------------------------------

_spiff_init_data_output_with_cardinality = MultiInstanceTask.init_data_output_with_cardinality


def _init_data_output_with_cardinality(self: MultiInstanceTask, my_task: Task) -> None:
    """Create the output collection, or check that the existing one can take indexed results."""
    if not self.data_output.exists(my_task):
        self.data_output.set(my_task, [])
        return
    output = self.data_output.get(my_task)
    # 3.2.0 meant these two checks; the first also turns len(None) into a data error.
    if not isinstance(output, (MutableSequence, MutableMapping)):
        self.raise_data_exception("Only a mutable map (dict) or sequence (list) can be used for output", my_task)
    if not isinstance(output, MutableMapping) and len(output) > 0:
        self.raise_data_exception(
            "If loop cardinality is specified, the output must be a map (dict) or empty sequence (list)", my_task)


# --- 3. recursion -----------------------------------------------------------------------------

class _DeepState:
    """Count running deep workers so the process-wide recursion limit is raised once and restored once."""

    lock = threading.Lock()
    users = 0
    saved_limit = 0


_in_deep_worker = threading.local()


def _enter_deep() -> None:
    with _DeepState.lock:
        if _DeepState.users == 0:
            _DeepState.saved_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_DeepState.saved_limit, DEEP_RECURSION_LIMIT))
        _DeepState.users += 1


def _leave_deep() -> None:
    with _DeepState.lock:
        _DeepState.users -= 1
        if _DeepState.users == 0:
            sys.setrecursionlimit(_DeepState.saved_limit)


def run_deep(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run fn in a big-stack worker thread under a raised recursion limit; return its result or re-raise.

    The caller blocks until fn ends, so objects handed over are never used by two threads at once.
    Context variables are copied into the worker; thread-locals, sys.settrace hooks and signal
    handlers are not. The recursion limit is process-wide while any deep call runs: other
    threads see it too, which is harmless on CPython 3.11 (Python-to-Python calls use no C stack).
    """
    if getattr(_in_deep_worker, "active", False):
        return fn(*args, **kwargs)  # nested: already deep
    context = contextvars.copy_context()
    outcome: list[tuple[bool, Any]] = []  # (succeeded, result or exception)

    def work() -> None:
        _in_deep_worker.active = True
        try:
            outcome.append((True, context.run(fn, *args, **kwargs)))
        except BaseException as exc:
            outcome.append((False, exc))

    _enter_deep()
    try:
        with _DeepState.lock:  # stack_size() is global too: set it only for our own thread start
            previous = threading.stack_size(DEEP_STACK_SIZE)
            try:
                worker = threading.Thread(target=work, name="jzflow-deep")
                worker.start()
            finally:
                threading.stack_size(previous)
        worker.join()
    finally:
        _leave_deep()
    succeeded, value = outcome[0]
    if succeeded:
        return cast(R, value)
    raise value


SHALLOW_TASKS = 250  # below this many tasks no SpiffWorkflow recursion comes near the default limit


def run_deep_for(size: int, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Call fn directly when the workflow (or spec) has fewer than SHALLOW_TASKS tasks, else run_deep it.

    A thread hop costs 0.2–0.5 ms; most instances never need the big stack.
    """
    if size < SHALLOW_TASKS:
        return fn(*args, **kwargs)
    return run_deep(fn, *args, **kwargs)


# --- 4. validation error locations ----------------------------------------------------------------

_spiff_validation_init = ValidationException.__init__


def _validation_init(self: ValidationException, msg: str, node: Any = None, file_name: str | None = None,
                     *args: Any, **kwargs: Any) -> None:
    """Build the exception, taking the line from lxml's `sourceline`."""
    _spiff_validation_init(self, msg, node, file_name, *args, **kwargs)
    if node is not None and not self.line_number:
        self.line_number = getattr(node, "sourceline", None) or ""


def element_line(xml: bytes, element_id: str) -> int | None:
    """Return the source line of the element with this id, or None if absent or unparsable."""
    try:
        # Uploaded text: no entity expansion, no network.
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    found = root.xpath("//*[@id=$id]", id=element_id)
    line = found[0].sourceline if found else None
    return line if isinstance(line, int) else None


def locate_validation_error(exc: BaseException,
                            xml_by_file: Mapping[str, bytes]) -> tuple[str | None, str | None, int | None]:
    """Return (file, element id, line) for a parser error, looking the element up when SpiffWorkflow has no line."""
    file = getattr(exc, "file_name", None) or getattr(exc, "filename", None) or None
    element = getattr(exc, "id", None) or None
    line = next((n for n in (getattr(exc, "line_number", None), getattr(exc, "lineno", None))
                 if isinstance(n, int) and n > 0), None)
    if line is None and element is not None:
        # Without a known file (raised outside a process parser) try each document.
        for name in [file] if isinstance(file, str) and file in xml_by_file else list(xml_by_file):
            line = element_line(xml_by_file[name], element)
            if line is not None:
                file = name
                break
    if file is None and len(xml_by_file) == 1:
        file = next(iter(xml_by_file))
    return file, element, line


# --- 5. subprocesses of dropped tasks -------------------------------------------------------------

_spiff_remove_task = Workflow._remove_task


def _remove_task(self: Workflow, task_id: Any) -> None:
    """Remove a task from the tree; cancel and forget the subprocess it started, unregister its event."""
    task = self.tasks.get(task_id)
    _spiff_remove_task(self, task_id)
    top = getattr(self, "top_workflow", None)
    if task is not None and top is not None and hasattr(top, "event_manager"):
        top.event_manager.remove_task(task)
    subprocesses: dict[Any, Any] | None = getattr(top, "subprocesses", None)
    if not subprocesses or task_id not in subprocesses:
        return
    subprocesses[task_id].cancel()  # cancels nested subprocesses and unregisters their events
    stack = [task_id]
    while stack:
        forgotten = subprocesses.pop(stack.pop(), None)
        if forgotten is not None:
            stack.extend(k for k, sp in subprocesses.items() if sp.parent_task_id in forgotten.tasks)


# --- installation -------------------------------------------------------------------------------

_PATCHES: tuple[patching.Patch, ...] = (
    (TaskIterator, "__init__", _spiff_iterator_init, _iterator_init),
    (MultiInstanceTask, "init_data_output_with_cardinality",
     _spiff_init_data_output_with_cardinality, _init_data_output_with_cardinality),
    (ValidationException, "__init__", _spiff_validation_init, _validation_init),
    (Workflow, "_remove_task", _spiff_remove_task, _remove_task),
)


def install() -> None:
    """Apply the patches to SpiffWorkflow's classes (idempotent).

    Raises: RuntimeError when the installed SpiffWorkflow is not the version the patches were measured on
    """
    version = SpiffWorkflow.version.__version__
    if version != SUPPORTED_SPIFF_VERSION:
        raise RuntimeError(
            f"engine.spiff.guards patches SpiffWorkflow {SUPPORTED_SPIFF_VERSION}, but {version} is installed: "
            "re-measure each bug (see this module's docstring) before changing SUPPORTED_SPIFF_VERSION")
    patching.apply(_PATCHES)


def uninstall() -> None:
    """Put SpiffWorkflow's own methods back (tests use this to show each bug)."""
    patching.restore(_PATCHES)


def installed() -> bool:
    """Return whether every patch is in place."""
    return patching.applied(_PATCHES)
