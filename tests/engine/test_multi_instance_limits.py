"""A multi-instance fans out to at most JZFLOW_MAX_MULTI_INSTANCE instances: a literal over it is refused at
deploy, a computed cardinality or an input collection over it is an incident before any instance exists."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import config, deploy
from engine.errors import DeployInvalid
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from engine.tasks.models import HumanTask

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="mi" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
"""
TAIL = """
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="many" />
    <bpmn:sequenceFlow id="f2" sourceRef="many" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""
FLOWS = "<bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>"


def cardinality(text: str, *, sequential: bool = False) -> str:
    return (f'<bpmn:multiInstanceLoopCharacteristics isSequential="{str(sequential).lower()}">'
            f"<bpmn:loopCardinality>{text}</bpmn:loopCardinality></bpmn:multiInstanceLoopCharacteristics>")


def collection(name: str = "items", *, sequential: bool = False) -> str:
    return (f'<bpmn:multiInstanceLoopCharacteristics isSequential="{str(sequential).lower()}">'
            f"<bpmn:loopDataInputRef>{name}</bpmn:loopDataInputRef>"
            '<bpmn:inputDataItem id="item" name="item" /></bpmn:multiInstanceLoopCharacteristics>')


def script_task(loop: str) -> dict[str, bytes]:
    task = f'<bpmn:scriptTask id="many" name="多">{FLOWS}{loop}<bpmn:script>y = 1</bpmn:script></bpmn:scriptTask>'
    return {"mi.bpmn": (HEAD + "    " + task + TAIL).encode()}


def user_task(loop: str) -> dict[str, bytes]:
    task = f'<bpmn:userTask id="many" name="部门审查">{FLOWS}{loop}</bpmn:userTask>'
    return {"mi.bpmn": (HEAD + "    " + task + TAIL).encode()}


def incident_of(session: Session, instance_id: int) -> Incident:
    found = session.scalar(select(Incident).where(Incident.instance_id == instance_id))
    assert found is not None
    return found


def saved_tasks(session: Session, instance_id: int) -> int:
    state = session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id))
    return len(json.loads(state or "{}").get("tasks", {}))


def test_default_cap_is_500_and_the_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JZFLOW_MAX_MULTI_INSTANCE", raising=False)
    assert config.load().max_multi_instance == 500
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv("JZFLOW_MAX_MULTI_INSTANCE", bad)
        with pytest.raises(config.SettingInvalid, match="JZFLOW_MAX_MULTI_INSTANCE"):
            config.load()


def test_a_literal_cardinality_over_the_cap_is_refused_at_deploy(session: Session) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, script_task(cardinality("5000")), actor=SYSTEM, check_lanes=False)
    [problem] = err.value.problems
    assert problem.element_id == "many" and problem.line == 6
    assert "5000" in problem.message and "500" in problem.message and "JZFLOW_MAX_MULTI_INSTANCE" in problem.message


@pytest.mark.parametrize("literal", ["2.5", '"3"'])
def test_a_literal_cardinality_that_is_not_a_whole_number_is_refused_at_deploy(session: Session,
                                                                               literal: str) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, script_task(cardinality(literal)), actor=SYSTEM, check_lanes=False)
    assert [p.element_id for p in err.value.problems] == ["many"]


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize(("n", "shown"), [(100_000, "100000"), (1e9, "1000000000")])  # sequential counts up to a float
def test_a_huge_computed_cardinality_is_an_incident_at_once(session: Session, monkeypatch: pytest.MonkeyPatch,
                                                            sequential: bool, n: float, shown: str) -> None:
    monkeypatch.setenv("JZFLOW_SCRIPT_TIME_LIMIT", "0.5")
    deploy.deploy(session, script_task(cardinality("n", sequential=sequential)), actor=SYSTEM, check_lanes=False)
    began = time.monotonic()
    row = instances.start(session, process_key="mi", actor=SYSTEM, data={"n": n})
    elapsed = time.monotonic() - began
    assert elapsed < 3.0, (elapsed, row.status)
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.bpmn_id == "many" and incident.kind == "too_many_instances"
    assert f"create {shown} instances" in incident.message and "limit 500" in incident.message
    assert saved_tasks(session, row.id) < 10  # refused before SpiffWorkflow made the instances


@pytest.mark.parametrize("sequential", [False, True])
def test_a_huge_input_collection_is_an_incident_at_once(session: Session, monkeypatch: pytest.MonkeyPatch,
                                                        sequential: bool) -> None:
    monkeypatch.setenv("JZFLOW_SCRIPT_TIME_LIMIT", "0.5")
    deploy.deploy(session, script_task(collection(sequential=sequential)), actor=SYSTEM, check_lanes=False)
    began = time.monotonic()
    # 50,000: start data past 100,000 values is refused at the door (engine/content_limits.py), before the engine runs
    row = instances.start(session, process_key="mi", actor=SYSTEM, data={"items": list(range(50_000))})
    elapsed = time.monotonic() - began
    assert elapsed < 3.0, (elapsed, row.status)
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.bpmn_id == "many" and incident.kind == "too_many_instances"
    assert "50000" in incident.message and "items" in incident.message


def test_a_user_task_over_the_cap_makes_no_inbox_rows(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_MULTI_INSTANCE", "20")
    deploy.deploy(session, user_task(collection("departments")), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="mi", actor=SYSTEM,
                          data={"departments": [f"部门{i}" for i in range(21)]})
    assert row.status == "incident"
    assert incident_of(session, row.id).kind == "too_many_instances"
    assert session.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.instance_id == row.id)) == 0


def test_a_count_at_the_cap_still_runs(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_MULTI_INSTANCE", "20")
    deploy.deploy(session, user_task(collection("departments")), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="mi", actor=SYSTEM,
                          data={"departments": [f"部门{i}" for i in range(20)]})
    assert row.status == "running"
    assert session.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.instance_id == row.id)) == 20
    deploy.deploy(session, script_task(cardinality("20")), actor=SYSTEM, check_lanes=False)
    assert instances.start(session, process_key="mi", actor=SYSTEM).status == "completed"


def test_the_default_cap_runs_500_script_instances(session: Session) -> None:
    deploy.deploy(session, script_task(cardinality("500")), actor=SYSTEM, check_lanes=False)
    assert instances.start(session, process_key="mi", actor=SYSTEM).status == "completed"


# -- nested multi-instances and standard loops -----------------------------------------------------------------

EMPTY = ('<bpmn:startEvent id="s2"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>'
         '<bpmn:endEvent id="e2"><bpmn:incoming>g1</bpmn:incoming></bpmn:endEvent>'
         '<bpmn:sequenceFlow id="g1" sourceRef="s2" targetRef="e2" />')


def nested(*, sequential: bool = False) -> dict[str, bytes]:
    """A multi-instance subprocess `many` (outer) whose instances each run the multi-instance script task `inner`."""
    inner = (f'<bpmn:startEvent id="s2"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>'
             f'<bpmn:scriptTask id="inner"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing>'
             f'{cardinality("inner_n")}<bpmn:script>y = 1</bpmn:script></bpmn:scriptTask>'
             '<bpmn:endEvent id="e2"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>'
             '<bpmn:sequenceFlow id="g1" sourceRef="s2" targetRef="inner" />'
             '<bpmn:sequenceFlow id="g2" sourceRef="inner" targetRef="e2" />')
    task = f'<bpmn:subProcess id="many">{FLOWS}{cardinality("outer", sequential=sequential)}{inner}</bpmn:subProcess>'
    return {"mi.bpmn": (HEAD + "    " + task + TAIL).encode()}


@pytest.mark.parametrize("sequential", [False, True])
def test_nested_multi_instances_count_once_per_outer_instance(session: Session, monkeypatch: pytest.MonkeyPatch,
                                                              sequential: bool) -> None:
    monkeypatch.setenv("JZFLOW_MAX_MULTI_INSTANCE", "20")
    deploy.deploy(session, nested(sequential=sequential), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="mi", actor=SYSTEM, data={"outer": 4, "inner_n": 5})
    assert row.status == "completed"
    row = instances.start(session, process_key="mi", actor=SYSTEM, data={"outer": 5, "inner_n": 5})
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.bpmn_id == "inner" and incident.kind == "too_many_instances"
    assert "25 in all inside the 5 instances it is nested in" in incident.message


@pytest.mark.parametrize("body", [
    '<bpmn:scriptTask id="many">{flows}{loop}<bpmn:script>y = 1</bpmn:script></bpmn:scriptTask>',
    '<bpmn:subProcess id="many">{flows}{loop}' + EMPTY + "</bpmn:subProcess>",
])
def test_a_loop_whose_condition_never_ends_is_an_incident_at_the_cap(session: Session,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      body: str) -> None:
    # Without the cap: no loopMaximum, no script tick (the budget never checks its deadline), no depth: never returns.
    monkeypatch.setenv("JZFLOW_MAX_MULTI_INSTANCE", "20")
    loop = ("<bpmn:standardLoopCharacteristics><bpmn:loopCondition>True</bpmn:loopCondition>"
            "</bpmn:standardLoopCharacteristics>")
    deploy.deploy(session, {"mi.bpmn": (HEAD + body.format(flows=FLOWS, loop=loop) + TAIL).encode()}, actor=SYSTEM,
                  check_lanes=False)
    row = instances.start(session, process_key="mi", actor=SYSTEM)
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.bpmn_id == "many" and incident.kind == "too_many_instances"
    assert "loop many would run 21 times, limit 20" in incident.message


def test_a_loop_maximum_over_the_cap_is_refused_at_deploy_and_one_at_it_runs(session: Session,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_MULTI_INSTANCE", "20")
    body = '<bpmn:scriptTask id="many">{flows}<bpmn:standardLoopCharacteristics loopMaximum="{n}" />' \
           "<bpmn:script>y = 1</bpmn:script></bpmn:scriptTask>"
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, {"mi.bpmn": (HEAD + body.format(flows=FLOWS, n=21) + TAIL).encode()}, actor=SYSTEM,
                      check_lanes=False)
    assert [(p.element_id, p.line) for p in err.value.problems] == [("many", 6)]
    assert "loopMaximum 21 of loop many is over the limit 20" in err.value.problems[0].message
    deploy.deploy(session, {"mi.bpmn": (HEAD + body.format(flows=FLOWS, n=20) + TAIL).encode()}, actor=SYSTEM,
                  check_lanes=False)
    assert instances.start(session, process_key="mi", actor=SYSTEM).status == "completed"
