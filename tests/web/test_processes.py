"""发起流程 through the web: the list, the start page, start forms (validated on the server) and starters."""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from flask import Flask
from flask.testing import FlaskClient
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select

from engine import runtime
from engine.audit.models import AuditEvent
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.web.flows import (
    START_SCHEMA,
    db,
    deploy_files,
    deploy_good,
    instance_by_key,
    start_form_bundle,
    start_web,
    started_review,
    user_id,
)

Login = Callable[[str], FlaskClient]


def test_the_list_shows_latest_versions_to_everyone(app: Flask, login: Login) -> None:
    deploy_good(app)
    page = login("fg").get("/processes")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for name in ("项目并联审批（测试）", "最小审批流程"):
        assert name in html
    assert "/processes/review_process/start" in html


def test_starting_goes_to_the_starters_first_task(app: Flask, login: Login, frozen: object) -> None:
    deploy_good(app)
    applicant = login("applicant")
    page = applicant.get("/processes/review_process/start")
    assert page.status_code == 200 and "业务编号" in page.get_data(as_text=True)
    response = start_web(applicant, title="胶州智能家电产业园", business_key="JZ-2025-007")
    assert response.status_code == 302
    row = instance_by_key(app, "JZ-2025-007")
    assert row.title == "胶州智能家电产业园" and row.status == "running"
    assert row.started_by_id == user_id(app, "applicant")
    task = next(t for t in _tasks(app, row.id) if t.bpmn_id == "submit_application")
    assert response.headers["Location"].endswith(f"/tasks/{task.id}")  # the applicant's lane: their task
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"instance:{row.id}", AuditEvent.action == "instance.start")) == 1


def test_a_start_not_followed_by_the_starters_task_goes_to_the_instance(app: Flask, login: Login) -> None:
    deploy_good(app)
    response = start_web(login("admin"), title="管理员代发起", business_key="JZ-ADMIN")
    row = instance_by_key(app, "JZ-ADMIN")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/instances/{row.id}")


def _tasks(app: Flask, instance_id: int) -> list[HumanTask]:
    with db(app) as s:
        return list(s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)))


def test_a_start_form_is_rendered_validated_and_becomes_start_data(app: Flask, login: Login) -> None:
    deploy_good(app)
    deploy_files(app, start_form_bundle())
    fg = login("fg")
    page = fg.get("/processes/start_form_demo/start").get_data(as_text=True)
    assert "项目名称" in page and "总投资（万元）" in page and 'name="f/investment"' in page

    refused = start_web(fg, "start_form_demo", **{"f/project_name": "", "f/investment": "不是数字",
                                                  "business_key": "SF-1"})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "请输入数字" in html and "必填" in html
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0  # nothing was started

    ok = start_web(fg, "start_form_demo", **{"f/project_name": "青岛胶州湾产业园", "f/investment": "1234.50",
                                             "f/urgent": "true", "business_key": "SF-2"})
    assert ok.status_code == 302, ok.get_data(as_text=True)
    row = instance_by_key(app, "SF-2")
    with db(app) as s:
        running = runtime.load(s, row.id)
        data = running.workflow.get_tasks(state=TaskState.READY, manual=True)[0].data
    assert data["project_name"] == "青岛胶州湾产业园" and data["investment"] == Decimal("1234.50")
    assert data["urgent"] is True and data["initiator"] == "fg"


def test_starters_restrict_who_may_start(app: Flask, login: Login) -> None:
    deploy_good(app)
    deploy_files(app, start_form_bundle("leaders_only", starters="leader"))
    fg = login("fg")
    assert "leaders_only" not in fg.get("/processes").get_data(as_text=True)
    assert fg.get("/processes/leaders_only/start").status_code == 403
    assert fg.post("/processes/leaders_only/start", data={"f/project_name": "x"}).status_code == 400  # no CSRF
    boss = login("boss")
    assert "/processes/leaders_only/start" in boss.get("/processes").get_data(as_text=True)
    assert boss.get("/processes/leaders_only/start").status_code == 200
    assert "/processes/leaders_only/start" in login("admin").get("/processes").get_data(as_text=True)


def test_unknown_process_and_csrf(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = login("applicant")
    assert applicant.get("/processes/no_such_process/start").status_code == 404
    assert applicant.post("/processes/review_process/start", data={"title": "x"}).status_code == 400
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0


def test_the_title_is_escaped_and_bounded(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = login("applicant")
    too_long = start_web(applicant, title="长" * 301, business_key="JZ-LONG")
    assert too_long.status_code == 422 and "标题不能超过300字" in too_long.get_data(as_text=True)
    row = started_review(app, applicant, business_key="JZ-XSS", title="<script>alert(1)</script>")
    html = applicant.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html



def test_a_business_key_the_system_keeps_is_refused_under_the_field(app: Flask, login: Login) -> None:
    """project_lag:<code>:<stage> is the key the plan's slow-project warning finds its open issue by: typed as 业务编号,
    it silenced another unit's warning. The page comes back with the message under 业务编号, nothing started."""
    deploy_good(app)
    refused = start_web(login("applicant"), title="胶州项目", business_key="project_lag:XM-2025-0001:signed")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert '<div class="field-error" role="alert">业务编号以“project_lag:”开头的为系统保留' in html
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0

def test_start_data_that_would_make_the_state_too_large_shows_the_form_again_naming_the_field(
        app: Flask, login: Login) -> None:
    """Within the data limit at the door (characters), but six characters each in the saved state: the start page
    shows the form again with the field's message, and nothing is started."""
    bundle = start_form_bundle()
    bundle["start_demo.schema.json"] = START_SCHEMA.replace('"minLength": 1, "maxLength": 200', '"minLength": 1').encode()
    deploy_files(app, bundle)
    refused = start_web(login("fg"), "start_form_demo", **{"f/project_name": "字" * 350_000, "f/investment": "1",
                                                           "business_key": "SF-BIG"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "JZFLOW_MAX_STATE_KB" in html, html[-3000:]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0


def test_a_start_form_sent_twice_starts_one_instance(app: Flask, login: Login, frozen: object) -> None:
    """A double click on 发起, or the form sent again after a slow answer (back, resend), started two applications
    — two instances, two first steps in the office's inboxes. The page's `once` key makes the second the first's
    answer; the same key with another form (the page reused after its start) is refused (409, reload)."""
    import re

    from tests.web.conftest import form_at
    deploy_good(app)
    applicant = login("applicant")
    action = "/processes/review_process/start"
    fields = {**form_at(applicant, action, action), "title": "胶州智能家电产业园", "business_key": "JZ-2025-017"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first, second = applicant.post(action, data=fields), applicant.post(action, data=fields)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance).where(
            ProcessInstance.business_key == "JZ-2025-017")) == 1
    reused = applicant.post(action, data={**fields, "title": "另一个项目"})
    assert reused.status_code == 409 and "此表单已提交过" in reused.get_data(as_text=True)
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 1
    fresh = {**form_at(applicant, action, action), "title": "另一个项目", "business_key": "JZ-2025-018"}
    assert applicant.post(action, data=fresh).status_code == 302  # a page drawn again starts another
