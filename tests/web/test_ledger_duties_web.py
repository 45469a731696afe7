"""问题台账 职责分离 through the pages and the API: a ledger officer of the responsible unit who handled an issue may not
claim or complete its 核验 (403 naming the rule, nothing changed), and 督办's 改派 keeps an issue in its unit, an
administrator's included (422 naming the field)."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, org, tasks
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import User
from engine.runtime import instances
from engine.tasks.models import HumanTask
from plan.ledger.models import LedgerIssue
from tests.processes.test_issue_ledger import ledger_files
from tests.web.conftest import csrf_of
from tests.web.flows import Api, token_for
from tests.web.test_supervision import leaders

__all__ = ["leaders"]


@pytest.fixture
def wang(leaders: dict[str, int], session: Session) -> dict[str, int]:
    """工信局's own 台账管理员 (made before the app, which sets every password)."""
    org.add_user(session, username="gx_wang", display_name="工信局王强", unit_codes=["gxj"],
                 role_codes=["ledger_officer", "handler"])
    session.commit()
    return leaders


def _to_verify(factory: sessionmaker[Session]) -> tuple[int, int]:
    """An issue 王强 accepted, handled and fed back, confirmed by the officer who raised it: 核验 is next."""
    with factory() as s:
        deploy.deploy(s, ledger_files(), actor=SYSTEM)
        officer, wang = actor_for(s, "officer"), actor_for(s, "gx_wang")
        row = instances.start(s, process_key="issue_ledger", actor=officer, title="问题台账")
        s.commit()
        for bpmn_id, actor, form in [
                ("register_issue", officer, {"title": "企业用电增容迟迟未落实", "description": "10kV 增容",
                                             "enterprise": "青岛海智电器", "source": "service_visit", "unit_code": "gxj"}),
                ("dispatch", officer, {"unit_code": "gxj", "deadline_kind": "date", "due_date": "2025-09-10"}),
                ("respond", wang, {"response": "accept"}), ("handle", wang, {"action": "done"}),
                ("feedback", wang, {"evidence": "已协调供电公司完成方案批复。"}),
                ("revisit", officer, {"revisit": "satisfied"})]:
            task = s.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == bpmn_id,
                                                    HumanTask.state == "ready"))
            assert task is not None, bpmn_id
            tasks.claim(s, task_id=task.id, actor=actor)
            tasks.complete(s, task_id=task.id, actor=actor, data=form)
            s.commit()
        verify = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "verify",
                                                     HumanTask.state == "ready"))
        issue = s.scalar(select(LedgerIssue.id).where(LedgerIssue.instance_id == row.id))
        assert verify is not None and issue is not None
        return verify, issue


def _state(factory: sessionmaker[Session], verify: int, issue: int) -> tuple[Any, ...]:
    with factory() as s:
        task, row = s.get(HumanTask, verify), s.get(LedgerIssue, issue)
        assert task is not None and row is not None
        return task.state, task.assignee_id, row.status, row.closed_at


def test_the_handler_cannot_verify_his_issue_through_the_api(wang: dict[str, int], app: Flask,
                                                             factory: sessionmaker[Session]) -> None:
    verify, issue = _to_verify(factory)
    api = Api(app, token_for(app, "gx_wang"))
    for path, body in [(f"/api/tasks/{verify}/claim", {}), (f"/api/tasks/{verify}/complete", {"data": {"verdict": "pass"}})]:
        refused = api.post(path, body)
        assert refused.status_code == 403, refused.get_data(as_text=True)
        assert refused.get_json()["error"] == "separation_of_duties" and "核验" in refused.get_json()["message"]
    assert _state(factory, verify, issue) == ("ready", None, "confirmed", None)


def test_the_handler_cannot_verify_his_issue_on_the_task_page(wang: dict[str, int], login: Callable[[str], FlaskClient],
                                                              factory: sessionmaker[Session]) -> None:
    verify, issue = _to_verify(factory)
    client = login("gx_wang")
    for path, form in [(f"/tasks/{verify}/claim", {}), (f"/tasks/{verify}/complete", {"verdict": "pass"})]:
        refused = client.post(path, data={"csrf_token": csrf_of(client, "/inbox"), **form})
        assert refused.status_code == 403 and "核验人不能是问题的办理人" in refused.get_data(as_text=True)
    assert _state(factory, verify, issue) == ("ready", None, "confirmed", None)
    officer = login("officer")
    assert officer.post(f"/tasks/{verify}/claim", data={"csrf_token": csrf_of(officer, "/inbox")}).status_code == 302


def test_an_administrator_cannot_reassign_an_issue_to_another_units_person(
        leaders: dict[str, int], login: Callable[[str], FlaskClient], factory: sessionmaker[Session]) -> None:
    admin, issue = login("admin"), leaders["issue"]
    page = admin.get(f"/supervision/issue/{issue}/reassign").get_data(as_text=True)
    offered = re.findall(r'<option value="([^"]+)"', page)
    assert "fg" in offered and "zr" not in offered  # the form offers 发改's people only
    response = admin.post(f"/supervision/issue/{issue}/reassign",
                          data={"csrf_token": csrf_of(admin, "/supervision"), "to_username": "zr", "note": "跨单位"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "to_username" in body and "责任单位" in body, body[-2000:]
    with factory() as s:
        row = s.get(LedgerIssue, issue)
        assert row is not None and row.handler_id == s.scalar(select(User.id).where(User.username == "fg"))


def _registering(factory: sessionmaker[Session]) -> int:
    """An issue_ledger instance the officer started by hand and claimed: its 登记 form is open."""
    with factory() as s:
        deploy.deploy(s, ledger_files(), actor=SYSTEM)
        officer = actor_for(s, "officer")
        row = instances.start(s, process_key="issue_ledger", actor=officer, title="问题台账")
        s.commit()
        task = s.scalar(select(HumanTask).where(HumanTask.instance_id == row.id,
                                                HumanTask.bpmn_id == "register_issue"))
        assert task is not None
        tasks.claim(s, task_id=task.id, actor=officer)
        s.commit()
        return task.id


def test_an_unknown_project_code_comes_back_on_the_register_page(leaders: dict[str, int],
                                                                 login: Callable[[str], FlaskClient],
                                                                 factory: sessionmaker[Session]) -> None:
    """登记 with 关联项目编号 NOPE-1 was accepted and linked nothing: the form comes back with the message, no new issue."""
    register = _registering(factory)
    client = login("officer")
    refused = client.post(f"/tasks/{register}/complete", data={
        "csrf_token": csrf_of(client, "/inbox"), "f/title": "企业用电增容迟迟未落实", "f/description": "10kV 增容",
        "f/source": "manual", "f/project_code": "NOPE-1"})
    assert refused.status_code == 422
    assert "项目“NOPE-1”不在项目库中" in refused.get_data(as_text=True)
    with factory() as s:
        assert s.scalars(select(LedgerIssue.id)).all() == [leaders["issue"]]  # the fixture's own
        assert s.get(HumanTask, register).state == "ready"  # type: ignore[union-attr]


def test_the_start_page_tells_an_office_worker_what_the_ledger_is_for(leaders: dict[str, int],
                                                                     login: Callable[[str], FlaskClient],
                                                                     factory: sessionmaker[Session]) -> None:
    """发起流程's text under 问题台账销号 spoke of “0001 约定的字段”, “reporter” and “命令行”."""
    with factory() as s:
        deploy.deploy(s, ledger_files(), actor=SYSTEM)
        s.commit()
    html = login("officer").get("/processes").get_data(as_text=True)
    assert "问题台账销号" in html and "登记" in html and "派单" in html
    for developer_word in ("0001", "reporter", "命令行", "API"):
        assert developer_word not in html.split("问题台账销号", 1)[1].split("</td>", 1)[0], developer_word
