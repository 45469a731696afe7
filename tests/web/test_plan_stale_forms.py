"""Two people on one plan page: a form posted from a page opened before someone else saved is refused (409, "reload"),
never a silent overwrite of what they saved; a form without its version is refused the same way; the same form sent
twice (a double click) changes nothing the second time, and a double click on a create form makes one row."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.models import User
from plan import meetings
from plan.meetings.models import MeetingDecision
from plan.projects.models import LibraryMember, Project, ProjectLibrary, ProjectNeed
from tests.web.conftest import form_at
from tests.web.test_meetings_web import login as log_in_to
from tests.web.test_meetings_web import meeting_world
from tests.web.test_project_entry_web import (  # noqa: F401
    OFFICER,
    SECOND,
    app,
    count,
    create,
    import_rows,
    login,
    upload,
)

CITY_LEADER = "wangjianguo"


def refused_as_stale(response: Any) -> None:
    assert response.status_code == 409, (response.status_code, response.get_data(as_text=True)[:800])
    assert "刷新" in response.get_data(as_text=True)


def project_of(flask_app: Flask, pid: int) -> Project:
    with flask_app.extensions["jzflow.sessionmaker"]() as s:
        project = s.get(Project, pid)
        assert project is not None
        s.expunge(project)
        return project


def libraries_of(flask_app: Flask, pid: int) -> list[str]:
    with flask_app.extensions["jzflow.sessionmaker"]() as s:
        return sorted(s.scalars(select(ProjectLibrary.code).join(LibraryMember).where(LibraryMember.project_id == pid)))


def test_planned_dates_from_a_stale_page_do_not_undo_another_officers(app: Flask, login: Any) -> None:  # noqa: F811
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)
    page, action = f"/projects/{pid}", f"/projects/{pid}/plan"
    stale, fresh = form_at(officer, page, action), form_at(second, page, action)
    assert second.post(action, data={**fresh, "planned_sign": "2026-01-05"}).status_code == 302
    refused_as_stale(officer.post(action, data={**stale, "planned_start": "2026-06-01"}))
    assert project_of(app, pid).planned_sign.isoformat() == "2026-01-05"
    assert project_of(app, pid).planned_start is None
    missing = {k: v for k, v in form_at(officer, page, action).items() if k != "seen"}
    refused_as_stale(officer.post(action, data={**missing, "planned_start": "2026-06-01"}))
    again = form_at(officer, page, action)
    assert officer.post(action, data={**again, "planned_start": "2026-06-01"}).status_code == 302
    assert project_of(app, pid).planned_sign.isoformat() == "2026-01-05"
    # 倒排工期 rewrites every planned date: from a stale page it is refused the same way
    stale = form_at(officer, page, f"/projects/{pid}/backward")
    assert second.post(action, data={**form_at(second, page, action), "planned_produce": "2028-01-05"}
                       ).status_code == 302
    refused_as_stale(officer.post(f"/projects/{pid}/backward", data={**stale, "planned_complete": "2027-06-30"}))
    assert project_of(app, pid).planned_produce.isoformat() == "2028-01-05"


def test_the_same_planned_dates_sent_twice_are_saved_once_without_a_refusal(app: Flask, login: Any) -> None:  # noqa: F811
    officer = login(OFFICER)
    pid = create(officer)
    action = f"/projects/{pid}/plan"
    posted = {**form_at(officer, f"/projects/{pid}", action), "planned_complete": "2027-03-31"}
    assert [officer.post(action, data=posted).status_code for _ in range(2)] == [302, 302]


def test_libraries_and_leader_from_a_stale_page_do_not_undo_another_officers(app: Flask, login: Any) -> None:  # noqa: F811
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)  # in key and land
    page, action = f"/projects/{pid}", f"/projects/{pid}/libraries"
    stale, fresh = form_at(officer, page, action), form_at(second, page, action)
    assert second.post(action, data={**fresh, "libraries": ["key", "land", "government"]}).status_code == 302
    refused_as_stale(officer.post(action, data={**stale, "libraries": ["key", "land", "investment"]}))
    assert libraries_of(app, pid) == ["government", "key", "land"]
    missing = {k: v for k, v in form_at(officer, page, action).items() if k != "seen"}
    refused_as_stale(officer.post(action, data=missing))
    action = f"/projects/{pid}/leader"
    stale, fresh = form_at(officer, page, action), form_at(second, page, action)
    assert second.post(action, data={**fresh, "leader": CITY_LEADER}).status_code == 302
    refused_as_stale(officer.post(action, data={**stale, "leader": ""}))
    with app.extensions["jzflow.sessionmaker"]() as s:
        assert s.scalar(select(User.username).join(Project, Project.responsible_leader_id == User.id)
                        .where(Project.id == pid)) == CITY_LEADER
def test_a_double_click_on_a_create_form_makes_one_row(app: Flask, login: Any) -> None:  # noqa: F811
    officer = login(OFFICER)
    fields = form_at(officer, "/projects/new", "/projects/new")
    posted = {**fields, "name": "双击录入的项目", "investment": "15000", "unit_code": "tcj", "libraries": ["key"],
              "category": "key"}
    answers = [officer.post("/projects/new", data=posted) for _ in range(2)]
    assert [a.status_code for a in answers] == [302, 302]
    assert answers[0].headers["Location"] == answers[1].headers["Location"]  # the second is shown the first's project
    assert count(app, Project, name="双击录入的项目") == 1
    pid = int(answers[0].headers["Location"].rsplit("/", 1)[1])
    action = f"/projects/{pid}/needs"
    posted = {**form_at(officer, f"/projects/{pid}", action), "kind": "land", "description": "用地指标"}
    assert [officer.post(action, data=posted).status_code for _ in range(2)] == [302, 302]
    assert count(app, ProjectNeed, project_id=pid) == 1
    # a second, deliberate entry of the same words is a new form: a second row
    posted = {**form_at(officer, f"/projects/{pid}", action), "kind": "land", "description": "用地指标"}
    assert officer.post(action, data=posted).status_code == 302
    assert count(app, ProjectNeed, project_id=pid) == 2


@pytest.fixture
def meeting_app(db_url: str, session: Session, frozen: Any) -> Iterator[Flask]:
    flask_app = meeting_world(db_url, session)
    yield flask_app
    flask_app.extensions["jzflow.engine"].dispose()


def test_a_meeting_decision_corrected_from_a_stale_page_does_not_undo_anothers(meeting_app: Flask) -> None:
    chair, clerk = log_in_to(meeting_app, CITY_LEADER), log_in_to(meeting_app, "tangjian")
    with Session(meeting_app.extensions["jzflow.engine"]) as s:
        meeting = meetings.recent(s)[0]
        code = meeting.agenda[0]["code"]
    page, action = f"/meetings/{meeting.id}", f"/meetings/{meeting.id}/decisions"

    def form(client: FlaskClient) -> dict[str, Any]:
        html = client.get(page).get_data(as_text=True)
        row = re.search(rf'<tr data-project="{re.escape(code)}">(.*?)</tr>', html, re.S)
        assert row
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', row.group(1)))
        fields.update(re.findall(r'<input name="(\w+)" maxlength="\d+" value="([^"]*)">', row.group(1)))
        return fields
    stale, fresh = form(clerk), form(chair)
    assert chair.post(action, data={**fresh, "outcome": "coordinate", "decision": "协调用地指标。",
                                    "unit_code": "zrzyj", "due_on": "2025-09-30"}).status_code == 302
    refused_as_stale(clerk.post(action, data={**stale, "outcome": "advance", "decision": "按计划推进。"}))
    with Session(meeting_app.extensions["jzflow.engine"]) as s:
        assert [d.decision for d in s.scalars(select(MeetingDecision))] == ["协调用地指标。"]
    # reopened, the correction keeps the 落实单位 it does not change
    again = form(clerk)
    assert again["unit_code"] == "zrzyj"
    assert clerk.post(action, data={**again, "outcome": "coordinate", "decision": "协调用地指标，本月底前。",
                                    "due_on": "2025-09-30"}).status_code == 302
    missing = {k: v for k, v in form(clerk).items() if k != "seen"}
    refused_as_stale(clerk.post(action, data={**missing, "outcome": "advance", "decision": "按计划推进。"}))


def _confirm_form(preview: Any) -> dict[str, str]:
    body = preview.get_data(as_text=True).split('action="/projects/import/confirm"')[1].split("</form>")[0]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', body))


def test_an_import_confirmed_after_someone_changed_its_projects_is_refused(app: Flask, login: Any) -> None:  # noqa: F811
    """The preview showed what storing would do to the projects the file names; a confirmation after another officer
    changed one of them would overwrite that change unseen. Refused (409, upload again), nothing stored."""
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)
    code = project_of(app, pid).code
    preview = upload(officer, import_rows([[code, "", "", "", "", "", "", "", "2026-12-01", "2027-09-30",
                                            "", "", "", ""]]))
    assert preview.status_code == 200, preview.get_data(as_text=True)[-1500:]
    fields = _confirm_form(preview)
    page, action = f"/projects/{pid}", f"/projects/{pid}/plan"
    assert second.post(action, data={**form_at(second, page, action), "planned_complete": "2027-12-31"}
                       ).status_code == 302
    refused_as_stale(officer.post("/projects/import/confirm", data=fields))
    assert project_of(app, pid).planned_complete.isoformat() == "2027-12-31"
    fresh = _confirm_form(upload(officer, import_rows([[code, "", "", "", "", "", "", "", "2026-12-01", "2027-09-30",
                                                        "", "", "", ""]])))
    refused_as_stale(officer.post("/projects/import/confirm", data={k: v for k, v in fresh.items() if k != "seen"}))
    assert officer.post("/projects/import/confirm", data=fresh).status_code == 302
    assert project_of(app, pid).planned_complete.isoformat() == "2027-09-30"
