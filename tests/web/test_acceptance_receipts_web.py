"""受理通知书 and 不予受理决定书 on the web: the applicant from outside downloads each (the file as issued) and sees it
listed; whoever may not see the instance gets 404 as for an instance that does not exist; /verify names it by its
title and shows none of the window's reasons."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from engine import documents, runtime
from engine.org.actors import Actor
from engine.org.models import User
from plan.approval import receipts
from tests.processes.test_acceptance_receipts import REASONS
from tests.processes.test_parallel_approval import accept, at, deployed, people, start_by_hand  # noqa: F401
from tests.processes.test_rejection_notice import HOSTILE
from tests.web.conftest import PASSWORD_HASH
from tests.web.test_documents_pages import client_of

CASES = {"accept": (receipts.ACCEPTANCE_KIND, "胶受〔2025〕0001号", "受理通知书", "%E8%83%B6%E5%8F%97"),
         "reject": (receipts.NOT_ACCEPTED_KIND, "胶不受〔2025〕0001号", "不予受理决定书",
                    "%E8%83%B6%E4%B8%8D%E5%8F%97")}


@pytest.fixture(params=sorted(CASES))
def received(request: pytest.FixtureRequest, session: Session, deployed: None,  # noqa: F811
             people: dict[str, Actor]) -> tuple[int, str]:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance=request.param, window_opinion=f"{REASONS}{HOSTILE}")
    return iid, str(request.param)


@pytest.fixture
def app(session: Session, received: tuple[int, str], db_url: str) -> Iterator[Flask]:
    from web import create_app
    for user in session.query(User):
        user.password_hash = PASSWORD_HASH
    session.commit()
    session.close()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret", "RATELIMIT_ENABLED": False})
    yield app
    app.extensions["jzflow.engine"].dispose()
    runtime._spec_cache.clear()


def _receipt(app: Flask, iid: int, kind: str) -> documents.IssuedDocument:
    with app.extensions["jzflow.sessionmaker"]() as s:
        (doc,) = [d for d in documents.for_instance(s, iid, internal=False) if d.kind == kind]
        s.expunge(doc)
        return doc


def _file(app: Flask, doc_id: int) -> bytes:
    with app.extensions["jzflow.sessionmaker"]() as s:
        body = s.get(documents.IssuedDocument, doc_id)
        assert body is not None and body.pdf is not None
        return body.pdf


def test_the_applicant_downloads_the_receipt_as_issued_and_sees_it_listed(
        app: Flask, received: tuple[int, str]) -> None:
    iid, acceptance = received
    kind, number, _title, quoted = CASES[acceptance]
    doc = _receipt(app, iid, kind)
    applicant = client_of(app, "qiye_zhang")
    response = applicant.get(f"/instances/{iid}/documents/{doc.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data == _file(app, doc.id)
    assert f"filename*=UTF-8''{quoted}" in response.headers["Content-Disposition"]
    html = applicant.get(f"/instances/{iid}").get_data(as_text=True)
    listed = html.split('id="issued-documents"', 1)[1]
    assert number in listed and re.search(rf"/documents/{doc.id}\.pdf", listed)
    assert HOSTILE not in html


@pytest.mark.parametrize("outsider", ["qiye_li", "zjj_reviewer"])
def test_who_may_not_see_the_instance_gets_404_for_the_receipt(
        app: Flask, received: tuple[int, str], outsider: str) -> None:
    iid, acceptance = received
    doc = _receipt(app, iid, CASES[acceptance][0])
    response = client_of(app, outsider).get(f"/instances/{iid}/documents/{doc.id}.pdf")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert CASES[acceptance][1] not in body and CASES[acceptance][2] not in body and "不存在" in body
    assert app.test_client().get(f"/instances/{iid}/documents/{doc.id}.pdf").status_code == 302  # to login


def test_verify_names_the_receipt_and_compares_a_copy(app: Flask, received: tuple[int, str]) -> None:
    from tests.web.test_documents_pages import _check
    iid, acceptance = received
    _kind, number, title, _quoted = CASES[acceptance]
    doc = _receipt(app, iid, CASES[acceptance][0])
    public = app.test_client()
    page = public.get(f"/verify/{documents.display_code(doc.verify_code)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and f'<dd id="verify-title">{title}</dd>' in html
    assert number in html and "行政审批服务局" in html and doc.digest is not None and doc.digest in html
    for private in ("不需要取得行政许可", "青岛海湾智能家电有限公司", "alert"):  # the reasons are the applicant's
        assert private not in html, private
    assert "与签发文件一致" in _check(public, doc.verify_code, _file(app, doc.id), "凭证.pdf").get_data(as_text=True)
