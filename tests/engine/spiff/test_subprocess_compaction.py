"""Finished subprocesses leave the live state in batches (engine/spiff/compaction.py, issue #17): a multi-instance
subprocess's output collection is whole, the running child and the latest finished ones stay, and the state loads."""
from __future__ import annotations

import json

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine.spiff import compaction, sandbox, serializer

DOCUMENT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:subProcess id="each"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics isSequential="{sequential}">
        <bpmn:loopDataInputRef>items</bpmn:loopDataInputRef><bpmn:loopDataOutputRef>out</bpmn:loopDataOutputRef>
        <bpmn:inputDataItem id="item" name="item" /><bpmn:outputDataItem id="y" name="y" />
      </bpmn:multiInstanceLoopCharacteristics>
      <bpmn:startEvent id="s"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:userTask id="ask"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:userTask>
      <bpmn:scriptTask id="calc"><bpmn:incoming>g2</bpmn:incoming><bpmn:outgoing>g3</bpmn:outgoing>
        <bpmn:script>y = item * 10 + answer</bpmn:script></bpmn:scriptTask>
      <bpmn:endEvent id="e"><bpmn:incoming>g3</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g1" sourceRef="s" targetRef="ask" />
      <bpmn:sequenceFlow id="g2" sourceRef="ask" targetRef="calc" />
      <bpmn:sequenceFlow id="g3" sourceRef="calc" targetRef="e" />
    </bpmn:subProcess>
    <bpmn:userTask id="after"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="each" />
    <bpmn:sequenceFlow id="f2" sourceRef="each" targetRef="after" />
    <bpmn:sequenceFlow id="f3" sourceRef="after" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""
ITEMS = 12


def _specs(sequential: bool) -> serializer.Specs:
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_str(DOCUMENT.format(sequential=str(sequential).lower()).encode(), filename="p.bpmn")
    return parser.get_spec("p"), parser.get_subprocess_specs("p")


def _reload(workflow: BpmnWorkflow, specs: serializer.Specs) -> BpmnWorkflow:
    """A restart: the saved state restored without the workflow kept in memory."""
    text = serializer.dump_state(workflow)
    loaded = serializer.load_state(text, specs, sandbox.make_script_engine(time_limit=30))
    assert serializer.dump_state(loaded) == text
    return loaded


@pytest.mark.parametrize("sequential", [False, True])
def test_finished_children_leave_in_batches_and_the_output_is_whole(sequential: bool) -> None:
    specs = _specs(sequential)
    wf = BpmnWorkflow(specs[0], specs[1], script_engine=sandbox.make_script_engine(time_limit=30))
    wf.get_next_task(spec_name="start").data["items"] = list(range(ITEMS))
    wf.do_engine_steps()
    archived: dict[str, object] = {}
    most = 0
    for n in range(ITEMS):
        ready = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == "ask"]
        assert ready, n
        ready[0].data["answer"] = n
        ready[0].run()
        wf.do_engine_steps()
        cut = serializer.compact(wf, keep=8, batch=8)
        if cut is not None:
            archived.update(json.loads(cut)["subprocesses"])
        finished = [s for s in wf.subprocesses.values() if s.is_completed()]
        most = max(most, len(finished))
        wf = _reload(wf, specs)
    # Never more than the kept latest and a batch short of cutting (plus the child that just finished).
    assert most <= compaction.SUBPROCESS_KEEP + compaction.SUBPROCESS_BATCH
    assert len(archived) >= ITEMS - compaction.SUBPROCESS_KEEP - compaction.SUBPROCESS_BATCH
    assert not set(archived) & {str(k) for k in wf.subprocesses}
    after = [t for t in wf.get_tasks(state=TaskState.READY, manual=True)]
    assert [t.task_spec.bpmn_id for t in after] == ["after"]
    # The output collection, merged from the children's task data, lost nothing (in the order the children ran).
    assert sorted(after[0].data["out"]) == sorted(i * 10 + n for i, n in zip(range(ITEMS), range(ITEMS), strict=True))
    after[0].run()
    wf.do_engine_steps()
    assert wf.is_completed()


def test_a_running_child_and_the_latest_finished_ones_stay() -> None:
    specs = _specs(False)
    wf = BpmnWorkflow(specs[0], specs[1], script_engine=sandbox.make_script_engine(time_limit=30))
    wf.get_next_task(spec_name="start").data["items"] = list(range(ITEMS))
    wf.do_engine_steps()
    asks = [t for t in wf.get_tasks(state=TaskState.READY, manual=True)]
    for n, task in enumerate(asks[:-1]):  # every child but one finishes
        task.data["answer"] = n
        task.run()
        wf.do_engine_steps()
    running = asks[-1].workflow.parent_task_id
    cut = compaction.compact_subprocesses(wf, convert=serializer.SERIALIZER.registry.convert)
    assert cut is not None and len(cut["subprocesses"]) == ITEMS - 1 - compaction.SUBPROCESS_KEEP
    assert running in wf.subprocesses and str(running) not in cut["subprocesses"]
    assert len(wf.subprocesses) == 1 + compaction.SUBPROCESS_KEEP
    # Nothing more to cut until a batch has finished again: a save after this one walks nothing.
    assert compaction.compact_subprocesses(wf, convert=serializer.SERIALIZER.registry.convert) is None
    asks[-1].data["answer"] = 99
    asks[-1].run()
    wf.do_engine_steps()
    assert [t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.READY, manual=True)] == ["after"]
    _reload(wf, specs)
