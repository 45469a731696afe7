"""督办 改派 with the people picker: the leader chooses from the people of their scope who belong to the object's unit
(the same widget as 转办 on the task page, its live search narrowed by the 改派's own endpoint); the server checks the
choice again. Hostile: an unknown person, one
outside the scope, nobody chosen, and a user who leads nothing."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.deadlines.models import DeadlineAction
from engine.org.models import Role, User
from plan.ledger.models import LedgerIssue
from tests.web.conftest import csrf_of, form_at
from tests.web.test_supervision import SH, leaders, swept  # boss heads 发改, the issue is 发改's

__all__ = ["leaders"]


@pytest.fixture
def colleague(leaders: dict[str, int], factory: sessionmaker[Session]) -> int:
    """A second member of 发改: someone the unit's head may hand the issue to."""
    with factory() as s:
        user = org.add_user(s, username="fg_li", display_name="发改李九", unit_codes=["fgj"])
        s.commit()
        return user.id


def _options(page: str) -> list[str]:
    select_html = re.search(r'<select id="reassign-to" name="to_username"[^>]*>(.*?)</select>', page, re.S)
    assert select_html is not None, page[-3000:]
    return [v for v in re.findall(r'<option value="([^"]*)"', select_html.group(1)) if v]


def _post(client: FlaskClient, issue: int, to: str, **headers: str) -> Any:
    return client.post(f"/supervision/issue/{issue}/reassign", headers=headers,
                       data={"csrf_token": csrf_of(client, "/supervision"), "to_username": to, "note": "出差"})


def _handler(factory: sessionmaker[Session], issue: int) -> str:
    with factory() as s:
        return str(s.scalar(select(User.username).join(LedgerIssue, LedgerIssue.handler_id == User.id)
                            .where(LedgerIssue.id == issue)))


def _reassigns(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(DeadlineAction)
                            .where(DeadlineAction.action == "reassign")) or 0)


def test_a_leader_reassigns_with_the_pickers_value(leaders: dict[str, int], colleague: int,
                                                   login: Callable[[str], FlaskClient],
                                                   factory: sessionmaker[Session]) -> None:
    swept(factory, datetime(2025, 9, 5, 10, tzinfo=SH))  # overdue: on 督办
    boss, issue = login("boss"), leaders["issue"]
    index = boss.get("/supervision").get_data(as_text=True)
    assert f'href="/supervision/issue/{issue}/reassign"' in index and 'name="to_username"' not in index
    page = boss.get(f"/supervision/issue/{issue}/reassign").get_data(as_text=True)
    assert f'data-jz-picker="/supervision/issue/{issue}/reassign/people"' in page and "项目用地规划许可办理缓慢" in page
    offered = _options(page)
    assert "fg_li" in offered and "fg" in offered and "zr" not in offered and "applicant" not in offered
    found = boss.get("/people/search", query_string={"q": "fgl"}).get_json()["people"]  # pinyin: 发改李九
    assert [p["username"] for p in found] == ["fg_li"]
    action = f"/supervision/issue/{issue}/reassign"
    response = boss.post(action, data={**form_at(boss, action, action), "to_username": "fg_li", "note": "出差"})
    assert response.status_code == 302 and _handler(factory, issue) == "fg_li" and _reassigns(factory) == 1
    assert "已改派给 发改李九" in boss.get("/supervision").get_data(as_text=True)


@pytest.mark.parametrize(("to", "status", "words"), [
    ("nobody", 404, ("改派给", "to_username", "nobody")),
    ("zr", 403, ("改派给", "to_username", "不在您可选择的人员范围内")),  # 自然资源: not boss's unit nor this case's
    ("", 422, ("改派给", "to_username")),
])
def test_an_unknown_or_out_of_scope_person_is_refused_naming_the_field(
        leaders: dict[str, int], colleague: int, login: Callable[[str], FlaskClient],
        factory: sessionmaker[Session], to: str, status: int, words: tuple[str, ...]) -> None:
    boss, issue = login("boss"), leaders["issue"]
    response = _post(boss, issue, to)
    body = response.get_data(as_text=True)
    assert response.status_code == status and all(w in body for w in words), body[-2000:]
    form = f"http://localhost/supervision/issue/{issue}/reassign"
    back = _post(boss, issue, to, Referer=form)  # from the form: back to it, the reason flashed
    assert back.status_code == 302 and back.headers["Location"] == form
    assert "改派给" in boss.get(form).get_data(as_text=True)
    assert _handler(factory, issue) == "fg" and _reassigns(factory) == 0


def test_a_user_who_leads_nothing_cannot_reassign(leaders: dict[str, int], colleague: int,
                                                  login: Callable[[str], FlaskClient],
                                                  factory: sessionmaker[Session]) -> None:
    issue = leaders["issue"]
    for username in ("fg", "applicant"):
        client = login(username)
        assert client.get(f"/supervision/issue/{issue}/reassign").status_code == 403
        assert _post(client, issue, "fg_li").status_code == 403
    assert _handler(factory, issue) == "fg" and _reassigns(factory) == 0


def test_the_reassign_page_speaks_english(leaders: dict[str, int], login: Callable[[str], FlaskClient]) -> None:
    boss = login("boss")
    boss.get("/lang/en")
    page = boss.get(f"/supervision/issue/{leaders['issue']}/reassign").get_data(as_text=True)
    assert "Reassign to" in page and "Back to supervision" in page


def test_a_reassignment_from_a_page_opened_before_another_is_refused(leaders: dict[str, int], colleague: int,
                                                                      login: Callable[[str], FlaskClient],
                                                                      factory: sessionmaker[Session]) -> None:
    """Two leaders hand one issue on: the second page was opened before the first was sent, and would give the issue
    away from the person the first chose without anyone seeing it. Refused (409, reload); so is a form without its
    version."""
    swept(factory, datetime(2025, 9, 5, 10, tzinfo=SH))
    boss, admin, issue = login("boss"), login("admin"), leaders["issue"]
    page, action = f"/supervision/issue/{issue}/reassign", f"/supervision/issue/{issue}/reassign"
    stale, fresh = form_at(boss, page, action), form_at(admin, page, action)
    assert admin.post(action, data={**fresh, "to_username": "fg_li", "note": "出差"}).status_code == 302
    late = boss.post(action, data={**stale, "to_username": "fg", "note": "回来了"})
    assert late.status_code == 409 and "刷新" in late.get_data(as_text=True)
    assert _handler(factory, issue) == "fg_li" and _reassigns(factory) == 1
    missing = {k: v for k, v in form_at(boss, page, action).items() if k != "seen"}
    assert boss.post(action, data={**missing, "to_username": "fg", "note": "x"}).status_code == 409
    assert boss.post(action, data={**form_at(boss, page, action), "to_username": "fg", "note": "x"}).status_code == 302
    assert _handler(factory, issue) == "fg"


def _live(client: FlaskClient, issue: int, q: str = "") -> Any:
    return client.get(f"/supervision/issue/{issue}/reassign/people", query_string={"q": q},
                      headers={"Accept": "application/json"})


def test_the_pickers_live_search_offers_only_whom_the_reassignment_accepts(
        leaders: dict[str, int], colleague: int, login: Callable[[str], FlaskClient],
        factory: sessionmaker[Session]) -> None:
    with factory() as s:  # a 督查 (auditor): in every leader's scope, of no unit — not one to take 发改's issue
        if s.scalar(select(Role).where(Role.code == "auditor")) is None:
            org.add_role(s, code="auditor", name="审计督查")
        org.add_user(s, username="duch", display_name="督查王五", role_codes=["auditor"])
        s.commit()
    boss, issue = login("boss"), leaders["issue"]
    page = boss.get(f"/supervision/issue/{issue}/reassign").get_data(as_text=True)
    assert f'data-jz-picker="/supervision/issue/{issue}/reassign/people"' in page
    response = _live(boss, issue)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    offered = {p["username"] for p in response.get_json()["people"]}
    anywhere = {p["username"] for p in boss.get("/people/search", query_string={"q": ""}).get_json()["people"]}
    outsiders = anywhere - set(_options(page))
    assert "duch" in outsiders and not offered & outsiders  # in boss's scope, not of 发改: never offered to take the issue
    assert {"fg_li", "fg"} <= offered and offered <= set(_options(page))
    assert [p["username"] for p in _live(boss, issue, "fgl").get_json()["people"]] == ["fg_li"]  # pinyin: 发改李九
    for outsider in outsiders:  # by name too
        assert outsider not in {p["username"] for p in _live(boss, issue, outsider).get_json()["people"]}


def test_the_live_search_refuses_whom_the_form_refuses_and_malformed_input(
        leaders: dict[str, int], colleague: int, login: Callable[[str], FlaskClient]) -> None:
    issue = leaders["issue"]
    for username in ("fg", "applicant"):  # who leads nothing: 403, whatever the id, as the form
        client = login(username)
        assert _live(client, issue).status_code == 403 and _live(client, 999_999).status_code == 403
        assert b"fg_li" not in _live(client, issue).get_data()
    boss = login("boss")
    assert _live(boss, 999_999).status_code == 404
    too_long = _live(boss, issue, "x" * 300)
    assert too_long.status_code == 422 and too_long.get_json()["field"] == "q"
    assert boss.get(f"/supervision/project/{issue}/reassign/people").status_code in (404, 422)
    assert boss.get(f"/supervision/nothing/{issue}/reassign/people").status_code == 404
