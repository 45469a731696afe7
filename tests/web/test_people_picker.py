"""选人 on the web: /people/search answers only the actor's scope; the forms offer only it; 转办 outside it is refused."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from engine.org.actors import Actor
from engine.tasks.models import HumanTask
from tests.people_world import PeopleWorld, build
from tests.web.conftest import app_on, csrf_of
from tests.web.flows import Api, token_for

Login = Callable[[str], FlaskClient]


@pytest.fixture
def world(session: Session, review_org: dict[str, Actor]) -> PeopleWorld:
    return build(session, review_org)


@pytest.fixture
def app(db_url: str, session: Session, world: PeopleWorld) -> Iterator[Flask]:  # after the world: its users log in
    yield from app_on(db_url, session)


def found(client: FlaskClient, query: str) -> list[dict[str, Any]]:
    response = client.get(f"/people/search?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    people: list[dict[str, Any]] = response.get_json()["people"]
    return people


def test_an_applicant_cannot_list_the_directory(world: PeopleWorld, login: Login) -> None:
    applicant = login("applicant")
    assert found(applicant, "q=") == [] and found(applicant, "q=w") == [] and found(applicant, "q=%E9%99%8C") == []
    on_case = {p["username"] for p in found(applicant, f"q=&task={world.fill_id}")}
    assert {"fg", "zr", "st"} <= on_case and not {"stranger", "mayor", "window", "admin"} & on_case
    assert applicant.get(f"/people/search?q=&task={world.review_id}").status_code in (200, 403, 404)


def test_staff_search_by_pinyin_initials_within_their_scope(world: PeopleWorld, login: Login) -> None:
    fg = login("fg")
    assert found(fg, "q=lzy") == [{"username": "lzy", "name": "林志远", "unit": "发改", "label": "林志远（发改）"}]
    assert found(fg, "q=stranger") == [] and found(fg, "q=%E9%99%8C%E7%94%9F") == []  # 陌生人: another unit
    assert "zr" in {p["username"] for p in found(fg, f"q=zr&task={world.review_id}")}  # the case's handlers
    window = login("window")  # may not see the case: no case scope through someone else's task
    assert window.get(f"/people/search?q=&task={world.review_id}").status_code in (403, 404)


def test_hostile_queries_get_a_message_or_nothing(world: PeopleWorld, login: Login, app: Flask) -> None:
    fg = login("fg")
    as_json = {"Accept": "application/json"}  # what the picker widget asks for
    too_long = fg.get("/people/search?q=" + "x" * 300, headers=as_json)
    assert too_long.status_code == 422 and "q" in too_long.get_json()["message"]
    bad_task = fg.get("/people/search?task=abc", headers=as_json)
    assert bad_task.status_code == 422 and bad_task.get_json()["field"] == "task"
    assert found(fg, "q=%3Cscript%3E") == []
    anonymous = app.test_client().get("/people/search?q=a", headers={"Accept": "application/json"})
    assert anonymous.status_code in (401, 302) and b"lzy" not in anonymous.get_data()


def test_the_task_page_offers_the_scope_by_unit_and_refuses_transfer_outside_it(world: PeopleWorld, login: Login,
                                                                               session: Session) -> None:
    fg = login("fg")
    html = fg.get(f"/tasks/{world.review_id}").get_data(as_text=True)
    transfer = html[html.index(f'action="/tasks/{world.review_id}/transfer"'):]
    select = transfer[:transfer.index("</select>")]
    assert 'data-jz-picker="/people/search"' in html and f'data-task="{world.review_id}"' in transfer
    assert re.search(r'<optgroup label="[^"]*发改">', select)
    assert '<option value="lzy" translate="no">林志远（发改）</option>' in select
    assert "stranger" not in html and "陌生人" not in html and 'value="clerk"' not in html
    token = csrf_of(fg, "/inbox")
    refused = fg.post(f"/tasks/{world.review_id}/transfer", data={"to_username": "stranger", "csrf_token": token})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 403 and "转办给（to_username）" in body and "不在您可选择的人员范围内" in body
    session.expire_all()
    review = session.get(HumanTask, world.review_id)
    assert review is not None and review.assignee_id is not None
    holder = review.assignee_id
    session.rollback()  # end the read: the app writes next (SQLite)
    done = fg.post(f"/tasks/{world.review_id}/transfer", data={"to_username": "lzy", "csrf_token": token},
                   follow_redirects=True)
    assert "已转办给 林志远（发改）" in done.get_data(as_text=True) and "已转办给 lzy" not in done.get_data(as_text=True)
    session.expire_all()
    assert session.get(HumanTask, world.review_id).assignee_id != holder  # type: ignore[union-attr]


def test_the_inbox_bulk_transfer_offers_the_scope_without_js(world: PeopleWorld, login: Login) -> None:
    html = login("fg").get("/inbox").get_data(as_text=True)
    assert '<select id="bulk-transfer-to" name="to_username">' in html
    assert '<option value="lzy" translate="no">林志远（发改）</option>' in html and "陌生人" not in html


def test_the_api_enforces_the_same_scope(world: PeopleWorld, app: Flask, session: Session) -> None:
    api = Api(app, token_for(app, "fg"))
    for path, body, field in ((f"/api/tasks/{world.review_id}/transfer", {"to_username": "stranger"}, "to_username"),
                              (f"/api/tasks/{world.review_id}/delegate", {"to_username": "clerk"}, "to_username"),
                              (f"/api/tasks/{world.review_id}/cosigners",
                               {"usernames": ["zr", "stranger"], "position": "before"}, "usernames")):
        refused = api.post(path, body)
        assert refused.status_code == 403, refused.get_data(as_text=True)
        problem = refused.get_json()
        assert problem["field"] == field and f"（{field}）" in problem["message"]
    session.expire_all()
    review = session.get(HumanTask, world.review_id)
    assert review is not None and not review.blocked and review.delegation_state is None
    session.rollback()


def test_the_picker_speaks_english_too(world: PeopleWorld, login: Login) -> None:
    fg = login("fg")
    fg.get("/lang/en")
    html = fg.get(f"/tasks/{world.review_id}").get_data(as_text=True)
    assert 'data-search-label="Search a name, pinyin initials or unit"' in html and ">Transfer to</label>" in html
    assert ">Co-signers (one or more)</label>" in html and ">Copy to (one or more)</label>" in html
    token = csrf_of(fg, "/inbox")
    done = fg.post(f"/tasks/{world.review_id}/cc", data={"usernames": "lzy", "csrf_token": token}, follow_redirects=True)
    assert "Copied to 林志远（发改）" in done.get_data(as_text=True)
