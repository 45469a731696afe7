"""通知: delivered by the outbox job after the commit; listed, opened, marked read — one's own only."""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from engine import notify
from engine.jobs import run_outbox
from engine.org.actors import actor_for
from engine.runtime import instances
from engine.tasks import collab
from engine.tasks.collab_models import Notification
from tests.conftest import FIXTURES
from tests.web.flows import db, deploy_files, deploy_good, post, started_review

Login = Callable[[str], FlaskClient]


def _notify(app: Flask, username: str, title: str, link: str | None) -> None:
    """A notice of fixed words, as one written before notices kept their text id (no params): shown as stored."""
    with db(app) as s:
        notify.send(s, notify.Note(user_id=actor_for(s, username).user_id or 0, kind="info", title=title, body="正文",
                                   link=link))
    assert run_outbox(app.extensions["jzflow.sessionmaker"]) >= 1


def test_a_cc_reaches_the_user_through_the_outbox(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    with db(app) as s:
        collab.carbon_copy(s, instance_id=row.id, actor=actor_for(s, "applicant"), usernames=["boss"],
                           note="知悉")
    boss = login("boss")
    assert "知悉" not in boss.get("/notifications").get_data(as_text=True)  # not delivered yet
    run_outbox(app.extensions["jzflow.sessionmaker"])
    html = boss.get("/notifications").get_data(as_text=True)
    assert '<span translate="no">项目单位张三</span>抄送给您' in html and 'class="badge"' in html  # the name: data
    with db(app) as s:
        note = s.scalar(select(Notification).where(Notification.link == f"/instances/{row.id}"))
        assert note is not None
    opened = post(boss, f"/notifications/{note.id}/read", {"open": "1"}, page="/notifications")
    assert opened.status_code == 302 and opened.headers["Location"] == f"/instances/{row.id}"
    assert 'class="badge"' not in boss.get("/notifications").get_data(as_text=True)


def test_mark_read_all_and_only_ones_own(app: Flask, login: Login) -> None:
    _notify(app, "fg", "第一条", "/tasks/1")
    _notify(app, "fg", "第二条", "https://evil.example/")
    _notify(app, "st", "别人的", None)
    fg = login("fg")
    html = fg.get("/notifications?unread=1").get_data(as_text=True)
    assert "第一条" in html and "第二条" in html and "别人的" not in html
    with db(app) as s:
        theirs = s.scalar(select(Notification.id).where(Notification.title == "别人的"))
        evil = s.scalar(select(Notification.id).where(Notification.title == "第二条"))
    assert post(fg, f"/notifications/{theirs}/read", page="/notifications").status_code == 404
    off_site = post(fg, f"/notifications/{evil}/read", {"open": "1"}, page="/notifications")
    assert off_site.headers["Location"] == "/notifications"  # never redirected off site
    assert post(fg, "/notifications/read-all", page="/notifications").status_code == 302
    with db(app) as s:
        unread = {n.title: n.read_at for n in s.scalars(select(Notification))}
    assert unread["第一条"] is not None and unread["第二条"] is not None and unread["别人的"] is None
    assert "没有通知" in fg.get("/notifications?unread=1").get_data(as_text=True)


def test_a_name_nobody_has_reaches_the_administrators_as_escaped_text(app: Flask, login: Login) -> None:
    """The names a model gives are the process owner's to choose: an unknown one with markup and a line break is
    told (no process owner here: the administrators) and shown as text, in the note and in the instance's trail."""
    forms = FIXTURES / "good" / "forms"
    text = (FIXTURES / "good" / "minimal.bpmn").read_text(encoding="utf-8")
    text = re.sub(r'(id|processRef)="minimal"', r'\1="named"', text).replace(
        '<spiffworkflow:property name="sla" value="3wd" />', '<spiffworkflow:property name="candidates" value="who" />')
    deploy_files(app, {"named.bpmn": text.encode(), "approve.schema.json": (forms / "approve.schema.json").read_bytes(),
                       "approve.uischema.json": (forms / "approve.uischema.json").read_bytes()})
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(1)>\n伪造的一行'
    with db(app) as s:
        row = instances.start(s, process_key="named", actor=actor_for(s, "applicant"), data={"who": [hostile]})
        instance_id = row.id
    run_outbox(app.extensions["jzflow.sessionmaker"])
    admin = login("admin")
    html = admin.get("/notifications").get_data(as_text=True)
    assert "指向不存在的人员" in html and "approve" in html
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "&lt;script&gt;alert(1)" in html
    trail = admin.get(f"/audit/instances/{instance_id}").get_data(as_text=True)
    assert "指派对象不存在" in trail and "<script>alert(1)" not in trail and "&lt;script&gt;alert(1)" in trail
    admin.get("/lang/en")
    assert "Named an unknown person (passed over)" in admin.get(f"/audit/instances/{instance_id}").get_data(
        as_text=True)


def test_a_summary_of_notices_not_sent_shows_how_many(app: Flask, login: Login, monkeypatch: pytest.MonkeyPatch,
                                                      frozen: object) -> None:
    """Past the hourly cap the person gets one summary, and its page says how many were not sent (from the counter,
    so also those dropped after it was delivered), in zh and en."""
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "2")
    for i in range(5):
        if i < 2:
            _notify(app, "fg", f"督办{i}", "/inbox")
        else:
            _dropped(app, "fg", f"督办{i}")
    run_outbox(app.extensions["jzflow.sessionmaker"])
    _dropped(app, "fg", "督办5")
    fg = login("fg")
    html = fg.get("/notifications").get_data(as_text=True)
    assert "本小时另有通知因超出上限未单独发送，请查看待办/督办" in html and "这一小时未单独发送的通知：4 条" in html
    assert html.count("未单独发送的通知") == 1
    fg.get("/lang/en")
    assert "Notices not sent one by one in this hour: 4" in fg.get("/notifications").get_data(as_text=True)
    assert "未单独发送的通知" not in login("st").get("/notifications").get_data(as_text=True)


def _dropped(app: Flask, username: str, title: str) -> None:
    with db(app) as s:
        notify.send(s, notify.Note(user_id=actor_for(s, username).user_id or 0, kind="info", title=title))
