"""The JSON API: token and session auth, every route, JSON errors, rate limit, OpenAPI document."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from engine import clock, runtime
from engine.org.token_models import ApiToken
from engine.tasks.models import HumanTask
from tests.web.conftest import csrf_of
from tests.web.flows import Api, db, deploy_files, deploy_good, post, start_form_bundle, token_for

Login = Callable[[str], FlaskClient]


def _start(api: Api, key: str = "review_process", **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/processes/{key}/instances", {"title": "智能家电", "business_key": "JZ-API", **body})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.json is not None
    return response.json


def _task_id(app: Flask, instance_id: int, bpmn_id: str) -> int:
    with db(app) as s:
        task_id = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                      HumanTask.bpmn_id == bpmn_id, HumanTask.state == "ready"))
        assert task_id is not None, bpmn_id
        return task_id


def test_no_or_bad_credentials_get_401_json(app: Flask) -> None:
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer jzf_wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="},
                    {"Authorization": "Bearer "}):
        response = client.get("/api/tasks", headers=headers)
        assert response.status_code == 401, headers
        assert response.json is not None and response.json["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/api/tasks/1/claim").status_code == 401
    assert client.get("/api/openapi.json").status_code == 200  # the document itself is public


def test_a_task_through_every_operation(app: Flask) -> None:
    deploy_good(app)
    applicant, window = Api(app, token_for(app, "applicant")), Api(app, token_for(app, "window"))
    boss, st = Api(app, token_for(app, "boss")), Api(app, token_for(app, "st"))

    processes = applicant.get("/api/processes").json
    assert processes is not None and "review_process" in [p["key"] for p in processes["items"]]
    started = _start(applicant)
    instance_id, submit = started["id"], started["next_task_id"]
    assert started["status"] == "running" and started["started_by"] == "applicant" and submit is not None

    inbox = applicant.get("/api/tasks").json
    assert inbox is not None and [t["id"] for t in inbox["items"]] == [submit] and inbox["next_cursor"] is None
    assert inbox["items"][0]["claimable"] is True
    detail = applicant.get(f"/api/tasks/{submit}").json
    assert detail is not None and detail["form"]["properties"]["project_name"]["title"] == "项目名称"
    assert detail["instance"]["id"] == instance_id

    claimed = applicant.post(f"/api/tasks/{submit}/claim").json
    assert claimed is not None and claimed["assignee"] == "applicant" and claimed["mine"] is True
    assert applicant.post(f"/api/tasks/{submit}/unclaim").json["assignee"] is None  # type: ignore[index]
    applicant.post(f"/api/tasks/{submit}/claim")

    refused = applicant.post(f"/api/tasks/{submit}/complete", {"data": {"project_name": "", "project_type": "x"}})
    assert refused.status_code == 422 and refused.json is not None and refused.json["error"] == "form_invalid"
    fields = {f["field"] for f in refused.json["fields"]}
    assert {"project_name", "investment", "project_type"} <= fields
    assert applicant.post(f"/api/tasks/{submit}/complete", {"data": []}).status_code == 422
    bad_json = applicant.client.post(f"/api/tasks/{submit}/complete", data="{no", headers=applicant.headers,
                                     content_type="application/json")
    assert bad_json.status_code == 422

    done = applicant.post(f"/api/tasks/{submit}/complete", {
        "data": {"project_name": "胶州智能家电产业园", "investment": 6000.5, "project_type": "industrial"},
        "opinion": "请受理"})
    assert done.status_code == 200 and done.json is not None and done.json["status"] == "running"
    accept = _task_id(app, instance_id, "accept")
    assert done.json["next_tasks"] == [accept]
    again = applicant.post(f"/api/tasks/{submit}/complete", {"data": {}})
    assert again.status_code == 409 and again.json is not None and again.json["error"] == "task_already_done"

    # A task one may not see answers as one that does not exist (404); one may see but not act on, 403 naming why.
    assert st.get(f"/api/tasks/{accept}").status_code == 404
    unseen = st.post(f"/api/tasks/{accept}/claim")
    assert unseen.status_code == 404 and unseen.json is not None and unseen.json["error"] == "task_not_found"
    assert st.get(f"/api/instances/{instance_id}").status_code == 404
    missing = st.get("/api/tasks/999999")
    assert missing.status_code == 404 and missing.json is not None and missing.json["error"] == "task_not_found"
    not_yours = applicant.post(f"/api/tasks/{accept}/claim")  # the initiator sees the case, may not claim the step
    assert not_yours.status_code == 403 and not_yours.json is not None and not_yours.json["error"] == "not_your_task"
    assert "候选人" in not_yours.json["message"]
    assert st.get("/api/instances/999999").status_code == 404

    # 转办 → 退回 → 催办
    assert window.get(f"/api/tasks/{accept}").status_code == 200
    moved = window.post(f"/api/tasks/{accept}/transfer", {"to_username": "boss", "note": "请领导处理"})
    assert moved.status_code == 200 and moved.json is not None and moved.json["assignee"] == "boss"
    assert window.post(f"/api/tasks/{accept}/transfer", {}).status_code == 422
    assert boss.post(f"/api/tasks/{accept}/send-back", {"to": "previous"}).status_code == 422  # no reason
    back = boss.post(f"/api/tasks/{accept}/send-back", {"to": "previous", "reason": "材料不全"})
    assert back.status_code == 200 and back.json is not None
    assert back.json["bpmn_id"] == "submit_application" and back.json["assignee"] == "applicant"
    urged = boss.post(f"/api/tasks/{back.json['id']}/urge", {"message": "请尽快补正"})
    assert urged.status_code == 200 and urged.json == {"notified": 1, "task_id": back.json["id"]}
    twice = boss.post(f"/api/tasks/{back.json['id']}/urge", {})
    assert twice.status_code == 429 and twice.json is not None and twice.json["error"] == "rate_limited"

    # Instances: the list, the page, data for admins, process owners, auditors and a starter from inside only.
    listed = applicant.get("/api/instances", q="JZ-API").json
    assert listed is not None and [i["id"] for i in listed["items"]] == [instance_id]
    mine = applicant.get(f"/api/instances/{instance_id}").json  # the starter, from outside: no data
    assert mine is not None and mine["data_visible"] is False and "data" not in mine
    admin = Api(app, token_for(app, "admin")).get(f"/api/instances/{instance_id}").json
    assert admin is not None and admin["data_visible"] is True and admin["data"]["project_name"] == "胶州智能家电产业园"
    assert admin["data"]["investment"] == "6000.5"  # a Decimal, as text
    theirs = window.get(f"/api/instances/{instance_id}").json
    assert theirs is not None and theirs["data_visible"] is False and "data" not in theirs
    assert {t["bpmn_id"] for t in theirs["tasks"]} >= {"submit_application", "accept"}


def test_concurrent_modification_is_409(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    started = _start(applicant)
    submit = started["next_task_id"]
    real_load = runtime.load

    def stale_load(session: Any, instance_id: int, **options: Any) -> runtime.Running:
        running = real_load(session, instance_id, **options)
        running.lock_version -= 1  # as if someone else saved between our read and our write
        return running

    monkeypatch.setattr(runtime, "load", stale_load)
    conflict = applicant.post(f"/api/tasks/{submit}/complete", {
        "data": {"project_name": "胶州", "investment": 1, "project_type": "service"}})
    assert conflict.status_code == 409, conflict.get_data(as_text=True)
    assert conflict.json is not None and conflict.json["error"] == "concurrent_modification"
    assert conflict.json["instance_id"] == started["id"] and "reload" in conflict.json["message"]
    monkeypatch.undo()
    with db(app) as s:  # nothing changed
        task = s.get(HumanTask, submit)
        assert task is not None and task.state == "ready" and task.completed_by_id is None


def test_keyset_pages_of_the_inbox_and_instances(app: Flask) -> None:
    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    ids = [_start(applicant, business_key=f"JZ-{n}")["next_task_id"] for n in range(3)]
    seen: list[int] = []
    cursor = None
    while True:
        page = applicant.get("/api/tasks", limit=2, **({"after": cursor} if cursor else {})).json
        assert page is not None
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 3
    first = applicant.get("/api/instances", limit=2).json
    assert first is not None and len(first["items"]) == 2 and first["next_cursor"]
    rest = applicant.get("/api/instances", limit=2, after=first["next_cursor"]).json
    assert rest is not None and len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert applicant.get("/api/tasks", limit=0).status_code == 422
    assert applicant.get("/api/tasks", after="garbage").status_code == 422


def test_the_inbox_reads_candidates_once_not_per_task(app: Flask) -> None:
    """`claimable` needs each task's candidates: one query for the page, not one per task (it was 50 for 50)."""
    from sqlalchemy import event

    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    ids = [_start(applicant, business_key=f"JZ-N{n}")["next_task_id"] for n in range(6)]
    statements: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = app.extensions["jzflow.engine"]
    event.listen(engine, "before_cursor_execute", log)
    try:
        page = applicant.get("/api/tasks").json
    finally:
        event.remove(engine, "before_cursor_execute", log)
    assert page is not None and sorted(t["id"] for t in page["items"]) == sorted(ids)
    assert all(t["claimable"] for t in page["items"])
    loads = [s for s in statements if s.lstrip().startswith("SELECT task_candidate.")]  # the candidates' own reads
    assert len(loads) <= 1, loads


def test_start_forms_are_validated_by_the_api(app: Flask) -> None:
    deploy_good(app)
    deploy_files(app, start_form_bundle())
    fg = Api(app, token_for(app, "fg"))
    form = next(p for p in fg.get("/api/processes").json["items"] if p["key"] == "start_form_demo")  # type: ignore[index]
    assert form["start_form"]["required"] == ["project_name", "investment"]
    refused = fg.post("/api/processes/start_form_demo/instances", {"data": {"investment": -1}})
    assert refused.status_code == 422 and refused.json is not None
    assert {f["field"] for f in refused.json["fields"]} == {"project_name", "investment"}
    assert fg.post("/api/processes/nope/instances", {}).status_code == 404
    started = fg.post("/api/processes/start_form_demo/instances",
                      {"data": {"project_name": "胶州湾", "investment": 12.5}, "business_key": "SF-API"})
    assert started.status_code == 201 and started.json is not None
    assert started.json["data_visible"] is False and "data" not in started.json  # a staff starter: as on the page
    stored = Api(app, token_for(app, "admin")).get(f"/api/instances/{started.json['id']}").json
    assert stored is not None and stored["data"]["investment"] == "12.5"


def test_oversized_start_data_is_refused_by_the_api_naming_the_field_and_starts_nothing(app: Flask) -> None:
    """A body within the request limits (25 MB, 64 levels) but past the workflow data limits: refused at the edge of
    the engine, not saved into a state that later fails (`state_too_large`)."""
    from engine import content_limits
    from engine.runtime.models import ProcessInstance
    deploy_good(app)
    fg = Api(app, token_for(app, "fg"))
    with db(app) as s:
        before = s.query(ProcessInstance).count()
    big = {"data": {"visits": list(range(content_limits.MAX_DATA_VALUES))}, "title": "大"}
    refused = fg.post("/api/processes/review_process/instances", big)
    assert refused.status_code == 422 and refused.json is not None, refused.get_data(as_text=True)
    assert [f["field"] for f in refused.json["fields"]] == ["visits"]
    with db(app) as s:
        assert s.query(ProcessInstance).count() == before


def test_start_data_that_would_make_the_state_too_large_is_refused_by_the_api_naming_the_field(app: Flask) -> None:
    """Within the data limit at the door (characters), but six characters each in the saved state: 422 naming the
    field, nothing started (it was an instance stopped at once with `state_too_large`)."""
    from engine.runtime.models import ProcessInstance
    deploy_good(app)
    fg = Api(app, token_for(app, "fg"))
    refused = fg.post("/api/processes/review_process/instances", {"data": {"material": "字" * 350_000}, "title": "大"})
    assert refused.status_code == 422 and refused.json is not None, refused.get_data(as_text=True)[:2000]
    assert [f["field"] for f in refused.json["fields"]] == ["material"]
    assert "JZFLOW_MAX_STATE_KB" in refused.json["fields"][0]["message"]
    with db(app) as s:
        assert s.query(ProcessInstance).count() == 0


def test_the_browser_session_works_with_csrf(app: Flask, login: Login) -> None:
    deploy_good(app)
    client = login("applicant")
    assert client.get("/api/processes").status_code == 200
    no_csrf = client.post("/api/processes/review_process/instances", json={"title": "x"})
    assert no_csrf.status_code == 400 and no_csrf.json is not None and no_csrf.json["error"] == "csrf"
    token = csrf_of(client, "/processes")
    ok = client.post("/api/processes/review_process/instances", json={"title": "浏览器发起"},
                     headers={"X-CSRFToken": token})
    assert ok.status_code == 201


def test_revoked_and_deactivated_tokens_are_refused(app: Flask, login: Login) -> None:
    plaintext = token_for(app, "fg")
    api = Api(app, plaintext)
    assert api.get("/api/tasks").status_code == 200
    with db(app) as s:
        token = s.scalar(select(ApiToken))
        assert token is not None and token.last_used_at is not None and plaintext not in (token.token_hash, token.prefix)
        token_id = token.id
    fg = login("fg")
    assert post(fg, f"/admin/tokens/{token_id}/revoke", page="/admin/tokens").status_code == 302
    assert api.get("/api/tasks").status_code == 401
    other = Api(app, token_for(app, "st"))
    assert post(login("admin"), f"/admin/users/{_user(app, 'st')}/deactivate", page="/admin").status_code == 302
    assert other.get("/api/tasks").status_code == 401


def test_an_expired_token_gets_a_401_that_says_it_expired(app: Flask) -> None:
    plaintext = token_for(app, "fg")
    api = Api(app, plaintext)
    assert api.get("/api/tasks").status_code == 200
    with db(app) as s:
        s.execute(update(ApiToken).values(expires_at=clock.now() - timedelta(seconds=1)))
    for response in (api.get("/api/tasks"), api.post("/api/processes/review_process/instances", {"title": "x"})):
        assert response.status_code == 401 and response.json is not None
        assert response.json["error"] == "token_expired"
        assert "令牌已过期" in response.json["message"] and "expired" in response.json["message"]
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    unknown = Api(app, plaintext[:-1] + ("0" if plaintext[-1] != "0" else "1")).get("/api/tasks")
    assert unknown.status_code == 401 and unknown.json is not None and "已过期" not in unknown.json["message"]


def _user(app: Flask, username: str) -> int:
    from tests.web.flows import user_id
    return user_id(app, username)


def test_rate_limit_per_token_and_json_http_errors(app: Flask) -> None:
    app.config["JZFLOW_API_RATE_LIMIT"] = "3 per minute"
    api, other = Api(app, token_for(app, "fg")), Api(app, token_for(app, "st"))
    assert [api.get("/api/tasks").status_code for _ in range(4)] == [200, 200, 200, 429]
    limited = api.get("/api/tasks")
    assert limited.json is not None and limited.json["error"] == "rate_limited"
    assert other.get("/api/tasks").status_code == 200  # another token has its own budget
    wrong_method = other.get("/api/tasks/1/claim")
    assert wrong_method.status_code == 405 and wrong_method.json is not None
    assert wrong_method.json["error"] == "method_not_allowed"


def test_rate_limit_without_a_token_counts_an_ipv6_64_as_one_client(app: Flask) -> None:
    app.config["JZFLOW_API_RATE_LIMIT"] = "3 per minute"
    client = app.test_client()
    statuses = [client.get("/api/tasks", environ_base={"REMOTE_ADDR": f"2001:db8:99::{i + 1:x}"}).status_code
                for i in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert client.get("/api/tasks", environ_base={"REMOTE_ADDR": "2001:db8:98::1"}).status_code == 401


def test_made_up_tokens_count_against_their_address_and_a_real_token_keeps_its_own_budget(app: Flask) -> None:
    app.config["JZFLOW_API_RATE_LIMIT"] = "3 per minute"
    client = app.test_client()
    # A new made-up token each try had a budget of its own: guessing (or flooding) went on without end
    statuses = [client.get("/api/tasks", headers={"Authorization": f"Bearer jzf_made-up-{i}"}).status_code
                for i in range(4)]
    assert statuses == [401, 401, 401, 429]
    refused = client.get("/api/tasks", headers={"Authorization": "Bearer jzf_made-up-again"})
    assert refused.status_code == 429 and refused.json is not None and refused.json["error"] == "rate_limited"
    assert "Retry-After" in refused.headers
    elsewhere = client.get("/api/tasks", headers={"Authorization": "Bearer jzf_x"}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert elsewhere.status_code == 401
    assert Api(app, token_for(app, "fg")).get("/api/tasks").status_code == 200  # same address, a real token


def _routes(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((path, method.lower()))
    return found


def test_the_openapi_document_is_valid_and_covers_every_route(app: Flask) -> None:
    document = app.test_client().get("/api/openapi.json").json
    assert document is not None and document["openapi"].startswith("3.1")
    validate(document)
    described = {(path, method) for path, ops in document["paths"].items() for method in ops
                 if method in ("get", "post", "put", "patch", "delete")}
    assert described == _routes(app)
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if path != "/api/openapi.json":
                assert "401" in op["responses"], (path, method)
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["$ref"].startswith("#/components/responses/"), (path, status)


def test_a_token_request_commits_once(app: Flask) -> None:
    """The token's last_used_at rides in the request's one unit of work, never in a commit of its own."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    deploy_good(app)
    commits: list[object] = []

    def _count(session: Session) -> None:
        commits.append(session)

    event.listen(Session, "after_commit", _count)
    try:
        api = Api(app, token_for(app, "fg"))
        commits.clear()
        _start(api)  # a fresh token is touched, and the view commits its own work
        assert len(commits) == 1
        with db(app) as s:
            token = s.scalar(select(ApiToken))
            assert token is not None and token.last_used_at is not None
            s.execute(ApiToken.__table__.update().values(last_used_at=None))
            s.commit()
        commits.clear()
        assert api.get("/api/tasks").status_code == 200  # a read: the touch is the request's one commit
        assert len(commits) == 1
        with db(app) as s:
            token = s.scalar(select(ApiToken))
            assert token is not None and token.last_used_at is not None
    finally:
        event.remove(Session, "after_commit", _count)


def test_a_token_read_whose_bookkeeping_commit_loses_its_connection_still_answers(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection killed at the read's one commit (last_used_at) must not turn an answered GET into an error."""
    api = Api(app, token_for(app, "applicant"))

    def lost(_self: Session) -> None:
        raise OperationalError("COMMIT", {}, Exception("terminating connection due to administrator command"))

    monkeypatch.setattr(Session, "commit", lost)
    assert api.get("/api/tasks").status_code == 200


def test_a_token_answer_is_not_stored_and_loads_no_cookie_user(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token request is authenticated by its token alone: its answers are the user's (no-store, as pages are),
    and flask-login is never asked for a cookie session's user (that cost an API request 0.2 M instructions)."""
    from web.extensions import login_manager

    deploy_good(app)
    api = Api(app, token_for(app, "fg"))
    loads: list[bool] = []
    real = login_manager._load_user  # type: ignore[attr-defined]
    monkeypatch.setattr(login_manager, "_load_user", lambda: loads.append(True) or real())
    started = api.post("/api/processes/review_process/instances", {"title": "缓存", "business_key": "NO-STORE-1"})
    assert started.status_code == 201, started.get_data(as_text=True)
    listed = api.get("/api/tasks")
    assert listed.status_code == 200
    assert started.headers.get("Cache-Control") == "no-store" and listed.headers.get("Cache-Control") == "no-store"
    assert loads == []
    refused = app.test_client().get("/api/tasks", headers={"Authorization": "Bearer jzt_not-a-token"})
    assert refused.status_code == 401 and "no-store" not in (refused.headers.get("Cache-Control") or "")


def test_completing_claiming_and_releasing_through_the_api_read_the_task_once(app: Flask) -> None:
    """The completion's one read also tells whether the caller may see the task (an unseen one is a missing one):
    a read of the task alone before it was a round trip more on every submission through the API."""
    from sqlalchemy import event

    deploy_good(app)
    applicant = Api(app, token_for(app, "applicant"))
    submit = _start(applicant, business_key="JZ-ONCE")["next_task_id"]
    statements: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    engine = app.extensions["jzflow.engine"]
    event.listen(engine, "before_cursor_execute", log)
    try:
        done = applicant.post(f"/api/tasks/{submit}/complete", {
            "data": {"project_name": "胶州智能家电产业园", "investment": 6000.5, "project_type": "industrial"}})
    finally:
        event.remove(engine, "before_cursor_execute", log)
    assert done.status_code == 200, done.get_data(as_text=True)
    reads = [s for s in statements if s.startswith("SELECT human_task.id") and "parent_task_id IN" not in s]
    assert len(reads) == 1, reads  # (SQLite: the co-signers closing with it are read by a query of their own)
    other = _start(applicant, business_key="JZ-ONCE-2")["next_task_id"]
    for op in ("claim", "unclaim"):  # no body: the service's one read is the only read of the task
        statements.clear()
        event.listen(engine, "before_cursor_execute", log)
        try:
            assert applicant.post(f"/api/tasks/{other}/{op}").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", log)
        assert len([s for s in statements if s.startswith("SELECT human_task.id")]) == 1, (op, statements)
    st = Api(app, token_for(app, "st"))  # and one the caller may not see is still a missing one, whatever its body
    for sent in ({"data": []}, {"data": {}}, {"opinion": 5}):
        unseen = st.post(f"/api/tasks/{done.json['next_tasks'][0]}/complete", sent)  # type: ignore[index]
        assert unseen.status_code == 404 and unseen.json is not None and unseen.json["error"] == "task_not_found"
