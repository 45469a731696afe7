"""Each SpiffWorkflow 3.2.0 bug shown without its guard, then guarded (engine/spiff/guards.py)."""
from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator
from itertools import pairwise

import pytest
import SpiffWorkflow.version
from SpiffWorkflow.bpmn.exceptions import WorkflowDataException
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskIterator, TaskState

from engine.spiff import guards
from engine.spiff.guards import (
    SPIFF_MAX_DEPTH,
    TaskTreeTooDeep,
    check_depth,
    depth_guard,
    element_line,
    is_really_completed,
    locate_validation_error,
    run_deep,
    task_depth,
    tree_depth,
)

DEFINITIONS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs"
                  targetNamespace="http://jzflow.test/bpmn">
<bpmn:process id="{process}" isExecutable="true">
{body}
</bpmn:process>
</bpmn:definitions>
"""


def flow(source: str, target: str, condition: str | None = None) -> str:
    cond = f"<bpmn:conditionExpression>{condition}</bpmn:conditionExpression>" if condition else ""
    return f'<bpmn:sequenceFlow id="{source}__{target}" sourceRef="{source}" targetRef="{target}">{cond}</bpmn:sequenceFlow>'


def script(task_id: str, code: str, extra: str = "") -> str:
    return f'<bpmn:scriptTask id="{task_id}">{extra}<bpmn:script>{code}</bpmn:script></bpmn:scriptTask>'


def document(process: str, *elements: str) -> bytes:
    return DEFINITIONS.format(process=process, body="\n".join(elements)).encode()


def parse(xml: bytes, process: str, filename: str = "test.bpmn") -> BpmnProcessSpec:
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_str(xml, filename=filename)
    return parser.get_spec(process)


def chain(length: int) -> bytes:
    """A start event, `length` script tasks in a row, an end event."""
    ids = ["start", *(f"t{i}" for i in range(length)), "end"]
    return document(
        "chain",
        '<bpmn:startEvent id="start"/>',
        *(script(f"t{i}", f"x = {i}") for i in range(length)),
        '<bpmn:endEvent id="end"/>',
        *(flow(a, b) for a, b in pairwise(ids)),
    )


def loop(times: str) -> bytes:
    """One instance that runs a script task `times` times, then waits on a user task."""
    return document(
        "loop",
        '<bpmn:startEvent id="start"/>',
        script("init", "i = 0"),
        script("step", "i = i + 1"),
        '<bpmn:exclusiveGateway id="more" default="more__approve"/>',
        '<bpmn:userTask id="approve"/>',
        '<bpmn:endEvent id="end"/>',
        flow("start", "init"), flow("init", "step"), flow("step", "more"),
        flow("more", "step", f"i &lt; {times}"), flow("more", "approve"), flow("approve", "end"),
    )


@pytest.fixture
def patched() -> Iterator[None]:
    was = guards.installed()
    guards.install()
    yield
    if not was:
        guards.uninstall()


@pytest.fixture
def unpatched() -> Iterator[None]:
    was = guards.installed()
    guards.uninstall()
    yield
    if was:
        guards.install()


# --- 1. deep task trees ---------------------------------------------------------------------------

LOOPS = 520  # two tree levels per turn: the READY task ends up past depth 1000


def test_deep_loop_stalls_and_is_completed_lies_without_the_patch(unpatched: None) -> None:
    workflow = BpmnWorkflow(parse(loop(str(LOOPS)), "loop"))
    workflow.do_engine_steps()  # returns quietly, halfway through the loop

    hidden = [t for t in workflow.tasks.values() if t.state == TaskState.READY]
    assert [t.task_spec.name for t in hidden] == ["step"]
    assert task_depth(hidden[0]) > SPIFF_MAX_DEPTH
    assert workflow.get_tasks(state=TaskState.READY) == []
    assert workflow.is_completed() is True and workflow.completed is True  # the lie is cached (and stored)
    assert not is_really_completed(workflow)
    assert tree_depth(workflow) > SPIFF_MAX_DEPTH
    with pytest.raises(TaskTreeTooDeep):
        check_depth(workflow)


def test_deep_loop_reaches_its_user_task_with_the_patch(patched: None) -> None:
    workflow = BpmnWorkflow(parse(loop(str(LOOPS)), "loop"))
    workflow.do_engine_steps()

    [approve] = workflow.get_tasks(state=TaskState.READY, manual=True)
    assert approve.task_spec.name == "approve" and approve.data["i"] == LOOPS
    assert workflow.is_completed() is False and not is_really_completed(workflow)
    with pytest.raises(TaskTreeTooDeep, match="new one") as too_deep:
        check_depth(workflow)
    assert too_deep.value.depth == tree_depth(workflow) > SPIFF_MAX_DEPTH
    assert too_deep.value.limit == guards.DEPTH_LIMIT

    approve.run()
    workflow.do_engine_steps()
    assert workflow.is_completed() and is_really_completed(workflow)


def test_depth_guard_stops_a_runaway_loop(patched: None) -> None:
    workflow = BpmnWorkflow(parse(loop("10**9"), "loop"))
    with pytest.raises(TaskTreeTooDeep) as too_deep:
        workflow.do_engine_steps(did_complete_task=depth_guard(limit=100))
    assert too_deep.value.depth == 101
    assert workflow.last_task is not None and workflow.last_task.state == TaskState.COMPLETED
    assert 101 <= check_depth(workflow, limit=200) < 110


def test_depths_count_subprocess_nesting() -> None:
    inner = "\n".join([
        '<bpmn:startEvent id="sub_start"/>', '<bpmn:task id="a"/>', '<bpmn:task id="b"/>',
        '<bpmn:userTask id="wait"/>', '<bpmn:endEvent id="sub_end"/>',
        flow("sub_start", "a"), flow("a", "b"), flow("b", "wait"), flow("wait", "sub_end"),
    ])
    xml = document(
        "outer",
        '<bpmn:startEvent id="start"/>', f'<bpmn:subProcess id="sub">{inner}</bpmn:subProcess>',
        '<bpmn:endEvent id="end"/>', flow("start", "sub"), flow("sub", "end"),
    )
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_str(xml)
    workflow = BpmnWorkflow(parser.get_spec("outer"), parser.get_subprocess_specs("outer"))
    workflow.do_engine_steps()

    [wait] = workflow.get_tasks(state=TaskState.READY, manual=True)
    sub_tasks = [t for sp in workflow.subprocesses.values() for t in sp.tasks.values()]
    deepest = max(task_depth(t) for t in [*workflow.tasks.values(), *sub_tasks])
    assert tree_depth(workflow) == deepest > max(t.depth for t in sub_tasks)
    assert task_depth(wait) == task_depth(workflow.get_task_from_id(wait.workflow.parent_task_id)) + 1 + wait.depth
    assert check_depth(workflow, limit=deepest) == deepest
    with pytest.raises(TaskTreeTooDeep):
        check_depth(workflow, limit=deepest - 1)


# --- 2. multi-instance output with cardinality ----------------------------------------------------

def multi_instance(existing_output: str, sequential: bool) -> BpmnWorkflow:
    loop_characteristics = (
        f'<bpmn:multiInstanceLoopCharacteristics isSequential="{str(sequential).lower()}">'
        "<bpmn:loopCardinality>3</bpmn:loopCardinality>"
        "<bpmn:loopDataOutputRef>results</bpmn:loopDataOutputRef>"
        '<bpmn:inputDataItem id="i" name="i"/><bpmn:outputDataItem id="r" name="r"/>'
        "</bpmn:multiInstanceLoopCharacteristics>"
    )
    xml = document(
        "mi",
        '<bpmn:startEvent id="start"/>', script("init", f"results = {existing_output}"),
        script("each", "r = i * 10", extra=loop_characteristics), '<bpmn:endEvent id="end"/>',
        flow("start", "init"), flow("init", "each"), flow("each", "end"),
    )
    return BpmnWorkflow(parse(xml, "mi"))


@pytest.mark.parametrize("sequential", [False, True])
def test_mi_cardinality_with_existing_output_raises_name_error_without_the_patch(
        unpatched: None, sequential: bool) -> None:
    workflow = multi_instance("[]", sequential)
    with pytest.raises(NameError, match="data_ouput"):
        workflow.do_engine_steps()


@pytest.mark.parametrize("sequential", [False, True])
def test_mi_cardinality_fills_an_existing_empty_list_with_the_patch(patched: None, sequential: bool) -> None:
    workflow = multi_instance("[]", sequential)
    workflow.do_engine_steps()
    assert workflow.is_completed()
    assert sorted(workflow.data["results"]) == [0, 10, 20]  # completion order, so sort


def test_mi_cardinality_fills_an_existing_dict_by_index_with_the_patch(patched: None) -> None:
    workflow = multi_instance("{}", sequential=False)
    workflow.do_engine_steps()
    assert workflow.data["results"] == {0: 0, 1: 10, 2: 20}


@pytest.mark.parametrize(("existing", "message"), [
    ("[1]", "must be a map \\(dict\\) or empty sequence"),
    ("None", "Only a mutable map"),
])
def test_mi_cardinality_rejects_unusable_output_with_the_patch(patched: None, existing: str, message: str) -> None:
    workflow = multi_instance(existing, sequential=False)
    with pytest.raises(WorkflowDataException, match=message):
        workflow.do_engine_steps()


# --- 3. recursion ---------------------------------------------------------------------------------

def serializer() -> BpmnWorkflowSerializer:
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))


def test_parsing_a_long_chain_hits_the_recursion_limit_without_run_deep() -> None:
    with pytest.raises(ValidationException, match="RecursionError") as failed:
        parse(chain(700), "chain")
    assert isinstance(failed.value.__context__, RecursionError)  # the parser wraps it


def test_a_long_chain_parses_runs_and_round_trips_with_run_deep() -> None:
    spec = run_deep(parse, chain(700), "chain")
    workflow = BpmnWorkflow(spec)
    # Serializer and engine steps are iterative: measured, so they need no run_deep.
    restored = serializer().from_dict(serializer().to_dict(workflow))
    restored.do_engine_steps()
    assert restored.is_completed() and restored.data["x"] == 699
    again = serializer().from_dict(serializer().to_dict(restored))
    assert is_really_completed(again) and again.data["x"] == 699


def test_creating_a_workflow_for_a_longer_chain_needs_run_deep_too() -> None:
    spec = run_deep(parse, chain(1100), "chain")
    with pytest.raises(RecursionError):
        BpmnWorkflow(spec)  # predicts the whole chain recursively
    workflow = run_deep(BpmnWorkflow, spec)
    assert tree_depth(workflow) > 1100


def test_run_deep_returns_reraises_and_restores_the_limit() -> None:
    def depth_of(n: int) -> int:
        return 0 if n == 0 else 1 + depth_of(n - 1)

    limit = sys.getrecursionlimit()
    with pytest.raises(RecursionError):
        depth_of(5000)
    assert run_deep(depth_of, 5000) == 5000
    assert run_deep(run_deep, depth_of, 3000) == 3000  # nested: runs inline
    with pytest.raises(ZeroDivisionError):
        run_deep(lambda: 1 // 0)
    assert sys.getrecursionlimit() == limit

    who: contextvars.ContextVar[str] = contextvars.ContextVar("who")
    who.set("张三")
    assert run_deep(who.get) == "张三"


# --- 4. validation error locations ----------------------------------------------------------------

def bad_gateway_free_split() -> bytes:
    """A plain task with two outgoing flows: SpiffWorkflow refuses it while building the spec."""
    return document(
        "order",
        '<bpmn:startEvent id="start"/>', '<bpmn:task id="review"/>',
        '<bpmn:endEvent id="ok"/>', '<bpmn:endEvent id="no"/>',
        flow("start", "review"), flow("review", "ok"), flow("review", "no"),
    )


def line_of(xml: bytes, needle: str) -> int:
    return next(n for n, text in enumerate(xml.decode().splitlines(), start=1) if needle in text)


def test_validation_error_has_no_line_without_the_patch(unpatched: None) -> None:
    xml = bad_gateway_free_split()
    with pytest.raises(ValidationException) as failed:
        parse(xml, "order", filename="order.bpmn")
    assert failed.value.line_number == ""
    assert locate_validation_error(failed.value, {"order.bpmn": xml}) == (
        "order.bpmn", "review", line_of(xml, 'id="review"'))


def test_validation_error_carries_the_line_with_the_patch(patched: None) -> None:
    xml = bad_gateway_free_split()
    with pytest.raises(ValidationException) as failed:
        parse(xml, "order", filename="order.bpmn")
    assert failed.value.line_number == line_of(xml, 'id="review"')


def test_locate_keeps_the_schema_validators_line() -> None:
    xml = document("p", '<bpmn:startEvent id="start"/>', '<bpmn:bogus id="x"/>')
    with pytest.raises(ValidationException) as failed:
        parse(xml, "p", filename="p.bpmn")
    assert locate_validation_error(failed.value, {"p.bpmn": xml}) == ("p.bpmn", None, line_of(xml, "bogus"))


def test_locate_finds_the_file_when_the_error_names_none() -> None:
    files = {"a.bpmn": document("a", '<bpmn:task id="one"/>'), "b.bpmn": document("b", '<bpmn:task id="two"/>')}
    error = ValidationException("no file given", id="two")
    assert locate_validation_error(error, files) == ("b.bpmn", "two", line_of(files["b.bpmn"], 'id="two"'))
    assert locate_validation_error(ValidationException("nothing known"), files) == (None, None, None)


def test_element_line_handles_missing_ids_and_broken_xml() -> None:
    xml = document("p", '<bpmn:task id="here"/>')
    assert element_line(xml, "here") == line_of(xml, 'id="here"')
    assert element_line(xml, "elsewhere") is None
    assert element_line(b"<bpmn:definitions", "here") is None


# --- installation ---------------------------------------------------------------------------------

def test_install_is_idempotent_and_uninstall_restores(unpatched: None) -> None:
    workflow = BpmnWorkflow(parse(chain(1), "chain"))
    assert TaskIterator(workflow.task_tree).max_depth == SPIFF_MAX_DEPTH
    guards.install()
    first = dict(TaskIterator.__dict__)
    guards.install()
    assert guards.installed() and dict(TaskIterator.__dict__) == first
    assert TaskIterator(workflow.task_tree).max_depth == sys.maxsize
    assert TaskIterator(workflow.task_tree, max_depth=5).max_depth == 5
    guards.uninstall()
    assert not guards.installed()
    assert TaskIterator(workflow.task_tree).max_depth == SPIFF_MAX_DEPTH


def test_install_refuses_another_spiff_version(unpatched: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SpiffWorkflow.version, "__version__", "3.3.0")
    with pytest.raises(RuntimeError, match=r"3\.3\.0"):
        guards.install()
    assert not guards.installed()
