"""The 审批单 of a 并联审批, issued with the 联合意见书 (联合出证) and checkable at /verify like it.

A printed 审批单 carried no number, no verification code and no digest: whoever held one (a citizen, another
department) could not tell it from an edited copy. Now the engine issues it as a document when the certificate is
issued: printed once with every step to 联合出证, its own included (saved after the issuing run), a number
(胶审单〔年份〕序号号) and a verification code, its bytes and SHA-256 kept, the digest in the `document.issue` audit
event. Every download is that file; /verify shows its number, subject, date, issuers and digest and nothing of the
steps; the applicant, who may not read the sheet, may not download it either (nor see it listed).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from engine import clock, documents
from engine.audit.models import AuditEvent
from engine.documents import sheet
from tests.conftest import pdf_text
from tests.processes.test_parallel_approval import deployed, people  # noqa: F401 (fixtures used by name)
from tests.web.test_documents_pages import (  # noqa: F401 (fixtures used by name)
    HOSTILE,
    _check,
    app,
    client_of,
    finished,
)


def _sheet(app: Flask, iid: int) -> documents.IssuedDocument:  # noqa: F811
    with app.extensions["jzflow.sessionmaker"]() as s:
        found = [d for d in documents.for_instance(s, iid) if d.kind == sheet.KIND]
        assert len(found) == 1, [d.kind for d in documents.for_instance(s, iid)]
        s.expunge(found[0])
        return found[0]


def _pdf(app: Flask, iid: int) -> bytes:  # noqa: F811
    with app.extensions["jzflow.sessionmaker"]() as s:
        body = s.scalar(select(documents.IssuedDocument.pdf).where(documents.IssuedDocument.instance_id == iid,
                                                                 documents.IssuedDocument.kind == sheet.KIND))
        assert body is not None
        return body


def test_the_sheet_is_issued_once_with_a_number_a_code_and_its_digest_audited(
        app: Flask, finished: int, tmp_path: Path) -> None:  # noqa: F811
    doc = _sheet(app, finished)
    body = _pdf(app, finished)
    assert doc.number == "胶审单〔2025〕0001号" and doc.title == "审批单" and doc.issued_on.isoformat() == "2025-10-10"
    assert doc.digest == hashlib.sha256(body).hexdigest()
    with app.extensions["jzflow.sessionmaker"]() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "document.issue",
                                                  AuditEvent.object_id == str(doc.id)))
        assert event is not None and event.after["sha256"] == doc.digest and event.after["kind"] == sheet.KIND
    words = pdf_text(body, tmp_path)
    assert documents.display_code(doc.verify_code) in words and "胶审单〔2025〕0001号" in words
    for shown in ("提交并联审批申请", "一窗受理", "部门审查", "发展和改革局", "胶审〔2025〕0001号", "盖章处",
                  "2025年10月10日"):
        assert shown in words, shown
    # every step to 联合出证, which issues it (its own step last: test_the_issued_sheet_holds_the_joint_certificate_step)
    # (a step may open a page: pdftotext starts it with a form feed)
    assert re.findall(r"^\f?\d+\. (\S+)", words, re.M)[:5] == ["提交并联审批申请", "一窗受理", "部门审查", "部门审查",
                                                          "部门审查"], words
    window = client_of(app, "window_wang")
    clock.freeze(clock.now().replace(year=2026))  # printed another day: the same file
    try:
        for path in (f"/instances/{finished}/sheet.pdf", f"/instances/{finished}/documents/{doc.id}.pdf"):
            response = window.get(path)
            assert response.status_code == 200 and response.data == body, path
    finally:
        clock.unfreeze()
    html = window.get(f"/instances/{finished}").get_data(as_text=True)
    assert "胶审单〔2025〕0001号" in html.split('id="issued-documents"', 1)[1]


def test_verify_shows_the_sheet_s_public_facts_and_compares_a_copy(app: Flask, finished: int) -> None:  # noqa: F811
    doc = _sheet(app, finished)
    body = _pdf(app, finished)
    public = app.test_client()  # another department, a citizen: nobody logged in
    page = public.get(f"/verify/{documents.display_code(doc.verify_code)}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "胶审单〔2025〕0001号" in html and doc.digest is not None and doc.digest in html
    assert '<dd id="verify-title">审批单</dd>' in html
    assert doc.subject in html and "发展和改革局" in html
    for private in ("提交并联审批申请", "一窗受理", "部门审查", "材料齐全", "受理意见", "审查结论", "窗口 王芳",
                    "海湾家电 张伟", "营业执照", "alert"):
        assert private not in html, private
    assert "与签发文件一致" in _check(public, doc.verify_code, body, "审批单.pdf").get_data(as_text=True)
    edited = bytearray(body)
    edited[len(edited) // 2] ^= 0x01
    assert "与签发文件不一致" in _check(public, doc.verify_code, bytes(edited), "审批单.pdf").get_data(as_text=True)


def test_the_applicant_may_not_download_the_issued_sheet_nor_see_it_listed(
        app: Flask, finished: int) -> None:  # noqa: F811
    doc = _sheet(app, finished)
    applicant = client_of(app, "qiye_zhang")
    assert applicant.get(f"/instances/{finished}/documents/{doc.id}.pdf").status_code == 403
    assert applicant.get(f"/instances/{finished}/sheet.pdf").status_code == 403
    html = applicant.get(f"/instances/{finished}").get_data(as_text=True)
    assert "胶审〔2025〕0001号" in html and "胶审单" not in html  # the certificate is theirs, the sheet is not
    assert not re.search(rf"/documents/{doc.id}\.pdf", html)
    assert client_of(app, "qiye_li").get(f"/instances/{finished}/documents/{doc.id}.pdf").status_code == 404
    assert HOSTILE not in html


def test_the_issued_sheet_holds_the_joint_certificate_step_itself(
        app: Flask, finished: int, tmp_path: Path) -> None:  # noqa: F811
    """联合出证 is the step that issues the sheet: its completion is saved after the issuing run, so the issued file
    ended with the departments' reviews and the sheet never said who issued the certificate, when, on which 出证日期
    and under which number. The file now prints it as the last step, like every other."""
    words = pdf_text(_pdf(app, finished), tmp_path)
    steps = re.findall(r"^\f?\d+\. (\S+)", words, re.M)
    assert steps[-1] == "联合出证" and steps.count("联合出证") == 1, steps
    last = words.rsplit("联合出证", 1)[1]
    assert "窗口 王芳" in last and "2025-10-10 10:00" in last  # who, when (Asia/Shanghai)
    assert "出证日期" in last and "2025-10-10" in last
    assert "胶审〔2025〕0001号" in last  # the certificate issued by this step
    assert "胶审单" not in last.split("盖章处", 1)[0]  # not the sheet itself: the document being printed
    # the page of the sheet (after the run) reads the same step
    html = client_of(app, "window_wang").get(f"/instances/{finished}/sheet").get_data(as_text=True)
    assert html.count("联合出证") >= 1 and "窗口 王芳" in html


def _step_block(html: str, name: str) -> str:
    blocks = re.findall(r'<details class="submission[^"]*" id="submission-\d+".*?</details>', html, re.S)
    found = [b for b in blocks if f"<strong>{name}</strong>" in b]
    assert len(found) == 1, [b[:200] for b in blocks]
    return found[0]


def test_the_sheet_page_shows_the_certificate_number_at_joint_certificate(
        app: Flask, finished: int) -> None:  # noqa: F811
    """The issued PDF prints the 联合意见书's number under 联合出证 (the step whose run issued it); the 审批单 page and
    the instance page read the steps after the run and showed 联合出证 without it. The number now stays with the step
    (its task.complete event), never the 审批单's own (internal: not the step's certificate)."""
    with app.extensions["jzflow.sessionmaker"]() as s:
        issued = {d.kind: d for d in documents.for_instance(s, finished)}
        s.expunge_all()
    cert, receipt = issued["approval_joint_certificate"], issued["approval_acceptance_notice"]
    for url in (f"/instances/{finished}/sheet", f"/instances/{finished}"):
        html = client_of(app, "window_wang").get(url).get_data(as_text=True)
        step = _step_block(html, "联合出证")
        assert cert.number in step and cert.title in step, step
        assert "胶审单" not in step, step
        blocks = re.findall(r'<details class="submission[^"]*" id="submission-\d+".*?</details>', html, re.S)
        assert sum(cert.number in b for b in blocks) == 1  # only 联合出证 holds it, not the reviews before
        assert sum(receipt.number in b for b in blocks) == 1  # and 受理 the 受理通知书 its run issued
