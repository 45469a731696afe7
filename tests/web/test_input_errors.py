"""Defect "500s from input": NUL bytes, deep JSON, huge cursors, CRLF redirects → a 4xx with a message.

API errors are RFC 9457 problem details (application/problem+json); HTML error pages speak Chinese.
"""
from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from engine.runtime.models import ProcessInstance
from engine.tasks.collab_models import Comment
from tests.web.conftest import PASSWORD, csrf_of
from tests.web.flows import Api, db, deploy_files, deploy_good, post, start_form_bundle, token_for

Login = Callable[[str], FlaskClient]
NUL = "a\x00b"


def _refused(response: TestResponse, *statuses: int) -> None:
    """A 4xx (one of `statuses` when given) with a message, never a 500."""
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    if statuses:
        assert response.status_code in statuses, response.status_code
    if response.mimetype.endswith("json"):
        assert response.json is not None and response.json["message"]
    else:  # an error page, or the page itself with the refusal where the field is (审计's filter: role="alert")
        body = response.get_data(as_text=True)
        assert "出错" in body or "无效" in body or re.search(r'<p class="error" role="alert"[^>]*>[^<]+</p>', body)


def _api_problem(response: TestResponse, status: int) -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem is not None and problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["error"] and problem["message"]


def test_nul_byte_in_the_login_username_is_a_400_with_a_message(app: Flask) -> None:
    client = app.test_client()
    response = client.post("/login", data={"username": "admin\x00", "password": PASSWORD,
                                           "csrf_token": csrf_of(client)})
    _refused(response, 400)
    assert "NUL" in response.get_data(as_text=True)


def test_nul_byte_in_a_multipart_field_or_file_name_is_a_400_and_a_json_body_is_not_read_as_a_form(
        app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client)
    field = client.post("/login", data={"username": "admin\x00", "password": PASSWORD, "csrf_token": token},
                        content_type="multipart/form-data")
    _refused(field, 400)
    assert "NUL" in field.get_data(as_text=True)
    upload = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token,
                                         "file": (io.BytesIO(b"x"), "a\x00.pdf")}, content_type="multipart/form-data")
    _refused(upload, 400)
    assert "文件名不能含 NUL" in upload.get_data(as_text=True)
    # A form-looking text in a JSON body is the body's text, not a form field: refused only by the JSON checks.
    api = client.post("/api/tasks/1/complete", data="username=a%00b", content_type="application/json")
    assert api.status_code != 500 and "field username" not in api.get_data(as_text=True)


def test_nul_byte_in_list_filters_is_a_400(app: Flask, login: Login) -> None:
    admin = login("admin")
    lists = {"/inbox": ("q", "process", "sort", "after", "due", "priority"),
             "/inbox/done": ("q", "process"), "/instances": ("q", "process", "status", "after", "limit"),
             "/audit": ("since", "until", "actor", "action", "process", "instance", "object_type", "object_id"),
             "/messages": ("name", "state", "after", "limit"), "/messages/waiting": ("kind", "name", "after", "limit"),
             "/messages/signals": ("name", "after", "limit")}
    count = 0
    for path, names in lists.items():
        for name in names:
            _refused(admin.get(path, query_string={name: NUL}), 400)
            count += 1
    assert count >= 20


def test_nul_byte_in_a_comment_and_an_api_title_is_a_400_and_changes_nothing(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    _refused(applicant.post("/api/processes/review_process/instances", {"title": NUL}), 400)
    started = applicant.post("/api/processes/review_process/instances", {"title": "正常"})
    assert started.status_code == 201
    task_id = started.json["next_task_id"]  # type: ignore[index]
    web = login("applicant")
    _refused(post(web, f"/tasks/{task_id}/comments", {"body": NUL}, page=f"/tasks/{task_id}"), 400)
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(Comment)) == 0
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 1


def test_json_nested_500_deep_is_refused_with_a_message(app: Flask) -> None:
    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    deep: object = "x"
    for _ in range(500):
        deep = [deep]
    _api_problem(applicant.post("/api/processes/review_process/instances", {"title": "深", "data": {"d": deep}}), 400)
    very_deep = "[" * 100_000 + "]" * 100_000
    response = applicant.client.post("/api/processes/review_process/instances", data='{"data":' + very_deep + "}",
                                     headers=applicant.headers, content_type="application/json")
    _api_problem(response, 400)
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0


def test_a_cursor_of_ten_to_the_thirty_is_a_422(app: Flask, login: Login) -> None:
    api = Api(app, token_for(app, "admin"))
    cursor = base64.urlsafe_b64encode(json.dumps(["2025-01-01T00:00:00+00:00", 10**30]).encode()).decode()
    _api_problem(api.get("/api/instances", after=cursor), 422)
    _api_problem(api.get("/api/tasks", after=cursor), 422)
    admin = login("admin")
    _refused(admin.get("/instances", query_string={"after": cursor}))
    _refused(admin.get("/audit", query_string={"after": str(10**30)}))
    _refused(admin.get("/audit", query_string={"instance": str(10**30)}))
    for path in ("/messages", "/messages/waiting", "/messages/signals"):
        _refused(admin.get(path, query_string={"after": str(10**30)}), 422)
        _refused(admin.get(path, query_string={"limit": str(10**30)}), 422)
    assert api.get("/api/tasks/" + str(10**30)).status_code == 404


def test_login_next_with_crlf_when_logged_in_redirects_home(login: Login) -> None:
    admin = login("admin")
    response = admin.get("/login", query_string={"next": "/inbox\r\nSet-Cookie: x=1"})
    assert response.status_code == 302 and "\n" not in response.headers["Location"]
    assert "Set-Cookie: x" not in str(response.headers)


def test_api_errors_are_problem_details_and_html_errors_speak_chinese(app: Flask, login: Login) -> None:
    api = Api(app, token_for(app, "applicant"))
    _api_problem(api.get("/api/no-such-route"), 404)
    _api_problem(api.client.delete("/api/tasks", headers=api.headers), 405)
    _api_problem(api.get("/api/tasks/999999"), 404)
    _api_problem(app.test_client().get("/api/tasks"), 401)
    web = login("applicant")
    for response in (web.get("/no-such-page"), web.delete("/inbox")):
        assert response.mimetype == "text/html" and response.status_code in (404, 405)
        page = response.get_data(as_text=True)
        assert "The requested URL" not in page and "not allowed for the requested URL" not in page
        assert any(word in page for word in ("不存在", "不支持"))


def test_a_lone_surrogate_in_json_is_a_400_and_changes_nothing(app: Flask) -> None:
    """JSON may escape half a surrogate pair ("\\ud800"): Python takes it, UTF-8 cannot encode it (the audit hash,
    the database). It was a 500 after the work was done; now refused before any view, naming the body."""
    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    for body in ({"title": "孤\ud800"}, {"title": "正常", "data": {"说明": ["\udfff"]}},
                 {"title": "正常", "data": {"\ud83d": 1}}):
        response = applicant.post("/api/processes/review_process/instances", body)
        _api_problem(response, 400)
        assert "surrogate" in response.json["message"]  # type: ignore[index]
    paired = applicant.post("/api/processes/review_process/instances", {"title": "火箭 \U0001f680"})  # "\ud83d\ude80"
    assert paired.status_code == 201, paired.get_data(as_text=True)[:300]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 1


def test_nan_and_infinity_in_json_are_refused_naming_the_field_and_start_nothing(app: Flask) -> None:
    """Python's json takes NaN and Infinity, which JSON has not: NaN passed a form's minimum (NaN < 0 is false) and
    the embedded default started the case with it; PostgreSQL refused it later without naming the field."""
    deploy_files(app, start_form_bundle())  # its start form: investment {"type": "number", "minimum": 0}
    applicant = Api(app, token_for(app, "applicant"))
    for constant in ("NaN", "Infinity", "-Infinity"):
        raw = '{"title": "非数", "data": {"project_name": "甲", "investment": ' + constant + '}}'
        response = applicant.client.post("/api/processes/start_form_demo/instances", data=raw,
                                         headers=applicant.headers, content_type="application/json")
        _api_problem(response, 400)
        assert response.json["field"] == "investment" and constant in response.json["message"]  # type: ignore[index]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0


def test_a_chunked_json_body_or_one_sent_as_text_is_checked_like_any(app: Flask) -> None:
    """A body sent chunked has no Content-Length (gunicorn passes such bodies on), and the API reads a body sent as
    text/plain as JSON: the input checks must skip neither."""
    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    for raw, words in (('{"title": "a\\u0000b"}', "NUL"), ('{"title": "孤\\ud800"}', "surrogate"),
                       ('{"title": "深", "data": {"d": ' + "[" * 500 + "]" * 500 + "}}", "nested"),
                       ('{"title": "非数", "data": {"n": NaN}}', "NaN")):
        response = applicant.client.post("/api/processes/review_process/instances", input_stream=io.BytesIO(raw.encode()),
                                         headers={**applicant.headers, "Transfer-Encoding": "chunked"},
                                         content_type="application/json",
                                         environ_overrides={"wsgi.input_terminated": True})
        _api_problem(response, 400)
        assert words in response.json["message"], response.json  # type: ignore[index]
        response = applicant.client.post("/api/processes/review_process/instances", data=raw.encode(),
                                         headers=applicant.headers, content_type="text/plain")
        _api_problem(response, 400)
        assert words in response.json["message"], response.json  # type: ignore[index]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0
