"""The 不予许可决定书 on the web: the applicant from outside downloads it (the file as issued) and sees it listed;
whoever may not see the instance gets 404 as for an instance that does not exist; /verify names it by its title."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from engine import documents, runtime
from engine.org.actors import Actor
from engine.org.models import User
from plan.approval import rejection
from tests.processes.test_parallel_approval import deployed, people  # noqa: F401 (fixtures used by name)
from tests.processes.test_rejection_notice import HOSTILE, REASONS, disapproved
from tests.steps import do, only_task
from tests.web.conftest import PASSWORD_HASH
from tests.web.test_documents_pages import client_of
from web import create_app


@pytest.fixture
def refused(session: Session, deployed: None, people: dict[str, Actor]) -> int:  # noqa: F811
    iid = disapproved(session, people)
    do(session, only_task(session, iid, "issue_rejection_notice"), people["window_wang"],
       {"notice_text": f"{REASONS}{HOSTILE}"})
    return iid


@pytest.fixture
def app(session: Session, refused: int, db_url: str) -> Iterator[Flask]:
    for user in session.query(User):
        user.password_hash = PASSWORD_HASH
    session.commit()
    session.close()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret", "RATELIMIT_ENABLED": False})
    yield app
    app.extensions["jzflow.engine"].dispose()
    runtime._spec_cache.clear()


def _notice(app: Flask, iid: int) -> documents.IssuedDocument:
    with app.extensions["jzflow.sessionmaker"]() as s:
        (doc,) = [d for d in documents.for_instance(s, iid, internal=False) if d.kind == rejection.KIND]
        s.expunge(doc)
        return doc


def _file(app: Flask, doc_id: int) -> bytes:
    with app.extensions["jzflow.sessionmaker"]() as s:
        body = s.get(documents.IssuedDocument, doc_id)
        assert body is not None and body.pdf is not None
        return body.pdf


def test_the_applicant_downloads_the_decision_as_issued_and_sees_it_listed(app: Flask, refused: int) -> None:
    doc = _notice(app, refused)
    applicant = client_of(app, "qiye_zhang")
    response = applicant.get(f"/instances/{refused}/documents/{doc.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data == _file(app, doc.id)
    assert "filename*=UTF-8''%E8%83%B6%E4%B8%8D%E8%AE%B8" in response.headers["Content-Disposition"]  # 胶不许…pdf
    html = applicant.get(f"/instances/{refused}").get_data(as_text=True)
    listed = html.split('id="issued-documents"', 1)[1]
    assert "胶不许〔2025〕0001号" in listed and re.search(rf"/documents/{doc.id}\.pdf", listed)
    assert HOSTILE not in html


@pytest.mark.parametrize("outsider", ["qiye_li", "zjj_reviewer"])
def test_who_may_not_see_the_instance_gets_404_for_the_decision(app: Flask, refused: int, outsider: str) -> None:
    doc = _notice(app, refused)
    response = client_of(app, outsider).get(f"/instances/{refused}/documents/{doc.id}.pdf")
    assert response.status_code == 404
    assert "胶不许" not in response.get_data(as_text=True) and "不存在" in response.get_data(as_text=True)
    assert app.test_client().get(f"/instances/{refused}/documents/{doc.id}.pdf").status_code == 302  # to login


def test_verify_names_the_decision_and_compares_a_copy(app: Flask, refused: int) -> None:
    from tests.web.test_documents_pages import _check
    doc = _notice(app, refused)
    public = app.test_client()
    page = public.get(f"/verify/{documents.display_code(doc.verify_code)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and '<dd id="verify-title">不予许可决定书</dd>' in html
    assert "胶不许〔2025〕0001号" in html and "生态环境分局" in html and doc.digest is not None and doc.digest in html
    for private in ("生态保护红线", "青岛海湾智能家电有限公司", "alert"):  # the reasons are the applicant's, not public
        assert private not in html, private
    assert "与签发文件一致" in _check(public, doc.verify_code, _file(app, doc.id), "决定书.pdf").get_data(as_text=True)
    public.get("/lang/en")  # the English switch (the `lang` cookie)
    english = public.get(f"/verify/{documents.display_code(doc.verify_code)}").get_data(as_text=True)
    assert "Document title" in english and "不予许可决定书" in english  # the label translated, the title as issued
