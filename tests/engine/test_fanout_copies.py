"""A parallel multi-instance subprocess starts each instance with a copy of the workflow's data: the copies together
are bounded by JZFLOW_MAX_STATE_KB before any instance is made.

SpiffWorkflow 3.2.0 deep-copies the multi-instance task's data into every instance's subprocess. The saved state
writes a repeated value once (engine.spiff.repeats, serializer jz3), so 100 instances over 150 KB of data saved as a
state of ~0.5 MB under the 2 MB limit — while the run held 120 MB, and every load of the instance afterwards rebuilt
all hundred copies (227 MB, 10 s) and the hot cache counted it as 3 MB. Counted as the instances will hold it, such a
fan-out is refused like one over the instance cap: an incident on the multi-instance, nothing made.
"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import deploy
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from tests.engine.test_multi_instance_limits import EMPTY, FLOWS, HEAD, TAIL, cardinality, collection

INNER = ('<bpmn:startEvent id="s2"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>'
         '<bpmn:userTask id="inner" name="审查"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing>'
         '</bpmn:userTask><bpmn:endEvent id="e2"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>'
         '<bpmn:sequenceFlow id="g1" sourceRef="s2" targetRef="inner" />'
         '<bpmn:sequenceFlow id="g2" sourceRef="inner" targetRef="e2" />')


def subprocess_over(name: str, *, sequential: bool = False) -> dict[str, bytes]:
    task = f'<bpmn:subProcess id="many" name="部门审查">{FLOWS}{collection(name, sequential=sequential)}{INNER}' \
           "</bpmn:subProcess>"
    return {"mi.bpmn": (HEAD + "    " + task + TAIL).encode()}


def bulky(rows: int) -> list[dict[str, Any]]:
    """Data of about 30 characters a row as the state writes it."""
    return [{"i": i, "v": "x" * 12} for i in range(rows)]


def start(session: Session, departments: int, rows: int) -> ProcessInstance:
    return instances.start(session, process_key="mi", actor=SYSTEM,
                           data={"big": bulky(rows), "departments": [f"部门{i}" for i in range(departments)]})


def test_copies_past_the_state_limit_are_an_incident_before_any_instance(session: Session,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "512")
    deploy.deploy(session, subprocess_over("departments"), actor=SYSTEM, check_lanes=False)
    began = time.monotonic()
    row = start(session, departments=40, rows=1000)  # ~30 KB of data, 40 copies: ~1.2 MB held
    assert time.monotonic() - began < 5
    assert row.status == "incident"
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.bpmn_id == "many" and incident.kind == "state_too_large"
    assert "40" in incident.message and "JZFLOW_MAX_STATE_KB" in incident.message
    assert not json.loads(row.state or "{}").get("subprocesses")  # no instance was made


def test_copies_within_the_limit_run(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "512")
    deploy.deploy(session, subprocess_over("departments"), actor=SYSTEM, check_lanes=False)
    row = start(session, departments=10, rows=1000)  # 10 copies: ~300 KB
    assert row.status == "running"
    assert len(json.loads(row.state)["subprocesses"]) == 10


def test_the_hot_cache_counts_every_copy_a_workflow_holds(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is bounded by an estimate of memory from the state's length: a state that writes a repeated value
    once is counted with each copy the workflow holds (saved, and loaded again by a reader)."""
    from engine.runtime import core, hot
    monkeypatch.setenv("JZFLOW_INSTANCE_CACHE_SIZE", "100")
    deploy.deploy(session, subprocess_over("departments"), actor=SYSTEM, check_lanes=False)
    row = start(session, departments=20, rows=1000)
    session.commit()
    assert row.status == "running" and '"jz_shared"' in row.state
    held = len(json.dumps(bulky(1000))) * 20  # the data each of the twenty subprocesses holds
    assert len(row.state) < held / 5  # written once
    key = hot.key_of(session, row.id)
    saved = hot.CACHE._entries[key]
    assert saved.size >= held * hot.MEMORY_PER_STATE_BYTE
    hot.CACHE.drop(key)
    session.expire_all()
    core.load(session, row.id, read_only=True)
    session.commit()  # the borrowed workflow goes to the cache
    loaded = hot.CACHE._entries[key]
    assert loaded.size >= held * hot.MEMORY_PER_STATE_BYTE


def sequential_scripts() -> dict[str, bytes]:
    """A sequential multi-instance subprocess of a script alone: every instance runs within the one run."""
    inner = INNER.replace('<bpmn:userTask id="inner" name="审查">', '<bpmn:scriptTask id="inner">') \
        .replace("</bpmn:userTask>", "<bpmn:script>y = 1</bpmn:script></bpmn:scriptTask>")
    task = f'<bpmn:subProcess id="many">{FLOWS}{cardinality("n", sequential=True)}{inner}</bpmn:subProcess>'
    return {"mi.bpmn": (HEAD + "    " + task + TAIL).encode()}


def test_a_sequential_run_holding_every_copy_is_an_incident(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 script-only instances over 150 KB held 230 MB in one run, and the completed instance's state rebuilt all
    of them (440 MB) whenever it was looked at."""
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "512")
    deploy.deploy(session, sequential_scripts(), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="mi", actor=SYSTEM, data={"big": bulky(1000), "n": 40})
    assert row.status == "incident"
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.bpmn_id == "many" and incident.kind == "state_too_large"
    assert len(json.loads(row.state or "{}").get("subprocesses") or {}) <= 17  # stopped at ~512 KB of copies


def test_a_sequential_one_of_user_tasks_counts_what_the_state_still_holds(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Done one a save, a finished instance's subprocess leaves the live state: twenty instances of 30 KB each run
    under a limit of 512 KB that would not hold them all at once."""
    from engine import org, tasks
    from engine.org.actors import actor_for
    from engine.tasks.models import HumanTask
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "512")
    org.add_user(session, username="u", display_name="审查人")
    person = actor_for(session, "u")
    inner = INNER.replace('<bpmn:userTask id="inner" name="审查">', '<bpmn:userTask id="inner" name="审查">'
                          '<bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property name="candidates" '
                          'value="&quot;u&quot;" /></spiffworkflow:properties></bpmn:extensionElements>')
    task = f'<bpmn:subProcess id="many">{FLOWS}{cardinality("n", sequential=True)}{inner}</bpmn:subProcess>'
    deploy.deploy(session, {"mi.bpmn": (HEAD + "    " + task + TAIL).encode()}, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="mi", actor=SYSTEM, data={"big": bulky(1000), "n": 20})
    session.commit()
    for _ in range(20):
        open_task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id,
                                                           HumanTask.state == "ready"))
        assert open_task is not None, row.status
        tasks.claim(session, task_id=open_task.id, actor=person)
        result = tasks.complete(session, task_id=open_task.id, actor=person, data={})
        assert result.incident is None, result.incident
        session.commit()
    session.refresh(row)
    assert row.status == "completed"


def test_a_loop_over_a_subprocess_counts_its_copies_too(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "512")
    loop = ("<bpmn:standardLoopCharacteristics><bpmn:loopCondition>True</bpmn:loopCondition>"
            "</bpmn:standardLoopCharacteristics>")
    body = f'<bpmn:subProcess id="many">{FLOWS}{loop}{EMPTY}</bpmn:subProcess>'
    deploy.deploy(session, {"mi.bpmn": (HEAD + "    " + body + TAIL).encode()}, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="mi", actor=SYSTEM, data={"big": bulky(1000)})
    assert row.status == "incident"
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.kind == "state_too_large", incident and incident.message
