"""Submitted forms, the 审批单 and the 联合意见书 in the browser, on jzflow started as `make run` starts it.

The demo (`jzflow demo`) takes one 并联审批 (XM-2025-0005, 施工许可) to its joint certificate. The window (马晓燕)
reads the instance's 审批单 — every step's form with its labels and opinions — and the submitted form on a
finished task; prints the 审批单 (Chromium's print media and its PDF: no navigation, no buttons); downloads the
certificate and the 审批单 as PDF, which are rendered to PNG with pdftoppm and checked with pdffonts (the Chinese
font embedded) and pdftotext (the number, the seal area, the verification code). The code printed on the
certificate is checked at /verify by someone not logged in; an unknown code is answered clearly; another
applicant gets 403 for the PDFs and the 审批单. Screenshots and the PDFs/PNGs go to test-artifacts/e2e/.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from engine.documents.models import IssuedDocument
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from plan.approval import certificate
from tests.e2e.conftest import AppProcess, Desk

WINDOW, OTHER_APPLICANT = "maxiaoyan", "gupeng"  # the demo's window; an applicant of another application


def certified(server: AppProcess) -> tuple[ProcessInstance, IssuedDocument, int]:
    """The demo's certified application, its certificate and its 联合出证 task (from the server's database)."""
    engine = create_engine(server.database_url)
    try:
        with Session(engine) as s:
            doc = s.scalar(select(IssuedDocument).where(IssuedDocument.kind == certificate.KIND)  # not a 受理通知书
                           .order_by(IssuedDocument.id))
            assert doc is not None, "the demo issued no certificate"
            row = s.get(ProcessInstance, doc.instance_id)
            task = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == doc.instance_id,
                                                       HumanTask.bpmn_id == "issue_certificate"))
            assert row is not None and task is not None
            s.expunge_all()
            return row, doc, task
    finally:
        engine.dispose()


def poppler(*args: str) -> str:
    if shutil.which(args[0]) is None:
        pytest.fail(f"{args[0]} is missing: `make system-packages` installs poppler-utils")
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def check_pdf(body: bytes, path: Path, *, subset: bool = True) -> str:
    """Save a PDF, render its first page to PNG, insist its fonts are embedded (ours: subsets); return its text."""
    assert body.startswith(b"%PDF"), body[:100]
    path.write_bytes(body)
    fonts = poppler("pdffonts", str(path)).splitlines()[2:]  # name type encoding emb sub uni object ID
    used = [line for line in fonts if "Helvetica" not in line]  # reportlab's unused default font, never drawn
    assert used and all(line.split()[-5] == "yes" for line in used), fonts
    if subset:
        assert any("WenQuanYi" in line or "CJK" in line for line in used), fonts
        assert all(line.split()[-4] == "yes" for line in used), fonts
    assert not any("STSong" in line for line in fonts), fonts
    poppler("pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", str(path), str(path.with_suffix("")))
    png = next(path.parent.glob(path.stem + "*.png"))
    assert png.stat().st_size > 10_000, png  # a rendered page, not a blank one
    return poppler("pdftotext", "-layout", str(path), "-")


def test_the_approval_sheet_and_the_certificate(app_process: AppProcess, desk: Desk, e2e_artifacts: Path,
                                                browser: object) -> None:
    url = app_process.url
    row, doc, certificate_task = certified(app_process)
    window = desk(WINDOW)

    # -- the instance page: issued documents and the whole 审批单 -------------------------------------------------
    window.goto(f"{url}/instances/{row.id}")
    issued = window.locator("#issued-documents").inner_text()
    assert doc.number in issued and re.fullmatch(r"胶审〔\d{4}〕\d{4}号", doc.number), issued
    sheet = window.locator("#approval-sheet").inner_text()
    for shown in ("提交并联审批申请", "一窗受理", "部门审查", "联合出证", "已提交材料", "施工图设计文件及审查合格书",
                  "审查结论", "施工图审查及消防设计审查合格。", "人防设计审查通过。", "出证日期"):
        assert shown in sheet, shown
    for raw in ("construction_drawings", "review_decision", "approve"):
        assert raw not in sheet, raw
    window.screenshot(path=str(e2e_artifacts / "documents-1-instance-sheet.png"), full_page=True)

    # -- a finished task shows what was submitted, and the earlier steps --------------------------------------------
    window.goto(f"{url}/tasks/{certificate_task}")
    assert "出证日期" in window.locator("#submitted").inner_text()
    assert "建设工程规划许可审查通过。" in window.locator("#earlier-steps").inner_text()
    window.screenshot(path=str(e2e_artifacts / "documents-2-task-submitted.png"), full_page=True)

    # -- the printable 审批单: print media hides navigation and buttons; Chromium prints it to PDF -----------------------
    window.goto(f"{url}/instances/{row.id}/sheet")
    window.locator("#approval-sheet").wait_for()
    assert "（盖章处）" in window.locator(".seal-area").inner_text()
    window.screenshot(path=str(e2e_artifacts / "documents-3-sheet-screen.png"), full_page=True)
    window.emulate_media(media="print")
    try:
        assert window.locator(".topbar").is_hidden() and window.locator("[data-jz-print]").is_hidden()
        assert window.locator(".seal-area").is_visible()
        window.screenshot(path=str(e2e_artifacts / "documents-4-sheet-print.png"), full_page=True)
        printed = e2e_artifacts / "documents-sheet-printed.pdf"
        window.pdf(path=str(printed), format="A4")
        text = check_pdf(printed.read_bytes(), printed, subset=False)  # Chromium's own print: its Type 3 fonts
        assert "审批单" in text and "盖章处" in text and "退出" not in text  # no navigation on paper
    finally:
        window.emulate_media(media="screen")

    # -- the PDFs: 审批单 and 联合意见书, rendered to PNG ---------------------------------------------------------------
    response = window.context.request.get(f"{url}/instances/{row.id}/sheet.pdf")
    assert response.status == 200 and response.headers["content-type"] == "application/pdf"
    text = check_pdf(response.body(), e2e_artifacts / "documents-sheet.pdf")
    assert "盖章处" in text and doc.number in text and "施工图审查及消防设计审查合格。" in text
    response = window.context.request.get(f"{url}/instances/{row.id}/documents/{doc.id}.pdf")
    assert response.status == 200
    text = check_pdf(response.body(), e2e_artifacts / "documents-certificate.pdf")
    assert doc.number in text and "盖章处" in text and "联合意见书" in text, text
    code = re.search(r"核验码：\s*([0-9A-Z]{4}(?:-[0-9A-Z]{4}){4})", text)
    assert code is not None, text

    # -- /verify with the code printed on the certificate, by someone not logged in ------------------------------------
    context = browser.new_context(viewport={"width": 1000, "height": 700}, locale="zh-CN")  # type: ignore[attr-defined]
    try:
        public = context.new_page()
        public.goto(f"{url}/verify/{code.group(1)}")
        assert doc.number in public.locator("#verify-number").inner_text()
        assert "核验通过" in public.locator("#verify-result").inner_text()
        assert "刘志成" not in public.content()  # the applicant's contact is not public
        public.screenshot(path=str(e2e_artifacts / "documents-5-verify.png"), full_page=True)
        answer = public.goto(f"{url}/verify/ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ")
        assert answer is not None and answer.status == 404
        assert "未找到此核验码" in public.locator("#verify-result").inner_text()
        public.screenshot(path=str(e2e_artifacts / "documents-6-verify-unknown.png"), full_page=True)
    finally:
        context.close()

    # -- another applicant: 404 for the 审批单 and the PDFs (an instance they may not see is as if it did not exist) ------
    other = desk(OTHER_APPLICANT)
    for path in (f"/instances/{row.id}/sheet", f"/instances/{row.id}/sheet.pdf",
                 f"/instances/{row.id}/documents/{doc.id}.pdf"):
        assert other.context.request.get(f"{url}{path}").status == 404, path
    assert desk.errors == [], desk.errors
