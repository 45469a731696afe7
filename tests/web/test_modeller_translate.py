"""The modeller's "translate" choice at import: a Camunda export deploys with a report; without it, refused.

Only process owners import; a refused import shows the report next to the problems, in the user's language.
"""
from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import org
from engine.runtime.models import ProcessFile, ProcessVersion
from tests.conftest import FIXTURES
from tests.web.conftest import PASSWORD_HASH, csrf_of
from tests.web.flows import db

FOREIGN = FIXTURES / "foreign"
PURCHASE = (FOREIGN / "camunda7_purchase.bpmn").read_bytes()
INVOICE = (FOREIGN / "camunda7_invoice.bpmn").read_bytes()


@pytest.fixture
def clients(session: Session, review_org: dict[str, Any], app: Flask, login: Any) -> dict[str, FlaskClient]:
    """Logged-in clients of a process owner, an auditor and a reviewer (review_org's fg)."""
    org.add_role(session, code="process_owner", name="流程管理员")
    org.add_role(session, code="auditor", name="审计督查")
    for user in (org.add_user(session, username="owner", display_name="流程管理员甲", role_codes=["process_owner"]),
                 org.add_user(session, username="auditor", display_name="审计员乙", role_codes=["auditor"])):
        user.password_hash = PASSWORD_HASH
    session.commit()
    return {name: login(name) for name in ("owner", "auditor", "fg")}


def upload(client: FlaskClient, name: str, content: bytes, *, translate: bool) -> Any:
    data: dict[str, Any] = {"csrf_token": csrf_of(client, "/modeller"), "files": [(io.BytesIO(content), name)]}
    if translate:
        data["translate"] = "1"
    return client.post("/modeller/import", data=data, content_type="multipart/form-data")


def versions(app: Flask) -> int:
    with db(app) as s:
        return s.scalar(select(func.count()).select_from(ProcessVersion)) or 0


def test_translate_at_import_deploys_and_reports_each_change(app: Flask, clients: dict[str, FlaskClient]) -> None:
    owner = clients["owner"]
    refused = upload(owner, "purchase.bpmn", PURCHASE, translate=False)
    assert refused.status_code == 422 and "--translate" in refused.get_data(as_text=True) and versions(app) == 0
    ok = upload(owner, "purchase.bpmn", PURCHASE, translate=True)
    assert ok.status_code == 302, ok.get_data(as_text=True)[:2000]
    page = owner.get(ok.headers["Location"]).get_data(as_text=True)
    assert "已转换 8 处" in page and "Task_request.schema.json" in page and "amount &gt; 5000" in page
    with db(app) as s:
        stored = {row.name: row.text for row in s.execute(select(ProcessFile.name, ProcessFile.text))}
    assert "Task_request.schema.json" in stored and "camunda:assignee" not in stored["purchase.bpmn"]


def test_a_refused_translated_import_shows_the_report_and_the_problems(app: Flask,
                                                                       clients: dict[str, FlaskClient]) -> None:
    page = upload(clients["owner"], "invoice.bpmn", INVOICE, translate=True)
    text = page.get_data(as_text=True)
    assert page.status_code == 422 and versions(app) == 0
    assert "转换报告" in text and "Flow_approved" in text and "camunda:class" in text and "未转换" in text


def test_the_problems_read_in_english_with_the_english_ui(app: Flask, clients: dict[str, FlaskClient]) -> None:
    owner = clients["owner"]
    bad = PURCHASE.replace(b'isExecutable="true"', b'isExecutable="false"')
    chinese = upload(owner, "purchase.bpmn", bad, translate=False).get_data(as_text=True)
    assert "本文件中没有可执行的流程" in chinese
    owner.get("/lang/en")
    english = upload(owner, "purchase.bpmn", bad, translate=False).get_data(as_text=True)
    assert "No process in this file is executable" in english and "本文件中没有可执行的流程" not in english


def test_only_process_owners_import_with_translation(app: Flask, clients: dict[str, FlaskClient]) -> None:
    for who in ("auditor", "fg"):
        response = upload(clients[who], "purchase.bpmn", PURCHASE, translate=True)
        assert response.status_code == 403
    assert versions(app) == 0
