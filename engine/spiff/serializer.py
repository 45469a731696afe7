"""Serialize workflow state without its spec, and specs once per deployed version.

The instance row stores only state; the spec lives on the process version (docs/architecture.md). The
script engine is not serialized: `load_state` attaches the sandboxed one on every load.
"""
from __future__ import annotations

import json
import re
import weakref
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, TaskConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.migration.version_migration import MIGRATIONS
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.task import Task

from engine.spiff import compaction, repeats
from engine.spiff.guards import run_deep_for

# Bump the first part when our own state layout changes; the second is SpiffWorkflow's.
# jz2: the task tree's root may be any finished task (earlier rounds compacted out, engine.spiff.compaction).
# Finished subprocesses compacted out (the same module) leave a state of the same layout, only without them.
# jz3: a large data value the state repeats is written once, in a top-level table (engine.spiff.repeats).
SERIALIZER_VERSION = "jz3/spiff1.5"
SPIFF_STATE_VERSION = "1.5"
# Our layouts that load as they are (jz1 → jz2 only widened what the root may be; the next save compacts; a jz2 state
# has no table of shared values, and the next save writes one).
READABLE_VERSIONS = frozenset({"jz1/spiff1.5", "jz2/spiff1.5", SERIALIZER_VERSION})

Specs = tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]


class StateOnlyWorkflowConverter(BpmnWorkflowConverter):  # type: ignore[misc]
    """Convert a top-level workflow without its spec; the spec is given back on restore."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct: dict[str, Any], spec: BpmnProcessSpec | None = None,
                  subprocess_specs: dict[str, BpmnProcessSpec] | None = None) -> BpmnWorkflow:
        if spec is None:  # a full serialization (with spec) from elsewhere
            return super().from_dict(dct)
        workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        # What it threw is queued by the save that wrote the state (runtime.save drains it first; states written before
        # that still hold what their save queued): never restored, or the next save would queue it again.
        dct.pop("bpmn_events", None)
        workflow.bpmn_events = []
        return workflow


class StateTaskConverter(TaskConverter):  # type: ignore[misc]
    """SpiffWorkflow 3.2.0's task conversion, the same dict, with the parent looked up once instead of three times
    (`Task.parent` is a property: a dict lookup and a UUID hash in Python each; a save converts every task)."""

    def to_dict(self, task: Task) -> dict[str, Any]:
        parent = task.workflow.tasks.get(task._parent)  # Task.parent
        if parent is None:
            data = task.data
            delta: dict[str, Any] = {}
        else:
            data, before = {}, parent.data
            after = task.data
            delta = {  # DeepMerge.get_updated_keys / get_deleted_keys
                "updates": {key: after[key] for key in after if key not in before or after[key] != before[key]},
                "deletions": [key for key in before if key not in after],
            }
        return {
            "id": str(task.id),
            "parent": str(task._parent) if parent is not None else None,
            "children": [str(child) for child in task._children],
            "last_state_change": task.last_state_change,
            "state": task.state,
            "task_spec": task.task_spec.name,
            "triggered": task.triggered,
            "internal_data": self.registry.convert(task.internal_data),
            "data": data,
            "delta": delta,
        }


def _registry() -> Any:
    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = StateOnlyWorkflowConverter
    config[Task] = StateTaskConverter
    registry = BpmnWorkflowSerializer.configure(config)
    # Task data types beyond JSON. datetime is registered by SpiffWorkflow; date is a different class.
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
    registry.register(set, lambda v: {"items": sorted(v, key=repr)}, lambda v: set(v["items"]),
                      typename="set")
    return registry


SERIALIZER = BpmnWorkflowSerializer(_registry(), version=SPIFF_STATE_VERSION)


# The serializer converts specs and states iteratively (measured up to 3000 chained tasks, see
# guards.py), so none of these needs run_deep; only building a new workflow recurses.


def dump_specs(spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]) -> str:
    """Serialize a parsed process spec and its called subprocess specs, once per version."""
    return json.dumps({
        "spec": SERIALIZER.registry.convert(spec),
        "subprocess_specs": {k: SERIALIZER.registry.convert(v) for k, v in subprocess_specs.items()},
        "serializer_version": SPIFF_STATE_VERSION,
    }, ensure_ascii=False)


def load_specs(text: str) -> Specs:
    """Restore the specs stored on a process version."""
    dct = json.loads(text)
    spec = SERIALIZER.registry.restore(dct["spec"])
    subs = {k: SERIALIZER.registry.restore(v) for k, v in dct["subprocess_specs"].items()}
    return spec, subs


def dump_state(workflow: BpmnWorkflow) -> str:
    """Serialize the workflow's state (task tree and data) without the spec, as canonical TEXT.

    Canonical: every object's keys sorted except the task and subprocess mappings, whose order
    SpiffWorkflow 3.2.0 needs (it rebuilds task data parent-first). A restored workflow builds its
    data dicts in another key order than the run that made them; sorting makes `dump(load(s)) == s`
    whether a workflow was restored or kept in memory (the hot-instance cache).

    A large data value repeated across the state is written once (engine.spiff.repeats): the state's length, which
    JZFLOW_MAX_STATE_KB limits, counts it once.
    """
    registry = SERIALIZER.registry
    registry._encoder_mode = True
    try:
        dct = SERIALIZER.to_dict(workflow)
        dct[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
        table = repeats.share(dct, _canonical)
        if table is not None:
            dct[repeats.KEY] = table
        text = _canonical_workflow(dct)
        _HELD[workflow] = len(text) + (table.repeated_chars() if table is not None else 0)
        return text
    finally:
        registry._encoder_mode = False


# json.dumps(value, cls=…) builds an encoder per call, and a dump encodes each task on its own: built once here
# (an encoder keeps no state between calls), with the arguments json.dumps gives it, so the text is the same.
_SORTED = SERIALIZER._encoder_cls(sort_keys=True)
_UNSORTED = SERIALIZER._encoder_cls()


# JSONEncoder.encode builds its C encoder (and a float closure it does not use) in Python on every call, and a dump
# encodes each task on its own: the same C encoder is made here directly from _SORTED's settings, with a new
# circular-reference memo per call (None without the C accelerator: encode() then).
_C_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None) if _SORTED.indent is None else None
_ESCAPE = json.encoder.encode_basestring_ascii  # what json.dumps(key) gives a str, as _SORTED (ensure_ascii)
_C_ARGS = (_SORTED.default, _ESCAPE if _SORTED.ensure_ascii else json.encoder.encode_basestring, _SORTED.indent,
           _SORTED.key_separator, _SORTED.item_separator, _SORTED.sort_keys, _SORTED.skipkeys, _SORTED.allow_nan)


def _canonical(value: Any) -> str:
    try:
        if _C_ENCODER is None:
            return str(_SORTED.encode(value))
        return "".join(_C_ENCODER({}, *_C_ARGS)(value, 0))
    except TypeError:  # keys of mixed types (1 and "a") cannot be sorted: keep their order
        return str(_UNSORTED.encode(value))


def encoded_size(value: Any) -> int:
    """Return the characters a value of task data takes in the saved state (written as `dump_state` writes it)."""
    return len(_canonical(value))


def _canonical_task(dct: dict[str, Any]) -> str:
    delta = dct.get("delta")
    deletions = delta.get("deletions") if isinstance(delta, dict) else None
    if isinstance(delta, dict) and isinstance(deletions, list) and len(deletions) > 1:  # keys popped on restore
        try:  # (one or none: sorted already)
            dct = {**dct, "delta": {**delta, "deletions": sorted(deletions)}}
        except TypeError:
            pass
    return _canonical(dct)


def _canonical_workflow(dct: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in sorted(dct):
        value = dct[key]
        if isinstance(value, repeats.Table):
            parts.append(f"{_key(key)}: {value.encode(_canonical)}")
        elif key in ("tasks", "subprocesses") and isinstance(value, dict):
            item = _canonical_task if key == "tasks" else _canonical_workflow
            inner = ", ".join(f"{_key(k)}: {item(v)}" for k, v in value.items())
            parts.append(f"{_key(key)}: {{{inner}}}")
        else:
            parts.append(f"{_key(key)}: {_canonical(value)}")
    return "{" + ", ".join(parts) + "}"


def _key(key: Any) -> str:
    return str(_ESCAPE(key)) if type(key) is str else json.dumps(key)


def load_state(text: str, specs: Specs, script_engine: PythonScriptEngine,
               version: str | None = None) -> BpmnWorkflow:
    """Restore a workflow from stored state and its version's specs; attach the sandbox.

    `version`: the row's serializer_version; an older layout of ours is migrated on load.
    """
    spec, subprocess_specs = specs
    if version is not None and version not in READABLE_VERSIONS:
        raise ValueError(f"stored workflow state has unsupported jzflow serializer version {version}")

    dct = json.loads(text)
    version = dct.pop(SERIALIZER.VERSION_KEY, SPIFF_STATE_VERSION)
    if version in MIGRATIONS:
        # SpiffWorkflow's migrations expect a full serialization; we store 1.5 and above only.
        raise ValueError(f"stored workflow state has unsupported serializer version {version}")
    repeated = repeats.expand(dct)  # before the restore: it gives each place its own copy
    workflow: BpmnWorkflow = SERIALIZER.registry.restore(dct, spec=spec, subprocess_specs=subprocess_specs)
    workflow.script_engine = script_engine
    _HELD[workflow] = len(text) + repeated
    return workflow


# What each workflow last dumped or loaded holds as JSON, every repeated value counted at each place (the restore
# builds each anew): the hot cache's measure of its memory. Weak: it goes with the workflow.
_HELD: weakref.WeakKeyDictionary[BpmnWorkflow, int] = weakref.WeakKeyDictionary()


def held_chars(workflow: BpmnWorkflow, written: int) -> int:
    """Characters of JSON the workflow holds, repeated values counted at each place; `written`: the state's length,
    when the workflow was neither dumped nor loaded here."""
    return _HELD.get(workflow, written)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def compact(workflow: BpmnWorkflow, *, keep: int, batch: int) -> str | None:
    """Cut finished earlier rounds out of the live tree; return them as TEXT for the history, or None."""
    cut = compaction.compact(workflow, keep=keep, batch=batch, convert=SERIALIZER.registry.convert)
    if cut is None:
        return None
    # The encoder class: another thread's dump may have the registry in encoder mode (objects left to it).
    text = json.dumps(cut, cls=SERIALIZER._encoder_cls, ensure_ascii=False)
    if not text.isascii() and _LONE_SURROGATE.search(text):  # a script's chr(0xd800): UTF-8 cannot hold it unescaped
        text = json.dumps(cut, cls=SERIALIZER._encoder_cls)
    return text


def new_workflow(specs: Specs, script_engine: PythonScriptEngine) -> BpmnWorkflow:
    """Create a fresh workflow for a version's specs with the sandboxed script engine."""
    spec, subprocess_specs = specs
    size = len(spec.task_specs) + sum(len(s.task_specs) for s in subprocess_specs.values())
    workflow: BpmnWorkflow = run_deep_for(size, BpmnWorkflow, spec, subprocess_specs, script_engine=script_engine)
    return workflow
