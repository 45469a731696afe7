"""项目录入 over HTTP: a unit's officers enter a project, record its stages, confirm 竣工 (a second person),
plan it backward, see it on 挂图作战; import projects from XLSX with a preview; the dashboard's counts move.
Hostile: another unit (404 / 403), malformed, oversized and bomb XLSX, dates out of order named by column."""
from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import clock
from engine.audit.models import AuditEvent
from plan.projects import core
from plan.projects.models import Project, ProjectApproval, ProjectStage, StageReport
from tests import dashboard_data
from tests.engine.test_upload_guards import xlsx
from tests.web.conftest import PASSWORD, app_on, csrf_of, form_at

OFFICER, SECOND, OUTSIDER, CITY_LEADER = "tangjian", "liming", "pengtao", "wangjianguo"


@pytest.fixture
def app(db_url: str, session: Session, frozen: Any) -> Iterator[Flask]:
    dashboard_data.seed_and_deploy(session)
    yield from app_on(db_url, session)


@pytest.fixture
def login(app: Flask) -> Callable[[str], FlaskClient]:
    def log_in(username: str) -> FlaskClient:
        client = app.test_client()
        response = client.post("/login", data={"username": username, "password": PASSWORD,
                                               "csrf_token": csrf_of(client)})
        assert response.status_code == 302, response.get_data(as_text=True)[:300]
        return client
    return log_in


def form_post(client: FlaskClient, path: str, data: dict[str, Any], page: str = "/projects") -> Any:
    return client.post(path, data={**data, "csrf_token": csrf_of(client, page)})


def create(client: FlaskClient, **extra: str) -> int:
    response = form_post(client, "/projects/new", {
        "name": "胶州新材料产业园", "enterprise": "青岛某新材料公司", "investment": "15000", "project_type": "industrial",
        "unit_code": "tcj", "libraries": ["key", "land"], "category": "key", **extra})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    found = re.search(r"/projects/(\d+)$", response.headers["Location"])
    assert found
    return int(found.group(1))


def count(app: Flask, model: Any, **where: Any) -> int:
    with app.extensions["jzflow.sessionmaker"]() as s:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(s.scalar(query) or 0)


def test_a_unit_enters_a_project_and_takes_it_to_completion_on_the_web(app: Flask, login: Any) -> None:
    officer, second = login(OFFICER), login(SECOND)
    assert officer.get("/projects/new").status_code == 200
    pid = create(officer)
    page = f"/projects/{pid}"
    today = core.today().isoformat()
    assert form_post(officer, f"{page}/stage", {"stage": "signed", "on": today, "evidence": "合同 HT-7"}).status_code == 302
    assert officer.post(f"{page}/backward", data={**form_at(officer, page, f"{page}/backward"),
                                                  "planned_complete": "2026-10-30", "construction_wd": "200",
                                                  "produce_wd": "20"}).status_code == 302
    assert form_post(officer, f"{page}/stage", {"stage": "started", "on": today, "evidence": "施工许可证 370281"}
                     ).status_code == 302
    assert form_post(officer, f"{page}/needs", {"kind": "funds", "description": "配套资金缺口"}).status_code == 302
    assert form_post(officer, f"{page}/stage", {"stage": "completed", "on": today, "evidence": "竣工验收备案"}
                     ).status_code == 302
    html = officer.get(page).get_data(as_text=True)
    assert 'data-stage="started" data-reached="' in html and "施工许可证 370281" in html
    assert 'data-status="reported"' in html and "/confirm" not in html  # the reporter may not confirm
    html = second.get(page).get_data(as_text=True)
    report_id = re.search(r'data-report="(\d+)"', html)
    assert report_id and f"/reports/{report_id.group(1)}/confirm" in html
    confirm = f"{page}/reports/{report_id.group(1)}/confirm"
    shown = form_at(second, page, confirm)
    assert second.post(confirm, data=shown).status_code == 302
    assert second.post(confirm, data=shown).status_code in (302, 422)  # a double click: decided already
    assert count(app, ProjectStage, project_id=pid, stage="completed") == 1
    html = officer.get(page).get_data(as_text=True)
    assert 'data-stage="completed" data-reached="' in html and 'data-status="confirmed"' in html
    chart = officer.get("/projects/schedule?unit=tcj").get_data(as_text=True)
    assert '<svg' in chart and 'data-mark="started"' in chart and 'id="today-line"' in chart
    assert "胶州新材料产业园" in chart


def test_a_confirmation_from_a_page_that_showed_an_earlier_report_is_refused(app: Flask, login: Any) -> None:
    """A busy office: 李明 opens the project with the 竣工 report; an administrator 退回s it, 唐建 files it again
    with another date and evidence; 李明's 确认, sent from the page that showed the first, confirmed the second unread
    (the report keeps its row). Refused (409, reload), nothing reached; from the page drawn again it is confirmed."""
    officer, second, admin = login(OFFICER), login(SECOND), login("admin")
    pid = create(officer)
    page, today = f"/projects/{pid}", core.today()
    for stage, evidence in (("signed", "合同 HT-7"), ("started", "施工许可证 370281"), ("completed", "竣工验收备案")):
        assert form_post(officer, f"{page}/stage", {"stage": stage, "on": today.isoformat(), "evidence": evidence}
                         ).status_code == 302
    report_id = re.search(r'data-report="(\d+)"', second.get(page).get_data(as_text=True))
    assert report_id
    confirm, reject = (f"{page}/reports/{report_id.group(1)}/{d}" for d in ("confirm", "reject"))
    stale = form_at(second, page, confirm)
    assert stale.get("seen"), stale
    assert admin.post(reject, data=form_at(admin, page, reject)).status_code == 302
    refiled = today.isoformat()
    assert form_post(officer, f"{page}/stage", {"stage": "completed", "on": refiled, "evidence": "另一份备案 B-2"}
                     ).status_code == 302
    late = second.post(confirm, data=stale)
    assert late.status_code == 409 and "刷新" in late.get_data(as_text=True)
    assert count(app, ProjectStage, project_id=pid, stage="completed") == 0
    assert count(app, StageReport, project_id=pid, status="reported") == 1
    blind = second.post(confirm, data={k: v for k, v in stale.items() if k != "seen"})  # says not what it read
    assert blind.status_code == 409 and count(app, ProjectStage, project_id=pid, stage="completed") == 0
    assert second.post(confirm, data=form_at(second, page, confirm)).status_code == 302
    assert count(app, ProjectStage, project_id=pid, stage="completed") == 1


def test_a_confirmation_note_past_its_limit_is_refused_not_cut(app: Flask, login: Any) -> None:
    """确认's 说明 past 2,000 characters: refused naming `note`, nothing decided (it was cut to 2,000 without a word);
    2,000 with a line break the browser sent as CR LF pass whole."""
    officer, second = login(OFFICER), login(SECOND)
    pid = create(officer)
    page, today = f"/projects/{pid}", core.today().isoformat()
    for stage, evidence in (("signed", "合同 HT-7"), ("started", "施工许可证 370281"), ("completed", "竣工验收备案")):
        assert form_post(officer, f"{page}/stage", {"stage": stage, "on": today, "evidence": evidence}
                         ).status_code == 302
    report_id = re.search(r'data-report="(\d+)"', second.get(page).get_data(as_text=True))
    assert report_id
    confirm = f"{page}/reports/{report_id.group(1)}/confirm"
    refused = second.post(confirm, data={**form_at(second, page, confirm), "note": "确" * 2001})
    assert refused.status_code == 422
    assert "说明（note）超过 2000 字" in refused.get_data(as_text=True)
    assert count(app, ProjectStage, project_id=pid, stage="completed") == 0
    assert count(app, StageReport, project_id=pid, status="reported") == 1
    whole = "确" * 1000 + "\r\n" + "认" * 999
    assert second.post(confirm, data={**form_at(second, page, confirm), "note": whole}).status_code == 302
    assert count(app, ProjectStage, project_id=pid, stage="completed") == 1
    with app.extensions["jzflow.sessionmaker"]() as s:
        kept = s.scalar(select(AuditEvent.after).where(AuditEvent.action == "project.stage_decide"))
    assert kept is not None and kept["note"] == whole.replace("\r\n", "\n")


def test_another_unit_cannot_see_or_change_and_a_leader_who_sees_cannot_change(app: Flask, login: Any) -> None:
    pid = create(login(OFFICER))
    outsider, leader = login(OUTSIDER), login(CITY_LEADER)
    today = core.today().isoformat()
    for client, expected in ((outsider, 404), (leader, 403)):
        for path, data in ((f"/projects/{pid}/stage", {"stage": "signed", "on": today, "evidence": "x"}),
                           (f"/projects/{pid}/plan", {"planned_sign": "2026-01-05"}),
                           (f"/projects/{pid}/libraries", {"libraries": "government"}),
                           (f"/projects/{pid}/needs", {"kind": "land", "description": "x"}),
                           (f"/projects/{pid}/approval", {"stage": "land_planning"})):
            response = form_post(client, path, data)
            assert response.status_code == expected, (path, response.status_code)
    assert outsider.get(f"/projects/{pid}").status_code == 404
    assert count(app, ProjectStage, project_id=pid) == 1  # 线索 only
    # nor may the outsider (a data officer of 发改局) enter a project for 投促局
    response = form_post(outsider, "/projects/new", {"name": "x", "investment": "1", "unit_code": "tcj",
                                                     "libraries": "key", "category": "key"})
    assert response.status_code == 403


def test_dates_out_of_order_are_refused_naming_the_field(app: Flask, login: Any) -> None:
    officer = login(OFFICER)
    response = form_post(officer, "/projects/new", {"name": "x", "investment": "10", "unit_code": "tcj",
                                                    "libraries": "key", "category": "key",
                                                    "planned_start": "2026-05-01", "planned_complete": "2026-03-01"})
    assert response.status_code == 422 and "计划竣工日期" in response.get_data(as_text=True)
    assert count(app, Project, name="x") == 0


def import_rows(rows: list[list[Any]]) -> bytes:
    header = ["项目编号", "项目名称", "企业", "总投资（万元）", "项目类型", "责任单位", "项目库", "类别",
              "计划开工日期", "计划竣工日期", "签约日期", "签约证明", "开工日期", "开工证明"]
    return xlsx([header, *rows])


def upload(client: FlaskClient, data: bytes, name: str = "projects.xlsx") -> Any:
    # the multipart body is built here: the test client would spool a large one to a file it never closes
    boundary = "jzflow-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f'{csrf_of(client, "/projects/import")}\r\n--{boundary}\r\n'
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n').encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return client.post("/projects/import", data=body, content_type=f"multipart/form-data; boundary={boundary}")


def test_import_previews_then_stores_and_the_dashboard_counts_move(app: Flask, login: Any) -> None:
    officer = login(OFFICER)
    day = (core.today() - timedelta(days=2)).isoformat()
    started_before = count(app, ProjectStage, stage="started")
    data = import_rows([["IMP-0001", "导入项目甲", "甲公司", 5000, "industrial", "tcj", "key,investment", "key",
                         "2025-10-01", "2026-06-30", day, "合同甲", day, "施工许可证甲"],
                        ["", "导入项目乙", "乙公司", 3000, "service", "tcj", "government", "layout",
                         "2025-12-01", "2026-09-30", "", "", "", ""]])
    response = upload(officer, data)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[-1800:]
    assert html.count('data-kind="add"') == 2 and count(app, Project, code="IMP-0001") == 0  # preview stores nothing
    payload = re.search(r'name="payload" value="([^"]+)"', html)
    sha = re.search(r'name="sha256" value="([0-9a-f]+)"', html)
    once = re.search(r'name="once" value="([A-Za-z0-9_-]+)"', html)
    seen = re.search(r'name="seen" value="([0-9a-f]+)"', html)
    assert payload and sha and once and seen
    response = officer.post("/projects/import/confirm", data={
        "csrf_token": csrf_of(officer, "/projects/import"), "payload": payload.group(1), "sha256": sha.group(1),
        "filename": "projects.xlsx", "once": once.group(1), "seen": seen.group(1)})
    assert response.status_code == 302
    assert count(app, Project, code="IMP-0001") == 1 and count(app, Project, name="导入项目乙") == 1
    assert count(app, ProjectStage, stage="started") == started_before + 1
    dash = officer.get("/dashboard").get_data(as_text=True)
    assert 'id="approval-savings"' in dash
    # the same file again: the rows update, nothing is reached twice
    response = upload(officer, import_rows([["IMP-0001", "导入项目甲", "甲公司", 5000, "industrial", "tcj",
                                             "key", "key", "2025-10-01", "2026-06-30", day, "合同甲", day, "证"]]))
    assert response.status_code == 200 and 'data-kind="update"' in response.get_data(as_text=True)


def test_bad_import_rows_are_refused_naming_line_and_column(app: Flask, login: Any) -> None:
    officer = login(OFFICER)
    response = upload(officer, import_rows([
        ["", "好项目", "甲", 10, "industrial", "tcj", "key", "key", "2026-05-01", "2026-08-01", "", "", "", ""],
        ["", "坏项目", "乙", 10, "industrial", "tcj", "key", "key", "2026-05-01", "2026-03-01", "", "", "", ""],
        ["", "别的单位", "丙", 10, "industrial", "fgj", "key", "key", "", "", "", "", "", ""],
        ["", "<script>alert(1)</script>", "丁", "很多", "industrial", "tcj", "key", "key", "", "", "", "", "", ""]]))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(r'data-line="3" data-column="planned_complete"', html)
    assert re.search(r'data-line="4" data-column="file"', html) or 'data-line="4"' in html
    assert re.search(r'data-line="5" data-column="investment"', html)
    assert "<script>alert(1)" not in html and 'name="payload"' not in html
    assert count(app, Project, name="好项目") == 0  # one bad row refuses the whole file


@pytest.mark.parametrize("name,body,expected", [
    ("bomb.xlsx", xlsx([["项目名称"]] + [[f"x{i}"] for i in range(1200)], dimension="A1:XFD6000"), "XFD6000"),
    ("broken.xlsx", b"PK\x03\x04 not really a zip", "XLSX"),
    ("big.xlsx", b"x" * (2 * 1024 * 1024 + 10), "MB"),
    ("evil.exe", b"MZ", ".xlsx"),
])
def test_malformed_and_oversized_imports_are_refused(app: Flask, login: Any, name: str, body: bytes,
                                                     expected: str) -> None:
    officer = login(OFFICER)
    before = count(app, Project)
    response = upload(officer, body, name)
    assert 400 <= response.status_code < 500 and expected in response.get_data(as_text=True)
    assert count(app, Project) == before


def test_a_planned_date_passing_shows_the_warning_on_the_page(app: Flask, login: Any) -> None:
    officer = login(OFFICER)
    pid = create(officer, planned_sign=(core.today() + timedelta(days=5)).isoformat())
    assert "data-lag=" not in officer.get(f"/projects/{pid}").get_data(as_text=True)
    clock.advance(timedelta(days=8))
    html = officer.get(f"/projects/{pid}").get_data(as_text=True)
    assert 'data-lag="signed"' in html
    assert count(app, StageReport) == 0


def test_the_dashboard_shows_the_days_a_certified_stage_saved(app: Flask, login: Any) -> None:
    from engine.org.actors import actor_for
    from plan.projects import approvals
    from tests.engine.test_project_slice import OFFICER as APPLICANT
    from tests.engine.test_project_slice import drive_to_certificate, stage_instance
    pid = create(login(OFFICER))
    with app.extensions["jzflow.sessionmaker"]() as s:
        project = s.get(Project, pid)
        assert project is not None
        approvals.start_stage(s, project, stage="land_planning", actor=actor_for(s, OFFICER), applicant=APPLICANT)
        s.commit()
        drive_to_certificate(s, stage_instance(s, project, "land_planning"), APPLICANT, project, "land_planning")
        saved = approvals.savings(s, [pid])
    html = login(CITY_LEADER).get("/dashboard").get_data(as_text=True)
    row = re.search(r'<tr data-stage="land_planning">(.*?)</tr>', html, re.S)
    assert row is not None, html[html.find('id="approval-savings"'):][:1500]
    cells = re.findall(r"<td>(-?\d+)</td>", row.group(1))
    stage = next(s for s in saved.stages if s.stage == "land_planning")
    assert cells[-1] == str(stage.saved_wd) and stage.certified == 1 and stage.saved_wd > 0
    assert html.count('id="saved-total"') == 1
    assert form_post(login(OFFICER), f"/projects/{pid}/approval", {"stage": "land_planning"}).status_code == 302
    assert count(app, ProjectApproval, project_id=pid, stage="land_planning") == 1  # started once, not again


def test_the_page_refuses_the_standard_land_first_stage_after_the_ordinary_one(app: Flask, login: Any) -> None:
    """The call (or anyone) started 立项用地规划许可: picking the 标准地 first stage is a 409 naming why, nothing new."""
    from engine.org.actors import actor_for
    from engine.runtime.models import ProcessInstance
    from plan.projects import approvals
    officer = login(OFFICER)
    pid = create(officer)
    with app.extensions["jzflow.sessionmaker"]() as s:
        project = s.get(Project, pid)
        assert project is not None
        approvals.start_stage(s, project, stage="land_planning", actor=actor_for(s, OFFICER), applicant=OFFICER)
        s.commit()
    before = count(app, ProcessInstance), count(app, AuditEvent)
    refused = form_post(officer, f"/projects/{pid}/approval", {"stage": "land_planning_standard"})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "已发起立项用地规划许可审批" in body and "标准地" in body, body[:800]
    assert (count(app, ProcessInstance), count(app, AuditEvent)) == before
    assert count(app, ProjectApproval, project_id=pid) == 1
    # from the page (a referrer): back to it with the reason flashed
    page = f"/projects/{pid}"
    back = officer.post(f"{page}/approval", data={"stage": "land_planning_standard", "csrf_token": csrf_of(officer, page)},
                        headers={"Referer": f"http://localhost{page}"})
    assert back.status_code == 302 and "已发起立项用地规划许可审批" in officer.get(page).get_data(as_text=True)
    assert count(app, ProjectApproval, project_id=pid) == 1


def test_the_import_template_downloads_on_a_leap_day(app: Flask, login: Any) -> None:
    officer = login(OFFICER)
    clock.freeze(datetime(2028, 2, 29, 9, 0, tzinfo=clock.SHANGHAI))  # unfrozen by tests/conftest.py's _clock
    response = officer.get("/projects/import/template.xlsx")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert sheet is not None
    values = [[str(c.value or "") for c in row] for row in sheet.iter_rows()]
    assert values[1][values[0].index("计划竣工日期")] == "2029-02-28"  # a year on, the last day of February


def test_the_stage_form_offers_the_next_stage_and_refuses_a_skip_naming_it(app: Flask, login: Any) -> None:
    officer = login(OFFICER)
    pid = create(officer)
    page = f"/projects/{pid}"
    today = core.today().isoformat()
    assert form_post(officer, f"{page}/stage", {"stage": "signed", "on": today, "evidence": "合同 HT-8"}).status_code == 302
    form = re.search(r'id="stage-form".*?</select>', officer.get(page).get_data(as_text=True), re.S)
    assert form and re.findall(r'<option value="(\w+)"', form.group(0)) == ["started"]
    refused = officer.post(f"{page}/stage", data={"stage": "producing", "on": today, "evidence": "试生产备案",
                                                  "csrf_token": csrf_of(officer, page)})
    assert refused.status_code == 422 and "不能跳过开工、竣工直接记投产" in refused.get_data(as_text=True)
    assert count(app, StageReport, project_id=pid) == 0 and count(app, ProjectStage, project_id=pid) == 2


def test_an_administrator_moves_a_misrecorded_stage_back_with_a_reason(app: Flask, login: Any) -> None:
    """Stages only move forward, one at a time: a stage recorded by mistake (开工 entered for a project that has not
    started) is corrected by an administrator, who moves the project back with the reason — audited, the stages
    after it withdrawn, so the counts no longer include it. The unit itself cannot; a reason is required."""
    officer, admin = login(OFFICER), login("admin")
    pid = create(officer)
    page, action = f"/projects/{pid}", f"/projects/{pid}/stage/back"
    today = core.today().isoformat()
    for stage, evidence in (("signed", "合同 HT-9"), ("started", "施工许可证（误录）")):
        assert form_post(officer, f"{page}/stage", {"stage": stage, "on": today, "evidence": evidence}
                         ).status_code == 302
    assert f'action="{action}"' not in officer.get(page).get_data(as_text=True)
    assert form_post(officer, action, {"stage": "signed", "reason": "误录"}).status_code == 403
    fields = form_at(admin, page, action)
    refused = admin.post(action, data={**fields, "stage": "signed", "reason": " "})
    assert refused.status_code == 422 and "reason" in refused.get_data(as_text=True)
    refused = admin.post(action, data={**fields, "stage": "producing", "reason": "误录"})
    assert refused.status_code == 422 and "stage" in refused.get_data(as_text=True)
    assert admin.post(action, data={**fields, "stage": "signed", "reason": "开工误录，施工许可尚未核发"}).status_code == 302
    assert project_stage(app, pid) == "signed"
    assert count(app, ProjectStage, project_id=pid, stage="started") == 0
    with app.extensions["jzflow.sessionmaker"]() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.stream == f"project:{pid}",
                                                   AuditEvent.action == "project.stage_back")).one()
        assert event.after["reason"] == "开工误录，施工许可尚未核发" and event.before["stage"] == "started"
        assert [r["stage"] for r in event.before["withdrawn"]] == ["started"]
    stale = admin.post(action, data={**fields, "stage": "lead", "reason": "再退"})  # the page showed 开工
    assert stale.status_code == 409
    # recorded again, correctly, one stage at a time
    assert form_post(officer, f"{page}/stage", {"stage": "started", "on": today, "evidence": "施工许可证 3702"}
                     ).status_code == 302


def project_stage(app: Flask, pid: int) -> str:
    with app.extensions["jzflow.sessionmaker"]() as s:
        return str(s.scalar(select(Project.stage).where(Project.id == pid)))
