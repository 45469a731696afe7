"""An applicant from outside who started their application does not read the instance's data: it holds the
window's and the departments' form values (their opinions, merged in by SpiffWorkflow), which are internal to
them as the 审批单, the departments' steps and uploads are (docs/security.md)."""
from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from engine import tasks
from engine.org.actors import actor_for
from engine.org.models import Membership, Role
from engine.tasks.models import HumanTask
from tests.web.flows import Api, db, deploy_good, open_task, started_review, token_for, user_id

Login = Callable[[str], FlaskClient]
APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial"}
WINDOW_NOTE = "窗口内部说明：核查其关联企业"
DEPARTMENT_OPINION = "发改内部审查意见：暂缓"


def _reviewed(app: Flask, instance_id: int) -> None:
    """The applicant submits, the window accepts with a note, one department reviews with an opinion."""
    for bpmn_id, username, data in (("submit_application", "applicant", APPLICATION),
                                    ("accept", "window", {"decision": "accept", "accept_comment": WINDOW_NOTE})):
        task = open_task(app, instance_id, bpmn_id)
        with db(app) as s:
            actor = actor_for(s, username)
            tasks.claim(s, task_id=task.id, actor=actor)
            tasks.complete(s, task_id=task.id, actor=actor, data=data)
    with db(app) as s:
        review = s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                   HumanTask.bpmn_id == "department_review",
                                                   HumanTask.state == "ready").order_by(HumanTask.id)).first()
        assert review is not None
        fg = actor_for(s, "fg")
        tasks.claim(s, task_id=review.id, actor=fg)
        tasks.complete(s, task_id=review.id, actor=fg, data={"opinion": DEPARTMENT_OPINION, "approved": False})


def test_an_applicant_does_not_read_the_window_and_departments_form_values(app: Flask, login: Login) -> None:
    deploy_good(app)
    row = started_review(app, login("applicant"))
    _reviewed(app, row.id)

    mine = Api(app, token_for(app, "applicant")).get(f"/api/instances/{row.id}")
    assert mine.status_code == 200
    text = json.dumps(mine.json, ensure_ascii=False)
    assert WINDOW_NOTE not in text and DEPARTMENT_OPINION not in text
    assert mine.json is not None and mine.json["data_visible"] is False and "data" not in mine.json
    page = login("applicant").get(f"/instances/{row.id}").get_data(as_text=True)
    assert WINDOW_NOTE not in page and DEPARTMENT_OPINION not in page
    assert APPLICATION["project_name"] in page  # their own step still shows, from the submissions

    admin = json.dumps(Api(app, token_for(app, "admin")).get(f"/api/instances/{row.id}").json, ensure_ascii=False)
    assert WINDOW_NOTE in admin and DEPARTMENT_OPINION in admin  # the data is there, for those who may read it


def _grant(app: Flask, username: str, code: str, name: str) -> None:
    uid = user_id(app, username)
    with db(app) as s:
        role = s.scalar(select(Role).where(Role.code == code))
        if role is None:
            role = Role(code=code, name=name)
            s.add(role)
            s.flush()
        s.add(Membership(user_id=uid, role_id=role.id))


# Who reads the raw data (keys, choice codes, usernames), in the API and on the page alike: administrators, process
# owners and auditors (queries.may_see_raw_data). A starter from the staff (a window clerk registering at the
# counter) reads the labelled forms of the 审批单, not `data`; whoever may not see the instance gets 404.
RAW_DATA = {"window": False, "admin": True, "boss": True, "zr": True, "applicant": False, "st": None}


def test_the_api_gives_the_raw_data_to_those_the_page_shows_it_to(app: Flask, login: Login) -> None:
    deploy_good(app)
    window = Api(app, token_for(app, "window"))  # a member of a unit starting the process: not from outside
    started = window.post("/api/processes/review_process/instances", {"title": "窗口代办", "business_key": "JZ-IN"})
    assert started.status_code == 201, started.get_data(as_text=True)
    assert started.json is not None and started.json["data_visible"] is False and "data" not in started.json
    iid = started.json["id"]
    _grant(app, "boss", "process_owner", "流程管理员")
    _grant(app, "zr", "auditor", "审计督查")
    for username, raw in RAW_DATA.items():
        got = Api(app, token_for(app, username)).get(f"/api/instances/{iid}")
        page = login(username).get(f"/instances/{iid}")
        if raw is None:  # may not see the instance: as if it did not exist
            assert got.status_code == 404 and page.status_code == 404, username
            continue
        assert got.status_code == 200 and got.json is not None, (username, got.status_code)
        assert got.json["data_visible"] is raw and ("data" in got.json) is raw, username
        if raw:
            assert got.json["data"]["initiator"] == "window", username
        else:
            assert "initiator" not in json.dumps(got.json), username  # nor anywhere else in the answer
        assert ("流程数据" in page.get_data(as_text=True)) is raw, username  # the page says the same
