"""An archived instance on the web: its page and its audit page still show its finished steps; changes are refused."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from engine import clock, tasks
from engine.archive import core as archive
from engine.org.actors import actor_for
from engine.runtime.models import ProcessInstance
from engine.tasks.models import archived_tasks
from tests.web.flows import db, deploy_good, open_task, post, started_review

Login = Callable[[str], FlaskClient]
APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial"}


def _finish(app: Flask, instance_id: int) -> None:
    for bpmn_id, username, data in (("submit_application", "applicant", APPLICATION),
                                    ("accept", "window", {"decision": "reject"})):
        task = open_task(app, instance_id, bpmn_id)
        with db(app) as s:
            actor = actor_for(s, username)
            tasks.claim(s, task_id=task.id, actor=actor)
            tasks.complete(s, task_id=task.id, actor=actor, data=data, opinion=f"{username}的意见")


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
