"""退回 / 撤回 to a step inside a subprocess (engine.spiff.workflow.reset_to, as engine/tasks/sendback.py calls it).

SpiffWorkflow 3.2.0's `reset_from_task_id` sets only the top workflow's `last_task` (to the reset task's parent,
though that task is in the subprocess) and leaves a subprocess that had finished marked `completed` with its
`last_task` on its End task, which the reset dropped. The live workflow then dumped a task id a restored copy reads
as nothing (the hot cache's copy and a restored one wrote different states), and the reopened subprocess was not
"active": its waiting tasks were not refreshed, `is_completed()` said yes, and a weight counted the dropped End.
"""
from __future__ import annotations

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine.spiff import sandbox, serializer
from engine.spiff.workflow import reset_to

SUB = """
      <bpmn:startEvent id="s"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:userTask id="ask"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:userTask>
      <bpmn:scriptTask id="calc"><bpmn:incoming>g2</bpmn:incoming><bpmn:outgoing>g3</bpmn:outgoing>
        <bpmn:script>y = answer * 10</bpmn:script></bpmn:scriptTask>
      <bpmn:endEvent id="e"><bpmn:incoming>g3</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g1" sourceRef="s" targetRef="ask" />
      <bpmn:sequenceFlow id="g2" sourceRef="ask" targetRef="calc" />
      <bpmn:sequenceFlow id="g3" sourceRef="calc" targetRef="e" />"""
DOCUMENT = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:subProcess id="outer"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:startEvent id="os"><bpmn:outgoing>h1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:subProcess id="inner"><bpmn:incoming>h1</bpmn:incoming><bpmn:outgoing>h2</bpmn:outgoing>{SUB}
      </bpmn:subProcess>
      <bpmn:endEvent id="oe"><bpmn:incoming>h2</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="h1" sourceRef="os" targetRef="inner" />
      <bpmn:sequenceFlow id="h2" sourceRef="inner" targetRef="oe" />
    </bpmn:subProcess>
    <bpmn:userTask id="after"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="outer" />
    <bpmn:sequenceFlow id="f2" sourceRef="outer" targetRef="after" />
    <bpmn:sequenceFlow id="f3" sourceRef="after" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _specs() -> serializer.Specs:
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_str(DOCUMENT.encode(), filename="p.bpmn")
    return parser.get_spec("p"), parser.get_subprocess_specs("p")


def _ready(workflow: BpmnWorkflow, bpmn_id: str) -> list:  # type: ignore[type-arg]
    return [t for t in workflow.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == bpmn_id]


def _answer(workflow: BpmnWorkflow, answer: int) -> None:
    ask = _ready(workflow, "ask")[0]
    ask.data["answer"] = answer
    ask.run()
    workflow.do_engine_steps()


def test_a_step_reopened_inside_finished_subprocesses_leaves_them_consistent() -> None:
    specs = _specs()
    engine = sandbox.make_script_engine(time_limit=30)
    workflow = BpmnWorkflow(specs[0], specs[1], script_engine=engine)
    workflow.do_engine_steps()
    _answer(workflow, 1)
    assert _ready(workflow, "after")[0].data["y"] == 10  # both subprocesses finished, the next step waits
    ask = next(t for t in workflow.get_tasks() if t.task_spec.bpmn_id == "ask")
    inner = ask.workflow
    outer = workflow.get_task_from_id(inner.parent_task_id).workflow
    assert inner.completed and outer.completed and inner is not outer

    reset_to(workflow, ask.id, {"answer": 1})  # 撤回 of ask

    for flow in (inner, outer, workflow):
        assert flow.last_task is None or flow.last_task.id in flow.tasks, flow
        assert not flow.completed and not flow.is_completed()
    assert inner.last_task is ask.parent
    assert {id(s) for s in workflow.get_active_subprocesses()} == {id(inner), id(outer)}
    text = serializer.dump_state(workflow)
    restored = serializer.load_state(text, specs, engine)
    assert serializer.dump_state(restored) == text  # the kept workflow and a restored copy write the same state

    for copy in (workflow, restored):  # resubmitted, in memory or after a restart: the next step gets the new value
        copy.do_engine_steps()
        _answer(copy, 2)
        assert _ready(copy, "after")[0].data["y"] == 20
        assert serializer.dump_state(serializer.load_state(serializer.dump_state(copy), specs, engine)) \
            == serializer.dump_state(copy)


def test_a_second_reset_of_the_same_step_and_then_of_the_step_after() -> None:
    """Another 撤回 of the reopened step before it is resubmitted, then a 退回 from the next step."""
    specs = _specs()
    engine = sandbox.make_script_engine(time_limit=30)
    workflow = BpmnWorkflow(specs[0], specs[1], script_engine=engine)
    workflow.do_engine_steps()
    _answer(workflow, 1)
    ask = next(t for t in workflow.get_tasks() if t.task_spec.bpmn_id == "ask")
    reset_to(workflow, ask.id, {"answer": 1})
    workflow.do_engine_steps()
    reset_to(workflow, ask.id, {"answer": 1})
    workflow.do_engine_steps()
    assert len(_ready(workflow, "ask")) == 1 and not _ready(workflow, "after")
    _answer(workflow, 3)
    assert _ready(workflow, "after")[0].data["y"] == 30
    ask = next(t for t in workflow.get_tasks() if t.task_spec.bpmn_id == "ask")
    reset_to(workflow, ask.id, dict(ask.data))  # 退回 from "after" to ask
    text = serializer.dump_state(workflow)
    assert serializer.dump_state(serializer.load_state(text, specs, engine)) == text
    workflow.do_engine_steps()
    _answer(workflow, 4)
    assert _ready(workflow, "after")[0].data["y"] == 40 and workflow.last_task is not None
