"""不予许可决定书: a 并联审批 a department disapproves ends with a written, numbered, verifiable decision.

出具不予许可决定 issued no document: the applicant was told nothing in writing (行政许可法第三十八条: the reasons and
the right to 申请行政复议 or 提起行政诉讼). The service task after it issues one like the 联合意见书: the next number of
its own series (胶不许〔年份〕序号号), a verification code, the file printed once and its SHA-256 audited; once per
instance however often the step runs, and two submissions at once (PostgreSQL) issue one document and one number.
The window's reasons are user input: markup, control characters and 4,000 characters print as text, inside the page.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, documents, runtime, tasks
from engine.audit.models import AuditEvent
from engine.documents.models import DocumentSequence
from engine.org.actors import Actor
from engine.runtime import effects, instances
from plan.approval import receipts, rejection
from tests.conftest import pdf_text
from tests.processes.test_parallel_approval import (  # noqa: F401 (fixtures used by name)
    APPLICATION,
    accept,
    assert_completed,
    at,
    data_of,
    deployed,
    people,
    review,
)
from tests.steps import do, only_task, submitted_twice_at_once

REASONS = "经生态环境分局审查，项目位于生态保护红线内，不符合《建设项目环境保护管理条例》第十一条的规定。"
HOSTILE = "<script>alert('jz')</script><b>粗体</b><para>&amp;\x00\x1b[31m\x07\u202e倒序\r\n第二行"


def disapproved(session: Session, people: dict[str, Actor]) -> int:  # noqa: F811
    """A 并联审批 to 出具不予许可决定: 发改 and 自然资源 agree, 生态环境 disapproves."""
    runtime._spec_cache.clear()
    clock.freeze(at("2025-09-25"))
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"],
                          business_key=APPLICATION["project_code"], title="胶州湾智能家电产业园（一期）并联审批")
    session.commit()
    do(session, only_task(session, row.id, "submit_application"), people["qiye_zhang"], dict(APPLICATION))
    accept(session, people, row.id, at("2025-09-26"))
    clock.freeze(at("2025-09-29", "10:00"))
    review(session, people, row.id, "fgj")
    review(session, people, row.id, "zrzyj")
    review(session, people, row.id, "sthjj", "disapprove")
    clock.freeze(at("2025-10-09", "15:00"))
    return row.id


def notice_of(session: Session, iid: int) -> documents.IssuedDocument:
    found = [d for d in documents.for_instance(session, iid) if d.kind == rejection.KIND]
    assert len(found) == 1, [d.kind for d in documents.for_instance(session, iid)]
    return found[0]


def test_the_decision_is_issued_numbered_with_reasons_and_the_rights_notice(
        session: Session, deployed: None, people: dict[str, Actor], tmp_path: Path) -> None:  # noqa: F811
    iid = disapproved(session, people)
    do(session, only_task(session, iid, "issue_rejection_notice"), people["window_wang"], {"notice_text": REASONS})
    assert_completed(session, iid)
    doc = notice_of(session, iid)
    assert (doc.number, doc.title, doc.subject, doc.issued_on.isoformat(), doc.issuers) == (
        "胶不许〔2025〕0001号", "不予许可决定书", APPLICATION["project_name"], "2025-10-09", ["生态环境分局"])
    assert data_of(session, iid)["rejection_notice"] == {"number": doc.number, "document_id": doc.id,
                                                         "issued_on": "2025-10-09"}
    # the applicant's to download, with the 受理通知书 of 一窗受理
    assert [d.kind for d in documents.for_instance(session, iid, internal=False)] == [receipts.ACCEPTANCE_KIND, doc.kind]
    assert doc.pdf is not None and doc.digest == hashlib.sha256(doc.pdf).hexdigest()
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "document.issue",
                                                    AuditEvent.object_id == str(doc.id)))
    assert event is not None and event.after["sha256"] == doc.digest and event.after["kind"] == rejection.KIND
    words = pdf_text(doc.pdf, tmp_path)
    flat = "".join(words.split())
    for shown in ("不予许可决定书", "胶不许〔2025〕0001号", "青岛海湾智能家电有限公司", "2025-370281-26-03-012345",
                  "立项用地规划许可并联审批", "不予许可", "生态环境分局", "2025年10月9日", "盖章处",
                  "".join(REASONS.split()), "生态环境分局审查意见：生态环境分局：不符合产业准入条件，不予许可",
                  "行政许可法》第三十八条", "六十日内", "申请行政复议", "六个月内", "行政诉讼法》第四十六条",
                  "提起行政诉讼", documents.display_code(doc.verify_code)):
        assert "".join(shown.split()) in flat, shown
    assert "发展和改革局" not in flat  # it agreed: the decision is not its


def test_a_step_run_again_issues_nothing_twice(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:  # noqa: F811
    """A retried completion runs the service task again: the same document, the same number, no number used."""
    iid = disapproved(session, people)
    do(session, only_task(session, iid, "issue_rejection_notice"), people["window_wang"], {"notice_text": REASONS})
    first = notice_of(session, iid)
    running = runtime.load(session, iid)
    with effects.bound(session, running, people["window_wang"]):
        again = rejection.issue_rejection_notice(
            effects.RunContext(session=session, running=running, actor=people["window_wang"]),
            project_name=APPLICATION["project_name"], reasons=REASONS,  # as recorded: others are refused (facts)
            disapprovals=[{"code": "sthjj", "name": "生态环境分局"}])
    assert again == {"number": first.number, "document_id": first.id, "issued_on": "2025-10-09"}
    session.commit()
    assert session.scalar(select(DocumentSequence.last).where(DocumentSequence.rule == rejection.RULE)) == 1
    assert [d.kind for d in documents.for_instance(session, iid)] == [receipts.ACCEPTANCE_KIND, rejection.KIND]


def test_the_decision_submitted_twice_at_once_issues_one_document_and_one_number(
        session: Session, factory: sessionmaker[Session], deployed: None, people: dict[str, Actor],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A double click, two tabs: both runs reach the service task before either commits; one wins, one gets 409."""
    from engine.db import is_postgres
    if not is_postgres(session):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer: BEGIN IMMEDIATE)")
    iid = disapproved(session, people)
    task_id = only_task(session, iid, "issue_rejection_notice").id
    tasks.claim(session, task_id=task_id, actor=people["window_wang"])
    session.commit()
    submitted_twice_at_once(factory, monkeypatch, task_id, people["window_wang"],
                            [{"notice_text": f"{REASONS}{i}"} for i in range(2)])
    session.expire_all()
    assert [d.number for d in documents.for_instance(session, iid)] == ["胶受〔2025〕0001号", "胶不许〔2025〕0001号"]
    assert session.scalar(select(DocumentSequence.last).where(DocumentSequence.rule == rejection.RULE)) == 1


def test_hostile_and_huge_reasons_print_as_text_inside_the_page(
        session: Session, deployed: None, people: dict[str, Actor], tmp_path: Path) -> None:  # noqa: F811
    iid = disapproved(session, people)
    reasons = HOSTILE + "理由" * 1000 + "W" * 1900  # 4,000 characters at most (the form's limit), a long latin word
    reasons = reasons[:4000]
    do(session, only_task(session, iid, "issue_rejection_notice"), people["window_wang"], {"notice_text": reasons})
    doc = notice_of(session, iid)
    assert doc.pdf is not None
    printed_as_text_inside_the_page(doc.pdf, tmp_path, "胶不许〔2025〕0001号")


def printed_as_text_inside_the_page(pdf: bytes, tmp_path: Path, number: str) -> str:
    """Assert a decision with HOSTILE reasons prints them as text, without control characters, inside the right
    margin, with its number and the 诉讼 rights; return its words."""
    words = pdf_text(pdf, tmp_path)
    assert "<script>alert('jz')</script><b>粗体</b><para>&amp;" in words  # printed, never markup
    assert "倒序" in words and "第二行" in words
    for control in ("\x00", "\x1b", "\x07", "\u202e"):
        assert control not in words, repr(control)
    assert "理由" * 50 in "".join(words.split()) and number in words and "六个月内" in words
    html = subprocess.run(["pdftotext", "-bbox", str(tmp_path / "doc.pdf"), "-"], capture_output=True,
                          check=True).stdout.decode()
    width = float(re.search(r'<page width="([\d.]+)"', html).group(1))  # type: ignore[union-attr]
    rights = [float(x) for x in re.findall(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)"', html)]
    assert rights and max(rights) <= width - 20 * 72 / 25.4 + 1  # the right margin: nothing runs off the page
    return words
