"""A large data value the state repeats is written once (engine/spiff/repeats.py, issue #17): SpiffWorkflow copies the
parent's data into every multi-instance child, so each child's subprocess held the whole `plan`. The state round-trips,
an older state loads, user data that looks like the table round-trips unchanged, and no two places share an object
after a load."""
from __future__ import annotations

import json
from typing import Any

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine.spiff import repeats, sandbox, serializer, weight
from tests.engine.spiff.test_subprocess_compaction import ITEMS, _specs

PLAN = [{"title": f"计划任务{i:02d}：招引配套企业", "industry": "装备制造", "n": i} for i in range(ITEMS)]


def _engine() -> Any:
    return sandbox.make_script_engine(time_limit=30)


def _started(specs: serializer.Specs, **data: Any) -> BpmnWorkflow:
    wf = BpmnWorkflow(specs[0], specs[1], script_engine=_engine())
    start = wf.get_next_task(spec_name="start")
    start.data.update(items=list(range(ITEMS)), plan=json.loads(json.dumps(PLAN)), **data)
    wf.do_engine_steps()
    return wf


def _asks(wf: BpmnWorkflow) -> list[Any]:
    return [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == "ask"]


def _all_data(wf: BpmnWorkflow) -> dict[str, Any]:
    found: dict[str, Any] = {"": wf.data}
    for flow in (wf, *wf.subprocesses.values()):
        found[f"w{flow.parent_task_id if flow is not wf else ''}"] = flow.data
        found.update({str(t.id): t.data for t in flow.tasks.values()})
    return found


def _unshared(wf: BpmnWorkflow, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as m:
        m.setattr(repeats, "share", lambda dct, encode: None)
        return serializer.dump_state(wf)


def test_the_plan_copied_into_each_child_is_written_once_and_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _specs(False)
    wf = _started(specs)
    asks = _asks(wf)
    assert len(asks) == ITEMS
    asks[0].data["answer"] = 1
    asks[0].run()
    wf.do_engine_steps()
    text = serializer.dump_state(wf)
    before = _unshared(wf, monkeypatch)
    table = json.loads(text)[repeats.KEY]
    plan_text = json.dumps(PLAN, sort_keys=True)
    assert before.count(plan_text) > ITEMS  # every child's subprocess holds the plan
    assert text.count(plan_text) == 1 and len(table["values"]) >= 1
    assert len(text) < len(before) - (ITEMS - 1) * len(plan_text) * 0.8, (len(text), len(before))
    loaded = serializer.load_state(text, specs, _engine(), version=serializer.SERIALIZER_VERSION)
    assert serializer.dump_state(loaded) == text  # stable
    assert _all_data(loaded) == _all_data(wf)
    for n, task in enumerate(_asks(loaded)):  # and it runs to the end
        task.data["answer"] = n
        task.run()
        loaded.do_engine_steps()
    after = [t for t in loaded.get_tasks(state=TaskState.READY, manual=True)]
    assert [t.task_spec.bpmn_id for t in after] == ["after"] and after[0].data["plan"] == PLAN


def test_no_two_places_share_an_object_after_a_load() -> None:
    specs = _specs(False)
    text = serializer.dump_state(_started(specs))
    loaded = serializer.load_state(text, specs, _engine())
    asks = _asks(loaded)
    plans = [t.data["plan"] for t in asks] + [t.workflow.task_tree.data["plan"] for t in asks]
    assert len({id(p) for p in plans}) == len(plans)
    # Across the children (within one, SpiffWorkflow's restore shallow-copies a task's data from its parent's, as
    # without the table): no item is shared.
    start = next(t for t in loaded.tasks.values() if t.task_spec.name == "start")
    roots = [t.workflow.task_tree.data["plan"] for t in asks] + [start.data["plan"]]
    assert len({id(p[0]) for p in roots}) == len(roots)
    asks[0].data["plan"].append({"title": "只在这一个子任务里"})
    asks[0].data["plan"][0]["title"] = "改了"
    assert all(t.data["plan"] == PLAN for t in asks[1:])
    reloaded = serializer.load_state(serializer.dump_state(loaded), specs, _engine())
    first = {str(t.id): t.data["plan"] for t in _asks(reloaded)}
    assert first[str(asks[0].id)][0]["title"] == "改了"
    assert all(p == PLAN for k, p in first.items() if k != str(asks[0].id))


def test_a_state_saved_before_loads_and_the_next_save_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _specs(False)
    wf = _started(specs)
    old = _unshared(wf, monkeypatch)
    assert repeats.KEY not in json.loads(old)
    loaded = serializer.load_state(old, specs, _engine(), version="jz2/spiff1.5")
    assert _all_data(loaded) == _all_data(wf)
    assert serializer.dump_state(loaded) == serializer.dump_state(wf)
    with pytest.raises(ValueError, match="unsupported"):
        serializer.load_state(old, specs, _engine(), version="jz9/spiff1.5")


def test_user_data_that_looks_like_the_table_round_trips_unchanged() -> None:
    specs = _specs(False)
    lookalike = {"at": [[None, None, "data", "x"]], "values": [PLAN]}
    wf = _started(specs, jz_shared=lookalike, x=None, w=[None], z={"jz_shared": None})
    text = serializer.dump_state(wf)
    assert repeats.KEY in json.loads(text)
    loaded = serializer.load_state(text, specs, _engine())
    for task in _asks(loaded):
        assert task.data["jz_shared"] == lookalike and task.data["x"] is None
        assert task.data["w"] == [None] and task.data["z"] == {"jz_shared": None}
    assert _all_data(loaded) == _all_data(wf)
    assert serializer.dump_state(loaded) == text


def test_values_equal_in_python_but_not_as_written_stay_apart() -> None:
    specs = _specs(False)
    ones, trues, floats = [1] * 200, [True] * 200, [1.0] * 200
    wf = _started(specs, a=ones, b=trues, c=floats, d=list(ones))
    loaded = serializer.load_state(serializer.dump_state(wf), specs, _engine())
    data = _asks(loaded)[0].data
    assert [type(v) for v in (data["a"][0], data["b"][0], data["c"][0], data["d"][0])] == [int, bool, float, int]


def test_a_damaged_table_is_refused_with_a_clear_message() -> None:
    specs = _specs(False)
    dct = json.loads(serializer.dump_state(_started(specs)))
    dct[repeats.KEY]["at"][0][0][3] = "items"  # a place holding a value of its own
    with pytest.raises(ValueError, match=repeats.KEY):
        serializer.load_state(json.dumps(dct), specs, _engine())
    dct[repeats.KEY]["values"].append([1])
    with pytest.raises(ValueError, match=repeats.KEY):
        serializer.load_state(json.dumps(dct), specs, _engine())


def test_the_state_limit_does_not_discount_an_end_copy_the_state_holds_once() -> None:
    """weight.end_copies: the completed workflow's data repeats its End task's; a large value is stored once."""
    specs = _specs(False)
    wf = _started(specs)
    for n, task in enumerate(_asks(wf)):
        task.data["answer"] = n
        task.run()
        wf.do_engine_steps()
    after = wf.get_tasks(state=TaskState.READY, manual=True)[0]
    after.run()
    wf.do_engine_steps()
    assert wf.is_completed() and wf.data["plan"] == PLAN
    assert weight.end_copies(wf) < serializer.encoded_size(PLAN)
