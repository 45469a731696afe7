"""项目录入 by two officers at the same moment, on PostgreSQL (on SQLite, BEGIN IMMEDIATE serialises writers).

Each race makes both requests pass their checks before either writes (a barrier), so the check-then-insert
windows are really open: new project codes (XM-YYYY-NNNN), a stage recorded twice, 签约 and 开工 at once,
竣工 reported twice, the same library added twice. Both officers get an answer (never a 500), the database keeps
one row, and a project's stage never goes backwards.

Once the services lock the project (or the code counter), the second request waits for the lock instead of
reaching the barrier: the barrier's short timeout lets the first one go on.
"""
from __future__ import annotations

import re
import threading
import time
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy
from flask import Flask

from plan.projects import core, edits, entry, imports
from plan.projects.models import LibraryMember, Project, ProjectLibrary, ProjectStage, StageReport
from tests.web.conftest import form_at
from tests.web.flows import two_at_once
from tests.web.test_project_entry_web import OFFICER, SECOND, app, count, create, form_post, import_rows, login, upload  # noqa: F401

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

MEET = 2.0  # seconds a request waits at a barrier for the other (which, once fixed, waits for a lock instead)



def meet(barrier: threading.Barrier) -> None:
    try:
        barrier.wait(timeout=MEET)
    except threading.BrokenBarrierError:
        pass


def meet_after(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str) -> None:
    original, barrier = getattr(module, name), threading.Barrier(2)

    def wrapper(*a: Any, **k: Any) -> Any:
        result = original(*a, **k)
        meet(barrier)
        return result
    monkeypatch.setattr(module, name, wrapper)


def meet_before(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str) -> None:
    original, barrier = getattr(module, name), threading.Barrier(2)

    def wrapper(*a: Any, **k: Any) -> Any:
        meet(barrier)
        return original(*a, **k)
    monkeypatch.setattr(module, name, wrapper)


def statuses(answers: list[Any]) -> list[int]:
    return [a.status_code for a in answers]


def test_two_officers_entering_projects_at_once_both_get_a_project_with_its_own_code(
        app: Flask, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    officer, second = login(OFFICER), login(SECOND)
    meet_before(monkeypatch, entry, "next_code")  # both ask for a code together

    def enter(client: Any, name: str) -> Any:
        return form_post(client, "/projects/new", {
            "name": name, "enterprise": "青岛某公司", "investment": "15000", "project_type": "industrial",
            "unit_code": "tcj", "libraries": ["key"], "category": "key"})
    answers = two_at_once(lambda: enter(officer, "项目甲"), lambda: enter(second, "项目乙"))
    assert statuses(answers) == [302, 302], statuses(answers)
    ids = [int(a.headers["Location"].rsplit("/", 1)[1]) for a in answers]
    with app.extensions["jzflow.sessionmaker"]() as s:
        codes = [s.get(Project, i).code for i in ids]
    year = core.today().year
    assert len(set(codes)) == 2 and all(re.fullmatch(rf"XM-{year}-\d{{4}}", c) for c in codes), codes


def test_two_officers_recording_signing_at_once_record_it_once_without_a_500(
        app: Flask, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)
    barrier = threading.Barrier(2)

    class MeetingStage:  # both requests build their 签约 row together: both passed the check
        def __getattr__(self, name: str) -> Any:
            return getattr(ProjectStage, name)

        def __call__(self, **values: Any) -> ProjectStage:
            meet(barrier)
            return ProjectStage(**values)
    monkeypatch.setattr(core, "ProjectStage", MeetingStage())
    today = core.today().isoformat()

    def sign(client: Any, evidence: str) -> Any:
        return form_post(client, f"/projects/{pid}/stage", {"stage": "signed", "on": today, "evidence": evidence})
    answers = two_at_once(lambda: sign(officer, "合同 HT-1"), lambda: sign(second, "合同 HT-2"))
    assert count(app, ProjectStage, project_id=pid, stage="signed") == 1
    assert sorted(statuses(answers)) == [302, 422], statuses(answers)
    refused = next(a for a in answers if a.status_code == 422).get_data(as_text=True)
    assert "项目已处于签约阶段" in refused  # the second officer is told the first one signed it


def test_signing_and_starting_recorded_at_once_never_leave_the_project_ahead_of_signing(
        app: Flask, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)
    original, barrier = entry._check_stage, threading.Barrier(2)

    def checked(session: Any, project: Project, stage: str, on: Any) -> None:
        original(session, project, stage, on)
        meet(barrier)
        if stage == "signed":
            time.sleep(0.5)  # 签约 holds the project a moment: 开工 waits for it, unless it came first
    monkeypatch.setattr(entry, "_check_stage", checked)
    today = core.today().isoformat()
    answers = two_at_once(
        lambda: form_post(officer, f"/projects/{pid}/stage", {"stage": "signed", "on": today, "evidence": "合同"}),
        lambda: form_post(second, f"/projects/{pid}/stage", {"stage": "started", "on": today, "evidence": "施工许可"}))
    assert all(code < 500 for code in statuses(answers)), statuses(answers)
    with app.extensions["jzflow.sessionmaker"]() as s:
        project = s.get(Project, pid)
        assert project is not None
        reached = sorted(s.scalars(sqlalchemy.select(ProjectStage.stage).where(ProjectStage.project_id == pid)))
    # 开工 waited for 签约 and followed it, or came first and was told 签约 comes next: never ahead of 签约
    if statuses(answers) == [302, 302]:
        assert project.stage == "started" and reached == ["lead", "signed", "started"], (project.stage, reached)
    else:
        assert statuses(answers) == [302, 422] and project.stage == "signed", (statuses(answers), project.stage)
        assert "下一阶段应为签约" in answers[1].get_data(as_text=True)
        assert form_post(second, f"/projects/{pid}/stage", {"stage": "started", "on": today, "evidence": "施工许可"}
                         ).status_code == 302
    # and 开工 is not lost: 竣工 may follow
    assert form_post(officer, f"/projects/{pid}/stage", {"stage": "completed", "on": today, "evidence": "竣工验收"}
                     ).status_code == 302


def test_two_officers_reporting_completion_at_once_file_one_report(
        app: Flask, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)
    today = core.today().isoformat()
    for stage in ("signed", "started"):
        assert form_post(officer, f"/projects/{pid}/stage", {"stage": stage, "on": today, "evidence": "证"}
                         ).status_code == 302
    meet_after(monkeypatch, entry, "_check_stage")

    def report(client: Any, evidence: str) -> Any:
        return form_post(client, f"/projects/{pid}/stage", {"stage": "completed", "on": today, "evidence": evidence})
    answers = two_at_once(lambda: report(officer, "竣工验收备案 1"), lambda: report(second, "竣工验收备案 2"))
    assert sorted(statuses(answers)) == [302, 422], statuses(answers)
    assert count(app, StageReport, project_id=pid, stage="completed") == 1
    assert "竣工已报送" in next(a for a in answers if a.status_code == 422).get_data(as_text=True)


def test_two_officers_adding_the_same_library_at_once_both_get_an_answer(
        app: Flask, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)  # in key and land: both keep them (nothing deleted, nothing locked by a delete)
    meet_after(monkeypatch, edits, "libraries_named")
    seen = form_at(officer, f"/projects/{pid}", f"/projects/{pid}/libraries")["seen"]  # both pages show key, land

    def choose(client: Any) -> Any:
        return form_post(client, f"/projects/{pid}/libraries", {"libraries": ["key", "land", "government"],
                                                                "seen": seen})
    answers = two_at_once(lambda: choose(officer), lambda: choose(second))
    assert statuses(answers) == [302, 302], statuses(answers)
    with app.extensions["jzflow.sessionmaker"]() as s:
        codes = sorted(s.scalars(sqlalchemy.select(ProjectLibrary.code).join(LibraryMember)
                                 .where(LibraryMember.project_id == pid)))
    assert codes == ["government", "key", "land"]


def confirm_form(client: Any, rows: list[list[Any]]) -> dict[str, str]:
    """Preview an import and return its confirm form's fields (what the browser posts on 确认保存)."""
    html = upload(client, import_rows(rows)).get_data(as_text=True)
    fields = dict(re.findall(r'<input type="hidden" name="([a-z0-9_]+)" value="([^"]*)">',
                             html[html.index('action="/projects/import/confirm"'):]))
    assert fields.get("payload") and fields.get("sha256"), html[-1500:]
    return fields


def test_an_import_confirmed_twice_at_once_adds_each_project_once(
        app: Flask, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    officer, again = login(OFFICER), app.test_client()  # a double click: the same browser's form, twice
    rows = [["", f"导入新项目{i}", "甲公司", 100 + i, "industrial", "tcj", "key", "key", "", "", "", "", "", ""]
            for i in range(3)]
    fields = confirm_form(officer, rows)
    for cookie in officer._cookies.values():  # the same session (and so the same CSRF token)
        again.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    meet_before(monkeypatch, imports, "run")  # both pass their checks before either stores a row
    answers = two_at_once(lambda: officer.post("/projects/import/confirm", data=fields),
                          lambda: again.post("/projects/import/confirm", data=fields))
    assert statuses(answers) == [302, 302], [a.get_data(as_text=True)[-600:] for a in answers]
    assert [count(app, Project, name=f"导入新项目{i}") for i in range(3)] == [1, 1, 1]
    # posted once more later (the answer was lost: the server died after its commit; the back button): nothing new,
    # and the officer is told the file was imported already
    response = officer.post("/projects/import/confirm", data=fields, follow_redirects=True)
    assert response.status_code == 200 and "此文件已导入，未重复导入" in response.get_data(as_text=True)
    assert [count(app, Project, name=f"导入新项目{i}") for i in range(3)] == [1, 1, 1]


def test_the_same_new_project_form_sent_twice_at_once_enters_one_project(
        app: Flask, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A double click sends the form twice before the first answer: the second copy waits for the first at its key
    (the once field), then is answered with the first's project — not a second project with the same name."""
    officer = login(OFFICER)
    meet_before(monkeypatch, entry, "create_project")  # both copies would enter it together
    posted = {**form_at(officer, "/projects/new", "/projects/new"), "name": "同时双击的项目", "investment": "15000",
              "unit_code": "tcj", "libraries": ["key"], "category": "key"}
    answers = two_at_once(lambda: officer.post("/projects/new", data=posted),
                          lambda: officer.post("/projects/new", data=posted))
    assert statuses(answers) == [302, 302], statuses(answers)
    assert answers[0].headers["Location"] == answers[1].headers["Location"]
    assert count(app, Project, name="同时双击的项目") == 1
