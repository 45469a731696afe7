"""A numbered document states only what the system recorded, never what a diagram says.

Before: the services that issue the 并联审批's numbered documents (联合意见书, 不予许可决定书, 受理通知书,
不予受理决定书) took the project, the departments and their opinions from process expressions. A process owner
deployed a three-node diagram calling approval_issue_certificate with invented reviews and got a genuine
胶审〔年份〕序号号 that /verify confirmed as issued by the city's departments. Now the reviews a document prints are
the instance's own completed 部门审查 steps, each done by a member of the department it names, with the opinion as
that person submitted it (the step's task.complete audit event); the project is the approval's project (its
project_approval row) or, started by hand, the application as its applicant submitted it. A parameter naming
anything else is refused: no document, the instance in an incident naming the service and the parameter.
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy, documents, runtime, tasks
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from tests.processes.test_parallel_approval import (  # noqa: F401 (fixtures used by name)
    APPLICATION,
    accept,
    approve_all,
    at,
    data_of,
    deployed,
    people,
    start_by_hand,
)
from tests.steps import do, only_task

FORGED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_forged" targetNamespace="t">
  <bpmn:process id="forged_documents" name="forged_documents" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="department_review" name="部门审查">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="initiator" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:serviceTask id="issue" name="出证">
      <bpmn:extensionElements><spiffworkflow:serviceTaskOperator id="{service}" resultVariable="doc">
        <spiffworkflow:parameters>{params}</spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="department_review" />
    <bpmn:sequenceFlow id="f2" sourceRef="department_review" targetRef="issue" />
    <bpmn:sequenceFlow id="f3" sourceRef="issue" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""

PROJECT = {"project_name": '"胶州湾不存在的项目"', "project_code": '"2025-370281-99-99-999999"',
           "applicant_unit": '"某公司"', "stage": '"land_planning"'}
INVENTED = ('[{"code": "zrzyj", "name": "自然资源局", "decision": "approve", "opinion": "同意", "round": 1},'
            ' {"code": "fgj", "name": "发展和改革局", "decision": "approve", "opinion": "同意", "round": 1}]')
DEPTS = '[{"code": "zrzyj", "name": "自然资源局", "sla_wd": 10}, {"code": "fgj", "name": "发展和改革局", "sla_wd": 3}]'
SERVICES: dict[str, dict[str, str]] = {
    "approval_issue_certificate": {**PROJECT, "issued_on": '"2025-10-10"', "departments": DEPTS,
                                   "review_log": INVENTED},
    "approval_issue_rejection_notice": {**PROJECT, "reasons": '"不符合条件"', "disapprovals": INVENTED},
    "approval_issue_acceptance_notice": {**PROJECT, "acceptance": '"accept"', "departments": DEPTS},
    "approval_issue_not_accepted_notice": {**PROJECT, "reasons": '"材料不全"'},
}


def _params(values: dict[str, str]) -> str:
    return "".join(f'<spiffworkflow:parameter id="{k}" type="any" value=\'{v}\' />' for k, v in values.items())


def _run_forged(session: Session, people: dict[str, Actor], service: str) -> ProcessInstance:  # noqa: F811
    """A process owner's diagram: its 部门审查 done by the starter (no department's member), then the service."""
    clock.freeze(at("2025-10-10", "10:00"))
    files = {"forged.bpmn": FORGED.format(service=service, params=_params(SERVICES[service])).encode()}
    deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="forged_documents", actor=people["window_wang"], data={})
    session.commit()
    tasks.complete(session, task_id=only_task(session, row.id, "department_review").id, actor=people["window_wang"],
                   data={"review_decision": "approve", "review_opinion": "同意"})
    session.commit()
    session.expire_all()
    found = session.get(ProcessInstance, row.id)
    assert found is not None
    return found


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_diagram_cannot_have_a_document_issued_with_invented_facts(
        session: Session, deployed: None, people: dict[str, Actor], service: str) -> None:  # noqa: F811
    row = _run_forged(session, people, service)
    assert documents.for_instance(session, row.id) == []  # nothing numbered, nothing /verify confirms
    assert row.status == "incident"
    message = session.scalars(select(Incident.message).where(Incident.instance_id == row.id)).one()
    assert service in message and "project_name" in message, message


def test_the_certificate_prints_the_reviews_as_the_departments_submitted_them(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:  # noqa: F811
    """The plan's own flow still issues: its project, departments and opinions are the recorded ones."""
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    approve_all(session, people, iid)
    clock.freeze(at("2025-10-10", "10:00"))
    do(session, only_task(session, iid, "issue_certificate"), people["window_wang"], {"issued_on": "2025-10-10"})
    doc = next(d for d in documents.for_instance(session, iid) if d.kind == "approval_joint_certificate")
    assert doc.subject == APPLICATION["project_name"]
    reviews: list[dict[str, Any]] = doc.details["reviews"]
    assert sorted(r["code"] for r in reviews) == ["fgj", "sthjj", "zrzyj"]
    assert all(r["opinion"].endswith("：同意") and r["decision"] == "approve" for r in reviews)


def test_a_review_log_rewritten_by_a_diagram_is_refused(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:  # noqa: F811
    """The departments reviewed; a script of the diagram changed an opinion before 联合出证: refused, named."""
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    approve_all(session, people, iid)
    clock.freeze(at("2025-10-10", "10:00"))
    task = only_task(session, iid, "issue_certificate")
    running = runtime.load(session, iid)
    ready = runtime.find_task(running.workflow, task.task_guid)
    assert ready is not None
    ready.data["review_log"] = [{**ready.data["review_log"][0], "opinion": "同意，且免于一切后续审批"},
                                *ready.data["review_log"][1:]]
    runtime.save(session, running)
    session.commit()
    completion = tasks.complete(session, task_id=task.id, actor=people["window_wang"], data={"issued_on": "2025-10-10"})
    session.commit()
    assert completion.incident and "approval_issue_certificate" in completion.incident
    assert "review_log" in completion.incident
    assert [d.kind for d in documents.for_instance(session, iid)] == ["approval_acceptance_notice"]


APPLIED = FORGED.replace(
    '<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="department_review" />',
    '<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="submit_application" />'
    '<bpmn:sequenceFlow id="f0" sourceRef="submit_application" targetRef="department_review" />').replace(
    '<bpmn:userTask id="department_review"',
    '<bpmn:userTask id="submit_application" name="提交并联审批申请"><bpmn:extensionElements><spiffworkflow:properties>'
    '<spiffworkflow:property name="assignee" value="initiator" /></spiffworkflow:properties></bpmn:extensionElements>'
    '<bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f0</bpmn:outgoing></bpmn:userTask>'
    '<bpmn:userTask id="department_review"').replace(
    '<bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>\n    <bpmn:serviceTask',
    '<bpmn:incoming>f0</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>\n    <bpmn:serviceTask')


@pytest.mark.parametrize(("service", "parameter"), [("approval_issue_certificate", "departments"),
                                                    ("approval_issue_rejection_notice", "disapprovals")])
def test_a_review_step_done_by_no_member_of_the_department_is_nobodys_review(
        session: Session, deployed: None, people: dict[str, Actor], service: str, parameter: str) -> None:  # noqa: F811
    """The owner's diagram records a real application, then gives its 部门审查 to the starter: no department's."""
    clock.freeze(at("2025-10-10", "09:00"))
    files = {"applied.bpmn": APPLIED.format(service=service, params=_params(SERVICES[service])).encode()}
    deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="forged_documents", actor=people["window_wang"], data={})
    session.commit()
    application = {"project_name": "胶州湾不存在的项目", "project_code": "2025-370281-99-99-999999",
                   "applicant_unit": "某公司", "stage": "land_planning"}
    do(session, only_task(session, row.id, "submit_application"), people["window_wang"], application)
    clock.freeze(at("2025-10-10", "10:00"))
    decision = "approve" if service == "approval_issue_certificate" else "disapprove"
    completion = tasks.complete(session, task_id=only_task(session, row.id, "department_review").id,
                                actor=people["window_wang"],
                                data={"review_decision": decision, "review_opinion": "同意"})
    session.commit()
    assert completion.incident and service in completion.incident and parameter in completion.incident
    assert documents.for_instance(session, row.id) == []
