"""Nothing a save or a page cannot write leaves the sandbox (engine/spiff/sandbox.py, engine/spiff/nesting.py).

Scripts may compute with integers up to engine.limits.MAX_INT_BITS (100,000 bits, 30,103 digits), but Python writes
at most 4,300 digits of one (`sys.get_int_max_str_digits`). Before, `x = 10 ** 5000` in a script task, or a `subject`
of `10 ** 5000`, passed the sandbox and raised ValueError in the save (json) or the task list's title: a traceback,
a 500 for whoever started or completed the step, never an incident; a DMN output or a message payload the same.
A script's `chr(0xd800)` (a lone surrogate: UTF-8 cannot hold it) was saved, and every page showing it — the task
page, its form and instructions — was a 500 for everyone: the step could be neither seen nor completed.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import deploy
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident
from engine.spiff.sandbox import SandboxEnvironment
from tests.engine.test_run_budget import HEAD


def _process(script: str, subject: str = "") -> str:
    prop = ('<bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property name="subject" '
            f'value="{subject}" /></spiffworkflow:properties></bpmn:extensionElements>') if subject else ""
    return HEAD + f"""  <bpmn:process id="long" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="compute" scriptFormat="python"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script></bpmn:scriptTask>
    <bpmn:userTask id="work" name="办理">{prop}<bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="compute" />
    <bpmn:sequenceFlow id="f2" sourceRef="compute" targetRef="work" />
    <bpmn:sequenceFlow id="f3" sourceRef="work" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


@pytest.mark.parametrize(("script", "subject", "element"), [
    ("x = 10 ** 5000", "", "compute"),
    ("x = [1, {2: 10 ** 5000}]", "", "compute"),
    ("x = {10 ** 5000: 1}", "", "compute"),
    ("x = chr(0xd800)", "", "compute"),
    ("x = {'a': ['中文' + chr(0xdfff)]}", "", "compute"),
    ("x = {chr(0xd800): 1}", "", "compute"),
])
def test_a_script_writing_what_no_page_can_show_is_an_incident(session: Session, script: str, subject: str,
                                                                         element: str) -> None:
    deploy.deploy(session, {"l.bpmn": _process(script, subject).encode()}, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="long", actor=SYSTEM)
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert row.status == "incident" and incident is not None
    assert incident.bpmn_id == element and "'x'" in incident.message
    assert ("4,300" if "10 **" in script else "lone surrogate") in incident.message


def test_a_subject_giving_a_long_integer_leaves_the_step_its_name(session: Session) -> None:
    deploy.deploy(session, {"l.bpmn": _process("x = 1", "10 ** 5000").encode()}, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="long", actor=SYSTEM)
    assert row.status == "running"


def test_expressions_giving_a_long_integer_are_refused_and_short_ones_pass() -> None:
    env = SandboxEnvironment()
    for expression in ("10 ** 5000", "[1, {'a': 10 ** 5000}]", "{10 ** 5000}", "-(10 ** 5000)"):
        with pytest.raises(ValueError, match="4,300"):
            env.evaluate(expression, {})
    with pytest.raises(ValueError, match="lone surrogate"):
        env.evaluate("['ok', chr(0xd800)]", {})
    assert env.evaluate("10 ** 4000", {}) == 10 ** 4000
    assert env.evaluate("'中文' + chr(0x1F600)", {}) == "中文😀"
    assert env.evaluate("x", {"x": True}) is True
    shared: list[object] = [1]
    for _ in range(60):  # shared 2**60 times over: walked once per list
        shared = [shared, shared]
    assert env.evaluate("x", {"x": shared}) is shared
