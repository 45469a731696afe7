"""Two people on one plan page: a form posted from a page opened before someone else saved is refused (409, "reload"),
never a silent overwrite of what they saved; a form without its version is refused the same way; the same form sent
twice (a double click) changes nothing the second time, and a double click on a create form makes one row."""
from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from engine.org.models import User
from plan.projects.models import LibraryMember, Project, ProjectLibrary
from tests.web.conftest import form_at
from tests.web.test_project_entry_web import OFFICER, SECOND, app, count, create, login  # noqa: F401

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
