"""Menus by role: each person's menu shows exactly the pages they may open, and a refusal says why and whom to ask.

The menu is derived from the routes' own checks (web/access.py); this test asks the routes, not that code:
every menu entry a person sees opens (200), and every entry they do not see refuses them (403) with a page
in Chinese that names the right the page takes and the people to ask, by name.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import url_for

from tests.web import pages_world as pw
from web.common import NAV

WINDOW = pw.WINDOW
PROCESS_OWNER_ONLY = ("modeller.index",)
PEOPLE = (*pw.EVERYONE, WINDOW)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[pw.PagesWorld]:
    yield from pw.open_world(tmp_path_factory, sqlite_template, also=(WINDOW,))


def menu(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)"', pw.nav(html))


def nav_urls(world: pw.PagesWorld) -> dict[str, str]:
    with world.app.test_request_context():
        return {endpoint: url_for(endpoint) for endpoint, _label in NAV if endpoint in world.app.view_functions}


@pytest.mark.parametrize("username", PEOPLE)
def test_the_menu_shows_what_opens_and_hides_what_refuses(world: pw.PagesWorld, username: str) -> None:
    status, html = pw.get(world, username, "/inbox")
    assert status == 200
    shown = set(menu(html))
    for endpoint, url in nav_urls(world).items():
        code, page = pw.get(world, username, url)
        if url in shown:
            assert code == 200, (username, endpoint, code)
        else:
            assert code in (403, 404), (username, endpoint, code)
            assert "Something went wrong" not in page and "出错了" not in pw.main(page)


@pytest.mark.parametrize(("username", "hidden"), [
    (WINDOW, {"督办", "报表", "流程建模", "消息与信号", "审计", "管理"}),
    (pw.APPLICANT, {"流程建模", "消息与信号", "审计", "管理", "督办"}),
    (pw.AUDITOR, {"管理"}),
    (pw.CITY_LEADER, {"流程建模", "消息与信号", "管理"}),  # reads every case, not the engine's processes
])
def test_those_who_may_not_open_a_page_do_not_see_it(world: pw.PagesWorld, username: str, hidden: set[str]) -> None:
    _status, html = pw.get(world, username, "/inbox")
    labels = set(re.findall(r">([^<]+)</a>", pw.nav(html)))
    assert not labels & hidden, labels & hidden
    assert "待办" in labels


def test_the_admin_sees_every_menu_entry(world: pw.PagesWorld) -> None:
    _status, html = pw.get(world, pw.ADMIN, "/inbox")
    assert set(menu(html)) >= set(nav_urls(world).values()) - {nav_urls(world)["supervision.index"]}


@pytest.mark.parametrize(("path", "right"), [
    ("/supervision", "单位负责人或包挂领导"), ("/reports", "台账管理员"), ("/modeller", "流程管理员"),
    ("/audit", "审计督查人员"), ("/admin", "系统管理员"), ("/messages", "流程管理员、审计督查人员或系统管理员"),
])
def test_the_refusal_says_why_and_whom_to_ask_by_name(world: pw.PagesWorld, path: str, right: str) -> None:
    status, html = pw.get(world, WINDOW, path)
    body = pw.main(html)
    assert status == 403
    assert "无权访问" in body and right in body
    assert "行政审批服务局负责人：褚红梅" in body  # the clerk's unit head
    assert "系统管理员：系统管理员" in body  # the seed's admin is called 系统管理员
    assert not re.search(r"\([a-z][a-z ]+\)", body), body  # no English gloss on a Chinese page
    assert "Something went wrong" not in body


def test_the_refusal_in_english_is_english(world: pw.PagesWorld) -> None:
    client = world.clients[WINDOW]
    client.get("/lang/en")
    try:
        status, html = pw.get(world, WINDOW, "/audit")
    finally:
        client.get("/lang/zh")
    assert status == 403
    assert "Forbidden" in html and "auditors" in html and "褚红梅" in html
    assert "只有" not in pw.main(html)


def test_an_applicant_without_a_unit_is_sent_to_the_administrators(world: pw.PagesWorld) -> None:
    status, html = pw.get(world, pw.APPLICANT, "/admin")
    assert status == 403
    body = pw.main(html)
    assert "系统管理员：" in body and "负责人：" not in body


def test_a_refused_api_call_still_answers_json(world: pw.PagesWorld) -> None:
    response = world.clients[WINDOW].get("/audit", headers={"Accept": "application/json"})
    assert response.status_code == 403
    assert response.is_json and response.get_json()["error"] == "forbidden"
