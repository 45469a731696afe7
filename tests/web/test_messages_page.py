"""消息与信号 (/messages, /messages/waiting, /messages/signals): who sees what, filters, paging, hostile input.

Process owner 甲 deploys the 补正 case (`msg_case`, messages `supplement` and `withdraw`; tests/fixtures/messages);
the signal processes and the message start (`application_filed`) come from the command line, with no deployer.
Whoever may open the pages — process owners (甲, and 乙 who deployed nothing), auditors, admins — sees every
message, catch and broadcast, whoever deployed the process; anyone else is refused. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine import clock, deploy, jobs, org
from engine.audit.models import AuditEvent
from engine.errors import ConcurrentModification
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import User
from engine.runtime import instances, message_worker, messages, signals
from engine.runtime.message_models import BpmnMessage
from tests.conftest import read_fixture_dir
from tests.engine.test_messages_concurrency import _busy_while
from tests.web import zh_crawl
from tests.web.conftest import PASSWORD_HASH
from tests.web.flows import db

Login = Callable[[str], FlaskClient]
A_KEY, B_KEY, BUFFERED_KEY = "SECRET-甲-11", "SECRET-命令行-申报", "SECRET-甲-撤回"
ROLES = {"process_owner": "流程管理员", "auditor": "审计督查", "city_leader": "市级领导"}
PEOPLE = {"owner_a": ("流程管理员甲", "process_owner"), "owner_b": ("流程管理员乙", "process_owner"),
          "auditor": ("审计督查钱", "auditor"), "mayor": ("市级领导王", "city_leader")}
READERS = ("admin", "owner_a", "owner_b", "auditor")  # owner_b deployed nothing
RIGHT = "流程管理员、审计督查人员或系统管理员"  # the refusal names who may, and whom to ask
REFUSED = ("window", "applicant", "fg", "boss", "mayor")  # staff, applicant, reviewer, leader, city leader


def _person(app: Flask, username: str, name: str, role: str) -> None:
    with db(app) as s:
        user: User = org.add_user(s, username=username, display_name=name, role_codes=[role])
        user.password_hash = PASSWORD_HASH


def _bundle(*names: str) -> dict[str, bytes]:
    files = read_fixture_dir("messages")
    return {k: v for k, v in files.items() if k in names or k.startswith("forms/") or k.endswith(".json")}


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    with db(app) as s:
        for code, name in ROLES.items():
            org.add_role(s, code=code, name=name)
    for username, (name, role) in PEOPLE.items():
        _person(app, username, name, role)
    with db(app) as s:
        deploy.deploy(s, _bundle("messages.bpmn"), actor=actor_for(s, "owner_a"), check_lanes=False)
        deploy.deploy(s, _bundle("signals.bpmn", "started.bpmn"), actor=SYSTEM, check_lanes=False)  # `jzflow deploy`
    with db(app) as s:
        reached = instances.start(s, process_key="msg_case", actor=SYSTEM, business_key=A_KEY,
                                  data={"application_id": 11, "resumed": 0}).id
        still = instances.start(s, process_key="msg_case", actor=SYSTEM, data={"application_id": 12, "resumed": 0}).id
        waiting_b = [instances.start(s, process_key="sig_wait", actor=SYSTEM, data={"resumed": 0}).id
                     for _ in range(2)]
    with db(app) as s:
        admin = actor_for(s, "admin")
        delivered = messages.publish(s, name="supplement", actor=admin, correlations={"application_id": 11},
                                     payload={"pages": 2})
        kept = messages.publish(s, name="withdraw", actor=admin, business_key=BUFFERED_KEY, ttl=600)
        started = messages.publish(s, name="application_filed", actor=admin, business_key=B_KEY,
                                   payload={"project": "x"})
        signal = signals.broadcast(s, name="plan_revised", actor=admin, payload={"revision": 2})
    with db(app) as s:
        first = signals.pending_ids(s, limit=1)[0]
        assert signals.deliver_one(s, first)
    assert (delivered.status, delivered.instance_id) == ("delivered", reached)
    assert kept.status == "buffered" and started.status == "started" and signal.waiting == 2
    return {"reached": reached, "still": still, "waiting_b": waiting_b, "delivered": delivered.id,
            "kept": kept.id, "started": started.id, "started_instance": started.instance_id, "signal": signal.id}


def _page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    body = response.get_data(as_text=True)
    assert response.status_code == status, (path, response.status_code, body[:500])
    return body


def _main(html: str) -> str:
    return html.split("<main>")[1].split("</main>")[0]


def _rows(html: str, marker: str) -> list[int]:
    return [int(n) for n in re.findall(rf'data-{marker}="(\d+)"', html)]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_the_admin_sees_every_message_with_its_fate_and_instance(world: dict[str, Any], login: Login) -> None:
    admin = login("admin")
    html = _page(admin, "/messages")
    assert _rows(html, "message") == sorted([world["delivered"], world["kept"], world["started"]], reverse=True)
    assert f'href="/instances/{world["reached"]}"' in html and f'href="/instances/{world["started_instance"]}"' in html
    assert "已投递" in html and "暂存中" in html and "保留至" in html and "已启动流程" in html
    assert "application_id=11" in html and BUFFERED_KEY in html and "管理员" in html  # the sender
    waiting = _page(admin, "/messages/waiting")
    assert "supplement" in waiting and "withdraw" in waiting and "plan_revised" in waiting
    drill = _page(admin, "/messages/waiting?kind=message&name=supplement")
    assert f'href="/instances/{world["still"]}"' in drill and "application_id=12" in drill
    sig = _page(admin, "/messages/signals")
    assert _rows(sig, "signal") == [world["signal"]]
    assert "已完成 1 · 待投递 1" in sig  # one of the two waiting instances resumed so far


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_process_owners_and_auditors_see_every_process_also_one_deployed_from_the_command_line(
        world: dict[str, Any], login: Login) -> None:
    every = sorted([world["delivered"], world["kept"], world["started"]], reverse=True)
    for username in READERS[1:]:
        client = login(username)
        html = _page(client, "/messages")
        assert _rows(html, "message") == every, username
        assert A_KEY in html and BUFFERED_KEY in html and B_KEY in html  # 甲's and the command line's
        assert f'href="/instances/{world["started_instance"]}"' in html
        assert _rows(_page(client, "/messages?name=application_filed"), "message") == [world["started"]]
        assert _rows(_page(client, "/messages?name=withdraw&state=buffered"), "message") == [world["kept"]]
        waiting = _main(_page(client, "/messages/waiting"))
        assert "supplement" in waiting and "plan_revised" in waiting, username
        drill = _page(client, "/messages/waiting?kind=signal&name=plan_revised")
        assert sum(f'href="/instances/{i}"' in drill for i in world["waiting_b"]) == 1  # the other one resumed
        assert f'href="/instances/{world["still"]}"' in _page(client, "/messages/waiting?kind=message&name=supplement")
        signals_page = _page(client, "/messages/signals")
        assert _rows(signals_page, "signal") == [world["signal"]] and "已完成 1 · 待投递 1" in signals_page


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_anyone_else_is_refused_and_not_shown_the_door(world: dict[str, Any], login: Login) -> None:
    for username in REFUSED:
        client = login(username)
        inbox = client.get("/inbox").get_data(as_text=True)
        assert 'href="/messages"' not in inbox, username
        for path in ("/messages", "/messages/waiting", "/messages/signals",
                     "/messages/waiting?kind=message&name=supplement", "/messages?state=bogus"):
            body = _page(client, path, 403)
            assert RIGHT in body and A_KEY not in body and "supplement" not in _main(body), (username, path)
    for username in READERS:
        assert 'href="/messages"' in login(username).get("/inbox").get_data(as_text=True), username


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_message_past_its_time_to_live_reads_expired_before_the_beat_marks_it(
        world: dict[str, Any], login: Login) -> None:
    admin = login("admin")
    assert _rows(_page(admin, "/messages?state=buffered"), "message") == [world["kept"]]
    clock.freeze(clock.now() + timedelta(seconds=601))
    assert _rows(_page(admin, "/messages?state=buffered"), "message") == []
    html = _page(admin, "/messages?state=expired")
    assert _rows(html, "message") == [world["kept"]] and "已过期" in html and "过期于" in html
    assert _rows(_page(admin, "/messages?state=delivered"), "message") == [world["delivered"]]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pages_follow_to_the_end_and_huge_page_positions_are_refused_or_empty(
        world: dict[str, Any], login: Login) -> None:
    admin = login("admin")
    seen: list[int] = []
    url: str | None = "/messages?limit=1"
    while url:
        html = _page(admin, url)
        seen += _rows(html, "message")
        found = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = found.group(1).replace("&amp;", "&") if found else None
        assert len(seen) < 10
    assert seen == sorted([world["delivered"], world["kept"], world["started"]], reverse=True)
    assert _rows(_page(admin, "/messages?after=2147483647&limit=999999"), "message") == seen  # clamped to 200
    assert _rows(_page(admin, "/messages?after=1"), "message") == []
    assert _rows(_page(admin, "/messages/signals?after=1"), "signal") == []
    assert "application_id=12" not in _page(admin, f"/messages/waiting?kind=message&name=supplement&after={10**9}")


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize(("query", "field", "words"), [
    ("/messages?state=bogus", "state", "状态"),
    ("/messages?state=%3Cscript%3E", "state", "状态"),
    (f"/messages?name={'长' * 201}", "name", "名称"),
    ("/messages?after=abc", "after", "after"),
    (f"/messages?after={10**30}", "after", "after"),
    ("/messages?after=-5", "after", "after"),
    ("/messages?limit=ten", "limit", "每页条数"),
    (f"/messages?limit={10**30}", "limit", "每页条数"),
    ("/messages/waiting?kind=queue", "kind", "类型"),
    (f"/messages/waiting?kind=message&name={'x' * 300}", "name", "名称"),
    (f"/messages/signals?after={10**30}", "after", "after"),
    ("/messages/signals?limit=-1", "limit", "每页条数"),
])
def test_malformed_filters_name_the_field_and_never_answer_500(world: dict[str, Any], login: Login, query: str,
                                                                field: str, words: str) -> None:
    admin = login("admin")
    body = _page(admin, query, 422)
    assert words in _main(body) and "<script>" not in body
    problem = admin.get(query, headers={"Accept": "application/json"})
    assert problem.status_code == 422 and problem.json is not None and problem.json["field"] == field


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_pages_speak_english_when_asked(world: dict[str, Any], login: Login) -> None:
    admin = login("admin")
    admin.get("/lang/en")
    html = _page(admin, "/messages")
    assert "Messaging" in html and "Delivered" in html and "Buffered" in html and "已投递" not in html
    assert "Delivery progress" in _page(admin, "/messages/signals")
    assert "Waiting catches" in _page(admin, "/messages/waiting")
    window = login("window")
    window.get("/lang/en")
    assert "process owners, auditors or system administrators" in _page(window, "/messages", 403)
    assert "state: one of" in _page(admin, "/messages?state=bogus", 422)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_page_with_data_is_chinese(world: dict[str, Any], login: Login) -> None:
    for username in ("admin", "owner_b"):
        client = login(username)
        for path in ("/messages", "/messages?state=delivered", "/messages/waiting",
                     "/messages/waiting?kind=message&name=supplement", "/messages/waiting?kind=signal&name=plan_revised",
                     "/messages/signals"):
            html = _page(client, path)
            assert not zh_crawl.untranslated(html), (username, path, zh_crawl.untranslated(html))


def _given_up(app: Flask, monkeypatch: pytest.MonkeyPatch, instance_id: int) -> int:
    """A 补正 published while its instance was busy, then given up by the outbox after its last try (refused)."""
    busy = _busy_while(monkeypatch, instance_id)
    with db(app) as s:
        out = messages.publish(s, name="supplement", actor=actor_for(s, "admin"), correlations={"application_id": 12},
                               payload={"pages": 3})
    assert out.status == "pending" and out.id is not None
    with db(app) as s:
        assert message_worker.give_up(s, out.id, tries=10, error=ConcurrentModification(instance_id))
    busy.clear()
    return out.id


def _retry_form(html: str, message_id: int) -> bool:
    return f'action="/messages/{message_id}/retry"' in html


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_given_up_message_shows_why_and_only_an_admin_routes_it_again(
        world: dict[str, Any], login: Login, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = _given_up(app, monkeypatch, world["still"])
    for username in READERS[1:]:  # process owners and auditors read why, and are offered nothing to do
        client = login(username)
        html = _page(client, "/messages?state=refused")
        assert _rows(html, "message") == [refused] and "已拒收" in html, username
        assert f"流程实例 #{world['still']} 每次都正忙" in html and not _retry_form(html, refused), username
        token = re.search(r'name="csrf_token" value="([^"]+)"', _page(client, "/inbox"))
        assert token is not None
        answer = client.post(f"/messages/{refused}/retry", data={"csrf_token": token.group(1)})
        assert answer.status_code == 403, username
    admin = login("admin")
    html = _page(admin, "/messages?state=refused")
    assert _retry_form(html, refused) and "重新投递" in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None
    with db(app) as s:
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == refused)) == "refused"
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "message.retry")) == 0  # the refusals above changed nothing
    assert admin.post(f"/messages/{refused}/retry").status_code == 400  # no CSRF token
    answer = admin.post(f"/messages/{refused}/retry", data={"csrf_token": token.group(1)}, follow_redirects=True)
    body = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "已重新投递" in body and f'data-message="{refused}"' in body
    again = admin.post(f"/messages/{refused}/retry", data={"csrf_token": token.group(1)})
    assert again.status_code == 409 and "不是已拒收的消息" in again.get_data(as_text=True)  # a double click
    assert admin.post("/messages/2147483647/retry", data={"csrf_token": token.group(1)}).status_code == 404
    assert admin.post(f"/messages/{world['kept']}/retry", data={"csrf_token": token.group(1)}).status_code == 409
    jobs.run_outbox(app.extensions["jzflow.sessionmaker"])
    with db(app) as s:
        row = s.get(BpmnMessage, refused)
        assert row is not None and (row.status, row.instance_id, row.reason) == ("delivered", world["still"], None)
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "message.retry")) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_given_up_message_reads_in_one_language(world: dict[str, Any], login: Login, app: Flask,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    refused = _given_up(app, monkeypatch, world["still"])
    admin = login("admin")
    html = _page(admin, "/messages?state=refused")
    assert not zh_crawl.untranslated(html), zh_crawl.untranslated(html)
    assert "busy at every try" not in html
    admin.get("/lang/en")
    html = _page(admin, "/messages?state=refused")
    assert "Refused" in html and "busy at every try" in html and "每次都正忙" not in html and "重新投递" not in html
    assert _retry_form(html, refused)
