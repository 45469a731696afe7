"""Scripts are untrusted: escapes are refused at deploy and at run time; runaway scripts become incidents."""
from __future__ import annotations

import time
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, deploy
from engine.errors import DeployInvalid, FormInvalid
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance

TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="scripted" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="the_script" name="脚本"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw" default="f4">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:endEvent id="end_a"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_b"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="the_script" />
    <bpmn:sequenceFlow id="f2" sourceRef="the_script" targetRef="gw" />
    <bpmn:sequenceFlow id="f3" sourceRef="gw" targetRef="end_a">
      <bpmn:conditionExpression>{condition}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f4" sourceRef="gw" targetRef="end_b" />
  </bpmn:process>
</bpmn:definitions>
"""


def bpmn(script: str = "x = 1", condition: str = "x == 1") -> dict[str, bytes]:
    return {"scripted.bpmn": TEMPLATE.format(script=escape(script), condition=escape(condition)).encode()}


@pytest.mark.parametrize(("script", "condition", "element"), [
    ("import os", "True", "the_script"),
    ("from os import path", "True", "the_script"),
    ("n = len(().__class__.__base__.__subclasses__())", "True", "the_script"),
    ("x = 1", "x.__class__ is int", "f3"),
    ("b = __builtins__", "True", "the_script"),
    ("g = (lambda: 0).__globals__", "True", "the_script"),
    ("e = eval('1')", "True", "the_script"),
    ("o = open('/etc/passwd').read()", "True", "the_script"),
])
def test_escapes_are_refused_at_deploy(session: Session, script: str, condition: str, element: str) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, bpmn(script, condition), actor=SYSTEM)
    assert [p.element_id for p in err.value.problems] == [element]


def test_builtins_cannot_be_smuggled_in_through_task_data(session: Session) -> None:
    deploy.deploy(session, bpmn(), actor=SYSTEM)
    for key in ("__builtins__", "_getattr_", "_write_"):
        with pytest.raises(FormInvalid) as err:
            instances.start(session, process_key="scripted", actor=SYSTEM, data={key: {"open": "x"}, "x": 1})
        assert err.value.errors[0].field == key


def test_format_string_escape_is_refused_at_run_time(session: Session) -> None:
    deploy.deploy(session, bpmn(script='leak = "{0.__class__.__base__}".format(x)', condition="True"),
                  actor=SYSTEM)
    row = instances.start(session, process_key="scripted", actor=SYSTEM, data={"x": 1})
    assert row.status == "incident"
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.bpmn_id == "the_script" and incident.kind == "script_error"
    assert "leak" not in instances_data(session, row.id)


def instances_data(session: Session, instance_id: int) -> str:
    return session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id)) or ""


@pytest.mark.parametrize("script", [
    "while True:\n    pass",
    "total = 0\nfor i in range(10**12):\n    total += i",
    "def f(n):\n    return f(n + 1) + f(n + 2)\nf(0)",
    "xs = [1]\nfor x in xs:\n    xs.append(x)",
    # steps that run in C (or a pure-Python codec) never tick the budget: refused before they run
    "x = pow(7, 1 << 20000, (1 << 20000) - 1) % 10",
    "x = int(Decimal('1e600000')) % 10",
    "s = ''.join([chr(0x4e00 + (i * 7919) % 20000) for i in range(8000)])\nx = len(s.encode('punycode'))",
    "a = [0]\nfor i in range(22):\n    a = [a, a]",
    # comparing values holding one another many times over walks them all in one C step (2²⁸ here)
    "def f():\n    a = [0]\n    b = [0]\n    for i in range(28):\n        a = [a, a]\n        b = [b, b]\n"
    "    return a == b\nx = f()",
])
def test_a_runaway_script_ends_as_an_incident_within_its_budget(session: Session, monkeypatch: pytest.MonkeyPatch,
                                                                  script: str) -> None:
    monkeypatch.setenv("JZFLOW_SCRIPT_TIME_LIMIT", "0.5")
    deploy.deploy(session, bpmn(script=script, condition="True"), actor=SYSTEM)
    began = time.monotonic()
    row = instances.start(session, process_key="scripted", actor=SYSTEM)
    elapsed = time.monotonic() - began
    assert elapsed < 3.0, elapsed
    assert row.status == "incident"
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.kind == "budget_exceeded" and incident.bpmn_id == "the_script"
    session.commit()
    assert audit.verify(session).ok
