"""Helpers of the instance, process, API and admin tests: deploy, start, read the database, call the API."""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from engine import deploy
from engine.org import tokens
from engine.org.actors import SYSTEM
from engine.org.models import User
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.conftest import FIXTURES, read_fixture_dir
from tests.web.conftest import csrf_of

START_SCHEMA = """{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "申请信息", "type": "object", "required": ["project_name", "investment"],
  "properties": {
    "project_name": {"type": "string", "title": "项目名称", "minLength": 1, "maxLength": 200},
    "investment": {"type": "number", "title": "总投资（万元）", "minimum": 0},
    "urgent": {"type": "boolean", "title": "加急"}
  },
  "additionalProperties": false
}"""


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Collect the SQL the app sends while the block runs, each statement on one line."""
    sent: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()))

    engine = app.extensions["jzflow.engine"]
    event.listen(engine, "before_cursor_execute", log)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", log)


@contextmanager
def db(app: Flask) -> Iterator[Session]:
    """A short session on the app's database: committed and closed at once (SQLite has one writer)."""
    session = app.extensions["jzflow.sessionmaker"]()
    try:
        yield session
        session.commit()
    finally:
        session.close()


def deploy_good(app: Flask) -> None:
    """Deploy tests/fixtures/good (review_process, minimal, timer_wait)."""
    with db(app) as s:
        deploy.deploy(s, read_fixture_dir("good"), actor=SYSTEM)


def start_form_bundle(key: str = "start_form_demo", starters: str | None = None) -> dict[str, bytes]:
    """A copy of `minimal` with its own key, a start form on its start event and, optionally, `starters`."""
    text = (FIXTURES / "good" / "minimal.bpmn").read_text(encoding="utf-8")
    props = '<spiffworkflow:property name="formJsonSchemaFilename" value="start_demo.schema.json" />'
    if starters:
        props += f'<spiffworkflow:property name="starters" value="{starters}" />'
    text = text.replace('<bpmn:startEvent id="start" name="开始">',
                        '<bpmn:startEvent id="start" name="开始"><bpmn:extensionElements><spiffworkflow:properties>'
                        f'{props}</spiffworkflow:properties></bpmn:extensionElements>')
    text = re.sub(r'(id|processRef)="minimal"', rf'\1="{key}"', text).replace("最小审批流程", "带发起表单的流程")
    forms = FIXTURES / "good" / "forms"
    return {f"{key}.bpmn": text.encode(), "start_demo.schema.json": START_SCHEMA.encode(),
            "approve.schema.json": (forms / "approve.schema.json").read_bytes(),
            "approve.uischema.json": (forms / "approve.uischema.json").read_bytes()}


def deploy_files(app: Flask, files: dict[str, bytes]) -> None:
    with db(app) as s:
        deploy.deploy(s, files, actor=SYSTEM)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, *, page: str = "/processes") -> TestResponse:
    """POST a form with the CSRF token of `page`."""
    return client.post(path, data={"csrf_token": csrf_of(client, page), **(data or {})})


def start_web(client: FlaskClient, key: str = "review_process", **fields: Any) -> TestResponse:
    """Start a process through the start page."""
    return post(client, f"/processes/{key}/start", fields, page=f"/processes/{key}/start")


def instance_by_key(app: Flask, business_key: str) -> ProcessInstance:
    with db(app) as s:
        row = s.scalar(select(ProcessInstance).where(ProcessInstance.business_key == business_key))
        assert row is not None, business_key
        return row


def open_task(app: Flask, instance_id: int, bpmn_id: str) -> HumanTask:
    with db(app) as s:
        task = s.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.bpmn_id == bpmn_id,
                                                HumanTask.state == "ready"))
        assert task is not None, bpmn_id
        return task


def user_id(app: Flask, username: str) -> int:
    with db(app) as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        assert uid is not None
        return uid


def token_for(app: Flask, username: str, name: str = "测试令牌", *, scope: str = tokens.READ_WRITE) -> str:
    """Issue an API token for a user through the service (read-write unless `scope` says otherwise); return its
    plaintext."""
    with db(app) as s:
        user = tokens.owner(s, username)
        return tokens.issue(s, user, name, scope=scope)


class Api:
    """A JSON client for /api with a bearer token."""

    def __init__(self, app: Flask, token: str) -> None:
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **query: Any) -> TestResponse:
        return self.client.get(path, headers=self.headers, query_string=query)

    def post(self, path: str, json: Any = None) -> TestResponse:
        return self.client.post(path, headers=self.headers, json=json if json is not None else {})


def started_review(app: Flask, applicant: FlaskClient, business_key: str = "JZ-2025-001",
                   title: str = "智能家电产业园并联审批") -> ProcessInstance:
    """Start review_process as the applicant through the web and return its row."""
    response = start_web(applicant, title=title, business_key=business_key)
    assert response.status_code == 302, response.get_data(as_text=True)
    return instance_by_key(app, business_key)


def two_at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads of their own at once (each a request, a service in its own session); their results."""
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        out[i] = calls[i]()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    return out
