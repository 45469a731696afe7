"""Submitted forms read-only, the 审批单 (page and PDF), the 联合意见书 PDF and /verify — with who may see what:
the window and the departments see every step; the applicant sees their own steps and the certificate; another
applicant and an uninvolved department get 403; hostile submitted values are escaped; unknown, malformed and
guessed codes are answered clearly and limited per address like logins."""
from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text as sa_text
from sqlalchemy.orm import Session

from engine import clock, documents, runtime, tasks
from engine.org.actors import Actor
from engine.org.models import User
from engine.orm import Base
from engine.runtime import instances
from plan.approval import certificate
from tests.conftest import pdf_text
from tests.processes.test_parallel_approval import (  # noqa: F401 (fixtures used by name)
    APPLICATION,
    DEPARTMENTS,
    accept,
    at,
    certify,
    deployed,
    people,
    review,
)
from tests.steps import only_task
from tests.web.conftest import PASSWORD, PASSWORD_HASH, app_on, csrf_of
from web import create_app, links

HOSTILE = "<script>alert('jz')</script><img src=x onerror=alert(1)>"

APPLICANT_OPINION = "恳请各部门尽快审批"


@pytest.fixture
def finished(session: Session, deployed: None, people: dict[str, Actor]) -> int:  # noqa: F811
    """A 并联审批 to its certificate; the applicant's note and the window's opinion hold hostile markup."""
    runtime._spec_cache.clear()
    clock.freeze(at("2025-09-25"))
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"],
                          business_key=APPLICATION["project_code"], title="胶州湾智能家电产业园（一期）并联审批")
    session.commit()
    submit = only_task(session, row.id, "submit_application")
    tasks.claim(session, task_id=submit.id, actor=people["qiye_zhang"])
    tasks.complete(session, task_id=submit.id, actor=people["qiye_zhang"], opinion=APPLICANT_OPINION,
                   data={**APPLICATION, "application_note": f"说明{HOSTILE}"})
    session.commit()
    accept(session, people, row.id, at("2025-09-26"), window_opinion=f"材料齐全{HOSTILE}")
    clock.freeze(at("2025-09-29", "10:00"))
    for code in ("fgj", "zrzyj", "sthjj"):
        review(session, people, row.id, code)
    certify(session, people, row.id, at("2025-10-10", "10:00"))
    clock.unfreeze()
    return row.id


@pytest.fixture
def app(session: Session, finished: int, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("JZFLOW_VERIFY_ADDRESS_FAILURES", "4")
    for user in session.query(User):
        user.password_hash = PASSWORD_HASH
    session.commit()
    session.close()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret", "RATELIMIT_ENABLED": False})
    yield app
    app.extensions["jzflow.engine"].dispose()
    runtime._spec_cache.clear()


def client_of(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302
    return client


def _doc(app: Flask, iid: int) -> documents.IssuedDocument:
    with app.extensions["jzflow.sessionmaker"]() as s:
        # the 联合意见书 (not the 审批单 issued with it, nor the 受理通知书 of 一窗受理)
        (doc,) = [d for d in documents.for_instance(s, iid, internal=False) if d.kind == certificate.KIND]
        s.expunge(doc)
        return doc


def _task_id(app: Flask, iid: int, bpmn_id: str) -> int:
    from sqlalchemy import select

    from engine.tasks.models import HumanTask
    with app.extensions["jzflow.sessionmaker"]() as s:
        return int(s.scalars(select(HumanTask.id).where(HumanTask.instance_id == iid, HumanTask.bpmn_id == bpmn_id)
                             .order_by(HumanTask.id)).first() or 0)


def test_the_instance_page_holds_the_whole_approval_sheet(app: Flask, finished: int) -> None:
    html = client_of(app, "window_wang").get(f"/instances/{finished}").get_data(as_text=True)
    sheet = html.split('id="approval-sheet"', 1)[1]
    steps = re.findall(r'<strong>([^<]+)</strong>', sheet)
    # Steps are named by step and, for one department's review, its department ("部门审查 · 生态环境分局").
    assert [s.split(" · ")[0] for s in steps[:6]] == ["提交并联审批申请", "一窗受理", "部门审查", "部门审查", "部门审查",
                                                       "联合出证"]
    # Labels and enum titles from the task's own form, never the raw keys or codes.
    for shown in ("已提交材料", "营业执照（统一社会信用代码证）", "工业项目", "立项用地规划许可", "受理意见", "审查结论",
                  "同意", "发展和改革局：同意", "出证日期", "2025-10-10"):
        assert shown in sheet, shown
    for raw in ("business_license", "review_decision", "land_planning", "industrial"):
        assert raw not in sheet, raw
    assert "胶审〔2025〕0001号" in html.split('id="issued-documents"', 1)[1]
    assert "&lt;script&gt;alert(&#39;jz&#39;)&lt;/script&gt;" in sheet and HOSTILE not in html


def test_completed_and_next_tasks_show_what_was_submitted(app: Flask, finished: int) -> None:
    window = client_of(app, "window_wang")
    accept_page = window.get(f"/tasks/{_task_id(app, finished, 'window_accept')}").get_data(as_text=True)
    own = accept_page.split('id="submitted"', 1)[1].split("</section>", 1)[0]
    assert "受理意见" in own and "受理" in own and "窗口 王芳" in own and "2025-09-26 09:30" in own
    earlier = accept_page.split('id="earlier-steps"', 1)[1]
    assert "营业执照（统一社会信用代码证）" in earlier  # the clerk sees which materials the applicant ticked
    cert_page = window.get(f"/tasks/{_task_id(app, finished, 'issue_certificate')}").get_data(as_text=True)
    opinions = cert_page.split('id="earlier-steps"', 1)[1]
    assert all(f"{DEPARTMENTS[c]}：同意" in opinions for c in ("fgj", "zrzyj", "sthjj"))  # 联合出证 sees the opinions
    assert HOSTILE not in cert_page


def test_the_applicant_sees_only_their_own_steps_and_the_certificate(app: Flask, finished: int) -> None:
    applicant = client_of(app, "qiye_zhang")
    html = applicant.get(f"/instances/{finished}").get_data(as_text=True)
    mine = html.split('id="approval-sheet"', 1)[1]
    assert "我提交的表单" in mine and "营业执照（统一社会信用代码证）" in mine
    assert "审查结论" not in mine and "受理意见" not in mine  # not the departments' or the window's forms
    assert applicant.get(f"/instances/{finished}/sheet").status_code == 403
    assert applicant.get(f"/instances/{finished}/sheet.pdf").status_code == 403
    assert applicant.get(f"/tasks/{_task_id(app, finished, 'window_accept')}").status_code in (200, 403)
    doc = _doc(app, finished)
    response = applicant.get(f"/instances/{finished}/documents/{doc.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")  # opened by a PDF reader
    assert "filename*=UTF-8''%E8%83%B6%E5%AE%A1" in response.headers["Content-Disposition"]  # 胶审〔2025〕0001号.pdf


def test_the_applicants_own_opinion_is_not_called_an_approval_opinion(app: Flask, finished: int,
                                                                     tmp_path: Path) -> None:
    """The applicant's words at 提交申请 were shown as “审批意见”, as if they had approved something; the
    departments' opinions keep that label (tests/web/test_task_page.py, test_instances.py)."""
    def labels(html: str) -> list[tuple[str, str]]:
        return re.findall(r'<span class="muted">([^<]*)：</span><span class="multiline" translate="no">([^<]*)</span>',
                          html)
    applicant = client_of(app, "qiye_zhang").get(f"/instances/{finished}").get_data(as_text=True)
    assert ("申请说明", APPLICANT_OPINION) in labels(applicant)
    assert "审批意见" not in applicant.split('id="approval-sheet"', 1)[1]
    sheet = labels(client_of(app, "window_wang").get(f"/instances/{finished}/sheet").get_data(as_text=True))
    assert ("申请说明", APPLICANT_OPINION) in sheet and ("审批意见", APPLICANT_OPINION) not in sheet
    pdf = pdf_text(client_of(app, "window_wang").get(f"/instances/{finished}/sheet.pdf").data, tmp_path)
    assert f"申请说明 {APPLICANT_OPINION}" in " ".join(pdf.split()) and "审批意见" not in pdf


@pytest.mark.parametrize("outsider", ["qiye_li", "zjj_reviewer"])
def test_who_may_not_see_the_instance_is_answered_as_if_it_did_not_exist(app: Flask, finished: int,
                                                                        outsider: str) -> None:
    client = client_of(app, outsider)
    doc = _doc(app, finished)
    for path in (f"/instances/{finished}/sheet", f"/instances/{finished}/sheet.pdf",
                 f"/instances/{finished}/documents/{doc.id}.pdf",
                 f"/tasks/{_task_id(app, finished, 'submit_application')}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "胶审" not in response.get_data(as_text=True) and "营业执照" not in response.get_data(as_text=True)
        assert "不存在" in response.get_data(as_text=True), path
    assert client_of(app, "window_wang").get(f"/instances/{finished}/documents/{doc.id + 999}.pdf").status_code == 404
    assert app.test_client().get(f"/instances/{finished}/sheet.pdf").status_code == 302  # to the login page


def test_the_sheet_prints_and_its_pdf_embeds_the_font(app: Flask, finished: int, tmp_path: Path) -> None:
    window = client_of(app, "window_wang")
    page = window.get(f"/instances/{finished}/sheet").get_data(as_text=True)
    assert "print.css" in page and "（盖章处）" in page and "发展和改革局：同意" in page
    response = window.get(f"/instances/{finished}/sheet.pdf")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    cert = window.get(f"/instances/{finished}/documents/{_doc(app, finished).id}.pdf")
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils is not installed: make system-packages")
    for name, body in (("sheet", response.data), ("cert", cert.data)):
        path = tmp_path / f"{name}.pdf"
        path.write_bytes(body)
        words = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
        assert "盖章处" in words and "胶审〔2025〕0001号" in words, words
        fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
        assert "STSong" not in fonts and any(line.split()[-5:-3] == ["yes", "yes"] for line in fonts.splitlines()[2:])
    assert "各部门均出具同意意见" in subprocess.run(["pdftotext", str(tmp_path / "cert.pdf"), "-"], capture_output=True,
                                             text=True, check=True).stdout


def _client_at(app: Flask, username: str, base_url: str) -> FlaskClient:
    """A logged-in client whose every request names `base_url`'s host (cookies are kept per host)."""
    client = app.test_client()
    html = client.get("/login", base_url=base_url).get_data(as_text=True)
    token = html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token},
                           base_url=base_url)
    assert response.status_code == 302
    return client


@pytest.mark.parametrize("public_url", ["https://jzflow.jiaozhou.gov.cn", "https://jzflow.jiaozhou.gov.cn:8443/"])
def test_the_verification_link_is_the_public_address_whatever_host_the_request_names(
        app: Flask, finished: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, public_url: str) -> None:
    """A client chooses the Host header (and a proxy may pass it on): an official PDF's verification link built from
    it would send whoever checks the document to a site of the client's choosing."""
    monkeypatch.setenv("JZFLOW_PUBLIC_URL", public_url)
    _issue_file_again(app, finished)  # the file is printed when the document is issued: as if under this setting
    window = _client_at(app, "window_wang", "http://evil.example")
    doc = _doc(app, finished)
    cert = window.get(f"/instances/{finished}/documents/{doc.id}.pdf", base_url="http://evil.example")
    assert cert.status_code == 200
    words = pdf_text(cert.data, tmp_path)
    expected = public_url.rstrip("/") + f"/verify/{documents.display_code(doc.verify_code)}"
    assert expected in "".join(words.split()), words
    assert "evil.example" not in words


def _issue_file_again(app: Flask, iid: int) -> None:
    from engine.documents import render
    with app.extensions["jzflow.sessionmaker"]() as s:
        (doc,) = [d for d in documents.for_instance(s, iid, internal=False) if d.kind == certificate.KIND]
        render.make_file(s, doc)
        s.commit()


def test_without_a_public_address_the_document_carries_its_code_and_no_link(
        app: Flask, finished: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is printed when the document is issued, often in a worker: no request's address could stand in for
    JZFLOW_PUBLIC_URL (it was the address each download came to, when every download printed the PDF anew)."""
    monkeypatch.delenv("JZFLOW_PUBLIC_URL", raising=False)
    window = _client_at(app, "window_wang", "http://127.0.0.1:5000")
    doc = _doc(app, finished)
    cert = window.get(f"/instances/{finished}/documents/{doc.id}.pdf", base_url="http://127.0.0.1:5000")
    words = "".join(pdf_text(cert.data, tmp_path).split())
    assert f"核验码：{documents.display_code(doc.verify_code)}" in words
    assert "/verify/" not in words and "127.0.0.1" not in words


def test_verify_answers_good_unknown_and_malformed_codes(app: Flask, finished: int) -> None:
    doc = _doc(app, finished)
    public = app.test_client()  # nobody logged in
    good = public.get(f"/verify/{documents.display_code(doc.verify_code)}")
    html = good.get_data(as_text=True)
    assert good.status_code == 200 and "核验通过" in html
    assert '<dd id="verify-title">并联审批联合意见书</dd>' in html  # what the document is, not only its number
    for shown in ("胶审〔2025〕0001号", "胶州湾智能家电产业园（一期）", "2025-10-10", "发展和改革局", "自然资源局"):
        assert shown in html
    # nothing else: in what the page tells, not in its random parts ("8600" is in one hex digest of a thousand, and in
    # a CSRF token or a script nonce now and then)
    told = html.replace(doc.digest or "", "").replace(documents.display_code(doc.verify_code), "")
    told = re.sub(r'\s(?:value|nonce|content|href|action|src|integrity)="[^"]*"', "", told.replace(doc.verify_code, ""))
    for private in ("8600", "青岛海湾智能家电有限公司", "13805320000", "张伟"):
        assert private not in told
    assert public.get(f"/verify/{doc.verify_code.lower()}").status_code == 200
    unknown = public.get(f"/verify/{documents.new_code()}")
    assert unknown.status_code == 404 and "未找到此核验码" in unknown.get_data(as_text=True)
    for malformed in ("ABC", "%3Cscript%3Ealert(1)%3C%5Cscript%3E", "x" * 500, "%00" * 20):
        bad = public.get(f"/verify/{malformed}")
        assert bad.status_code == 400, malformed
        assert "核验码格式不正确" in bad.get_data(as_text=True) or "控制字符" in bad.get_data(as_text=True)
        assert "<script>alert(1)" not in bad.get_data(as_text=True)


def test_guessing_codes_is_limited_per_address(app: Flask, finished: int) -> None:
    doc = _doc(app, finished)
    public = app.test_client()
    for _ in range(4):  # JZFLOW_VERIFY_ADDRESS_FAILURES=4
        assert public.get(f"/verify/{documents.new_code()}").status_code == 404
    limited = public.get(f"/verify/{doc.verify_code}")  # even a good code waits: the guesser learns nothing
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "核验次数过多" in limited.get_data(as_text=True)
    other = app.test_client()
    assert other.get(f"/verify/{doc.verify_code}", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_guessing_codes_from_one_ipv6_64_is_one_address(app: Flask, finished: int) -> None:
    doc = _doc(app, finished)
    public = app.test_client()
    for i in range(4):  # a new address of the same /64 for every guess
        assert public.get(f"/verify/{documents.new_code()}",
                          environ_base={"REMOTE_ADDR": f"2001:db8:5::{i + 1:x}"}).status_code == 404
    assert public.get(f"/verify/{doc.verify_code}", environ_base={"REMOTE_ADDR": "2001:db8:5::ff"}).status_code == 429
    assert public.get(f"/verify/{doc.verify_code}", environ_base={"REMOTE_ADDR": "2001:db8:6::1"}).status_code == 200


@pytest.mark.parametrize(("public_url", "mounted", "expected"), [
    ("https://www.jiaozhou.gov.cn/jzflow", "/jzflow", "https://www.jiaozhou.gov.cn/jzflow/verify/ABC"),
    ("https://www.jiaozhou.gov.cn/jzflow/", "", "https://www.jiaozhou.gov.cn/jzflow/verify/ABC"),
    ("https://jzflow.jiaozhou.gov.cn", "/internal", "https://jzflow.jiaozhou.gov.cn/verify/ABC"),
])
def test_a_public_address_with_a_path_is_joined_once(app: Flask, monkeypatch: pytest.MonkeyPatch, public_url: str,
                                                     mounted: str, expected: str) -> None:
    """Behind a proxy that serves the site under a path: the prefix the process is mounted under is not repeated."""
    monkeypatch.setenv("JZFLOW_PUBLIC_URL", public_url)
    with app.test_request_context("/", base_url=f"http://10.0.0.5:8000{mounted}", headers={"Host": "evil.example"}):
        assert links.external_url("documents.verify", code="ABC") == expected


def test_a_server_on_postgresql_without_a_public_address_says_so_at_start(
        db_url: str, session: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Without JZFLOW_PUBLIC_URL the links that leave the site follow the Host header: fine on a laptop, not on a
    city's server, which is told at start."""
    monkeypatch.delenv("JZFLOW_PUBLIC_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger="web"):
        next(app_on(db_url, session))
    warned = [r.getMessage() for r in caplog.records if "JZFLOW_PUBLIC_URL" in r.getMessage()]
    assert bool(warned) == db_url.startswith("postgresql"), warned
    caplog.clear()
    monkeypatch.setenv("JZFLOW_PUBLIC_URL", "https://jzflow.jiaozhou.gov.cn")
    with caplog.at_level(logging.WARNING, logger="web"):
        next(app_on(db_url, session))
    assert not [r for r in caplog.records if "JZFLOW_PUBLIC_URL" in r.getMessage()]


# --- the issued file, checked by upload ---------------------------------------------------------------------------


def _download(app: Flask, finished: int) -> bytes:
    doc = _doc(app, finished)
    body = client_of(app, "qiye_zhang").get(f"/instances/{finished}/documents/{doc.id}.pdf").data
    assert body.startswith(b"%PDF")
    return body


def _check(client: FlaskClient, code: str, body: bytes, name: str = "联合意见书.pdf", **kwargs: Any) -> Any:
    token = csrf_of(client)  # the session's token, from any page with a form
    return client.post(f"/verify/{code}", data=_multipart(token, body, name),
                       content_type=f"multipart/form-data; boundary={BOUNDARY}", **kwargs)


BOUNDARY = "jzflow-verify-boundary"


def _multipart(token: str, body: bytes, name: str) -> bytes:
    """The form as a browser sends it, in memory (werkzeug's test client spools a large one to a temporary file)."""
    return b"".join([f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n".encode(),
                     f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                     "Content-Type: application/pdf\r\n\r\n".encode(), body, f"\r\n--{BOUNDARY}--\r\n".encode()])


def test_the_verify_page_shows_the_issued_file_s_digest(app: Flask, finished: int) -> None:
    body = _download(app, finished)
    doc = _doc(app, finished)
    html = app.test_client().get(f"/verify/{doc.verify_code}").get_data(as_text=True)
    assert hashlib.sha256(body).hexdigest() == doc.digest
    assert doc.digest is not None and doc.digest in html and "SHA-256" in html
    assert 'enctype="multipart/form-data"' in html and 'name="file"' in html


def test_the_genuine_file_matches_and_an_edited_one_does_not(app: Flask, finished: int) -> None:
    """An applicant who changes one department's opinion in the 联合意见书 still held a document that "verified"."""
    body = _download(app, finished)
    doc = _doc(app, finished)
    public = app.test_client()  # nobody logged in: a bank, a contractor, a citizen
    genuine = _check(public, doc.verify_code, body)
    assert genuine.status_code == 200
    assert "与签发文件一致" in genuine.get_data(as_text=True)
    altered = bytearray(body)
    altered[len(altered) // 2] ^= 0x01  # one byte of the body
    edited = _check(public, documents.display_code(doc.verify_code), bytes(altered))
    assert edited.status_code == 200
    assert "与签发文件不一致" in edited.get_data(as_text=True)
    assert "与签发文件一致" not in edited.get_data(as_text=True).replace("与签发文件不一致", "")


def test_an_oversized_upload_is_refused_with_a_clear_message(app: Flask, finished: int) -> None:
    doc = _doc(app, finished)
    public = app.test_client()
    response = _check(public, doc.verify_code, b"%PDF" + b"x" * documents.MAX_CHECKED_FILE)
    assert response.status_code == 413
    text = response.get_data(as_text=True)
    assert "文件过大" in text and "10 MB" in text and "文书核验" in text
    far = _check(public, doc.verify_code, b"x" * (documents.MAX_CHECKED_FILE + 200_000))  # refused unread
    assert far.status_code == 413
    assert "文件过大" in far.get_data(as_text=True) and "10 MB" in far.get_data(as_text=True)


def test_an_uploaded_file_is_never_stored(app: Flask, finished: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashed as it is read, in memory: no row, no temporary file (werkzeug spools files over 500 KB to disk)."""
    import werkzeug.formparser

    def no_disk(*args: object, **kwargs: object) -> object:
        raise AssertionError("an uploaded file went to a temporary file")
    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_disk)
    body = _download(app, finished)
    doc = _doc(app, finished)
    with app.extensions["jzflow.sessionmaker"]() as s:
        before = {t.name: s.execute(sa_text(f"SELECT count(*) FROM {t.name}")).scalar() for t in Base.metadata.sorted_tables}
    big = body + b"\n%" + b"0" * 2_000_000  # past werkzeug's 500 KB in-memory threshold
    assert "与签发文件不一致" in _check(app.test_client(), doc.verify_code, big).get_data(as_text=True)
    assert "与签发文件一致" in _check(app.test_client(), doc.verify_code, body).get_data(as_text=True)
    with app.extensions["jzflow.sessionmaker"]() as s:
        after = {t.name: s.execute(sa_text(f"SELECT count(*) FROM {t.name}")).scalar() for t in Base.metadata.sorted_tables}
    assert {t for t in before if before[t] != after[t]} <= {"login_failure"}  # the address's count of checks, only


def test_uploads_and_code_guesses_share_one_limit(app: Flask, finished: int) -> None:
    """Each upload is read and hashed: it counts against the address like an unknown code (JZFLOW_VERIFY_ADDRESS_
    FAILURES=4 here), and past the limit an upload waits like every code."""
    body = _download(app, finished)
    doc = _doc(app, finished)
    guesser = app.test_client()
    for _ in range(4):
        assert guesser.get(f"/verify/{documents.new_code()}").status_code == 404
    token = csrf_of(guesser)
    limited = guesser.post(f"/verify/{doc.verify_code}", data=_multipart(token, body, "a.pdf"),
                           content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "核验次数过多" in limited.get_data(as_text=True)
    uploader = app.test_client()
    for _ in range(4):
        assert _check(uploader, doc.verify_code, body, environ_base={"REMOTE_ADDR": "10.9.8.7"}).status_code == 200
    after = uploader.get(f"/verify/{doc.verify_code}", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert after.status_code == 429  # the uploads used the address's checks up


def test_an_upload_without_a_file_or_for_a_bad_code_is_answered_clearly(app: Flask, finished: int) -> None:
    doc = _doc(app, finished)
    public = app.test_client()
    token = csrf_of(public)
    empty = public.post(f"/verify/{doc.verify_code}", data={"csrf_token": token}, content_type="multipart/form-data")
    assert empty.status_code == 400 and "请选择" in empty.get_data(as_text=True)
    assert _check(public, documents.new_code(), b"%PDF").status_code == 404
    assert _check(public, "ABC", b"%PDF").status_code == 400


def test_a_document_issued_before_digests_says_so(app: Flask, finished: int) -> None:
    from sqlalchemy import update
    doc = _doc(app, finished)
    with app.extensions["jzflow.sessionmaker"]() as s:  # as migration 0040 leaves the documents issued before it
        s.execute(update(documents.IssuedDocument).values(pdf=None, digest=None))
        s.commit()
    public = app.test_client()
    html = public.get(f"/verify/{doc.verify_code}").get_data(as_text=True)
    assert "核验通过" in html and "未记录文件摘要" in html and 'name="file"' not in html
    refused = _check(public, doc.verify_code, b"%PDF-1.4")
    assert refused.status_code == 422 and "未记录文件摘要" in refused.get_data(as_text=True)


def test_the_printed_link_and_the_verify_route_agree(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine prints the link when it issues the file (no request then): it must be the route's address."""
    monkeypatch.setenv("JZFLOW_PUBLIC_URL", "https://jzflow.jiaozhou.gov.cn")
    with app.test_request_context("/"):
        assert documents.verify_link("ABCD") == links.external_url("documents.verify", code="ABCD")
