"""Form files already in the database that the limits refuse today: every page that draws or reads one survives it.

Deploy and the modeller's preview refuse a form past the limits (engine/content_limits.py). A version deployed
before a limit existed, or rows an import or a migration wrote around deploy, may still hold one: a cyclic
`allOf`/`$ref` or a field holding its own schema was a RecursionError (500), a form nested past the JSON decoder's
depth or not JSON at all a 500, 50,000 choices a page of megabytes. The rows are written here directly, as such a
version would hold them; each page shows "表单 X 超出限制 …" where the form would be, the rest of the page works, and
a submission is refused naming the form, changing nothing.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from engine import content_limits, runtime
from engine.errors import DeployInvalid
from engine.runtime.models import ProcessFile, ProcessInstance
from engine.tasks.models import HumanTask
from tests.conftest import pdf_text
from tests.web.flows import Api, db, deploy_files, post, token_for

Login = Callable[[str], FlaskClient]
KEY = "stored_forms"
PROPERTY = '<spiffworkflow:property name="{}" value="{}" />'


def _bpmn() -> str:
    def props(*pairs: tuple[str, str]) -> str:
        inner = "".join(PROPERTY.format(n, v) for n, v in pairs)
        return f"<bpmn:extensionElements><spiffworkflow:properties>{inner}</spiffworkflow:properties>" \
               "</bpmn:extensionElements>"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="{KEY}" name="旧表单流程" isExecutable="true">
    <bpmn:startEvent id="start">{props(("formJsonSchemaFilename", "start.schema.json"))}
      <bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="fill" name="填写旧表单">{props(("assignee", "initiator"),
                                                  ("formJsonSchemaFilename", "fill.schema.json"),
                                                  ("formUiSchemaFilename", "fill.uischema.json"))}
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="check" name="核对旧表单">{props(("assignee", "initiator"))}
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fill" />
    <bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="check" />
    <bpmn:sequenceFlow id="f3" sourceRef="check" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _object(**fields: Any) -> str:
    return json.dumps({"type": "object", "properties": fields}, ensure_ascii=False)


GOOD = {"start.schema.json": _object(topic={"type": "string", "title": "事项"}),
        "fill.schema.json": _object(note={"type": "string", "title": "说明"}),
        "fill.uischema.json": json.dumps({"note": {"ui:widget": "textarea"}})}
NODE = {"type": "object", "properties": {"name": {"type": "string"}, "next": {"$ref": "#/$defs/node"}}}
HOSTILE = {  # what each did before: see the module's docstring
    "cycle": json.dumps({"type": "object", "$defs": {"x": {"allOf": [{"$ref": "#/$defs/x"}]}},
                         "allOf": [{"$ref": "#/$defs/x"}], "properties": {"note": {"type": "string"}}}),
    "itself": json.dumps({"type": "object", "$defs": {"node": NODE},
                          "properties": {"note": {"type": "string"}, "head": {"$ref": "#/$defs/node"}}}),
    "fan": json.dumps({"type": "object", "$defs": {"x": {"allOf": [{"$ref": "#/$defs/x"}] * 4}},  # 4¹³ walks
                       "allOf": [{"$ref": "#/$defs/x"}], "properties": {"note": {"type": "string"}}}),
    "choices": _object(note={"type": "string"}, kind={"type": "string", "enum": [f"选项{i}" for i in range(50_000)]}),
    "deep": '{"a":' * 5_000 + "1" + "}" * 5_000,
    "not_json": '{"type": "object", "properties": {"note": ',
}
SAYS = {"not_json": "不是有效的 JSON"}


def _deploy(app: Flask) -> None:
    deploy_files(app, {f"{KEY}.bpmn": _bpmn().encode(), **{n: t.encode() for n, t in GOOD.items()}})


def _store(app: Flask, name: str, text: str) -> None:
    """Write a form file's text as an old version (or an import around deploy) left it."""
    with db(app) as s:
        s.execute(update(ProcessFile).where(ProcessFile.name == name).values(text=text))
    runtime._spec_cache.clear()  # a running server would read it from the database: so does the next request


def _start(app: Flask, who: str = "fg") -> int:
    from engine.org.actors import actor_for
    from engine.runtime import instances
    with db(app) as s:
        return instances.start(s, process_key=KEY, actor=actor_for(s, who), data={"topic": "旧事项"},
                               title="旧表单事项").id


def _task(app: Flask, instance_id: int, state: str = "ready") -> HumanTask:
    with db(app) as s:
        found = s.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == state)
                         .order_by(HumanTask.id.desc()))
        assert found is not None
        s.expunge(found)
        return found


def _says(case: str, name: str, body: str) -> None:
    assert f"表单 {name} " in body and SAYS.get(case, "超出限制") in body, body[:3000]


@pytest.fixture
def deployed(app: Flask) -> Flask:
    _deploy(app)
    return app


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_task_page_shows_which_form_is_refused_and_the_rest(deployed: Flask, login: Login, case: str) -> None:
    fill = _task(deployed, _start(deployed))
    _store(deployed, "fill.schema.json", HOSTILE[case])
    fg = login("fg")
    response = fg.get(f"/tasks/{fill.id}")
    body = response.get_data(as_text=True)
    assert response.status_code == 200, body[:3000]
    _says(case, "fill.schema.json", body)
    assert "填写旧表单" in body and "旧表单事项" in body and len(body) < 200_000
    assert 'name="f/' not in body  # no field of the refused form

    refused = post(fg, f"/tasks/{fill.id}/complete", {"f/note": "写了", "opinion": "同意"}, page=f"/tasks/{fill.id}")
    body = refused.get_data(as_text=True)
    assert refused.status_code == 422, body[:3000]
    _says(case, "fill.schema.json", body)
    assert _task(deployed, fill.instance_id).id == fill.id  # still open, nothing changed


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_refused_ui_schema_is_named_too(deployed: Flask, login: Login, case: str) -> None:
    fill = _task(deployed, _start(deployed))
    _store(deployed, "fill.uischema.json", HOSTILE[case].replace('"type": "object", ', ""))
    response = login("fg").get(f"/tasks/{fill.id}")
    assert response.status_code == 200
    _says(case, "fill.uischema.json", response.get_data(as_text=True))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_bulk_form_names_the_refused_form(deployed: Flask, login: Login, case: str) -> None:
    fill = _task(deployed, _start(deployed))
    _store(deployed, "fill.schema.json", HOSTILE[case])
    fg = login("fg")
    shown = fg.get(f"/inbox/bulk/complete?ids={fill.id}")
    assert shown.status_code == 200, shown.get_data(as_text=True)[:2000]
    _says(case, "fill.schema.json", shown.get_data(as_text=True))
    refused = post(fg, "/inbox/bulk", {"ids": [fill.id], "action": "complete", "confirm": "1", "f/note": "写了"},
                   page="/inbox")
    assert refused.status_code == 422, refused.get_data(as_text=True)[:2000]
    _says(case, "fill.schema.json", refused.get_data(as_text=True))
    assert _task(deployed, fill.instance_id).id == fill.id


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_start_page_names_the_refused_start_form(deployed: Flask, login: Login, case: str) -> None:
    _store(deployed, "start.schema.json", HOSTILE[case])
    fg = login("fg")
    shown = fg.get(f"/processes/{KEY}/start")
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200, body[:3000]
    _says(case, "start.schema.json", body)
    assert len(body) < 200_000 and 'name="f/' not in body
    assert fg.get("/processes").status_code == 200
    refused = post(fg, f"/processes/{KEY}/start", {"title": "新事项", "f/topic": "x"}, page=f"/processes/{KEY}/start")
    assert refused.status_code == 422, refused.get_data(as_text=True)[:3000]
    _says(case, "start.schema.json", refused.get_data(as_text=True))
    with db(deployed) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_api_gives_no_refused_form_and_says_why(deployed: Flask, case: str) -> None:
    fill = _task(deployed, _start(deployed))
    _store(deployed, "fill.schema.json", HOSTILE[case])
    _store(deployed, "start.schema.json", HOSTILE[case])
    api = Api(deployed, token_for(deployed, "fg"))
    shown = api.get(f"/api/tasks/{fill.id}")
    assert shown.status_code == 200, shown.get_data(as_text=True)[:2000]
    assert shown.json["form"] is None and shown.json["form_ui"] is None and len(shown.get_data()) < 100_000
    _says(case, "fill.schema.json", shown.json["form_problem"])
    listed = api.get("/api/processes")
    assert listed.status_code == 200, listed.get_data(as_text=True)[:2000]
    [mine] = [p for p in listed.json["items"] if p["key"] == KEY]
    assert mine["start_form"] is None and len(listed.get_data()) < 100_000
    _says(case, "start.schema.json", mine["start_form_problem"])

    refused = api.post(f"/api/tasks/{fill.id}/complete", {"data": {"note": "写了"}})
    assert refused.status_code == 422, refused.get_data(as_text=True)[:2000]
    _says(case, "fill.schema.json", json.dumps(refused.json, ensure_ascii=False))
    assert _task(deployed, fill.instance_id).id == fill.id
    started = api.post(f"/api/processes/{KEY}/instances", {"data": {"topic": "x"}})
    assert started.status_code == 422, started.get_data(as_text=True)[:2000]
    _says(case, "start.schema.json", json.dumps(started.json, ensure_ascii=False))
    with db(deployed) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 1


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_what_was_submitted_still_shows_under_its_keys(deployed: Flask, login: Login, case: str,
                                                       tmp_path: Any) -> None:
    instance_id = _start(deployed)
    fill = _task(deployed, instance_id)
    from engine import tasks
    from engine.org.actors import actor_for
    with db(deployed) as s:
        tasks.complete(s, task_id=fill.id, actor=actor_for(s, "fg"), data={"note": "已核实的说明"})
    check = _task(deployed, instance_id)
    _store(deployed, "fill.schema.json", HOSTILE[case])
    fg, admin = login("fg"), login("admin")
    for who, path in ((fg, f"/tasks/{check.id}"), (fg, f"/instances/{instance_id}"),
                      (admin, f"/instances/{instance_id}/sheet"), (admin, f"/instances/{instance_id}/sheet.pdf")):
        started = time.monotonic()
        response = who.get(path)
        assert time.monotonic() - started < 5, path
        assert response.status_code == 200, (path, response.get_data(as_text=True)[:3000])
        shown = pdf_text(response.data, tmp_path) if path.endswith(".pdf") else response.get_data(as_text=True)
        assert "已核实的说明" in shown, path
        if not path.endswith(".pdf"):
            _says(case, "fill.schema.json", shown)


def test_instructions_past_the_limit_are_not_compiled_on_each_page(deployed: Flask, login: Login) -> None:
    """A step's instructions template is compiled on every view of its page: 560 KB of `{% if %}` took 6.5 s."""
    fill = _task(deployed, _start(deployed))
    with db(deployed) as s:
        s.execute(update(HumanTask).where(HumanTask.id == fill.id).values(
            instructions="{% if a %}{{ a }}{% endif %}" * 20_000))
    started = time.monotonic()
    response = login("fg").get(f"/tasks/{fill.id}")
    assert time.monotonic() - started < 2
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "填写旧表单" in body and len(body) < 200_000
    assert "说明过长" in body and f"{content_limits.MAX_INSTRUCTIONS:,}" in body, body[:3000]


def test_instructions_past_the_limit_are_refused_at_deploy(app: Flask) -> None:
    long = "请核对材料。" * (content_limits.MAX_INSTRUCTIONS // 6 + 1)
    bpmn = _bpmn().replace('<bpmn:userTask id="check" name="核对旧表单">',
                           '<bpmn:userTask id="check" name="核对旧表单"><bpmn:extensionElements>'
                           f"<spiffworkflow:instructionsForEndUser>{long}</spiffworkflow:instructionsForEndUser>"
                           "</bpmn:extensionElements>")
    bpmn = bpmn.replace('</bpmn:extensionElements><bpmn:extensionElements><spiffworkflow:properties>',
                        "<spiffworkflow:properties>")
    with pytest.raises(DeployInvalid) as err:
        deploy_files(app, {f"{KEY}.bpmn": bpmn.encode(), **{n: t.encode() for n, t in GOOD.items()}})
    assert any(p.element_id == "check" and f"{content_limits.MAX_INSTRUCTIONS:,}" in p.message
               for p in err.value.problems), err.value.problems


def test_the_check_is_the_deploy_check_and_remembers_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    assert content_limits.stored_form_problem("a.schema.json", GOOD["fill.schema.json"]) is None
    said = content_limits.stored_form_problem("a.schema.json", HOSTILE["choices"])
    assert said is not None and said.startswith("表单 a.schema.json 超出限制") and "properties/kind/enum" in said

    def walked(doc: Any) -> Any:
        raise AssertionError("a stored file is walked once per process")
    monkeypatch.setattr(content_limits, "form_problems", walked)
    assert content_limits.stored_form_problem("b.schema.json", HOSTILE["choices"]) == said.replace("a.sch", "b.sch")
    assert content_limits.stored_form_problem("a.schema.json", GOOD["fill.schema.json"]) is None
