"""The task page: access, the JSON Schema form (every feature, errors at their fields), instructions,
the diagram, history, attachments, and every operation through the web with CSRF."""
from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, runtime, tasks
from engine.org.actors import SYSTEM, actor_for
from engine.runtime import instances
from engine.tasks import collab
from engine.tasks.collab_models import Attachment, CarbonCopy, Comment
from engine.tasks.models import HumanTask
from tests.conftest import FIXTURES
from tests.web.conftest import csrf_of
from tests.web.flows import statements as statements_of

Login = Callable[[str], FlaskClient]
XSS = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
FORMS = FIXTURES / "good" / "forms"


def _ops_bpmn() -> str:
    # fill (the initiator) → review (审批部门, approve form) → sign_off (领导); instructions are a template.
    instructions = "项目：{{ title_text }}\n&lt;b&gt;请核对&lt;/b&gt; **材料**"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="web_ops" /></bpmn:collaboration>
  <bpmn:process id="web_ops" name="网页操作测试" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l1" name="申请人">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>fill</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l2" name="审批部门"><bpmn:flowNodeRef>review</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l3" name="领导">
        <bpmn:flowNodeRef>sign_off</bpmn:flowNodeRef><bpmn:flowNodeRef>end</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="fill" name="填写申请">
      <bpmn:extensionElements>
        <spiffworkflow:properties><spiffworkflow:property name="assignee" value="initiator" /></spiffworkflow:properties>
        <spiffworkflow:instructionsForEndUser>{instructions}</spiffworkflow:instructionsForEndUser>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="review" name="部门审查">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="approve.schema.json" />
        <spiffworkflow:property name="formUiSchemaFilename" value="approve.uischema.json" />
        <spiffworkflow:property name="sla" value="3wd" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="sign_off" name="领导签发">
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fill" />
    <bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="review" targetRef="sign_off" />
    <bpmn:sequenceFlow id="f4" sourceRef="sign_off" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


FEATURES_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "全部特性", "type": "object",
    "description": "表单说明",
    "required": ["name", "amount", "kind"],
    "properties": {
        "name": {"type": "string", "title": "名称", "minLength": 1, "maxLength": 200},
        "notes": {"type": "string", "title": "备注"},
        "amount": {"type": "number", "title": "金额", "minimum": 0},
        "count": {"type": "integer", "title": "件数", "minimum": 1, "maximum": 10},
        "urgent": {"type": "boolean", "title": "紧急"},
        "kind": {"type": "string", "title": "类别", "enum": ["a", "b", "other"]},
        "level": {"type": "string", "title": "级别", "enum": ["low", "high"]},
        "reason": {"type": "string", "title": "其他说明"},
        "on": {"type": "string", "title": "日期", "format": "date"},
        "tags": {"type": "array", "title": "标签", "items": {"type": "string"}},
        "units": {"type": "array", "title": "单位", "uniqueItems": True,
                  "items": {"type": "string", "enum": ["fgj", "zrzy"]}},
        "contact": {"type": "object", "title": "联系人", "required": ["phone"], "properties": {
            "person": {"type": "string", "title": "姓名"},
            "phone": {"type": "string", "title": "电话", "pattern": "^[0-9-]+$"}}},
        "items": {"type": "array", "title": "明细", "items": {
            "type": "object", "title": "明细行", "required": ["item"],
            "properties": {"item": {"type": "string", "title": "品名"}, "qty": {"type": "integer", "title": "数量"}}}},
    },
    "allOf": [{"if": {"properties": {"kind": {"const": "other"}}, "required": ["kind"]},
               "then": {"required": ["reason"]}}],
    "additionalProperties": False,
}
FEATURES_UI = {
    "ui:order": ["name", "kind", "level", "reason", "amount", "count", "urgent", "on", "notes", "*"],
    "name": {"ui:placeholder": "例如：园区项目", "ui:autofocus": True},
    "kind": {"ui:enumNames": ["甲类", "乙类", "其他"]},
    "level": {"ui:widget": "radio", "ui:enumNames": ["低", "高"]},
    "reason": {"ui:help": "选择“其他”时必填"},
    "amount": {"ui:help": "单位：元"},
    "on": {"ui:widget": "date"},
    "notes": {"ui:widget": "textarea", "ui:options": {"rows": 6}},
    "units": {"ui:widget": "checkboxes", "items": {"ui:enumNames": ["发改局", "自然资源局"]}},
}


def _features_bpmn() -> str:
    return """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d2" targetNamespace="t">
  <bpmn:process id="form_features" name="表单特性" isExecutable="true">
    <bpmn:startEvent id="s"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="fill_all" name="填写全部字段">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="initiator" />
        <spiffworkflow:property name="formJsonSchemaFilename" value="features.schema.json" />
        <spiffworkflow:property name="formUiSchemaFilename" value="features.uischema.json" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="e"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="g1" sourceRef="s" targetRef="fill_all" />
    <bpmn:sequenceFlow id="g2" sourceRef="fill_all" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>
"""


def bundle() -> dict[str, bytes]:
    files = {"web_ops.bpmn": _ops_bpmn().encode(), "form_features.bpmn": _features_bpmn().encode(),
             "features.schema.json": json.dumps(FEATURES_SCHEMA, ensure_ascii=False).encode(),
             "features.uischema.json": json.dumps(FEATURES_UI, ensure_ascii=False).encode()}
    for name in ("approve.schema.json", "approve.uischema.json"):
        files[name] = (FORMS / name).read_bytes()
    for path in (FIXTURES / "good").iterdir():
        if path.suffix in (".bpmn", ".dmn"):
            files[path.name] = path.read_bytes()
    for path in FORMS.iterdir():
        files.setdefault(path.name, path.read_bytes())
    return files


# --- helpers: services through short sessions (SQLite has one writer: never hold one open) ----------

@pytest.fixture
def deployed(app: Flask, factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with factory() as s:
        deploy.deploy(s, bundle(), actor=SYSTEM)
        s.commit()
    return factory


def start(factory: sessionmaker[Session], key: str = "web_ops", who: str = "applicant", **kw: Any) -> int:
    with factory() as s:
        row = instances.start(s, process_key=key, actor=actor_for(s, who), **kw)
        s.commit()
        return row.id


def task_of(factory: sessionmaker[Session], instance_id: int, bpmn_id: str, kind: str = "bpmn",
            state: str = "ready") -> int:
    with factory() as s:
        ids = list(s.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                        HumanTask.bpmn_id == bpmn_id, HumanTask.kind == kind,
                                                        HumanTask.state == state).order_by(HumanTask.id)))
        s.rollback()
    assert len(ids) == 1, ids
    return ids[0]


def row(factory: sessionmaker[Session], task_id: int) -> HumanTask:
    with factory() as s:
        found = s.get(HumanTask, task_id)
        assert found is not None
        s.expunge(found)
        s.rollback()
        return found


def finish(factory: sessionmaker[Session], task_id: int, who: str, data: dict[str, Any]) -> None:
    with factory() as s:
        tasks.complete(s, task_id=task_id, actor=actor_for(s, who), data=data)
        s.commit()


def at_review(factory: sessionmaker[Session], title: str = "新材料项目") -> tuple[int, int]:
    instance_id = start(factory, title=title, business_key="JZ-OPS-1")
    finish(factory, task_of(factory, instance_id, "fill"), "applicant", {"note": "已填"})
    return instance_id, task_of(factory, instance_id, "review")


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
         **kw: Any) -> Any:
    form = dict(data or {})
    if csrf:
        form["csrf_token"] = csrf_of(client, "/inbox")
    return client.post(path, data=form, **kw)


def page(client: FlaskClient, task_id: int) -> str:
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def flashes(html: str) -> list[str]:
    return re.findall(r'<div class="flash flash-\w+" role="status">(.*?)</div>', html, re.S)


# --- access -----------------------------------------------------------------------------------------

def test_another_users_task_answers_as_a_missing_one_and_no_data(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id = start(deployed, title="保密项目甲", data={"title_text": "内部数据"})
    fill = task_of(deployed, instance_id, "fill")
    with deployed() as s:
        collab.attach(s, instance_id=instance_id, actor=actor_for(s, "applicant"), name="a.txt", content=b"secret")
        s.commit()
        attachment_id = s.scalar(select(Attachment.id))
    window = login("window")  # may not see it: as if it did not exist (a 403 would tell the id is taken)
    for path in (f"/tasks/{fill}", f"/tasks/{fill}/diagram.bpmn", f"/tasks/{fill}/attachments/{attachment_id}"):
        response = window.get(path)
        assert response.status_code == 404, path
        body = response.get_data(as_text=True)
        assert "保密项目甲" not in body and "内部数据" not in body and "secret" not in body
        assert f"任务不存在: {fill}" in body, path
    for op in ("complete", "claim", "comments", "cc", "urge", "transfer"):
        response = post(window, f"/tasks/{fill}/{op}", {"body": "x", "usernames": "fg", "to_username": "fg"})
        assert response.status_code == 404 and f"任务不存在: {fill}" in response.get_data(as_text=True), op
    assert window.get("/tasks/999999").status_code == 404
    # The owner sees it all.
    applicant = login("applicant")
    assert "保密项目甲" in page(applicant, fill)
    with deployed() as s:
        assert s.scalar(select(Comment.id)) is None and s.scalar(select(CarbonCopy.id)) is None


# --- the form -----------------------------------------------------------------------------------------

def test_every_schema_feature_is_rendered(deployed: sessionmaker[Session], login: Login) -> None:
    fill = task_of(deployed, start(deployed, "form_features", who="fg"), "fill_all")
    html = page(login("fg"), fill)
    form = html[html.index('class="task-form"'):html.index("</form>", html.index('class="task-form"'))]
    assert '<input id="fld-f-name" name="f/name"' in form and 'placeholder="例如：园区项目"' in form
    assert re.search(r'id="fld-f-name"[^>]*autofocus', form)
    assert re.search(r'<select id="fld-f-kind" name="f/kind"[^>]*>.*<option value="a">甲类</option>', form, re.S)
    assert 'type="radio" name="f/level" value="high"' in form
    assert '> <span translate="no">高</span></label>' in form  # the form author's words are data (translate="no")
    assert re.search(r'id="fld-f-amount"[^>]*type="text" inputmode="decimal"', form)
    assert re.search(r'id="fld-f-count"[^>]*type="number" step="1" min="1" max="10"', form)
    assert re.search(r'id="fld-f-urgent"[^>]*type="checkbox" value="true"', form)
    assert re.search(r'id="fld-f-on"[^>]*type="date"', form)
    assert re.search(r'<textarea id="fld-f-notes" name="f/notes"[^>]*rows="6"', form)
    assert re.search(r'<textarea id="fld-f-tags" name="f/tags"', form)  # array of strings: one per line
    assert 'type="checkbox" name="f/units" value="zrzy"' in form and "自然资源局" in form
    assert '<legend><span translate="no">联系人</span></legend>' in form  # nested object: a fieldset
    assert 'name="f/contact/phone"' in form
    assert 'name="f/items/0/item"' in form and 'value="f/items"' in form  # rows, and "增加一行"
    assert "单位：元" in form and "表单说明" in form and "选择“其他”时必填" in form
    order = [form.index(f'name="f/{n}"') for n in ("name", "kind", "level", "reason", "amount", "count", "urgent",
                                                   "on", "notes", "tags", "units", "contact/person", "items/0/item")]
    assert order == sorted(order)  # ui:order, with the rest at "*"
    assert re.search(r'<label for="fld-f-name"><span translate="no">名称</span> <span class="req"', form)  # required marked


def test_a_complete_submission_is_typed_by_the_schema(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id = start(deployed, "form_features", who="fg")
    fill = task_of(deployed, instance_id, "fill_all")
    client = login("fg")
    response = post(client, f"/tasks/{fill}/complete", {
        "f/name": "  胶州湾项目 ", "f/kind": "other", "f/reason": "特殊", "f/level": "high",
        "f/amount": "1,234,567,890.123456789", "f/count": "3", "f/urgent": "true", "f/on": "2025-10-09",
        "f/notes": "第一行\r\n第二行", "f/tags": "甲\n\n 乙 \n", "f/units": ["zrzy", "fgj"],
        "f/contact/person": "张三", "f/contact/phone": "0532-1234",
        "f/items/0/item": "", "f/items/0/qty": "", "f/items/1/item": "钢材", "f/items/1/qty": "2",
        "f/items/2/item": "水泥", "f/items/2/_remove": "1", "opinion": "同意"})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    with deployed() as s:
        data = runtime.load(s, instance_id).workflow.last_task.data
        s.rollback()
    assert data["amount"] == Decimal("1234567890.123456789") and isinstance(data["amount"], Decimal)
    assert data["count"] == 3 and data["urgent"] is True and data["name"] == "胶州湾项目"
    assert data["kind"] == "other" and data["level"] == "high" and data["on"] == "2025-10-09"
    assert data["notes"] == "第一行\n第二行" and data["tags"] == ["甲", "乙"] and data["units"] == ["fgj", "zrzy"]
    assert data["contact"] == {"person": "张三", "phone": "0532-1234"}
    assert data["items"] == [{"item": "钢材", "qty": 2}]  # the empty row and the removed row are not data


def test_errors_are_shown_at_their_fields_with_the_input_kept(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id = start(deployed, "form_features", who="fg")
    fill = task_of(deployed, instance_id, "fill_all")
    client = login("fg")
    response = post(client, f"/tasks/{fill}/complete", {
        "f/name": "", "f/kind": "other", "f/amount": "-5", "f/count": "2.5", "f/on": "明天",
        "f/contact/person": "李四", "f/items/0/item": "", "f/items/1/qty": "7", "f/notes": XSS, "opinion": XSS})
    assert response.status_code == 422
    html = response.get_data(as_text=True)

    def error_at(name: str) -> str:
        match = re.search(rf'<div class="field-error" id="fld-f-{name}-error">(.*?)</div>', html)
        assert match, name
        return match.group(1)

    assert "必填" in error_at("name")
    assert "必填" in error_at("reason")  # if kind == other then reason is required
    assert "不能小于 0" in error_at("amount")  # the schema's minimum, said in Chinese (not jsonschema's English)
    assert error_at("count") == "请输入整数"
    assert "日期" in error_at("on")
    assert "必填" in error_at("contact-phone")
    assert "必填" in error_at("items-1-item")  # row 0 was empty: the error is still at the row it belongs to
    assert 'value="-5"' in html and 'value="2.5"' in html and 'value="明天"' in html and 'value="李四"' in html
    assert re.search(r'name="f/items/1/qty"[^>]*value="7"', html)
    assert "&lt;script&gt;" in html and XSS not in html  # a form string and the opinion, kept and escaped
    assert task_of(deployed, instance_id, "fill_all")  # still open: nothing changed


def test_more_rows_and_csrf(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id = start(deployed, "form_features", who="fg")
    fill = task_of(deployed, instance_id, "fill_all")
    client = login("fg")
    response = post(client, f"/tasks/{fill}/complete", {"f/name": "x", "f/items/0/item": "a", "_more": "f/items"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'name="f/items/2/item"' in html and re.search(r'name="f/items/0/item"[^>]*value="a"', html)
    refused = client.post(f"/tasks/{fill}/complete", data={"f/name": "x", "f/amount": "1", "f/kind": "a"})
    assert refused.status_code == 400
    assert task_of(deployed, instance_id, "fill_all") == fill


def test_a_row_number_far_past_the_rows_is_refused_at_once(deployed: sessionmaker[Session], login: Login) -> None:
    """A row's number comes from the field's name, which the browser sends: f/items/100000/item made the parse and
    the page walk a hundred thousand rows (a 66 MB page after 40 s), and a number of 5000 digits was a 500."""
    instance_id = start(deployed, "form_features", who="fg")
    fill = task_of(deployed, instance_id, "fill_all")
    client = login("fg")
    for index in ("100000", "2000000000", "9" * 5000):
        began = time.monotonic()
        response = post(client, f"/tasks/{fill}/complete", {"f/name": "x", f"f/items/{index}/item": "a"})
        assert time.monotonic() - began < 2 and len(response.get_data()) < 200_000
        assert response.status_code == 422, response.status_code
        assert "明细" in response.get_data(as_text=True) and "行" in response.get_data(as_text=True)
    odd = post(client, f"/tasks/{fill}/complete", {"f/name": "x", "f/items/\u00b2/item": "a", "_more": "f/items"})
    assert odd.status_code == 200  # not a row number at all: the field is not a row
    assert task_of(deployed, instance_id, "fill_all") == fill


# --- instructions, diagram, history, attachments -----------------------------------------------------------

def test_instructions_are_rendered_safely(deployed: sessionmaker[Session], login: Login) -> None:
    fill = task_of(deployed, start(deployed, data={"title_text": XSS}), "fill")
    html = page(login("applicant"), fill)
    block = re.search(r'<div class="instructions" translate="no">(.*?)</div>', html, re.S)
    assert block is not None
    text = block.group(1)
    assert "项目：&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;b&gt;请核对&lt;/b&gt; <strong>材料</strong>" in text and "<br>" in text
    assert "<script>" not in text and "<b>" not in text


def test_an_instructions_template_cannot_escape_the_sandbox(app: Flask) -> None:
    from web.tasks import instructions
    with app.test_request_context():
        shown = instructions.render_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
        assert "__subclasses__" in shown  # refused: the template is shown as text
        assert instructions.render_text("{{ a }} & {{ b|upper }}", {"a": "<i>", "b": "x"}) == "<i> & X"
        assert str(instructions.render("{{ a }}", {"a": "<i>"})) == "&lt;i&gt;"
        assert len(instructions.render_text("{% for i in range(99999) %}xxxxxxxx{% endfor %}", {})) < 21000


def test_diagram_xml_and_markers(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    client = login("fg")
    html = page(client, review)
    assert f'data-jz-diagram="/tasks/{review}/diagram.bpmn"' in html
    assert "data-current='[\"review\"]'" in html and '"fill"' in html.split("data-completed=")[1][:200]
    response = client.get(f"/tasks/{review}/diagram.bpmn")
    assert response.status_code == 200 and response.mimetype == "application/octet-stream"  # an inert download
    assert 'id="web_ops"' in response.get_data(as_text=True)
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert '<script type="module" src="/static/dist/jzflow.js">' in html  # the bundle, no inline script
    assert "<script>" not in html


def test_history_comments_and_attachments(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    client = login("fg")
    assert post(client, f"/tasks/{review}/comments", {"body": XSS}).status_code == 302
    upload = {"file": (io.BytesIO(b"<html><script>alert(1)</script></html>"), "<img src=x onerror=alert(1)>.html",
                       "text/html")}
    response = post(client, f"/tasks/{review}/attachments", upload, content_type="multipart/form-data")
    assert response.status_code == 302
    html = page(client, review)
    assert XSS not in html and "&lt;script&gt;alert(&#34;xss&#34;)" in html  # the comment, escaped
    assert "<img src=x" not in html and "onerror_alert(1)_.html" in html  # the file name
    history = html[html.index('id="history"'):]
    assert "发起流程" in history and "提交" in history and "评论" in history and "上传附件" in history
    with deployed() as s:
        attachment_id, name = s.execute(select(Attachment.id, Attachment.name)).one()
        s.rollback()
    assert "<" not in name and name.endswith(".html")
    assert f'/tasks/{review}/attachments/{attachment_id}' in html
    download = client.get(f"/tasks/{review}/attachments/{attachment_id}")
    assert download.status_code == 200 and download.data == b"<html><script>alert(1)</script></html>"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.mimetype == "application/octet-stream" and download.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in download.headers["Content-Security-Policy"]
    # An attachment id of another instance is not served through this task.
    other = at_review(deployed, "另一个项目")[1]
    assert client.get(f"/tasks/{other}/attachments/{attachment_id}").status_code == 404
    refused = client.post(f"/tasks/{review}/comments", data={"body": "no token"})
    assert refused.status_code == 400


# --- operations -----------------------------------------------------------------------------------------

def test_claim_unclaim_and_complete_with_an_opinion(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id, review = at_review(deployed)
    fg = login("fg")
    assert f'action="/tasks/{review}/claim"' in page(fg, review)
    assert fg.post(f"/tasks/{review}/claim").status_code == 400  # no CSRF token: refused
    assert row(deployed, review).assignee_id is None
    response = post(fg, f"/tasks/{review}/claim", follow_redirects=True)
    assert "已认领" in flashes(response.get_data(as_text=True))
    assert row(deployed, review).assignee_id is not None
    assert post(fg, f"/tasks/{review}/unclaim").status_code == 302
    assert row(deployed, review).assignee_id is None
    response = post(fg, f"/tasks/{review}/complete", {"f/approved": "true", "f/comment": XSS, "opinion": "同意立项"})
    assert response.status_code == 302 and response.headers["Location"] == "/inbox"
    assert row(deployed, review).state == "completed"
    sign_off = task_of(deployed, instance_id, "sign_off")
    html = page(login("boss"), sign_off)
    assert "同意立项" in html and "审批意见" in html


def test_transfer_delegate_and_resolve(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    fg, zr = login("fg"), login("zr")
    post(fg, f"/tasks/{review}/claim")
    response = post(fg, f"/tasks/{review}/transfer", {"to_username": "zr", "note": XSS}, follow_redirects=True)
    assert "已转办给 自然资源赵六（自然资源）" in flashes(response.get_data(as_text=True))  # name and unit, not the username
    assert row(deployed, review).assignee_id == row(deployed, review).owner_id
    html = page(zr, review)
    assert "转办说明" in html and XSS not in html and "&lt;script&gt;" in html
    post(zr, f"/tasks/{review}/delegate", {"to_username": "st", "note": "请先看看"})
    st = login("st")
    html = page(st, review)
    assert f'action="/tasks/{review}/resolve"' in html and f'action="/tasks/{review}/complete"' not in html
    assert post(st, f"/tasks/{review}/complete", {"f/approved": "true"}).status_code == 403  # the owner decides
    assert post(st, f"/tasks/{review}/resolve", {"opinion": ""}).status_code == 422
    assert post(st, f"/tasks/{review}/resolve", {"opinion": "建议同意"}).status_code == 302
    delegated = row(deployed, review)
    assert delegated.delegation_state == "resolved" and "建议同意" in page(zr, review)
    assert post(zr, f"/tasks/{review}/complete", {"f/approved": "true"}).status_code == 302


def test_cosigners_before_after_and_removed(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id, review = at_review(deployed)
    fg, zr, st = login("fg"), login("zr"), login("st")
    post(fg, f"/tasks/{review}/claim")
    response = post(fg, f"/tasks/{review}/cosigners", {"usernames": "zr", "position": "before", "note": "请会签"})
    assert response.status_code == 302 and row(deployed, review).blocked
    assert f'action="/tasks/{review}/complete"' not in page(fg, review)  # waits for the co-signer
    cosign = task_of(deployed, instance_id, "review", kind="cosign")
    assert post(zr, f"/tasks/{cosign}/complete", {"opinion": ""}).status_code == 422  # an opinion is required
    assert post(zr, f"/tasks/{cosign}/complete", {"opinion": "会签同意"}).status_code == 302
    assert not row(deployed, review).blocked
    # 减签: add st before, then take them off again.
    post(fg, f"/tasks/{review}/cosigners", {"usernames": "st", "position": "before"})
    st_cosign = task_of(deployed, instance_id, "review", kind="cosign")
    assert "减签" in page(fg, review)
    assert post(zr, f"/tasks/{review}/cosigners/{st_cosign}/remove").status_code == 403
    assert post(fg, f"/tasks/{review}/cosigners/{st_cosign}/remove").status_code == 302
    assert row(deployed, st_cosign).state == "cancelled" and not row(deployed, review).blocked
    # 后加签: my submission waits for st's signature.
    post(fg, f"/tasks/{review}/cosigners", {"usernames": "st", "position": "after"})
    response = post(fg, f"/tasks/{review}/complete", {"f/approved": "true"}, follow_redirects=True)
    assert "已提交，等待加签人签署" in flashes(response.get_data(as_text=True))
    after = task_of(deployed, instance_id, "review", kind="cosign")
    assert post(st, f"/tasks/{after}/complete", {"opinion": "同意"}).status_code == 302
    assert task_of(deployed, instance_id, "sign_off")


def test_send_back_and_withdraw(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id, review = at_review(deployed)
    fg, applicant = login("fg"), login("applicant")
    post(fg, f"/tasks/{review}/claim")
    html = page(fg, review)
    assert '<option value="applicant">' in html and 'name="reason"' in html
    assert post(fg, f"/tasks/{review}/send-back", {"to": "applicant", "reason": ""}).status_code == 422
    response = post(fg, f"/tasks/{review}/send-back", {"to": "applicant", "reason": XSS}, follow_redirects=True)
    assert "已退回到「填写申请」" in flashes(response.get_data(as_text=True))
    fill = task_of(deployed, instance_id, "fill")
    html = page(applicant, fill)
    assert "退回理由" in html and XSS not in html
    # 撤回: submit again, then take it back while no reviewer has acted.
    finish(deployed, fill, "applicant", {"note": "补充"})
    done = applicant.get("/inbox/done").get_data(as_text=True)
    assert f'action="/tasks/{fill}/withdraw"' in done
    response = post(applicant, f"/tasks/{fill}/withdraw", {"reason": "还要改"})
    again = task_of(deployed, instance_id, "fill")  # the step reopens as a new row; the submitted one stays
    assert response.status_code == 302 and response.headers["Location"] == f"/tasks/{again}"
    assert again != fill and row(deployed, fill).state == "completed"
    fill = again
    finish(deployed, fill, "applicant", {"note": "终稿"})
    review = task_of(deployed, instance_id, "review")
    post(fg, f"/tasks/{review}/claim")  # the next handler acted: too late to withdraw
    response = post(applicant, f"/tasks/{fill}/withdraw", headers={"Referer": "http://localhost/inbox/done"})
    assert response.status_code == 302
    assert "下一步已有人处理" in "".join(flashes(applicant.get("/inbox/done").get_data(as_text=True)))


def test_urge_cc_and_their_limits(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    fg, applicant, boss = login("fg"), login("applicant"), login("boss")
    post(fg, f"/tasks/{review}/claim")
    response = post(applicant, f"/tasks/{review}/urge", {"message": "请尽快"}, follow_redirects=True)
    assert "已催办 1 人" in flashes(response.get_data(as_text=True))
    again = post(applicant, f"/tasks/{review}/urge", {"message": "再催"})
    assert again.status_code == 429 and "一小时内已催办过" in again.get_data(as_text=True)
    refused = post(fg, f"/tasks/{review}/cc", {"usernames": "zr, window", "note": XSS})  # the window: not on the case
    assert refused.status_code == 403 and "抄送给（usernames）：window" in refused.get_data(as_text=True)
    response = post(fg, f"/tasks/{review}/cc", {"usernames": "boss, zr", "note": XSS})  # boss: the 领导 lane
    assert response.status_code == 302
    listing = boss.get("/inbox/cc").get_data(as_text=True)
    assert f"/tasks/{review}" in listing and XSS not in listing and "&lt;script&gt;" in listing
    assert "新材料项目" in page(boss, review)  # a CC'd user may see the task


def test_engine_errors_become_flashes_with_4xx(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    # Without a Referer: the error page with the status.
    response = post(fg, f"/tasks/{review}/transfer", {"to_username": "nobody"})
    assert response.status_code == 404 and "用户不存在或已停用: nobody" in response.get_data(as_text=True)
    # From the page (same-site Referer): back to it, the message flashed there.
    response = post(fg, f"/tasks/{review}/transfer", {"to_username": "fg"},
                    headers={"Referer": f"http://localhost/tasks/{review}"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/tasks/{review}")
    assert any("不能转办给自己" in m for m in flashes(page(fg, review)))
    # htmx requests get the message as a fragment with the status.
    response = post(fg, f"/tasks/{review}/delegate", {"to_username": "fg"}, headers={"HX-Request": "true"})
    assert response.status_code == 422 and "不能委派给自己" in response.get_data(as_text=True)


def test_someone_else_just_acted(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    fg, zr = login("fg"), login("zr")
    assert f'action="/tasks/{review}/complete"' in page(zr, review)  # both see the claimable task
    assert post(fg, f"/tasks/{review}/complete", {"f/approved": "true"}).status_code == 302
    late = post(zr, f"/tasks/{review}/complete", {"f/approved": "true"})
    assert late.status_code == 409
    assert "其他人刚刚处理了此事项，请刷新后重试" in late.get_data(as_text=True)


def test_a_real_concurrent_modification_is_friendly(deployed: sessionmaker[Session], login: Login,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import ConcurrentModification
    instance_id, review = at_review(deployed)
    fg = login("fg")

    def lost_race(*_args: Any, **_kw: Any) -> None:
        raise ConcurrentModification(instance_id)

    monkeypatch.setattr(runtime, "save", lost_race)
    response = post(fg, f"/tasks/{review}/complete", {"f/approved": "true"},
                    headers={"Referer": f"http://localhost/tasks/{review}"})
    assert response.status_code == 302
    monkeypatch.undo()
    assert any("请刷新后重试" in m for m in flashes(page(fg, review)))
    assert row(deployed, review).state == "ready"


def test_chinese_first_and_english_on_request(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    assert "办理记录" in page(fg, review)
    fg.get("/lang/en")
    html = page(fg, review)
    assert "History" in html and "Claim" in html and "办理记录" not in html


def test_the_bundle_sources_exist() -> None:
    web = Path(__file__).resolve().parents[2] / "web"
    assert (web / "static" / "src" / "jzflow.js").read_text().count("showDiagram") >= 2
    package = json.loads((web.parent / "package.json").read_text())
    versions = [*package["dependencies"].values(), *package["devDependencies"].values()]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in versions)  # exact versions; the lockfile pins the rest


def test_every_post_route_refuses_a_missing_csrf_token(app: Flask, deployed: sessionmaker[Session],
                                                        login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    routes = [r for r in app.url_map.iter_rules() if r.endpoint.split(".")[0] in ("tasks", "inbox")
              and "POST" in (r.methods or ())]
    assert len(routes) >= 18
    for rule in routes:
        values = {name: review for name in rule.arguments}
        path = rule.build(values)[1]  # type: ignore[index]
        response = fg.post(path, data={"body": "x", "to_username": "zr", "usernames": "zr", "ids": [review],
                                       "action": "claim", "name": "x", "q": "x", "reason": "x"})
        assert response.status_code == 400, path
    assert row(deployed, review).assignee_id is None
    with deployed() as s:
        assert s.scalar(select(Comment.id)) is None
        s.rollback()


def test_free_text_everywhere_comes_back_escaped(deployed: sessionmaker[Session], login: Login) -> None:
    instance_id = start(deployed, title=XSS, business_key=XSS[:60])
    finish(deployed, task_of(deployed, instance_id, "fill"), "applicant", {})
    review = task_of(deployed, instance_id, "review")
    fg, applicant, boss = login("fg"), login("applicant"), login("boss")
    post(fg, f"/tasks/{review}/claim")
    post(applicant, f"/tasks/{review}/urge", {"message": XSS})
    post(fg, f"/tasks/{review}/cosigners", {"usernames": "zr", "position": "before", "note": XSS})
    cosign = task_of(deployed, instance_id, "review", kind="cosign")
    post(login("zr"), f"/tasks/{cosign}/complete", {"opinion": XSS})
    post(fg, f"/tasks/{review}/complete", {"f/approved": "true", "f/comment": XSS, "opinion": XSS})
    post(fg, "/inbox/filters", {"name": XSS[:90], "list": "done", "q": XSS[:90]})
    pages = [page(boss, task_of(deployed, instance_id, "sign_off")), boss.get("/inbox").get_data(as_text=True),
             applicant.get("/inbox/started").get_data(as_text=True), fg.get("/inbox/done").get_data(as_text=True),
             page(fg, review)]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;" in html
    history = pages[0][pages[0].index('id="history"'):]
    for label in ("催办", "加签说明", "审批意见"):
        assert label in history


def test_a_web_completion_reads_the_task_row_and_the_form_texts_once(app: Flask, deployed: sessionmaker[Session],
                                                                      login: Login) -> None:
    """The completion path (docs/architecture.md): no repeated reads of the task row or of the form files; the task,
    its instance's row and its open rows in the completion's one first read, as the API's (a read of the task, then
    of its instance's version, then of the instance, then of its open rows went one by one)."""
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    token = csrf_of(fg, f"/tasks/{review}")
    with statements_of(app) as statements:
        response = fg.post(f"/tasks/{review}/complete", data={"f/approved": "true", "csrf_token": token})
    assert response.status_code == 302
    by_id = [s for s in statements if s.startswith("SELECT human_task.") and "WHERE human_task.id =" in s]
    files = [s for s in statements if "FROM process_file" in s]
    assert len(by_id) <= 1, by_id
    assert len(files) <= 1, files
    instance_reads = [s for s in statements if s.startswith("SELECT")
                      and ("FROM process_instance" in s or "JOIN process_instance" in s)]
    open_reads = [s for s in statements if s.startswith("SELECT human_task.") and "human_task.instance_id =" in s
                  and "process_instance" not in s]
    assert len(instance_reads) == 1, instance_reads
    assert open_reads == [], open_reads
    assert not any(s.startswith("BEGIN") for s in statements[1:]), statements  # nothing read after the commit


def test_a_suspended_co_sign_task_offers_no_action_the_service_refuses_and_says_why(
        deployed: sessionmaker[Session], login: Login) -> None:
    """挂起: the co-signer's page offers no 签署 (the service answers 409), the holder's no 减签, nobody 催办; each
    page says the instance is suspended. Resumed, the actions come back."""
    instance_id, review = at_review(deployed)
    fg, zr, applicant = login("fg"), login("zr"), login("applicant")
    post(fg, f"/tasks/{review}/claim")
    assert post(fg, f"/tasks/{review}/cosigners", {"usernames": "zr", "position": "before"}).status_code == 302
    cosign = task_of(deployed, instance_id, "review", kind="cosign")
    sign_form = f'action="/tasks/{cosign}/complete"'
    remove_form = f'action="/tasks/{review}/cosigners/{cosign}/remove"'
    urge_form = f'action="/tasks/{cosign}/urge"'
    assert sign_form in page(zr, cosign) and remove_form in page(fg, review) and urge_form in page(applicant, cosign)
    with deployed() as s:
        instances.suspend(s, instance_id=instance_id, actor=actor_for(s, "admin"))
        s.commit()
    assert row(deployed, cosign).state == "suspended"
    reason = "流程实例已挂起，恢复后才能办理"
    html = page(zr, cosign)
    assert sign_form not in html and "签署加签意见" not in html
    assert reason in html
    assert post(zr, f"/tasks/{cosign}/complete", {"opinion": "同意"}).status_code == 409  # what the page spares zr
    html = page(fg, review)
    assert remove_form not in html
    assert reason in html
    html = page(applicant, cosign)
    assert urge_form not in html
    assert reason in html
    zr.get("/lang/en")
    html = page(zr, cosign)
    assert "nothing can be done on its tasks until an administrator resumes it" in html and reason not in html
    with deployed() as s:
        instances.resume(s, instance_id=instance_id, actor=actor_for(s, "admin"))
        s.commit()
    assert sign_form in page(zr, cosign) and reason not in page(fg, review)
