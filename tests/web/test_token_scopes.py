"""API token scopes: a token is read-only (`read`: GET, HEAD, OPTIONS) or read-write (`read_write`: what its user may
do), chosen at issue, shown in the token list, enforced on every /api route before the view runs.

Every token could do everything its user can: a dashboard that only reads the inbox carried a credential that
completes, transfers and sends back its user's tasks, and a leak of it was a leak of all of that.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from sqlalchemy import func, select

from engine.audit.models import AuditEvent
from engine.errors import InvalidInput
from engine.org import tokens
from engine.org.token_models import ApiToken
from engine.tasks.models import HumanTask
from tests.web.flows import Api, db, deploy_good, post, token_for

Login = Callable[[str], FlaskClient]


def _issued(html: str) -> str:
    match = re.search(r'<pre class="token">(jzf_[\w-]+)</pre>', html)
    assert match is not None
    return match.group(1)


def _events(app: Flask) -> int:
    with db(app) as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_a_read_only_token_reads_and_is_refused_every_change_with_a_clear_403(app: Flask) -> None:
    deploy_good(app)
    writer = Api(app, token_for(app, "applicant", scope=tokens.READ_WRITE))
    started = writer.post("/api/processes/review_process/instances", {"title": "只读测试"})
    assert started.status_code == 201 and started.json is not None
    task_id = started.json["next_task_id"]
    reader = Api(app, token_for(app, "applicant", scope=tokens.READ))
    assert reader.get("/api/tasks").status_code == 200
    assert reader.get(f"/api/tasks/{task_id}").status_code == 200
    assert reader.client.head("/api/tasks", headers=reader.headers).status_code == 200
    assert reader.client.options("/api/tasks", headers=reader.headers).status_code == 200
    events = _events(app)
    for path, body in ((f"/api/tasks/{task_id}/claim", {}), (f"/api/tasks/{task_id}/complete", {"data": {}}),
                       ("/api/processes/review_process/instances", {"title": "不应启动"})):
        refused = reader.post(path, body)
        assert refused.status_code == 403, path
        assert refused.json is not None and refused.json["error"] == "token_read_only"
        assert "只读" in refused.json["message"] and "read-only" in refused.json["message"]
        assert refused.mimetype == "application/problem+json"
    assert _events(app) == events
    with db(app) as s:
        task = s.get(HumanTask, task_id)
        assert task is not None and task.assignee_id is None and task.state == "ready"
    assert writer.post(f"/api/tasks/{task_id}/claim").status_code == 200  # the same user's read-write token may


def test_the_scope_is_chosen_at_issue_shown_in_the_list_and_audited(app: Flask, login: Login) -> None:
    fg = login("fg")
    page = fg.get("/admin/tokens").get_data(as_text=True)
    assert 'name="scope"' in page and 'value="read" selected' in page  # least power unless chosen
    reader = post(fg, "/admin/tokens", {"name": "看板", "scope": "read"}, page="/admin/tokens")
    writer = post(fg, "/admin/tokens", {"name": "接口", "scope": "read_write"}, page="/admin/tokens")
    unchosen = post(fg, "/admin/tokens", {"name": "未选"}, page="/admin/tokens")
    assert (reader.status_code, writer.status_code, unchosen.status_code) == (201, 201, 201)
    bad = post(fg, "/admin/tokens", {"name": "乱填", "scope": "admin"}, page="/admin/tokens")
    assert bad.status_code == 422 and "权限范围" in bad.get_data(as_text=True)
    assert Api(app, _issued(reader.get_data(as_text=True))).post("/api/tasks/1/claim").status_code == 403
    assert Api(app, _issued(unchosen.get_data(as_text=True))).post("/api/tasks/1/claim").status_code == 403
    assert Api(app, _issued(writer.get_data(as_text=True))).post("/api/tasks/1/claim").status_code == 404
    with db(app) as s:
        assert dict(s.execute(select(ApiToken.name, ApiToken.scope)).all()) == {
            "看板": "read", "接口": "read_write", "未选": "read"}
        issued = s.scalars(select(AuditEvent.after).where(AuditEvent.action == "api_token.issue")).all()
        assert sorted(a["scope"] for a in issued) == ["read", "read", "read_write"]
    html = fg.get("/admin/tokens").get_data(as_text=True)
    assert "权限" in html
    for name, shown in (("看板", "只读"), ("接口", "读写")):
        row = html[html.index(f"<td>{name}</td>"):]
        assert row.index(shown) < row.index("</tr>"), name


def test_the_engine_refuses_an_unknown_scope(app: Flask) -> None:
    with db(app) as s, pytest.raises(InvalidInput) as refused:
        tokens.issue(s, tokens.owner(s, "fg"), "x", scope="everything")
    assert refused.value.details["field"] == "scope"


def test_the_openapi_document_names_the_scope_each_operation_takes(app: Flask) -> None:
    document = app.test_client().get("/api/openapi.json").json
    assert document is not None
    validate(document)
    assert "token_read_only" in document["components"]["securitySchemes"]["bearerAuth"]["description"]
    assert "token_read_only" in document["components"]["responses"]["Forbidden"]["description"]
    operations = [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()
                  if path != "/api/openapi.json"]
    assert {m for _, m, _ in operations} == {"get", "post"}
    for path, method, op in operations:
        scope = tokens.READ if method == "get" else tokens.READ_WRITE
        assert op["security"] == [{"bearerAuth": [scope]}, {"sessionCookie": []}], (path, method)
        if method != "get":
            assert op["responses"]["403"] == {"$ref": "#/components/responses/Forbidden"}, path
    assert document["paths"]["/api/openapi.json"]["get"]["security"] == []
