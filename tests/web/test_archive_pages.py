"""An archived instance on the web: its page and its audit page still show its finished steps; changes are refused."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from engine import clock, tasks
from engine.archive import core as archive
from engine.org.actors import actor_for
from engine.runtime.models import ProcessInstance
from engine.tasks import collab, submissions
from engine.tasks.models import HumanTask, archived_tasks
from tests.conftest import pdf_text
from tests.web.flows import db, deploy_good, open_task, post, started_review

Login = Callable[[str], FlaskClient]
APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial"}


def _finish(app: Flask, instance_id: int, *, attach: bool = False) -> tuple[int, int]:
    """Finish the review (rejected at 受理), with a file attached on the 受理 step when `attach`; return that step's
    and the file's ids (0 without one)."""
    attachment_id = task_id = 0
    for bpmn_id, username, data in (("submit_application", "applicant", APPLICATION),
                                    ("accept", "window", {"decision": "reject"})):
        task = open_task(app, instance_id, bpmn_id)
        with db(app) as s:
            actor = actor_for(s, username)
            tasks.claim(s, task_id=task.id, actor=actor)
            if attach and bpmn_id == "accept":
                attachment_id = collab.attach(s, instance_id=instance_id, actor=actor, name="受理材料.txt",
                                              content=b"materials", content_type="text/plain", task_id=task.id).id
                task_id = task.id
            tasks.complete(s, task_id=task.id, actor=actor, data=data, opinion=f"{username}的意见")
    return task_id, attachment_id


def test_an_archived_instance_stays_readable_and_refuses_changes(app: Flask, login: Login, frozen: object) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    _finish(app, row.id)
    window, admin, stranger = login("window"), login("admin"), login("boss")
    before = window.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "一窗受理" in before and "window的意见" in before
    clock.advance(timedelta(days=400))
    report = archive.run(app.extensions["jzflow.sessionmaker"], after_days=365, batch=10)
    assert report.moved == 1
    with db(app) as s:
        assert s.scalar(select(ProcessInstance.archived_at).where(ProcessInstance.id == row.id)) is not None

    page = window.get(f"/instances/{row.id}")  # who handled a step may still look
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "一窗受理" in html and "提交项目申请" in html and "window的意见" in html and "李四" in html
    assert "已归档" in html
    assert stranger.get(f"/instances/{row.id}").status_code in (403, 404)
    audit_page = admin.get(f"/audit/instances/{row.id}")
    text = audit_page.get_data(as_text=True)
    assert audit_page.status_code == 200 and "一窗受理" in text and "window的意见" in text

    with db(app) as s:
        accept_id = s.scalar(select(archived_tasks.c.id).where(archived_tasks.c.instance_id == row.id,
                                                               archived_tasks.c.bpmn_id == "accept"))
    task_page = window.get(f"/tasks/{accept_id}")  # an old link (a notification) to an archived step
    assert task_page.status_code == 409 and "已归档" in task_page.get_data(as_text=True)

    refused = post(admin, f"/instances/{row.id}/terminate")
    assert refused.status_code == 409 and "已归档" in refused.get_data(as_text=True)
    with db(app) as s:
        assert s.scalar(select(ProcessInstance.status).where(ProcessInstance.id == row.id)) == "completed"


# --- what archiving must not take away: the 审批单, the submitted steps, the attachments ---------------------------


def _finish_with_attachment(app: Flask, instance_id: int) -> tuple[int, int]:
    return _finish(app, instance_id, attach=True)


def _archive(app: Flask) -> None:
    clock.advance(timedelta(days=400))
    assert archive.run(app.extensions["jzflow.sessionmaker"], after_days=365, batch=10).moved == 1


def test_the_approval_sheet_of_an_archived_instance_keeps_its_steps(app: Flask, login: Login, frozen: object,
                                                                    tmp_path: Path) -> None:
    deploy_good(app)
    row = started_review(app, login("applicant"))
    _finish_with_attachment(app, row.id)
    window = login("window")
    before = window.get(f"/instances/{row.id}/sheet").get_data(as_text=True)
    assert "window的意见" in before and "一窗受理" in before and "尚无已办结的步骤" not in before
    _archive(app)
    page = window.get(f"/instances/{row.id}/sheet")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "尚无已办结的步骤" not in text and "window的意见" in text and "一窗受理" in text and "提交项目申请" in text
    pdf = window.get(f"/instances/{row.id}/sheet.pdf")
    assert pdf.status_code == 200
    words = pdf_text(pdf.data, tmp_path)
    assert "window的意见" in words and "一窗受理" in words and "提交项目申请" in words, words


def test_the_instance_pages_submitted_steps_survive_archiving(app: Flask, login: Login, frozen: object) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    _finish_with_attachment(app, row.id)
    window = login("window")

    def section(client: FlaskClient) -> str:
        html = client.get(f"/instances/{row.id}").get_data(as_text=True)
        return html.split('id="approval-sheet"', 1)[1].split("</section>", 1)[0]

    before, own_before = section(window), section(applicant)
    assert "window的意见" in before and "提交项目申请" in own_before  # the applicant sees their own step
    _archive(app)
    assert section(window) == before
    assert section(applicant) == own_before
    with db(app) as s:  # the applicant's own submitted steps, as the engine hands them to pages and layouts
        steps = submissions.for_instance(s, actor_for(s, "applicant"), row.id)
    assert [step.bpmn_id for step in steps] == ["submit_application"]
    assert steps[0].fields and not steps[0].superseded


def test_an_archived_instances_attachment_can_still_be_downloaded(app: Flask, login: Login, frozen: object) -> None:
    deploy_good(app)
    row = started_review(app, login("applicant"))
    task_id, attachment_id = _finish_with_attachment(app, row.id)
    window, admin = login("window"), login("admin")
    path = f"/tasks/{task_id}/attachments/{attachment_id}"
    first = window.get(path)
    assert first.status_code == 200 and first.data == b"materials"
    _archive(app)
    with db(app) as s:
        assert s.scalar(select(HumanTask.id).where(HumanTask.id == task_id)) is None
    # who handled the step; who sees every instance (the applicant sees their own files: test_applicant_attachments)
    for client in (window, admin):
        response = client.get(path)
        assert response.status_code == 200, response.status_code
        assert response.data == b"materials"
        assert response.headers["Content-Disposition"] == first.headers["Content-Disposition"]
        assert response.headers["Content-Type"] == first.headers["Content-Type"]
    page = window.get(f"/instances/{row.id}").get_data(as_text=True)  # the task page is gone: listed here
    assert "受理材料.txt" in page and path in page
    assert window.get(f"/tasks/{task_id}/attachments/{attachment_id + 999}").status_code == 404


def test_who_could_not_see_the_instance_still_cannot_download_its_archived_attachment(
        app: Flask, login: Login, frozen: object) -> None:
    deploy_good(app)
    row = started_review(app, login("applicant"))
    task_id, attachment_id = _finish_with_attachment(app, row.id)
    other = started_review(app, login("applicant"), business_key="JZ-2025-002")  # still running: not archived
    path = f"/tasks/{task_id}/attachments/{attachment_id}"
    strangers = [login("boss"), login("fg")]
    for client in strangers:  # as if the step did not exist, hot or archived
        assert client.get(path).status_code == 404
    _archive(app)
    for client in strangers:
        response = client.get(path)
        assert response.status_code == 404, response.status_code
        assert b"materials" not in response.data and f"任务不存在: {task_id}" in response.get_data(as_text=True)
        page = client.get(f"/tasks/{task_id}")  # not "archived" (409): that would tell them it exists
        assert page.status_code == 404 and f"任务不存在: {task_id}" in page.get_data(as_text=True)
        assert "归档" not in page.get_data(as_text=True)
        assert "受理材料" not in client.get(f"/instances/{row.id}").get_data(as_text=True)
    # An archived step's id does not open another instance's file, nor a live step's id an archived instance's.
    live_task = open_task(app, other.id, "submit_application")
    window = login("window")
    assert window.get(f"/tasks/{live_task.id}/attachments/{attachment_id}").status_code in (403, 404)
    assert login("applicant").get(f"/tasks/{live_task.id}/attachments/{attachment_id}").status_code == 404
