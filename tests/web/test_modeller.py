"""流程建模 over HTTP: who may deploy, deploy from the modeller (same validation, nothing stored on error),
imports of other tools' files (never a server error), versions, downloads, the diff and instance migration."""
from __future__ import annotations

import html
import io
import json
import re
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import org, runtime
from engine.deploy import bpmn_diff, versions
from engine.org.actors import actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion
from tests.conftest import FIXTURES
from tests.web.conftest import PASSWORD_HASH, csrf_of
from tests.web.flows import db, token_for

Login = Callable[[str], FlaskClient]
FOREIGN = FIXTURES / "foreign"
GOOD = FIXTURES / "good"


@pytest.fixture
def staff(session: Session, review_org: dict[str, Any]) -> None:
    """A process owner and an auditor besides review_org's people (with the web tests' password)."""
    org.add_role(session, code="process_owner", name="流程管理员")
    org.add_role(session, code="auditor", name="审计督查")
    for user in (org.add_user(session, username="owner", display_name="流程管理员甲", role_codes=["process_owner"]),
                 org.add_user(session, username="auditor", display_name="审计员乙", role_codes=["auditor"])):
        user.password_hash = PASSWORD_HASH
    session.commit()


@pytest.fixture(autouse=True)
def _fresh_spec_cache() -> Any:
    runtime._spec_cache.clear()
    yield
    runtime._spec_cache.clear()


@pytest.fixture
def clients(staff: None, app: Flask, login: Login) -> dict[str, FlaskClient]:
    """Logged-in clients of the process owner, the auditor, a reviewer and the admin."""
    return {name: login(name) for name in ("owner", "auditor", "fg", "admin")}


def minimal_files() -> dict[str, str]:
    return {"minimal.bpmn": (GOOD / "minimal.bpmn").read_text(encoding="utf-8"),
            **{p.name: p.read_text(encoding="utf-8") for p in (GOOD / "forms").glob("approve.*")}}


def post_json(client: FlaskClient, path: str, body: Any) -> Any:
    return client.post(path, json=body, headers={"X-CSRFToken": csrf_of(client, "/modeller"), "Accept": "application/json"})


def count_versions(app: Flask) -> int:
    with db(app) as s:
        return s.scalar(select(func.count()).select_from(ProcessVersion)) or 0


def version_id(app: Flask, key: str, version: int) -> int:
    with db(app) as s:
        found = s.scalar(select(ProcessVersion.id).join(ProcessDefinition).where(ProcessDefinition.key == key,
                                                                                ProcessVersion.version == version))
        assert found is not None
        return found


# --------------------------------------------------------------------------- permissions


def test_only_process_owners_and_admins_deploy_auditors_read(app: Flask, clients: dict[str, FlaskClient]) -> None:
    assert clients["owner"].get("/modeller").status_code == 200
    assert clients["auditor"].get("/modeller").status_code == 200
    assert clients["fg"].get("/modeller").status_code == 403  # a reviewer: neither owner nor auditor
    for name, status in (("auditor", 403), ("fg", 403)):
        assert post_json(clients[name], "/modeller/deploy", {"files": minimal_files()}).status_code == status
    assert count_versions(app) == 0
    response = post_json(clients["admin"], "/modeller/deploy", {"files": minimal_files()})
    assert response.status_code == 200 and response.json["deployed"][0]["version"] == 1
    page = clients["auditor"].get(f"/modeller/versions/{version_id(app, 'minimal', 1)}/edit").get_data(as_text=True)
    assert 'data-deploy-url=""' in page and "只读" in page


def test_auditors_change_nothing_anywhere(app: Flask, clients: dict[str, FlaskClient]) -> None:
    post_json(clients["owner"], "/modeller/deploy", {"files": minimal_files()})
    auditor = clients["auditor"]
    token = csrf_of(auditor, "/modeller")
    refused = auditor.post("/processes/minimal/start", data={"csrf_token": token, "title": "x"})
    assert refused.status_code == 403 and "审计人员只能查看" in refused.get_data(as_text=True)
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {token_for(app, 'auditor')}"}
    assert api.get("/api/instances", headers=bearer).status_code == 200
    assert api.post("/api/processes/minimal/instances", json={}, headers=bearer).status_code == 403
    assert auditor.post("/logout", data={"csrf_token": token}).status_code == 302  # leaving is allowed


# --------------------------------------------------------------------------- deploy from the modeller


def test_deploy_from_the_modeller_uses_the_cli_validation(app: Flask, clients: dict[str, FlaskClient]) -> None:
    owner = clients["owner"]
    ok = post_json(owner, "/modeller/deploy", {"files": minimal_files()})
    assert ok.status_code == 200
    [result] = ok.json["deployed"]
    assert (result["key"], result["version"], result["created"]) == ("minimal", 1, True)
    again = post_json(owner, "/modeller/deploy", {"files": minimal_files()})
    assert again.json["deployed"][0]["created"] is False  # unchanged files: no new version
    bad = dict(minimal_files())
    bad["minimal.bpmn"] = bad["minimal.bpmn"].replace(
        '<bpmn:sequenceFlow id="flow_approve_end" sourceRef="approve" targetRef="end" />',
        '<bpmn:sequenceFlow id="flow_approve_end" sourceRef="approve" targetRef="end">'
        '<bpmn:conditionExpression>approved &gt;&gt; &gt; 1</bpmn:conditionExpression></bpmn:sequenceFlow>')
    refused = post_json(owner, "/modeller/deploy", {"files": bad})
    assert refused.status_code == 422
    [problem] = refused.json["problems"]
    assert problem["element_id"] == "flow_approve_end" and problem["file"] == "minimal.bpmn" and problem["line"]
    assert "approved >> > 1" in problem["message"]
    assert count_versions(app) == 1  # nothing stored
    lanes = dict(minimal_files())
    lanes["minimal.bpmn"] = lanes["minimal.bpmn"].replace('name="审批部门"', 'name="不存在的部门"')
    unknown = post_json(owner, "/modeller/deploy", {"files": lanes})
    assert unknown.status_code == 422 and unknown.json["problems"][0]["element_id"] == "lane_departments"


def _misnamed_files() -> dict[str, str]:
    files = dict(minimal_files())
    files["minimal.bpmn"] = files["minimal.bpmn"].replace(
        '<spiffworkflow:property name="sla" value="3wd" />',
        '<spiffworkflow:property name="sla" value="3wd" />'
        '<spiffworkflow:property name="escalationUnit" value="\'no_such_unit\'" />'
        '<spiffworkflow:property name="assignee" value="\'fgj\'" />')
    return files


def test_the_modeller_deploy_says_what_the_model_names_wrongly_and_stores_it(
        app: Flask, clients: dict[str, FlaskClient]) -> None:
    """A unit or user may be created after the deploy: warnings beside the deployed version, pinned to the element."""
    owner = clients["owner"]
    ok = post_json(owner, "/modeller/deploy", {"files": _misnamed_files()})
    assert ok.status_code == 200 and count_versions(app) == 1
    [result] = ok.json["deployed"]
    assert result["created"] is True
    warnings = result["warnings"]
    assert [(w["element_id"], w["file"]) for w in warnings] == [("approve", "minimal.bpmn")] * 2
    assert "元素 approve 的 escalationUnit 'no_such_unit' 不是任何单位" in warnings[0]["message"]
    assert "元素 approve 的 assignee 'fgj' 是单位/角色而不是用户名" in warnings[1]["message"]
    assert all(w["line"] for w in warnings)
    owner.get("/lang/en")
    english = post_json(owner, "/modeller/deploy", {"files": _misnamed_files()}).json["deployed"][0]["warnings"]
    assert "escalationUnit 'no_such_unit' of element approve is no unit" in english[0]["message"], english
    assert "candidates" in english[1]["message"] and "不是" not in english[1]["message"]


def test_the_import_flashes_the_warnings(app: Flask, clients: dict[str, FlaskClient]) -> None:
    owner = clients["owner"]
    response = upload(owner, [("minimal.bpmn", _misnamed_files()["minimal.bpmn"].encode())]
                      + [(n, t.encode()) for n, t in minimal_files().items() if n.endswith(".json")])
    assert response.status_code == 302 and count_versions(app) == 1
    page = owner.get(response.headers["Location"]).get_data(as_text=True)
    assert "flash-warning" in page and "no_such_unit" in page and "approve" in page


@pytest.mark.parametrize("body", [None, {}, {"files": {}}, {"files": []}, {"files": {"a.bpmn": 5}},
                                  {"files": {"../../x.bpmn": "<x/>"}}, {"files": {"x" * 300 + ".bpmn": "<x/>"}},
                                  {"files": {"run.sh": "echo"}}, {"files": {"a.bpmn": "\x00\x01"}}])
def test_a_broken_deploy_request_is_refused_never_a_crash(app: Flask, clients: dict[str, FlaskClient], body: Any) -> None:
    response = post_json(clients["owner"], "/modeller/deploy", body)
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    assert count_versions(app) == 0


def test_files_targets_and_the_form_preview(app: Flask, clients: dict[str, FlaskClient]) -> None:
    owner = clients["owner"]
    post_json(owner, "/modeller/deploy", {"files": minimal_files()})
    vid = version_id(app, "minimal", 1)
    files = owner.get(f"/modeller/versions/{vid}/files.json").json
    assert files["main"] == "minimal.bpmn" and {f["name"] for f in files["files"]} == set(minimal_files())
    targets = owner.get("/modeller/targets.json").json
    assert {"code": "fgj", "name": "发改", "kind": "department"} in targets["units"]
    assert any(r["code"] == "reviewer" for r in targets["roles"]) and "start_process" in targets["services"]
    preview = post_json(owner, "/modeller/form-preview", {
        "schema": {"type": "object", "properties": {"opinion": {"type": "string", "title": "审批<意见>"}}}})
    assert preview.status_code == 200 and "审批&lt;意见&gt;" in preview.get_data(as_text=True)
    assert post_json(owner, "/modeller/form-preview", {"schema": "not an object"}).status_code == 422


def test_the_form_preview_refuses_a_form_past_the_limits_naming_the_field(clients: dict[str, FlaskClient]) -> None:
    """200,000 choices took 7 s to draw, on every keystroke of the form editor."""
    import time

    from engine import content_limits
    many = [f"v{i}" for i in range(200_000)]
    started = time.monotonic()
    refused = post_json(clients["owner"], "/modeller/form-preview", {
        "schema": {"type": "object", "properties": {"kind": {"type": "string", "enum": many}}}})
    assert time.monotonic() - started < 3
    assert refused.status_code == 422 and refused.json is not None
    assert refused.json["field"] == "schema" and "properties/kind/enum" in refused.json["message"], refused.json
    assert str(content_limits.MAX_CHOICES) in refused.json["message"].replace(",", "")
    ui = post_json(clients["owner"], "/modeller/form-preview", {
        "schema": {"type": "object", "properties": {"kind": {"type": "string"}}},
        "uischema": {"kind": {"ui:enumNames": many}}})
    assert ui.status_code == 422 and ui.json is not None and ui.json["field"] == "uischema", ui.json


def test_the_form_preview_refuses_more_patterns_than_deploy_takes(clients: dict[str, FlaskClient]) -> None:
    from engine import content_limits
    fields = {f"f{i}": {"type": "string", "pattern": f"^{i}$"} for i in range(content_limits.MAX_PATTERNS + 1)}
    refused = post_json(clients["owner"], "/modeller/form-preview", {"schema": {"type": "object",
                                                                                "properties": fields}})
    assert refused.status_code == 422 and refused.json is not None and refused.json["field"] == "schema"
    assert "/pattern" in refused.json["message"] and "patterns" in refused.json["message"], refused.json


# --------------------------------------------------------------------------- import from other tools


def upload(client: FlaskClient, files: list[tuple[str, bytes]]) -> Any:
    data: dict[str, Any] = {"csrf_token": csrf_of(client, "/modeller"),
                            "files": [(io.BytesIO(content), name) for name, content in files]}
    return client.post("/modeller/import", data=data, content_type="multipart/form-data")


def test_import_of_other_tools_exports(app: Flask, clients: dict[str, FlaskClient]) -> None:
    owner = clients["owner"]
    ok = upload(owner, [("leave.bpmn", (FOREIGN / "camunda7_leave_request.bpmn").read_bytes())])
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/modeller/processes/camunda_leave_request")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("purchase/spiffarena_purchase.bpmn", (FOREIGN / "spiffarena_purchase.bpmn").read_bytes())
        for form in (FOREIGN / "forms").glob("*.json"):
            archive.writestr(f"purchase/forms/{form.name}", form.read_bytes())
        archive.writestr("__MACOSX/._junk", b"\x00")
        archive.writestr("README.md", b"not part of a deployment")
    assert upload(owner, [("purchase.zip", buffer.getvalue())]).status_code == 302
    refused = upload(owner, [("invoice.bpmn", (FOREIGN / "camunda7_invoice.bpmn").read_bytes())])
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "Task_approve" in page and "camunda:assignee" in page
    assert count_versions(app) == 2


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


BROKEN_UPLOADS: dict[str, list[tuple[str, bytes]]] = {
    "nothing": [],
    "empty file": [("a.bpmn", b"")],
    "binary": [("a.bpmn", bytes(range(256)) * 10)],
    "not a zip": [("a.zip", b"PK\x03\x04 this is no zip")],
    "zip of nothing deployable": [("a.zip", _zip({"x.txt": b"hi"}))],
    "zip bomb": [("a.zip", _zip({"big.bpmn": b"<a>" + b" " * (6 * 1024 * 1024) + b"</a>"}))],
    "same name twice": [("a.zip", _zip({"x/a.bpmn": b"<a/>", "y/a.bpmn": b"<a/>"}))],
    "wrong kind": [("notes.docx", b"PK...")],
    "entity bomb": [("a.bpmn", b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>')],
    "dmn only": [("x.dmn", (GOOD / "review_departments.dmn").read_bytes())],
    "signavio draft": [("draft.xml", (FOREIGN / "signavio_nonexecutable.bpmn").read_bytes())],
    "bad name": [("../../etc/a\x01.bpmn", b"<a/>")],
}


@pytest.mark.parametrize("name", sorted(BROKEN_UPLOADS))
def test_no_uploaded_file_causes_a_server_error(app: Flask, clients: dict[str, FlaskClient], name: str) -> None:
    response = upload(clients["owner"], BROKEN_UPLOADS[name])
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:500])
    assert count_versions(app) == 0


# --------------------------------------------------------------------------- versions, downloads, diff


def two_versions(app: Flask, owner: FlaskClient, running_on_v1: int = 0) -> tuple[int, int]:
    """Deploy minimal v1, start instances on it (as fg), then v2 (SLA 3wd → 5wd, a lane added)."""
    post_json(owner, "/modeller/deploy", {"files": minimal_files()})
    with db(app) as s:
        for _ in range(running_on_v1):
            instances.start(s, process_key="minimal", actor=actor_for(s, "fg"))
    changed = dict(minimal_files())
    changed["minimal.bpmn"] = changed["minimal.bpmn"].replace('value="3wd"', 'value="5wd"').replace(
        '<bpmn:lane id="lane_departments" name="审批部门">',
        '<bpmn:lane id="lane_window" name="窗口" /><bpmn:lane id="lane_departments" name="审批部门">')
    assert post_json(owner, "/modeller/deploy", {"files": changed}).json["deployed"][0]["version"] == 2
    return version_id(app, "minimal", 1), version_id(app, "minimal", 2)


def test_versions_list_downloads_and_diff(app: Flask, clients: dict[str, FlaskClient], review_org: dict[str, Any]) -> None:
    owner = clients["owner"]
    v1, v2 = two_versions(app, owner, running_on_v1=1)
    page = owner.get("/modeller/processes/minimal").get_data(as_text=True)
    assert page.index('data-version="2"') < page.index('data-version="1"')  # newest first
    assert "流程管理员甲" in page and "迁移实例" in page
    zipped = owner.get(f"/modeller/versions/{v1}/download.zip")
    names = zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()
    assert sorted(names) == ["forms/approve.schema.json", "forms/approve.uischema.json", "minimal.bpmn"]
    one = owner.get(f"/modeller/versions/{v2}/files/minimal.bpmn")
    assert one.status_code == 200 and "attachment" in one.headers["Content-Disposition"] and b'value="5wd"' in one.data
    assert owner.get(f"/modeller/versions/{v2}/files/nope.bpmn").status_code == 404
    diff = owner.get(f"/modeller/processes/minimal/diff?old={v1}&new={v2}").get_data(as_text=True)
    assert 'class="diff-added" data-element-id="lane_window"' in diff
    assert 'class="diff-changed" data-element-id="approve"' in diff and "3wd" in diff and "5wd" in diff
    markers = json.loads(diff.split("data-markers='", 1)[1].split("'", 1)[0])
    assert markers == {"lane_window": "added", "approve": "changed"}


def test_the_element_diff_ignores_layout_and_names_what_changed() -> None:
    old = (GOOD / "review_process.bpmn").read_text(encoding="utf-8")
    new = (old.replace('<dc:Bounds x="', '<dc:Bounds x="1', 3)  # shapes moved: not a change
           .replace('decision == "reject"', 'decision in ("reject", "refuse")')
           .replace('id="escalate"', 'id="escalate_to_leader"'))
    changes = {(c.element_id, c.kind): c for c in bpmn_diff.diff_xml("review_process.bpmn", old, new)}
    assert ("escalate", "removed") in changes and ("escalate_to_leader", "added") in changes
    condition = changes[("flow_reject", "changed")].changes
    assert [(f.field, f.before, f.after) for f in condition] == [
        ("condition", 'decision == "reject"', 'decision in ("reject", "refuse")')]
    assert not any(element_id.endswith("_di") for element_id, _kind in changes)  # diagram layout is not compared
    moved_only = (GOOD / "review_process.bpmn").read_text(encoding="utf-8").replace('<dc:Bounds x="', '<dc:Bounds x="1')
    assert bpmn_diff.diff_xml("review_process.bpmn", old, moved_only) == []


# --------------------------------------------------------------------------- migration


def test_migration_preview_and_migrate_one_or_many(app: Flask, clients: dict[str, FlaskClient],
                                                   review_org: dict[str, Any]) -> None:
    owner = clients["owner"]
    v1, v2 = two_versions(app, owner, running_on_v1=2)
    with db(app) as s:
        first, second = s.scalars(select(ProcessInstance.id).order_by(ProcessInstance.id)).all()
    page = owner.get(f"/modeller/versions/{v1}/migrate?to={v2}").get_data(as_text=True)
    assert f'data-instance="{first}"' in page and "可以迁移" in page and "approve" in page
    token = csrf_of(owner, f"/modeller/versions/{v1}/migrate?to={v2}")
    auditor = clients["auditor"]
    assert auditor.post(f"/modeller/versions/{v1}/migrate", data={
        "csrf_token": csrf_of(auditor, "/modeller"), "to": v2, "instance": first}).status_code == 403
    done = owner.post(f"/modeller/versions/{v1}/migrate",
                      data={"csrf_token": token, "to": v2, "instance": [str(first), str(second)]})
    assert done.status_code == 200 and "已迁移的实例" in done.get_data(as_text=True)
    with db(app) as s:
        assert {s.get(ProcessInstance, i).version_id for i in (first, second)} == {v2}  # type: ignore[union-attr]


def test_the_instance_page_draws_the_version_it_runs_on_right_after_a_migration(
        app: Flask, clients: dict[str, FlaskClient], review_org: dict[str, Any]) -> None:
    """The page's diagram came from /instances/<id>/diagram.bpmn, kept by the browser for an hour (max-age=3600):
    after a migration the page drew the old version's diagram, the new version's states on it. Its URL names the
    version now (cached long, never stale); any other asks again every time (ETag: 304 while unchanged)."""
    owner, fg = clients["owner"], clients["fg"]
    v1, v2 = two_versions(app, owner, running_on_v1=1)
    with db(app) as s:
        iid = s.scalars(select(ProcessInstance.id)).one()

    def drawn() -> str:
        found = re.search(r'data-jz-diagram="([^"]+)"', fg.get(f"/instances/{iid}").get_data(as_text=True))
        assert found is not None
        return html.unescape(found.group(1))

    before = drawn()
    first = fg.get(before)
    assert first.status_code == 200 and b'value="3wd"' in first.data and first.cache_control.max_age == 3600
    migrated = owner.post(f"/modeller/versions/{v1}/migrate", data={
        "csrf_token": csrf_of(owner, f"/modeller/versions/{v1}/migrate?to={v2}"), "to": v2, "instance": str(iid)})
    assert migrated.status_code == 200
    after = drawn()
    assert after != before
    second = fg.get(after)
    assert b'value="5wd"' in second.data and b'value="3wd"' not in second.data
    for url in (before, f"/instances/{iid}/diagram.bpmn", f"/instances/{iid}/diagram.bpmn?v=x"):
        asked = fg.get(url)  # a page from before the migration, the link opened by hand, a malformed version
        assert asked.status_code == 200 and b'value="5wd"' in asked.data, url
        assert asked.cache_control.max_age == 0 and asked.headers.get("ETag"), url
        again = fg.get(url, headers={"If-None-Match": asked.headers["ETag"]})
        assert again.status_code == 304 and not again.data, url


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_migration_meeting_an_instance_held_long_says_it_is_busy_and_moves_none(
        app: Flask, clients: dict[str, FlaskClient], review_org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A long transaction holds one of the chosen instances: the page waits a little (LOCK_WAIT_SECONDS), then says
    which instance is busy and to try again (409), and moves none of them; it did hang as long as the holder."""
    monkeypatch.setattr(versions, "LOCK_WAIT_SECONDS", 0.5)
    owner = clients["owner"]
    v1, v2 = two_versions(app, owner, running_on_v1=2)
    with db(app) as s:
        first, second = s.scalars(select(ProcessInstance.id).order_by(ProcessInstance.id)).all()
    token = csrf_of(owner, f"/modeller/versions/{v1}/migrate?to={v2}")
    with db(app) as holder:
        holder.execute(select(ProcessInstance.id).where(ProcessInstance.id == second).with_for_update())
        busy = owner.post(f"/modeller/versions/{v1}/migrate",
                          data={"csrf_token": token, "to": v2, "instance": [str(first), str(second)]})
        holder.rollback()
    assert busy.status_code == 409, busy.status_code
    assert f"流程实例 {second} 正在被其他操作处理，请稍后重试" in busy.get_data(as_text=True)
    with db(app) as s:
        assert {s.get(ProcessInstance, i).version_id for i in (first, second)} == {v1}  # type: ignore[union-attr]
    again = owner.post(f"/modeller/versions/{v1}/migrate",
                       data={"csrf_token": token, "to": v2, "instance": [str(first), str(second)]})
    assert again.status_code == 200 and "已迁移的实例" in again.get_data(as_text=True)


def test_an_unsafe_migration_is_refused_with_the_reason(app: Flask, clients: dict[str, FlaskClient],
                                                        review_org: dict[str, Any]) -> None:
    owner = clients["owner"]
    post_json(owner, "/modeller/deploy", {"files": minimal_files()})
    v1 = version_id(app, "minimal", 1)
    with db(app) as s:
        waiting = instances.start(s, process_key="minimal", actor=actor_for(s, "fg")).id
    renamed = dict(minimal_files())
    renamed["minimal.bpmn"] = renamed["minimal.bpmn"].replace('"approve"', '"approve_v2"').replace(
        ">approve<", ">approve_v2<")
    assert post_json(owner, "/modeller/deploy", {"files": renamed}).status_code == 200
    v2 = version_id(app, "minimal", 2)
    preview = owner.get(f"/modeller/versions/{v1}/migrate?to={v2}").get_data(as_text=True)
    assert "不能迁移" in preview and "ready task &#39;审批&#39; (approve) does not exist in version 2" in preview
    token = csrf_of(owner, f"/modeller/versions/{v1}/migrate?to={v2}")
    result = owner.post(f"/modeller/versions/{v1}/migrate", data={"csrf_token": token, "to": v2, "instance": waiting})
    assert result.status_code == 200 and f'class="flash flash-error refused" data-instance="{waiting}"' in \
        result.get_data(as_text=True)
    with db(app) as s:
        assert s.get(ProcessInstance, waiting).version_id == v1  # type: ignore[union-attr]


def test_the_modeller_speaks_english(app: Flask, clients: dict[str, FlaskClient]) -> None:
    owner = clients["owner"]
    post_json(owner, "/modeller/deploy", {"files": minimal_files()})
    owner.get("/lang/en")
    assert "Modeller" in owner.get("/modeller").get_data(as_text=True)
    page = owner.get(f"/modeller/versions/{version_id(app, 'minimal', 1)}/edit").get_data(as_text=True)
    labels = json.loads(page.split("data-i18n='", 1)[1].split("'", 1)[0])
    assert labels["deploy"] == "Deploy as a new version" and labels["sla"] == "SLA"
