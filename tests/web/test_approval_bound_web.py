"""The application form of a 并联审批 started for a project, over HTTP: its project code and stage are shown filled in
and read-only; what a browser sends is accepted, another code or stage is refused at its field (the page, 422) or
named in `fields` (the API, 422), nothing kept; the API's task names the fixed values; another unit's user gets 404.
(tests/processes/test_approval_bound_form.py has the rule through the services.)"""
from __future__ import annotations

import html as markup
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from engine import runtime
from engine.org.actors import actor_for
from plan.projects import approvals
from tests import dashboard_data, steps
from tests.engine.test_project_slice import OFFICER, OUTSIDER, new_project
from tests.web.conftest import app_on, csrf_of
from tests.web.flows import Api, db, token_for
from tests.web.test_documents_pages import client_of

FILLED = {"f/applicant_unit": "青岛某装备有限公司", "f/contact_name": "张三", "f/contact_phone": "13800000000",
          "f/materials": ["application_form"]}


@pytest.fixture
def bound(db_url: str, session: Session, frozen: Any) -> Iterator[tuple[Flask, str, int, int]]:
    dashboard_data.seed_and_deploy(session)
    project = new_project(session)
    row = approvals.start_stage(session, project, stage="land_planning", actor=actor_for(session, OFFICER),
                                applicant=OFFICER)
    session.commit()
    assert row.instance_id is not None
    iid, code = row.instance_id, project.code
    task_id = steps.only_task(session, iid, "submit_application").id
    for app in app_on(db_url, session, RATELIMIT_ENABLED=False):
        yield app, code, iid, task_id
        runtime._spec_cache.clear()


def browser_sends(page: str, action: str) -> dict[str, Any]:
    """What a browser submits of the form posting to `action`: enabled inputs, checked radios and checkboxes."""
    found = re.search(rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
    assert found, page[:2000]
    sent: dict[str, Any] = {}
    for tag in re.findall(r"<input [^>]*>", found.group(1)):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name is None or re.search(r"\sdisabled[\s>]", tag):
            continue
        if re.search(r'type="(radio|checkbox)"', tag) and not re.search(r"\schecked[\s>]", tag):
            continue
        sent.setdefault(name.group(1), []).append(markup.unescape(value.group(1)) if value else "")
    return {k: v if len(v) > 1 else v[0] for k, v in sent.items()}


def stored(app: Flask, iid: int) -> dict[str, Any]:
    with db(app) as s:
        return dict(runtime.load(s, iid).workflow.last_task.data)


def kept(app: Flask, iid: int) -> tuple[Any, ...]:
    with db(app) as s:
        return steps.kept(s, iid)


def test_the_page_shows_the_project_and_stage_read_only_and_a_browsers_submission_keeps_them(
        bound: tuple[Flask, str, int, int]) -> None:
    app, code, iid, task_id = bound
    client = client_of(app, OFFICER)
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    (code_input,) = re.findall(r'<input [^>]*name="f/project_code"[^>]*>', page)
    assert f'value="{code}"' in code_input and " readonly" in code_input
    stages = re.findall(r'<input [^>]*name="f/stage"[^>]*>', page)
    assert stages and all(" disabled" in s for s in stages)
    assert [s for s in stages if " checked" in s] == [s for s in stages if 'value="land_planning"' in s]
    sent = {**browser_sends(page, f"/tasks/{task_id}/complete"), **FILLED, "csrf_token": csrf_of(client, "/inbox")}
    assert "f/stage" not in sent  # a disabled radio is not sent: the stage is the approval's
    response = client.post(f"/tasks/{task_id}/complete", data=sent)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    data = stored(app, iid)
    assert (data["project_code"], data["stage"]) == (code, "land_planning")


def test_another_code_from_the_page_is_refused_at_its_field_and_shown_again_as_the_projects(
        bound: tuple[Flask, str, int, int]) -> None:
    app, code, iid, task_id = bound
    client = client_of(app, OFFICER)
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    before = kept(app, iid)
    sent = {**browser_sends(page, f"/tasks/{task_id}/complete"), **FILLED, "f/project_code": "XM-2025-0999",
            "f/stage": "construction_permit", "csrf_token": csrf_of(client, "/inbox")}
    response = client.post(f"/tasks/{task_id}/complete", data=sent)
    assert response.status_code == 422
    again = response.get_data(as_text=True)
    error = re.search(r'id="([^"]*project_code[^"]*)-error"[^>]*>(.*?)</', again, re.S)
    assert error and code in markup.unescape(error.group(2)) and "项目代码" in error.group(2), again[:3000]
    assert "this approval" not in again  # the Chinese half on a Chinese page
    assert re.search(r'id="[^"]*stage[^"]*-error"', again)
    (code_input,) = re.findall(r'<input [^>]*name="f/project_code"[^>]*>', again)
    assert f'value="{code}"' in code_input  # shown again as the project's, not as typed
    checked = [s for s in re.findall(r'<input [^>]*name="f/stage"[^>]*>', again) if " checked" in s]
    assert len(checked) == 1 and 'value="land_planning"' in checked[0]
    assert kept(app, iid) == before
    assert stored(app, iid)["project_code"] == code


def test_the_api_names_the_fixed_values_and_refuses_another_naming_the_field(
        bound: tuple[Flask, str, int, int]) -> None:
    app, code, iid, task_id = bound
    api = Api(app, token_for(app, OFFICER))
    outsider = Api(app, token_for(app, OUTSIDER))  # another unit's user
    shown = api.get(f"/api/tasks/{task_id}").json
    assert shown["fixed"] == {"project_code": code, "stage": "land_planning"}
    assert shown["form_ui"]["project_code"]["ui:readonly"] is True and shown["form_ui"]["stage"]["ui:readonly"] is True
    before = kept(app, iid)
    data = {"project_name": "胶州智能装备产业园", "project_type": "service", "investment": 8000,
            "applicant_unit": "青岛某装备有限公司", "contact_name": "张三", "contact_phone": "13800000000",
            "materials": ["application_form"]}
    refused = api.post(f"/api/tasks/{task_id}/complete", {"data": {**data, "project_code": code.lower(),
                                                                    "stage": "earthwork_permit"}})
    assert refused.status_code == 422 and refused.json["error"] == "form_invalid"
    fields = {f["field"]: f["message"] for f in refused.json["fields"]}
    assert sorted(fields) == ["project_code", "stage"]
    assert code in fields["project_code"] and "(this approval" in fields["project_code"]  # Chinese, then English
    assert kept(app, iid) == before
    assert outsider.post(f"/api/tasks/{task_id}/complete", {"data": data}).status_code == 404  # no such task
    assert kept(app, iid) == before
    done = api.post(f"/api/tasks/{task_id}/complete", {"data": data})  # left out: the project's
    assert done.status_code == 200, done.json
    stored_now = stored(app, iid)
    assert (stored_now["project_code"], stored_now["stage"]) == (code, "land_planning")


def test_an_english_page_reads_the_refusal_in_english(bound: tuple[Flask, str, int, int]) -> None:
    app, _code, _iid, task_id = bound
    client: FlaskClient = client_of(app, OFFICER)
    client.set_cookie("lang", "en")
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    sent = {**browser_sends(page, f"/tasks/{task_id}/complete"), **FILLED, "f/project_code": "XM-2025-0999",
            "csrf_token": csrf_of(client, "/inbox")}
    again = client.post(f"/tasks/{task_id}/complete", data=sent).get_data(as_text=True)
    assert "this approval was started for project" in again and "本审批" not in again


def test_bulk_completion_of_two_projects_applications_keeps_each_ones_code_and_stage(
        bound: tuple[Flask, str, int, int]) -> None:
    app, code, iid, task_id = bound
    with db(app) as s:  # a second project of the same unit, its approval started by the same applicant
        other = new_project(s, name="胶州新材料产业园")
        row = approvals.start_stage(s, other, stage=approvals.first_stage(other), actor=actor_for(s, OFFICER),
                                    applicant=OFFICER)
        s.commit()
        assert row.instance_id is not None
        other_iid, other_code = row.instance_id, other.code
        other_task = steps.only_task(s, other_iid, "submit_application").id
    client = client_of(app, OFFICER)
    ids = [task_id, other_task]
    page = client.get("/inbox/bulk/complete", query_string={"ids": ids}).get_data(as_text=True)
    (code_input,) = re.findall(r'<input [^>]*name="f/project_code"[^>]*>', page)
    assert " readonly" in code_input and 'value=""' in code_input  # each task's own: none shown for all
    assert all(" disabled" in s for s in re.findall(r'<input [^>]*name="f/stage"[^>]*>', page))
    sent = {"ids": ids, "action": "complete", "confirm": "1", "f/project_name": "共同名称", "f/project_type": "service",
            "f/investment": "8000", **FILLED, "csrf_token": csrf_of(client, "/inbox")}
    response = client.post("/inbox/bulk", data=sent)
    assert response.status_code == 200 and "成功 2 项" in response.get_data(as_text=True)
    assert (stored(app, iid)["project_code"], stored(app, iid)["stage"]) == (code, "land_planning")
    assert (stored(app, other_iid)["project_code"], stored(app, other_iid)["stage"]) == (other_code, "land_planning")
    assert code != other_code
