"""An applicant from outside sees the files they uploaded, not the departments' own: a reviewer's upload on their
step is internal, as their form and opinion are (the 审批单 and the public history draw the same line)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from engine import clock, tasks
from engine.archive import core as archive
from engine.org.actors import actor_for
from engine.tasks import collab, taskview
from tests.web.flows import db, deploy_good, open_task, started_review

Login = Callable[[str], FlaskClient]
APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial"}


def _two_files(app: Flask, instance_id: int) -> tuple[int, int, int]:
    """The applicant submits with 申请书.txt; the window attaches 内部审查意见.txt on 受理 and rejects.
    Return the applicant's step and both files' ids."""
    ids: dict[str, int] = {}
    for bpmn_id, username, data, name in (("submit_application", "applicant", APPLICATION, "申请书.txt"),
                                          ("accept", "window", {"decision": "reject"}, "内部审查意见.txt")):
        task = open_task(app, instance_id, bpmn_id)
        with db(app) as s:
            actor = actor_for(s, username)
            tasks.claim(s, task_id=task.id, actor=actor)
            ids[username] = collab.attach(s, instance_id=instance_id, actor=actor, name=name,
                                          content=name.encode(), content_type="text/plain", task_id=task.id).id
            tasks.complete(s, task_id=task.id, actor=actor, data=data, opinion=f"{username}的意见")
            if username == "applicant":
                ids["step"] = task.id
    return ids["step"], ids["applicant"], ids["window"]


def test_an_applicant_sees_and_downloads_only_their_own_files(app: Flask, login: Login, frozen: object) -> None:
    deploy_good(app)
    applicant, window = login("applicant"), login("window")
    row = started_review(app, applicant)
    step, own, internal = _two_files(app, row.id)
    page = applicant.get(f"/tasks/{step}").get_data(as_text=True)
    assert "申请书.txt" in page and "内部审查意见.txt" not in page
    assert "内部审查意见.txt" in window.get(f"/tasks/{step}").get_data(as_text=True)
    assert applicant.get(f"/tasks/{step}/attachments/{own}").data == "申请书.txt".encode()
    refused = applicant.get(f"/tasks/{step}/attachments/{internal}")
    assert refused.status_code == 404 and "内部审查意见".encode() not in refused.data
    assert window.get(f"/tasks/{step}/attachments/{internal}").status_code == 200
    with db(app) as s:  # the list as the engine hands it to pages
        names = [a.name for a in taskview.visible_attachments(s, actor_for(s, "applicant"), row.id)]
        assert names == ["申请书.txt"]
        assert len(taskview.visible_attachments(s, actor_for(s, "window"), row.id)) == 2

    clock.advance(timedelta(days=400))  # archived: the instance page lists the files, by the same rule
    assert archive.run(app.extensions["jzflow.sessionmaker"], after_days=365, batch=10).moved == 1
    html = applicant.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "申请书.txt" in html and "内部审查意见.txt" not in html
    assert "内部审查意见.txt" in window.get(f"/instances/{row.id}").get_data(as_text=True)
    assert applicant.get(f"/tasks/{step}/attachments/{internal}").status_code == 404
    assert applicant.get(f"/tasks/{step}/attachments/{own}").status_code == 200
