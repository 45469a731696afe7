"""BPMN from other modellers deploys when jzflow executes all of it, else it is refused naming the element.

Fixtures in tests/fixtures/foreign/ mimic Camunda Modeler 5 (Camunda 7 and 8), SpiffArena and Signavio
exports: their namespaces, diagram interchange, ids and vendor attributes (docs/decisions/0004).
No uploaded file, however broken, makes deploy raise anything but DeployInvalid.
"""
from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deploy, runtime, tasks
from engine.errors import DeployInvalid, DeployProblem
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances, messages
from engine.runtime.models import ProcessInstance, ProcessVersion
from engine.tasks.models import HumanTask
from tests.conftest import FIXTURES

FOREIGN = FIXTURES / "foreign"
FORMS = {p.name: p.read_bytes() for p in (FOREIGN / "forms").glob("*.json")}


def files_of(name: str) -> dict[str, bytes]:
    files = {name: (FOREIGN / name).read_bytes()}
    if name.startswith("spiffarena_purchase"):
        files.update(FORMS)
    return files


def refused(session: Session, files: dict[str, bytes | str], *, check_lanes: bool = False) -> list[DeployProblem]:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=check_lanes)
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0  # nothing stored
    return err.value.problems


def finish(session: Session, instance_id: int, people: dict[str, Actor],
           steps: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Do each (bpmn id, username, data) step as the inbox would: the task must be offered to that user."""
    for bpmn_id, username, data in steps:
        task = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready",
                                                      HumanTask.bpmn_id == bpmn_id))
        assert task is not None, bpmn_id
        tasks.claim(session, task_id=task.id, actor=people[username])
        result = tasks.complete(session, task_id=task.id, actor=people[username], data=data)
        assert result.incident is None, result.incident
        session.commit()


# --------------------------------------------------------------------------- exports that deploy and run


def test_camunda_modeler_export_deploys_and_runs(session: Session, review_org: dict[str, Actor]) -> None:
    [result] = deploy.deploy(session, files_of("camunda7_leave_request.bpmn"), actor=SYSTEM)  # lanes checked
    assert (result.key, result.version, result.created) == ("camunda_leave_request", 1, True)
    row = instances.start(session, process_key="camunda_leave_request", actor=review_org["applicant"])
    session.commit()
    finish(session, row.id, review_org, [("Activity_fill", "applicant", {"days": 5}),  # lane 申请人 (a role)
                                         ("Activity_check", "window", {}),  # lane 窗口 (an org unit)
                                         ("Activity_leader", "boss", {"approved": True})])  # days > 3 → 领导
    assert session.get(ProcessInstance, row.id).status == "completed"  # type: ignore[union-attr]


def test_spiffarena_export_with_forms_deploys_and_runs(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, files_of("spiffarena_purchase.bpmn"), actor=SYSTEM)
    row = instances.start(session, process_key="purchase_request_2b8a", actor=review_org["applicant"])
    session.commit()
    finish(session, row.id, review_org, [
        ("Activity_request", "applicant", {"item": "笔记本电脑", "quantity": 2, "unit_price": 800}),
        ("Activity_approve", "boss", {"approved": True, "comment": "同意"})])
    data = runtime.load(session, row.id).workflow.last_task.data
    assert data["total"] == 1600 and data["approved_total"] == 1600


def test_signavio_export_deploys_and_runs(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, files_of("signavio_site_visit.bpmn"), actor=SYSTEM)
    row = instances.start(session, process_key="sid-site-visit", actor=review_org["window"])
    session.commit()
    finish(session, row.id, review_org, [("sid-TASK-visit", "window", {}), ("sid-TASK-report", "window", {})])
    assert session.get(ProcessInstance, row.id).status == "completed"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- exports that are refused

# file → [(element id, words in the message)], every one must be reported
REFUSED = {
    "camunda7_invoice.bpmn": [
        ("camunda_invoice", "camunda:executionListener"), ("Task_approve", "camunda:assignee"),
        ("Task_approve", "camunda:candidateGroups"), ("Task_approve", "camunda:dueDate"),
        ("Task_approve", "camunda:inputOutput"), ("Flow_approved", "JUEL"), ("Flow_rejected", "javascript"),
        ("Task_archive", "camunda:class"), ("Task_notify", "groovy")],
    "camunda8_order.bpmn": [
        ("Task_review", "zeebe:assignmentDefinition"), ("Flow_big", "FEEL"), ("Task_charge", "zeebe:taskDefinition"),
        ("Task_charge", "zeebe:ioMapping")],
    "signavio_complaint.bpmn": [
        ("sid-C-COMPLEX", "complexGateway"), ("sid-C-LINK-THROW", "link events"), ("sid-C-LINK-CATCH", "link events")],
    "signavio_nonexecutable.bpmn": [("sid-site-visit-draft", "isExecutable")],
    "spiffarena_connector.bpmn": [("Activity_http", "unknown service 'http/GetRequestV2'")],
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_foreign_export_using_what_jzflow_does_not_execute_is_refused(session: Session, name: str) -> None:
    problems = refused(session, files_of(name))
    for element, words in REFUSED[name]:
        assert any(p.element_id == element and words in p.message and p.file == name for p in problems), (words, problems)
    assert all(p.line is not None for p in problems if p.element_id is not None)


def test_refusals_name_the_line_and_a_python_hint(session: Session) -> None:
    problems = {p.element_id: p for p in refused(session, files_of("camunda7_invoice.bpmn"))}
    text = (FOREIGN / "camunda7_invoice.bpmn").read_text().splitlines()
    assert "${approved}" in text[problems["Flow_approved"].line - 1]  # type: ignore[operator]
    assert "应写作 approved" in problems["Flow_approved"].message and "--translate" in problems["Flow_approved"].message
    assert "scriptTask" in text[problems["Task_notify"].line - 1]  # type: ignore[operator]


PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:flowable="http://flowable.org/bpmn"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs" targetNamespace="http://x">
{before}
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
{body}
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""
TASK = '<bpmn:task id="work"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:task>'


def bpmn(body: str = TASK, before: str = "") -> dict[str, str]:
    return {"p.bpmn": PROCESS.format(body=body, before=before)}


@pytest.mark.parametrize(("body", "before", "element", "words"), [
    (TASK.replace('id="work">', 'id="work" isForCompensation="true">'), "", "work", "compensation"),
    (TASK + '<bpmn:boundaryEvent id="undo" attachedToRef="work"><bpmn:compensateEventDefinition /></bpmn:boundaryEvent>',
     "", "undo", "compensation"),
    (TASK.replace("bpmn:task", "bpmn:scriptTask").replace('id="work">', 'id="work" scriptFormat="javascript">')
     .replace("</bpmn:outgoing>", "</bpmn:outgoing><bpmn:script>x = 1</bpmn:script>"), "", "work", "javascript"),
    (TASK.replace('id="work">', 'id="work" flowable:assignee="kermit">'), "", "work", "flowable:assignee"),
    (TASK.replace('id="work">', 'id="work"><bpmn:extensionElements><camunda:formData><camunda:formField id="a" '
                  'type="string" /></camunda:formData></bpmn:extensionElements>'), "", "work", "camunda:formData"),
    (TASK.replace("<bpmn:task ", "<bpmn:startEvent id=\"when\"><bpmn:conditionalEventDefinition><bpmn:condition>"
                  "x &gt; 1</bpmn:condition></bpmn:conditionalEventDefinition></bpmn:startEvent><bpmn:task "),
     "", "when", "conditional start event"),
    (TASK, '<bpmn:dataStore id="ledger_db" name="ledger" />', "ledger_db", "data stores"),
])
def test_each_unsupported_construct_is_refused(session: Session, body: str, before: str, element: str,
                                               words: str) -> None:
    problems = refused(session, bpmn(body, before))
    assert any(p.element_id == element and words in p.message for p in problems), problems


def test_harmless_vendor_extras_are_accepted_and_ignored(session: Session) -> None:
    body = TASK.replace('id="work">', 'id="work" camunda:asyncBefore="true" camunda:formKey="embedded:x.html" '
                        'camunda:priority="3"><bpmn:extensionElements><camunda:properties><camunda:property '
                        'name="a" value="b" /></camunda:properties><camunda:failedJobRetryTimeCycle>R3/PT5M'
                        '</camunda:failedJobRetryTimeCycle></bpmn:extensionElements>')
    [result] = deploy.deploy(session, bpmn(body), actor=SYSTEM, check_lanes=False)
    assert result.created


def test_spiffarena_message_start_export_deploys_and_a_message_starts_it(session: Session) -> None:
    """Message start events and catches of messages from outside run since issue "Engine II"."""
    deploy.deploy(session, files_of("spiffarena_message_start.bpmn"), actor=SYSTEM, check_lanes=False)
    out = messages.publish(session, name="order_received", actor=SYSTEM, payload={"sku": "A-1"})
    assert out.status == "started" and out.instance_id is not None
    data = runtime.load(session, out.instance_id).workflow.last_task.data
    assert data["order"] == {"sku": "A-1"}  # its messageVariable
    paid = messages.publish(session, name="payment_received", actor=SYSTEM)
    assert (paid.status, paid.instance_id) == ("delivered", out.instance_id)
    assert session.get(ProcessInstance, out.instance_id).status == "completed"  # type: ignore[union-attr]


def test_a_catch_of_a_signal_from_outside_is_accepted(session: Session) -> None:
    body = (TASK + '<bpmn:boundaryEvent id="stop" attachedToRef="work"><bpmn:signalEventDefinition signalRef="s" />'
            '</bpmn:boundaryEvent>')
    [result] = deploy.deploy(session, bpmn(body, '<bpmn:signal id="s" name="stop" />'), actor=SYSTEM,
                             check_lanes=False)
    assert result.created


def test_a_message_thrown_and_caught_inside_one_process_is_accepted(session: Session) -> None:
    body = """<bpmn:parallelGateway id="work"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:outgoing>f3</bpmn:outgoing><bpmn:outgoing>f5</bpmn:outgoing></bpmn:parallelGateway>
      <bpmn:sequenceFlow id="f3" sourceRef="work" targetRef="tell" />
      <bpmn:intermediateThrowEvent id="tell"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
        <bpmn:messageEventDefinition messageRef="m" /></bpmn:intermediateThrowEvent>
      <bpmn:sequenceFlow id="f4" sourceRef="tell" targetRef="end" />
      <bpmn:sequenceFlow id="f5" sourceRef="work" targetRef="hear" />
      <bpmn:intermediateCatchEvent id="hear"><bpmn:incoming>f5</bpmn:incoming><bpmn:outgoing>f6</bpmn:outgoing>
        <bpmn:messageEventDefinition messageRef="m" /></bpmn:intermediateCatchEvent>
      <bpmn:sequenceFlow id="f6" sourceRef="hear" targetRef="end" />"""
    [result] = deploy.deploy(session, bpmn(body, '<bpmn:message id="m" name="ping" />'), actor=SYSTEM,
                             check_lanes=False)
    assert result.created


DMN = FIXTURES / "good" / "review_departments.dmn"


@pytest.mark.parametrize(("change", "words"), [
    (lambda t: t.replace('<decision id=', '<decision id="other" name="o"><decisionTable id="dt_o"><input id="i_o">'
                         '<inputExpression id="ie_o" typeRef="string"><text>x</text></inputExpression></input>'
                         '<output id="o_o" name="o" typeRef="string" /></decisionTable></decision><decision id=', 1),
     "2 decisions"),
    (lambda t: t[:t.index("<decisionTable")] + '<literalExpression id="le"><text>1</text></literalExpression>'
     + t[t.index("</decisionTable>") + len("</decisionTable>"):], "only decision tables"),
    (lambda t: t.replace('<rule id="', '<rule data-id="', 1), "rule has no id"),
])
def test_dmn_jzflow_cannot_read_is_refused(session: Session, change: Any, words: str) -> None:
    files: dict[str, bytes | str] = {**read_good(), "review_departments.dmn": change(DMN.read_text())}
    problems = refused(session, files)
    assert any(words in p.message and p.file == "review_departments.dmn" for p in problems), problems


def read_good() -> dict[str, bytes | str]:
    good = FIXTURES / "good"
    return {"review_process.bpmn": (good / "review_process.bpmn").read_bytes(),
            **{p.name: p.read_bytes() for p in (good / "forms").glob("*.json")}}


# --------------------------------------------------------------------------- nothing uploaded breaks the server

MINIMAL = (FIXTURES / "good" / "minimal.bpmn").read_bytes()
BROKEN: dict[str, dict[str, bytes | str]] = {
    "empty": {"a.bpmn": b""},
    "binary": {"a.bpmn": bytes(range(256))},
    "utf16": {"a.bpmn": MINIMAL.decode().replace("UTF-8", "UTF-16").encode("utf-16")},
    "entity bomb": {"a.bpmn": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;&a;&a;">]>'
                              b'<l>&b;</l>'},
    "external entity": {"a.bpmn": b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                  b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
                                  b'id="d"><bpmn:process id="p"><bpmn:documentation>&x;</bpmn:documentation>'
                                  b'</bpmn:process></bpmn:definitions>'},
    "deep xml": {"a.bpmn": b"<a>" * 3000 + b"</a>" * 3000},
    "deep json": {"a.bpmn": MINIMAL, "approve.schema.json": b"[" * 50000 + b"]" * 50000},
    "huge number": {"a.bpmn": MINIMAL, "approve.schema.json": b'{"maximum": ' + b"9" * 6000 + b"}"},
    "html": {"a.bpmn": b"<html><body>not a diagram</body></html>"},
    "dmn named bpmn": {"a.bpmn": DMN.read_bytes()},
    "bpmn named dmn": {"a.dmn": MINIMAL, "b.bpmn": MINIMAL},
    "nul byte": {"a.bpmn": MINIMAL.replace(b"approve", b"app\x00rove", 1)},
    "latin-1": {"a.bpmn": "<?xml version='1.0' encoding='latin-1'?><a>é</a>".encode("latin-1")},
    "json only": {"a.json": b"{}"},
    "no decision": {**read_good(), "review_departments.dmn": b'<definitions xmlns="https://www.omg.org/spec/DMN/'
                                                                b'20191111/MODEL/" id="d" name="d" namespace="x" />'},
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_upload_is_refused_never_a_crash(session: Session, name: str) -> None:
    problems = refused(session, BROKEN[name])
    assert problems and all(p.message for p in problems)


def _mutate(root: etree._Element, rng: random.Random) -> None:
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    for _ in range(rng.randint(1, 4)):
        el = rng.choice(elements)
        parent = el.getparent()
        op = rng.randrange(5)
        if op == 0 and parent is not None:
            parent.remove(el)
        elif op == 1 and el.attrib:
            del el.attrib[rng.choice(sorted(el.attrib))]
        elif op == 2 and el.attrib:
            el.set(rng.choice(sorted(el.attrib)), rng.choice(["", "x", "1", "flow_x", "true", '"P5D"']))
        elif op == 3:
            el.text = rng.choice(["", "x", "1/0", "(", "None", "a b"])
        elif op == 4 and parent is not None:
            parent.append(copy.deepcopy(el))


def test_mutated_real_files_are_refused_or_deployed_never_a_crash(session: Session) -> None:
    rng = random.Random(20250901)
    root_dir = Path(__file__).resolve().parents[2]
    bundle: dict[str, bytes | str] = {
        "parallel_approval.bpmn": (root_dir / "bpmn" / "parallel_approval.bpmn").read_bytes(),
        "approval_departments.dmn": (root_dir / "bpmn" / "approval_departments.dmn").read_bytes(),
        **{p.name: p.read_bytes() for p in (root_dir / "bpmn" / "forms").glob("approval_*.json")}}
    outcomes = {"refused": 0, "deployed": 0}
    for _ in range(60):
        target = rng.choice(["parallel_approval.bpmn", "approval_departments.dmn"])
        root = etree.fromstring(bundle[target])
        _mutate(root, rng)
        files = {**bundle, target: etree.tostring(root)}
        try:
            deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
            outcomes["deployed"] += 1
        except DeployInvalid:
            outcomes["refused"] += 1
        session.rollback()
    assert outcomes["refused"] > 0
