"""项目推进暨评审会议 pages: the agenda, decisions recorded by a leader, refusals named, others kept out."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import clock
from engine.audit.models import AuditEvent
from engine.org.actors import actor_for
from engine.org.models import User
from plan import meetings
from plan.meetings import core
from plan.meetings.models import MeetingDecision
from tests import dashboard_data
from tests.web.conftest import PASSWORD, PASSWORD_HASH, csrf_of, form_at
from tests.web.test_authz_existence import answer
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


def test_a_decision_sent_twice_is_recorded_once(app: Flask) -> None:
    """记录决定 clicked twice: the second copy matched what the first stored, so `seen` let it through and it was
    recorded again (a second audit entry, its time moved). The form carries `once`: the second copy is the first's
    answer; the page used again for another decision is refused (409), nothing written."""
    leader = login(app, "wangjianguo")
    with Session(app.extensions["jzflow.engine"]) as s:
        meeting = meetings.recent(s)[0]
    action = f"/meetings/{meeting.id}/decisions"
    fields = {**form_at(leader, f"/meetings/{meeting.id}", action), "outcome": "advance", "decision": "按计划推进。"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first, second = leader.post(action, data=fields), leader.post(action, data=fields)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    reused = leader.post(action, data={**fields, "decision": "另议。"})
    assert reused.status_code == 409 and "此表单已提交过" in reused.get_data(as_text=True)
    with Session(app.extensions["jzflow.engine"]) as s:
        assert [d.decision for d in s.scalars(select(MeetingDecision))] == ["按计划推进。"]
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "meeting.decision")) == 1


# -- who sees what of a meeting: the agenda items of the projects one may see on the project pages ----------------

FGJ_READER, NOBODYS_READER, CLERK = "pengtao", "fanwenjuan", "tangjian"  # 发改局 / 统计局 数据监测; 投促局 招商专员


def _meeting_and_decisions(app: Flask) -> tuple[int, list[dict[str, Any]]]:
    """This week's meeting, with a decision recorded on every agenda project (words naming the project)."""
    with Session(app.extensions["jzflow.engine"]) as s:
        meeting = meetings.recent(s)[0]
        chair = actor_for(s, "wangjianguo")
        for item in meeting.agenda:
            meetings.record_decision(s, meeting_id=meeting.id, project_code=item["code"], outcome="advance",
                                     decision=f"决定：{item['name']}按计划推进", unit_code=None, due_on=None,
                                     actor=chair, seen=core.decision_version(None))
        s.commit()
        return meeting.id, list(meeting.agenda)


def _seen_on_the_project_pages(client: FlaskClient, agenda: list[dict[str, Any]]) -> dict[str, bool]:
    """Which agenda projects the project pages show this reader (200) and which answer 404."""
    seen = {}
    for item in agenda:
        status = client.get(f"/projects/{item['project_id']}").status_code
        assert status in (200, 404), (item["code"], status)
        seen[item["code"]] = status == 200
    return seen


def test_a_report_reader_sees_the_agenda_items_and_decisions_only_of_projects_they_may_see(app: Flask) -> None:
    meeting_id, agenda = _meeting_and_decisions(app)
    reader = login(app, FGJ_READER)
    seen = _seen_on_the_project_pages(reader, agenda)
    assert any(seen.values()) and not all(seen.values()), seen  # the world gives 发改局 some of the agenda, not all
    page = reader.get(f"/meetings/{meeting_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for item in agenda:
        shown = [item["name"] in html, item["code"] in html, f"决定：{item['name']}" in html]
        assert shown == [seen[item["code"]]] * 3, (item["code"], shown)
    hidden = sum(not v for v in seen.values())
    assert f"另有 {hidden} 个议题无权查看" in html
    listing = reader.get("/meetings").get_data(as_text=True)
    assert f'data-meeting="{meeting_id}"' in listing
    assert not any(item["name"] in listing or item["code"] in listing for item in agenda if not seen[item["code"]])
    assert f"另有 {hidden} 个议题无权查看" in listing


def test_a_report_reader_who_sees_none_of_a_meeting_is_told_nothing_of_it(app: Flask) -> None:
    """Not an attendee and no project of theirs on the agenda: the meeting is not listed, and its page answers as a
    meeting that does not exist — the same status and body but for the id."""
    meeting_id, agenda = _meeting_and_decisions(app)
    reader = login(app, NOBODYS_READER)
    assert not any(_seen_on_the_project_pages(reader, agenda).values())
    listing = reader.get("/meetings")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert f'data-meeting="{meeting_id}"' not in html and "2025年9月17日" not in html
    assert not any(item["name"] in html or item["code"] in html for item in agenda)
    there, absent = reader.get(f"/meetings/{meeting_id}"), reader.get("/meetings/999999")
    assert there.status_code == absent.status_code == 404
    assert answer(there, (meeting_id, 999999)) == answer(absent, (meeting_id, 999999))
    assert not any(item["name"] in there.get_data(as_text=True) for item in agenda)


def test_an_attendee_sees_the_meeting_but_not_the_projects_they_may_not_see(app: Flask) -> None:
    meeting_id, agenda = _meeting_and_decisions(app)
    with Session(app.extensions["jzflow.engine"]) as s:
        meeting = meetings.get_meeting(s, meeting_id)
        meeting.recipients = [*(meeting.recipients or []), actor_for(s, NOBODYS_READER).user_id]
        s.commit()
    reader = login(app, NOBODYS_READER)
    listing = reader.get("/meetings").get_data(as_text=True)
    assert f'data-meeting="{meeting_id}"' in listing and "2025年9月17日" in listing
    page = reader.get(f"/meetings/{meeting_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "2025年9月17日" in html and f"另有 {len(agenda)} 个议题无权查看" in html
    assert not any(item["name"] in html or item["code"] in html for item in agenda)


@pytest.mark.parametrize("username", ["wangjianguo", CLERK, "admin"])
def test_the_meetings_organisers_and_admins_see_the_whole_agenda(app: Flask, username: str) -> None:
    """Who records the decisions (leaders, city leaders, 招商专员) and admins: every item, every decision."""
    meeting_id, agenda = _meeting_and_decisions(app)
    html = login(app, username).get(f"/meetings/{meeting_id}").get_data(as_text=True)
    assert all(item["name"] in html and f"决定：{item['name']}" in html for item in agenda)
    assert "无权查看" not in html


def _agenda_links(html: str) -> dict[str, list[str]]:
    """Each agenda row's project code and the links its project cell holds."""
    rows = re.findall(r'<tr data-project="([^"]+)">\s*<td>(.*?)</td>', html, re.S)
    return {code: re.findall(r'href="([^"]+)"', cell) for code, cell in rows}


@pytest.mark.parametrize("username", [FGJ_READER, CLERK, "wangjianguo", "admin"])
def test_an_agenda_item_links_to_a_project_page_its_reader_may_open_or_to_none(app: Flask, username: str) -> None:
    """The agenda linked every item to the dashboard's project page, which has a scope of its own: a 招商专员 who sees
    the whole agenda got 404 there for the projects outside their units. Now an item links to its 项目库 page when
    the reader may open it (200 there), and shows its name without a link when they may not."""
    meeting_id, agenda = _meeting_and_decisions(app)
    client = login(app, username)
    html = client.get(f"/meetings/{meeting_id}").get_data(as_text=True)
    links = _agenda_links(html)
    assert links, html[:2000]
    opens = _seen_on_the_project_pages(client, [i for i in agenda if i["code"] in links])
    for item in agenda:
        if item["code"] not in links:
            continue
        if opens[item["code"]]:
            assert links[item["code"]] == [f"/projects/{item['project_id']}"], (item["code"], links[item["code"]])
            assert client.get(links[item["code"]][0]).status_code == 200
        else:
            assert links[item["code"]] == [], (item["code"], links[item["code"]])
    if username == CLERK:  # sees the whole agenda, opens none of it: names without links (were links to 404s)
        assert set(links) == {i["code"] for i in agenda} and not any(opens.values()), opens
    if username in (FGJ_READER, "admin"):  # what a reader sees on the agenda they open on the project pages
        assert all(opens.values()), opens
