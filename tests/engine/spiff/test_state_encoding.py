"""The state's encoding shortcuts give SpiffWorkflow's and the json module's own text (engine/spiff/serializer.py,
issue #17): the task conversion with its parent looked up once, and the canonical encoder made directly."""
from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from SpiffWorkflow.bpmn.serializer.default.workflow import TaskConverter
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine.spiff import sandbox, serializer
from tests.engine.spiff.test_subprocess_compaction import _specs


def _converter() -> Any:
    """The converter the state's registry uses for tasks."""
    return serializer.SERIALIZER.registry.convert_to_dict["Task"].args[1].__self__


def _spiff_dict(task: Any) -> dict[str, Any]:
    """SpiffWorkflow 3.2.0's own conversion of a task, with the registry's typename."""
    return {**TaskConverter.to_dict(_converter(), task), "typename": "Task"}


def test_each_task_converts_as_spiffworkflow_converts_it() -> None:
    specs = _specs(False)
    wf = BpmnWorkflow(specs[0], specs[1], script_engine=sandbox.make_script_engine(time_limit=30))
    start = wf.get_next_task(spec_name="start")
    start.data.update(items=[1, 2, 3], gone="x", kept={"a": [1, 2]})
    wf.do_engine_steps()
    for number, ask in enumerate(wf.get_tasks(state=TaskState.READY, manual=True)):
        ask.data.update(answer=number, kept={"a": [number]})
        for key in ("gone", "items")[:number]:  # none, one and two keys deleted below the parent
            ask.data.pop(key, None)
        ask.run()
    wf.do_engine_steps()
    assert isinstance(_converter(), serializer.StateTaskConverter)
    flows = [wf, *wf.subprocesses.values()]
    checked = 0
    registry = serializer.SERIALIZER.registry
    for flow in flows:
        for task in flow.tasks.values():
            assert registry.convert(task) == _spiff_dict(task)
            checked += 1
    assert checked > 20
    root = wf.task_tree
    assert registry.convert(root)["delta"] == {} and registry.convert(root)["data"] is root.data


VALUES: list[Any] = [
    "plain", "中文\u2028\"\\", 1, -2.5, 1e300, math.inf, -math.inf, True, None, [],
    {"b": 1, "a": [1.0, {"d": None, "c": "x"}], "中": "文"},
    {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "day": date(2026, 1, 2), "n": Decimal("1.10")},
    {"s": {3, 1, 2}, "f": lambda: 1},
    {1: "int key", 2: "another"},
    {1: "mixed", "a": "keys"},  # cannot be sorted: written in its own order
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_canonical_text_is_the_json_modules(value: Any) -> None:
    registry = serializer.SERIALIZER.registry
    registry._encoder_mode = True
    try:
        try:
            expected = json.dumps(value, cls=serializer.SERIALIZER._encoder_cls, sort_keys=True)
        except TypeError:
            expected = json.dumps(value, cls=serializer.SERIALIZER._encoder_cls)
        assert serializer._canonical(value) == expected
        assert serializer.encoded_size(value) == len(expected)
    finally:
        registry._encoder_mode = False
    nan = serializer._canonical(math.nan)
    assert nan == "NaN"


def test_a_circular_value_is_refused_as_before() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        serializer._canonical({"x": loop})
    assert serializer._canonical({"x": [1]}) == '{"x": [1]}'  # nothing left over from the refused one


def test_keys_are_written_as_json_dumps_writes_them() -> None:
    for key in ("root", "a\"b", "中文", "\ud800", "1a2b-uuid"):
        assert serializer._key(key) == json.dumps(key)
    assert serializer._key(1) == json.dumps(1)
