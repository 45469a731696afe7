"""A multi-instance's fan-out, unbounded in SpiffWorkflow 3.2.0, refused past the cap before any instance exists
(engine/spiff/fanout.py)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.task import Task

from engine.spiff import fanout, sandbox
from engine.spiff.fanout import TooManyInstances

DOCUMENT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:{tag} id="many">{extensions}<bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics isSequential="{sequential}">{loop}</bpmn:multiInstanceLoopCharacteristics>
      {script}
    </bpmn:{tag}>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="many" />
    <bpmn:sequenceFlow id="f2" sourceRef="many" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""
CARDINALITY = "<bpmn:loopCardinality>{}</bpmn:loopCardinality>"
# The output keeps each instance's data off the parent, where the next sequential instance would find `item`.
COLLECTION = ("<bpmn:loopDataInputRef>items</bpmn:loopDataInputRef><bpmn:loopDataOutputRef>out</bpmn:loopDataOutputRef>"
              '<bpmn:inputDataItem id="item" name="item" /><bpmn:outputDataItem id="y" name="y" />')


@pytest.fixture(autouse=True)
def cap_of_20(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_MULTI_INSTANCE", "20")


@pytest.fixture
def unpatched() -> Iterator[None]:
    fanout.uninstall()
    try:
        yield
    finally:
        fanout.install()


def workflow(loop: str, sequential: bool, data: dict[str, Any], prescript: str = "") -> BpmnWorkflow:
    """start → `many` (a script task setting y = 1; with a preScript, a plain task: SpiffWorkflow's script task
    parser reads no preScript) → end."""
    extensions = (f"<bpmn:extensionElements><spiffworkflow:preScript>{prescript}</spiffworkflow:preScript>"
                  "</bpmn:extensionElements>")
    tag, script = ("task", "") if prescript else ("scriptTask", "<bpmn:script>y = 1</bpmn:script>")
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_str(DOCUMENT.format(tag=tag, extensions=extensions if prescript else "", script=script,
                                        sequential=str(sequential).lower(), loop=loop).encode(), filename="p.bpmn")
    wf = BpmnWorkflow(parser.get_spec("p"), script_engine=sandbox.make_script_engine(time_limit=30))
    wf.get_next_task().data.update(data)
    return wf


def mi_task(wf: BpmnWorkflow) -> Task:
    return next(t for t in wf.get_tasks() if t.task_spec.name == "many")


def instances(wf: BpmnWorkflow) -> list[Task]:
    mi = mi_task(wf)
    return list(mi.task_spec._instances(mi))


CASES = [(CARDINALITY.format("n"), {"n": 21}), (COLLECTION, {"items": list(range(21))})]


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize(("loop", "data"), CASES)
def test_spiff_makes_every_instance_asked_for_without_the_patch(unpatched: None, loop: str, data: dict[str, Any],
                                                                sequential: bool) -> None:
    wf = workflow(loop, sequential, data)
    wf.do_engine_steps()
    assert wf.is_completed()
    assert len(mi_task(wf).internal_data["merged"]) == 21


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize(("loop", "data"), CASES)
def test_over_the_cap_is_refused_before_any_instance_exists(loop: str, data: dict[str, Any],
                                                            sequential: bool) -> None:
    assert fanout.installed()
    wf = workflow(loop, sequential, data)
    with pytest.raises(TooManyInstances) as err:
        wf.do_engine_steps()
    assert err.value.task.task_spec.bpmn_id == "many" and (err.value.count, err.value.limit) == (21, 20)
    assert "(multi-instance many would create 21 instances from " in str(err.value)
    assert instances(wf) == []


@pytest.mark.parametrize("sequential", [False, True])
def test_the_collection_a_prescript_builds_is_counted(sequential: bool) -> None:
    wf = workflow(COLLECTION, sequential, {}, prescript="items = list(range(30))")
    with pytest.raises(TooManyInstances, match="loopDataInputRef items"):
        wf.do_engine_steps()
    assert instances(wf) == []


@pytest.mark.parametrize("sequential", [False, True])
def test_the_cardinality_is_evaluated_once(sequential: bool) -> None:
    # Counted by a second evaluation, this would pass at 16 and make 16 * 16 instances.
    wf = workflow(CARDINALITY.format("len(xs.extend(xs * 15) or xs)"), sequential, {"xs": [1]})
    wf.do_engine_steps()
    assert wf.is_completed()
    assert len(mi_task(wf).internal_data["merged"]) == 16


@pytest.mark.parametrize("sequential", [False, True])
def test_a_huge_decimal_cardinality_is_refused_without_building_its_integer(sequential: bool) -> None:
    # math.ceil(Decimal('1e400000')) builds a 400,000-digit int in one C step no budget interrupts: seconds here,
    # and Decimal('1e999999999') from a loopCardinality held a worker for ever.
    wf = workflow(CARDINALITY.format("Decimal('1e400000')"), sequential, {})
    started = time.monotonic()
    with pytest.raises(TooManyInstances):
        wf.do_engine_steps()
    assert time.monotonic() - started < 1
    assert instances(wf) == []
    assert fanout.whole(Decimal("1e999999999")) > 20 and fanout.whole(Decimal("2.5")) == 3
