"""指定责任领导 on an issue's page and a lead's page: who sees the form, who may post it, and what a refusal says.

The service's own rules and races: tests/engine/test_item_leaders.py. Here through the pages, as a browser sends
them: the form as drawn, then hostile posts — staff of the unit, a head of another unit, a non-leader, a closed issue,
a form without `seen` — each refused with the field named and nothing changed.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.audit.models import AuditEvent
from engine.org.actors import Actor
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue
from tests.engine.test_deactivate_leaders import _issue, _lead, people  # noqa: F401
from tests.engine.test_item_leaders import leaders  # noqa: F401
from tests.web.conftest import PASSWORD, app_on, csrf_of, form_at

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(db_url: str, session: Session, leaders: dict[str, Actor]) -> Iterator[tuple[Flask, dict[str, int]]]:  # noqa: F811
    ids = {"issue": _issue(session, "WT-2025-0001", leaders["zhao"]),
           "closed": _issue(session, "WT-2025-0002", leaders["zhao"], status="closed"),
           "lead": _lead(session, "ZS-2025-0001", leaders["zhao"])}
    for app in app_on(db_url, session, RATELIMIT_ENABLED=False):
        yield app, ids


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


def _state(app: Flask, model: Any, row_id: int) -> tuple[int | None, int]:
    with app.extensions["jzflow.sessionmaker"]() as s:
        row = s.get(model, row_id)
        events = s.scalars(select(AuditEvent).where(AuditEvent.action.in_(["ledger.leader", "lead.leader"]))).all()
        return row.responsible_leader_id, len(events)


def _user_id(app: Flask, username: str) -> int:
    from engine.org.models import User
    with app.extensions["jzflow.sessionmaker"]() as s:
        found = s.scalar(select(User.id).where(User.username == username))
        assert found is not None
        return found


def test_a_city_leader_changes_an_issues_leader_with_the_form_on_its_page(world: tuple[Flask, dict[str, int]]) -> None:
    app, ids = world
    client = _client(app, "sun")
    page, action = f"/ledger/{ids['issue']}", f"/ledger/{ids['issue']}/leader"
    fields = form_at(client, page, action)
    assert fields["leader"] == "zhao" and fields["seen"]  # the one named now is selected
    html = client.get(page).get_data(as_text=True)
    assert 'value="qian"' in html and 'value="zhang"' not in html and 'value="wu"' not in html
    response = client.post(action, data={**fields, "leader": "qian"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{page}#leader")
    assert _state(app, LedgerIssue, ids["issue"]) == (_user_id(app, "qian"), 1)
    shown = client.get(page).get_data(as_text=True)
    assert "责任领导已更新" in shown and 'data-action="ledger.leader"' in shown and "指定责任领导" in shown
    cleared = form_at(client, page, action)
    assert client.post(action, data={**cleared, "leader": ""}).status_code == 302
    assert _state(app, LedgerIssue, ids["issue"]) == (None, 2)


def test_the_unit_head_sets_a_leads_leader_on_the_lead_page(world: tuple[Flask, dict[str, int]]) -> None:
    app, ids = world
    client = _client(app, "zhou")
    page, action = f"/leads/{ids['lead']}", f"/leads/{ids['lead']}/leader"
    html = client.get(page).get_data(as_text=True)
    assert "ZS-2025-0001" in html and "工业和信息化局" in html and "对接中" in html
    response = client.post(action, data={**form_at(client, page, action), "leader": "he"})
    assert response.status_code == 302
    assert _state(app, InvestmentLead, ids["lead"]) == (_user_id(app, "he"), 1)
    assert 'data-action="lead.leader"' in client.get(page).get_data(as_text=True)


def test_staff_of_the_unit_see_the_page_without_the_form_and_are_refused_403(
        world: tuple[Flask, dict[str, int]]) -> None:
    app, ids = world
    client = _client(app, "zhang")
    for kind, model, page in (("issue", LedgerIssue, "/ledger"), ("lead", InvestmentLead, "/leads")):
        html = client.get(f"{page}/{ids[kind]}").get_data(as_text=True)
        assert f'action="{page}/{ids[kind]}/leader"' not in html
        token = csrf_of(client, f"{page}/{ids[kind]}")
        response = client.post(f"{page}/{ids[kind]}/leader", data={"leader": "qian", "seen": "x", "csrf_token": token})
        assert response.status_code == 403
        assert _state(app, model, ids[kind]) == (_user_id(app, "zhao"), 0)


def test_someone_without_the_item_in_reach_gets_404_as_for_a_missing_one(world: tuple[Flask, dict[str, int]]) -> None:
    app, ids = world
    client = _client(app, "ma")  # 开发区's head: neither item is in reach
    token = csrf_of(client, "/ledger")
    for path in (f"/ledger/{ids['issue']}", f"/leads/{ids['lead']}", "/leads/999999"):
        assert client.get(path).status_code == 404
        assert client.post(f"{path}/leader", data={"leader": "qian", "seen": "x", "csrf_token": token}).status_code \
            == 404
    assert _state(app, LedgerIssue, ids["issue"]) == (_user_id(app, "zhao"), 0)


@pytest.mark.parametrize(("leader", "status", "words"), [("zhang", 422, "不是领导"), ("wu", 422, "已停用"),
                                                          ("nobody", 422, "用户不存在"), ("x\x00y", 400, "leader")])
def test_a_bad_choice_is_refused_naming_the_field(world: tuple[Flask, dict[str, int]], leader: str, status: int,
                                                  words: str) -> None:
    app, ids = world
    client = _client(app, "admin")
    page, action = f"/ledger/{ids['issue']}", f"/ledger/{ids['issue']}/leader"
    response = client.post(action, data={**form_at(client, page, action), "leader": leader})
    assert response.status_code == status
    text = response.get_data(as_text=True)
    assert words in text and ("责任领导" in text or status == 400)  # 400: the guard, before any view, names the field
    assert _state(app, LedgerIssue, ids["issue"]) == (_user_id(app, "zhao"), 0)


def test_a_closed_issue_shows_no_form_and_a_post_is_refused(world: tuple[Flask, dict[str, int]]) -> None:
    app, ids = world
    client = _client(app, "admin")
    page = f"/ledger/{ids['closed']}"
    assert f'action="{page}/leader"' not in client.get(page).get_data(as_text=True)
    response = client.post(f"{page}/leader", data={"leader": "qian", "seen": "x", "csrf_token": csrf_of(client, page)})
    assert response.status_code == 409 and "已销号" in response.get_data(as_text=True)
    assert _state(app, LedgerIssue, ids["closed"]) == (_user_id(app, "zhao"), 0)


def test_a_form_without_what_the_page_saw_is_refused(world: tuple[Flask, dict[str, int]]) -> None:
    app, ids = world
    client = _client(app, "admin")
    page, action = f"/ledger/{ids['issue']}", f"/ledger/{ids['issue']}/leader"
    response = client.post(action, data={"leader": "qian", "csrf_token": csrf_of(client, page)})
    assert response.status_code == 409 and "seen" in response.get_data(as_text=True)
    assert _state(app, LedgerIssue, ids["issue"]) == (_user_id(app, "zhao"), 0)


def test_both_pages_and_their_form_read_in_english(world: tuple[Flask, dict[str, int]]) -> None:
    from tests.web.test_en_crawl import chinese
    app, ids = world
    client = _client(app, "admin")
    client.get("/lang/en")
    for page in (f"/ledger/{ids['issue']}", f"/leads/{ids['lead']}"):
        html = client.get(page).get_data(as_text=True)
        assert 'name="leader"' in html and "Responsible leader" in html
        assert not chinese(html), (page, chinese(html))


@pytest.mark.parametrize(("leader", "zh", "en"), [("nobody", "责任领导（leader）：用户不存在: nobody",
                                                   "leader: no such user: nobody"),
                                                  ("zhang", "责任领导（leader）“zhang”不是领导",
                                                   "leader: zhang is not a leader")])
def test_a_bad_choice_is_said_in_the_readers_language(world: tuple[Flask, dict[str, int]], leader: str, zh: str,
                                                      en: str) -> None:
    app, ids = world
    client = _client(app, "admin")
    page, action = f"/ledger/{ids['issue']}", f"/ledger/{ids['issue']}/leader"
    client.get("/lang/en")
    text = client.post(action, data={**form_at(client, page, action), "leader": leader}).get_data(as_text=True)
    assert en in text and zh not in text and "不是领导" not in text and "用户不存在" not in text
    client.get("/lang/zh")
    text = client.post(action, data={**form_at(client, page, action), "leader": leader}).get_data(as_text=True)
    assert zh in text and en not in text  # a Chinese reader reads it as before
    assert _state(app, LedgerIssue, ids["issue"]) == (_user_id(app, "zhao"), 0)
