"""SpiffArena's dynamic choices (`anyOf: ["options_from_task_data_var:fruits"]`) work in jzflow's forms."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from engine import deploy, tasks
from engine.errors import DeployInvalid, FormInvalid
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.spiff import form_options
from engine.tasks import taskview
from engine.tasks.models import HumanTask
from web import formrender

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="http://x">
  <bpmn:process id="pick_fruit" name="选水果" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="prepare" />
    <bpmn:scriptTask id="prepare" scriptFormat="python">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="prepare" targetRef="pick" />
    <bpmn:userTask id="pick" name="选择">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="pick.schema.json" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="pick" targetRef="end" />
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""
FRUITS = 'fruits = [{"value": "apple", "label": "苹果"}, {"value": "pear", "label": "梨"}]'


def schema(variable: str = "fruits") -> str:
    return json.dumps({"type": "object", "required": ["fruit"], "properties": {
        "fruit": {"type": "string", "title": "水果", "anyOf": [f"options_from_task_data_var:{variable}"]}}},
        ensure_ascii=False)


def started(session: Session, people: dict[str, Actor], script: str = FRUITS) -> HumanTask:
    deploy.deploy(session, {"p.bpmn": BPMN.format(script=script), "pick.schema.json": schema()}, actor=SYSTEM,
                  check_lanes=False)
    row = instances.start(session, process_key="pick_fruit", actor=people["applicant"])
    session.commit()
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.state == "ready"))
    assert task is not None
    tasks.claim(session, task_id=task.id, actor=people["applicant"])
    session.commit()
    return task


def test_choices_come_from_task_data_and_bind_the_submission(session: Session, review_org: dict[str, Actor]) -> None:
    task = started(session, review_org)
    page = taskview.load(session, review_org["applicant"], task.id)
    field = json.loads(page.schema_text or "{}")["properties"]["fruit"]
    assert field["anyOf"] == [{"const": "apple", "title": "苹果"}, {"const": "pear", "title": "梨"}]
    html = str(formrender.render(formrender.Form(json.loads(page.schema_text or "{}")), MultiDict()))
    assert "苹果" in html and "<select" in html
    with pytest.raises(FormInvalid):
        tasks.complete(session, task_id=task.id, actor=review_org["applicant"], data={"fruit": "durian"})
    session.rollback()
    result = tasks.complete(session, task_id=task.id, actor=review_org["applicant"], data={"fruit": "pear"})
    assert result.incident is None


def test_a_missing_variable_offers_no_choice(session: Session, review_org: dict[str, Actor]) -> None:
    task = started(session, review_org, script="nothing = 1")
    page = taskview.load(session, review_org["applicant"], task.id)
    assert json.loads(page.schema_text or "{}")["properties"]["fruit"]["enum"] == []
    with pytest.raises(FormInvalid):
        tasks.complete(session, task_id=task.id, actor=review_org["applicant"], data={"fruit": "apple"})


@pytest.mark.parametrize("value", [None, "apple", [{"label": "no value"}], [[1]], list(range(2000)), {"a": 1}])
def test_malformed_option_data_gives_no_choice(value: object) -> None:
    assert form_options.options_of(value) == {"enum": []}


def test_a_marker_that_names_no_variable_is_refused_at_deploy(session: Session) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, {"p.bpmn": BPMN.format(script=FRUITS), "pick.schema.json": schema("not a name")},
                      actor=SYSTEM, check_lanes=False)
    assert any(p.file == "pick.schema.json" and "task data variable" in p.message for p in err.value.problems)
