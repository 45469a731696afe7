"""A call activity calls a process deployed before: bound at deploy (latest or pinned), pinned for its instances.

Runs on SQLite and PostgreSQL (the `session` fixture).
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deploy, tasks
from engine.errors import DeployInvalid
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import ProcessInstance, ProcessVersion
from engine.spiff import calls
from engine.tasks.models import HumanTask

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="defs_{pid}" targetNamespace="http://x">
  <bpmn:process id="{pid}" name="{name}" isExecutable="true">
    <bpmn:startEvent id="start">
      <bpmn:outgoing>f1</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
{body}
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end">
      <bpmn:incoming>f2</bpmn:incoming>
    </bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""


def review(step_name: str, result: str) -> dict[str, str]:
    """The called process: one user task, then a script that says which version ran."""
    body = f"""    <bpmn:userTask id="work" name="{step_name}">
      <bpmn:extensionElements>
        <spiffworkflow:postScript>reviewed_by = "{result}"</spiffworkflow:postScript>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>"""
    return {"review.bpmn": HEAD.format(pid="shared_review", name="共用审核", body=body)}


def caller(pin: str | None = None, called: str | None = "shared_review") -> dict[str, str]:
    props = (f"""      <bpmn:extensionElements>
        <spiffworkflow:properties>
          <spiffworkflow:property name="calledElementVersion" value="{pin}" />
        </spiffworkflow:properties>
      </bpmn:extensionElements>
""" if pin is not None else "")
    attr = f' calledElement="{called}"' if called is not None else ""
    body = f"""    <bpmn:callActivity id="work" name="送审"{attr}>
{props}      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:callActivity>"""
    return {"application.bpmn": HEAD.format(pid="application", name="申请", body=body)}


def do_ready(session: Session, instance_id: int, actor: Actor, data: dict[str, Any] | None = None) -> HumanTask:
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready"))
    assert task is not None
    tasks.claim(session, task_id=task.id, actor=actor)
    result = tasks.complete(session, task_id=task.id, actor=actor, data=data or {})
    assert result.incident is None, result.incident
    session.commit()
    return task


def ended_data(session: Session, instance_id: int) -> dict[str, Any]:
    from engine import runtime
    row = session.get(ProcessInstance, instance_id)
    assert row is not None and row.status == "completed", row.status if row else None
    return dict(runtime.load(session, instance_id).workflow.last_task.data)


def test_a_call_into_another_deployment_runs_the_called_spec(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, review("审核 v1", "v1"), actor=SYSTEM, check_lanes=False)
    [result] = deploy.deploy(session, caller(), actor=SYSTEM, check_lanes=False)
    session.commit()
    assert (result.key, result.version) == ("application", 1)
    row = instances.start(session, process_key="application", actor=review_org["applicant"])
    session.commit()
    task = do_ready(session, row.id, review_org["applicant"])
    assert task.bpmn_id == "work" and task.name == "审核 v1"  # the called process's task, in the caller's inbox
    assert ended_data(session, row.id)["reviewed_by"] == "v1"


def test_running_instances_keep_the_called_version_they_started_with(session: Session,
                                                                     review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, review("审核 v1", "v1"), actor=SYSTEM, check_lanes=False)
    deploy.deploy(session, caller(), actor=SYSTEM, check_lanes=False)
    session.commit()
    old = instances.start(session, process_key="application", actor=review_org["applicant"])
    session.commit()
    # the called process is redeployed while `old` waits inside it
    [v2] = deploy.deploy(session, review("审核 v2", "v2"), actor=SYSTEM, check_lanes=False)
    session.commit()
    assert v2.version == 2
    task = do_ready(session, old.id, review_org["applicant"])
    assert task.name == "审核 v1" and ended_data(session, old.id)["reviewed_by"] == "v1"
    # redeploying the unchanged caller binds the newest called version: a new caller version
    [again] = deploy.deploy(session, caller(), actor=SYSTEM, check_lanes=False)
    session.commit()
    assert (again.version, again.created) == (2, True)
    new = instances.start(session, process_key="application", actor=review_org["applicant"])
    session.commit()
    assert do_ready(session, new.id, review_org["applicant"]).name == "审核 v2"
    assert ended_data(session, new.id)["reviewed_by"] == "v2"
    # and a third deploy with nothing changed anywhere is a no-op
    [same] = deploy.deploy(session, caller(), actor=SYSTEM, check_lanes=False)
    assert (same.version, same.created) == (2, False)


def test_a_pinned_version_is_called_even_when_a_newer_one_exists(session: Session,
                                                                 review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, review("审核 v1", "v1"), actor=SYSTEM, check_lanes=False)
    deploy.deploy(session, review("审核 v2", "v2"), actor=SYSTEM, check_lanes=False)
    deploy.deploy(session, caller(pin="1"), actor=SYSTEM, check_lanes=False)
    session.commit()
    row = instances.start(session, process_key="application", actor=review_org["applicant"])
    session.commit()
    assert do_ready(session, row.id, review_org["applicant"]).name == "审核 v1"
    assert ended_data(session, row.id)["reviewed_by"] == "v1"


@pytest.mark.parametrize(("files", "template", "words"), [
    (caller(), calls.UNKNOWN_CALLED, "shared_review"),
    (caller(called=None), calls.NO_CALLED, "calledElement"),
    (caller(pin="7"), calls.UNKNOWN_VERSION, "版本 7"),
    (caller(pin="latest"), calls.BAD_VERSION, "latest"),
], ids=["not-deployed", "empty", "pinned-missing", "pin-not-a-number"])
def test_a_call_that_matches_nothing_is_refused_with_its_line(session: Session, files: dict[str, str],
                                                              template: str, words: str) -> None:
    if template in (calls.UNKNOWN_VERSION, calls.BAD_VERSION):
        deploy.deploy(session, review("审核 v1", "v1"), actor=SYSTEM, check_lanes=False)
        session.commit()
    before = session.scalar(select(func.count()).select_from(ProcessVersion))
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, dict(files), actor=SYSTEM, check_lanes=False)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == before
    [problem] = err.value.problems
    assert (problem.file, problem.element_id, problem.template) == ("application.bpmn", "work", template)
    assert problem.line is not None and "callActivity" in files["application.bpmn"].splitlines()[problem.line - 1]
    assert words in problem.message


def test_a_process_deployed_together_wins_over_the_deployed_one(session: Session,
                                                                review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, review("审核 v1", "v1"), actor=SYSTEM, check_lanes=False)
    results = deploy.deploy(session, {**caller(), **review("审核 同批", "bundle")}, actor=SYSTEM, check_lanes=False)
    session.commit()
    assert sorted((r.key, r.version) for r in results) == [("application", 1), ("shared_review", 2)]
    row = instances.start(session, process_key="application", actor=review_org["applicant"])
    session.commit()
    assert do_ready(session, row.id, review_org["applicant"]).name == "审核 同批"


def test_migrating_a_caller_instance_onto_a_version_bound_to_a_newer_called_process(
        session: Session, review_org: dict[str, Actor]) -> None:
    from engine.deploy import versions
    deploy.deploy(session, review("审核 v1", "v1"), actor=SYSTEM, check_lanes=False)
    deploy.deploy(session, caller(), actor=SYSTEM, check_lanes=False)
    session.commit()
    row = instances.start(session, process_key="application", actor=review_org["applicant"])
    session.commit()
    deploy.deploy(session, review("审核 v2", "v2"), actor=SYSTEM, check_lanes=False)
    deploy.deploy(session, caller(), actor=SYSTEM, check_lanes=False)  # caller v2, bound to review v2
    session.commit()
    target = deploy.latest_version(session, "application")
    assert target is not None and target.version == 2
    preview = versions.preview(session, row.id, target.id)
    assert preview.ok, preview.problems
    versions.migrate_one(session, row.id, target.id, SYSTEM)
    session.commit()
    task = do_ready(session, row.id, review_org["applicant"])
    assert task.bpmn_id == "work"
    assert ended_data(session, row.id)["reviewed_by"] == "v2"  # the moved instance runs the newly bound spec
