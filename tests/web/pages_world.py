"""A demo world for the 项目库 and 问题台账 pages: seed, bpmn/, the demo, slow projects flagged, deadlines swept.

Built once per test module on SQLite (the pages only read), with the clock frozen at 2025-09-01 09:00 Asia/Shanghai
as the browser tests do (tests/e2e/conftest.py); the expected sets in the tests are computed from the database with
plain queries, not with the read models under test.
"""
from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, org, tasks
from engine.db import make_engine, make_sessionmaker
from engine.deadlines import escalation
from engine.errors import NotYourTask
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import Membership, OrgUnit, User
from engine.tasks.models import HumanTask
from plan import supervision
from plan.data import demo, seed
from plan.projects import slow_projects
from tests.web.conftest import PASSWORD, PASSWORD_HASH, csrf_of
from web import create_app

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=clock.SHANGHAI)
# Who logs in (data/seed/users.yaml)
ADMIN, CITY_LEADER, AUDITOR = "admin", "wangjianguo", "qianlihua"
APPLICANT = "gupeng"  # 项目单位: no unit
REVIEWER = "linzhiyuan"  # 发改局 staff
TOWN = "cuiliang"  # 李哥庄镇 staff (lgz)
LEADER = "sunmingyuan"  # head of 发改局: a 督办 area
AREA_HEAD = "lgz_head"  # added here: heads 李哥庄镇 (org_unit.leader_id) without being a member of it
EVERYONE = (ADMIN, CITY_LEADER, AUDITOR, APPLICANT, REVIEWER, TOWN, LEADER, AREA_HEAD)
WINDOW = "maxiaoyan"  # 一窗受理 clerk of 行政审批服务局 (spj), whose head is 褚红梅


@dataclass
class PagesWorld:
    app: Flask
    factory: sessionmaker[Session]
    clients: dict[str, FlaskClient]

    def session(self) -> Session:
        return self.factory()

    def units_of(self, username: str) -> set[int]:
        """The user's own units and, for a unit head or 包挂 leader, those units and their sub-units."""
        with self.factory() as s:
            user = s.scalar(select(User).where(User.username == username))
            assert user is not None
            mine = {m.org_unit_id for m in s.scalars(select(Membership).where(Membership.user_id == user.id))
                    if m.org_unit_id is not None}
            units = list(s.scalars(select(OrgUnit)))
            led = {u.id for u in units if user.id in (u.leader_id, u.responsible_leader_id)}
            while True:
                more = {u.id for u in units if u.parent_id in led} - led
                if not more:
                    break
                led |= more
            return mine | led


def ask(s: Session, username: str) -> int:
    """申请延期 on the first open step with a deadline the user holds; return the step's id."""
    actor = actor_for(s, username)
    for task in s.scalars(select(HumanTask).where(HumanTask.state == "ready", HumanTask.due_at.is_not(None))
                          .order_by(HumanTask.id)):
        try:
            tasks.require_holder(task, actor)
        except NotYourTask:
            continue
        assert task.due_at is not None
        day = max(task.due_at, clock.now()).astimezone(clock.SHANGHAI).date() + timedelta(days=10)  # overdue ones too
        supervision.request_extension(s, actor=actor, task_id=task.id, due_date=day, reason="材料尚未齐全，申请延期十天")
        return task.id
    raise AssertionError(f"{username} holds no step with a deadline")


def build(path: Path, template: Path) -> str:
    path.write_bytes(template.read_bytes())
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    clock.freeze(NOW)
    try:
        with factory() as s:
            seed.load_seed(s)
            deploy.deploy(s, deploy.read_directory(ROOT / "bpmn"), actor=SYSTEM)
            s.commit()
            demo.load_demo(s)
            clock.freeze(NOW)
            slow_projects.flag_slow_projects(s, clock.now(), SYSTEM)
            head = org.add_user(s, username=AREA_HEAD, display_name="李哥庄镇镇长", role_codes=["leader"])
            lgz = s.scalar(select(OrgUnit).where(OrgUnit.code == "lgz"))
            assert lgz is not None
            lgz.leader_id = head.id
            for user in s.scalars(select(User)):
                user.password_hash = PASSWORD_HASH
            s.commit()
        with factory() as s:  # the deadline sweep: lights and escalation steps to show
            clock.freeze(NOW)
            escalation.sweep(s, now=clock.now())
            s.commit()
        with factory() as s:  # 申请延期: the reviewer's pending, the town clerk's refused by his head
            ask(s, REVIEWER)
            town = ask(s, TOWN)
            supervision.decide_extension(s, actor=actor_for(s, AREA_HEAD), object_type="task", object_id=town,
                                         grant=False, opinion="请按原期限办结")
            s.commit()
    finally:
        clock.freeze(NOW)
        engine.dispose()
    return url


def open_world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
               also: tuple[str, ...] = ()) -> Iterator[PagesWorld]:
    """The demo world with everyone logged in (and `also`, e.g. WINDOW, the 一窗受理 clerk)."""
    url = build(tmp_path_factory.mktemp("pages") / "pages.sqlite", sqlite_template)
    app = create_app({"DATABASE_URL": url, "TESTING": True, "WTF_CSRF_ENABLED": True, "SECRET_KEY": "pages-secret",
                      "RATELIMIT_ENABLED": False})
    clients = {}
    for username in (*EVERYONE, *also):
        client = app.test_client()
        response = client.post("/login", data={"username": username, "password": PASSWORD,
                                               "csrf_token": csrf_of(client)})
        assert response.status_code == 302, username
        clients[username] = client
    yield PagesWorld(app, app.extensions["jzflow.sessionmaker"], clients)
    app.extensions["jzflow.engine"].dispose()
    clock.unfreeze()


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def refused_application(world: PagesWorld) -> str:
    """Start 并联审批 as the applicant and send its first form with a bad phone and an overlong name: the 422 page."""
    client = world.clients[APPLICANT]
    token = csrf_in(get(world, APPLICANT, "/processes/parallel_approval/start")[1])
    started = client.post("/processes/parallel_approval/start", data={"csrf_token": token, "title": "胶州测试项目"})
    assert started.status_code == 302, started.get_data(as_text=True)[:500]
    status, html = get(world, APPLICANT, started.headers["Location"])
    assert status == 200 and "/complete" in html, started.headers["Location"]
    action = re.search(r'action="(/tasks/\d+/complete)"', html)
    assert action is not None
    fields = dict(re.findall(r'name="(f/[^"]+)"[^>]*value="([^"]*)"', html))
    fields.update({"f/contact_phone": "abc", "f/contact_name": "x" * 300, "csrf_token": csrf_in(html)})
    refused = client.post(action.group(1), data=fields)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422, page[:500]
    return page


def get(world: PagesWorld, username: str, path: str) -> tuple[int, str]:
    clock.freeze(NOW)  # the shared `_clock` fixture unfreezes after each test
    response = world.clients[username].get(path)
    return response.status_code, response.get_data(as_text=True)


def collect(world: PagesWorld, username: str, path: str, marker: Callable[[str], list[str]],
            limit: int = 7) -> list[str]:
    """Follow the list's next-page links (`limit` rows a page) and return every row's key, in order."""
    found: list[str] = []
    sep = "&" if "?" in path else "?"
    url: str | None = f"{path}{sep}limit={limit}"
    pages = 0
    while url:
        status, html = get(world, username, url)
        assert status == 200, (username, url, status)
        keys = marker(html)
        assert len(keys) <= limit
        found += keys
        pages += 1
        assert pages < 100
        url = next_link(html)
    return found


def next_link(html: str) -> str | None:
    match = re.search(r'<a href="([^"]+)" rel="next">', html)
    return html_lib.unescape(match.group(1)) if match else None


def nav(html: str) -> str:
    """The main menu's part of a page ("" when there is none)."""
    found = re.search(r'<nav class="mainnav"[^>]*>(.*?)</nav>', html, re.S)
    return found.group(1) if found else ""


def main(html: str) -> str:
    """The page's <main> part (without the menu, which differs by who is looking)."""
    return html.split("<main>")[1].split("</main>")[0]

