"""项目推进暨评审会议 pages: the agenda, decisions recorded by a leader, refusals named, others kept out."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.org.models import User
from plan import meetings
from plan.meetings import core
from plan.meetings.models import MeetingDecision
from tests import dashboard_data
from tests.web.conftest import PASSWORD, PASSWORD_HASH, csrf_of
from web import create_app

RHYTHM = core.parse({"meetings": {"review": {"first": "2025-01-08", "recipients": ["city_leader"]}}})


def meeting_world(db_url: str, session: Session) -> Flask:
    """The sample world with this week's 评审会议 on its agenda, everyone's password PASSWORD; the app over it."""
    dashboard_data.seed_and_deploy(session)
    dashboard_data.sample(session)
    for user in session.scalars(select(User)):
        user.password_hash = PASSWORD_HASH
    meeting = meetings.ensure_meeting(session, now=datetime(2025, 9, 15, 7, tzinfo=clock.SHANGHAI), rhythm=RHYTHM)
    assert meeting is not None and meeting.agenda
    session.commit()
    session.close()
    return create_app({"DATABASE_URL": db_url, "TESTING": True, "WTF_CSRF_ENABLED": True,
                       "SECRET_KEY": "test-secret", "RATELIMIT_ENABLED": False})


@pytest.fixture
def app(db_url: str, session: Session, frozen: Any) -> Iterator[Flask]:
    flask_app = meeting_world(db_url, session)
    yield flask_app
    flask_app.extensions["jzflow.engine"].dispose()


def login(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302
    return client


def test_a_leader_records_decisions_and_closes_the_meeting(app: Flask) -> None:
    leader = login(app, "wangjianguo")
    listing = leader.get("/meetings").get_data(as_text=True)
    assert "项目推进暨评审会议（2025年9月17日）" in listing
    with Session(app.extensions["jzflow.engine"]) as s:
        meeting = meetings.recent(s)[0]
        first = meeting.agenda[0]
    page = leader.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert f'data-project="{first["code"]}"' in page and first["reasons"][0] in page
    token = csrf_of(leader, f"/meetings/{meeting.id}")
    refused = leader.post(f"/meetings/{meeting.id}/decisions", data={
        "csrf_token": token, "project_code": first["code"], "outcome": "coordinate", "decision": "协调用地指标。"})
    assert refused.status_code == 422 and "落实单位" in refused.get_data(as_text=True)
    seen = re.search(r'name="seen" value="(\w+)"', page)  # the first agenda project's form: no decision yet
    assert seen
    done = leader.post(f"/meetings/{meeting.id}/decisions", data={
        "csrf_token": token, "project_code": first["code"], "outcome": "coordinate", "decision": "协调用地指标。",
        "unit_code": "zrzyj", "due_on": "2025-09-30", "seen": seen.group(1)})
    assert done.status_code == 302
    assert "协调用地指标。" in leader.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert leader.post(f"/meetings/{meeting.id}/close", data={"csrf_token": token}).status_code == 302
    late = leader.post(f"/meetings/{meeting.id}/decisions", data={
        "csrf_token": token, "project_code": first["code"], "outcome": "advance", "decision": "改。"})
    assert late.status_code == 409
    with Session(app.extensions["jzflow.engine"]) as s:
        assert [d.decision for d in s.scalars(select(MeetingDecision))] == ["协调用地指标。"]


def test_people_without_the_right_are_kept_out(app: Flask) -> None:
    applicant = login(app, "gupeng")
    assert applicant.get("/meetings").status_code == 403
    with Session(app.extensions["jzflow.engine"]) as s:
        meeting = meetings.recent(s)[0]
    assert applicant.get(f"/meetings/{meeting.id}").status_code == 403
    token = csrf_of(applicant, "/inbox")
    assert applicant.post(f"/meetings/{meeting.id}/close", data={"csrf_token": token}).status_code == 403


def test_a_decision_from_someone_without_the_right_is_refused_before_its_fields_are_read(app: Flask) -> None:
    """Recording a decision is a right by role: refused with 403 whatever the meeting id and whatever the form holds
    (a malformed 落实期限 answered 422 naming the field to someone who may not record at all)."""
    applicant = login(app, "gupeng")
    with Session(app.extensions["jzflow.engine"]) as s:
        meeting = meetings.recent(s)[0]
    token = csrf_of(applicant, "/inbox")
    for meeting_id in (meeting.id, 999999):
        answer = applicant.post(f"/meetings/{meeting_id}/decisions", data={
            "csrf_token": token, "project_code": meeting.agenda[0]["code"], "outcome": "advance", "decision": "x",
            "due_on": "not-a-date"})
        assert answer.status_code == 403, meeting_id
