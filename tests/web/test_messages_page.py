"""消息与信号 (/messages, /messages/waiting, /messages/signals): who sees what, filters, paging, hostile input.

Two process owners each deploy their own processes (tests/fixtures/messages): 甲 the 补正 case (`msg_case`,
messages `supplement` and `withdraw`), 乙 the signal processes and the message start (`application_filed`).
Each must see the messages, catches and broadcasts of their own processes and nothing of the other's; the
admin sees all; anyone else is refused. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine import clock, deploy, org
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import User
from engine.runtime import instances, messages, signals
from tests.conftest import read_fixture_dir
from tests.web import zh_crawl
from tests.web.conftest import PASSWORD_HASH
from tests.web.flows import db

Login = Callable[[str], FlaskClient]
A_KEY, B_KEY, BUFFERED_KEY = "SECRET-甲-11", "SECRET-乙-申报", "SECRET-甲-撤回"


def _owner(app: Flask, username: str, name: str) -> None:
    with db(app) as s:
        user: User = org.add_user(s, username=username, display_name=name, role_codes=["process_owner"])
        user.password_hash = PASSWORD_HASH


def _bundle(*names: str) -> dict[str, bytes]:
    files = read_fixture_dir("messages")
    return {k: v for k, v in files.items() if k in names or k.startswith("forms/") or k.endswith(".json")}


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    with db(app) as s:
        org.add_role(s, code="process_owner", name="流程管理员")
    _owner(app, "owner_a", "流程管理员甲")
    _owner(app, "owner_b", "流程管理员乙")
    with db(app) as s:
        a, b = actor_for(s, "owner_a"), actor_for(s, "owner_b")
        deploy.deploy(s, _bundle("messages.bpmn"), actor=a, check_lanes=False)
        deploy.deploy(s, _bundle("signals.bpmn", "started.bpmn"), actor=b, check_lanes=False)
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
def test_a_process_owner_sees_only_the_processes_they_deployed(world: dict[str, Any], login: Login) -> None:
    a, b = login("owner_a"), login("owner_b")
    mine_a = _page(a, "/messages")
    assert _rows(mine_a, "message") == sorted([world["delivered"], world["kept"]], reverse=True)
    assert B_KEY not in mine_a and "application_filed" not in _main(mine_a)
    mine_b = _page(b, "/messages")
    assert _rows(mine_b, "message") == [world["started"]]
    assert A_KEY not in mine_b and BUFFERED_KEY not in mine_b and "supplement" not in _main(mine_b)
    # filtering by the other owner's name, or state, shows nothing of theirs
    assert _rows(_page(b, "/messages?name=supplement"), "message") == []
    assert _rows(_page(b, "/messages?name=withdraw&state=buffered"), "message") == []
    # waiting catches: each their own instances only, even when asking for the other's name
    wa, wb = _page(a, "/messages/waiting"), _page(b, "/messages/waiting")
    assert "supplement" in wa and "plan_revised" not in _main(wa)
    assert "plan_revised" in wb and "supplement" not in _main(wb)
    peek = _page(b, "/messages/waiting?kind=message&name=supplement")
    assert f'/instances/{world["still"]}"' not in peek and "没有实例在等待它" in peek
    # signals: 乙's broadcast with the progress of 乙's instances; 甲 sees none
    assert _rows(_page(b, "/messages/signals"), "signal") == [world["signal"]]
    assert _rows(_page(a, "/messages/signals"), "signal") == []
    assert "没有符合条件的信号广播" in _page(a, "/messages/signals")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_process_owner_who_deployed_nothing_sees_an_empty_page_and_others_are_refused(
        world: dict[str, Any], login: Login, app: Flask) -> None:
    _owner(app, "owner_c", "流程管理员丙")
    html = _page(login("owner_c"), "/messages")
    assert _rows(html, "message") == [] and "您还没有部署过流程" in html
    for username in ("window", "applicant", "boss", "fg"):
        client = login(username)
        inbox = client.get("/inbox").get_data(as_text=True)
        assert 'href="/messages"' not in inbox
        for path in ("/messages", "/messages/waiting", "/messages/signals",
                     "/messages/waiting?kind=message&name=supplement", "/messages?state=bogus"):
            body = _page(client, path, 403)
            assert "流程管理员或系统管理员" in body and A_KEY not in body and "supplement" not in _main(body)
    assert 'href="/messages"' in login("owner_a").get("/inbox").get_data(as_text=True)


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
    assert "Messages and signals" in html and "Delivered" in html and "Buffered" in html and "已投递" not in html
    assert "Delivery progress" in _page(admin, "/messages/signals")
    assert "Waiting catches" in _page(admin, "/messages/waiting")
    refused = _page(login("window"), "/messages", 403)
    assert "流程管理员或系统管理员" in refused
    assert "state: one of" in _page(admin, "/messages?state=bogus", 422)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_page_with_data_is_chinese(world: dict[str, Any], login: Login) -> None:
    for username in ("admin", "owner_a", "owner_b"):
        client = login(username)
        for path in ("/messages", "/messages?state=delivered", "/messages/waiting",
                     "/messages/waiting?kind=message&name=supplement", "/messages/waiting?kind=signal&name=plan_revised",
                     "/messages/signals"):
            html = _page(client, path)
            assert not zh_crawl.untranslated(html), (username, path, zh_crawl.untranslated(html))
