"""受理通知书 and 不予受理决定书: the window's acceptance step gives the applicant a written, numbered, verifiable receipt.

一窗受理 issued no document (行政许可法第三十二条: accepting or not, a dated, sealed written receipt; not accepting,
the reasons and, outside the window's remit, the authority to apply to). The service tasks after it issue them like
the 不予许可决定书: each in its own series (胶受, 胶不受), a verification code, the file printed once and its SHA-256
audited; once per instance however often the step runs, and two submissions at once (PostgreSQL) issue one document
and one number. The window's reasons are user input: markup, control characters and 2,000 characters print as text.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, documents, runtime, tasks
from engine.audit.models import AuditEvent
from engine.documents.models import DocumentSequence
from engine.errors import FormInvalid, SubmissionRefused
from engine.org.actors import Actor
from engine.runtime import effects
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
    start_by_hand,
)
from tests.processes.test_rejection_notice import HOSTILE, printed_as_text_inside_the_page
from tests.steps import only_task, submitted_twice_at_once

REASONS = "申请事项为企业投资项目备案，依法不需要取得行政许可。"
ELSEWHERE = "青岛市生态环境局"


def _one(session: Session, iid: int, kind: str) -> documents.IssuedDocument:
    found = [d for d in documents.for_instance(session, iid) if d.kind == kind]
    assert len(found) == 1, [d.kind for d in documents.for_instance(session, iid)]
    return found[0]


def _flat(doc: documents.IssuedDocument, tmp_path: Path) -> str:
    assert doc.pdf is not None and doc.digest == hashlib.sha256(doc.pdf).hexdigest()
    return "".join(pdf_text(doc.pdf, tmp_path).split())


def _audited(session: Session, doc: documents.IssuedDocument, kind: str) -> None:
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "document.issue",
                                                    AuditEvent.object_id == str(doc.id)))
    assert event is not None and event.after["sha256"] == doc.digest and event.after["kind"] == kind


def test_acceptance_issues_a_numbered_receipt_with_the_time_limit(
        session: Session, deployed: None, people: dict[str, Actor], tmp_path: Path) -> None:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    doc = _one(session, iid, receipts.ACCEPTANCE_KIND)
    assert (doc.number, doc.title, doc.subject, doc.issued_on.isoformat(), doc.issuers) == (
        "胶受〔2025〕0001号", "受理通知书", APPLICATION["project_name"], "2025-09-26", ["行政审批服务局"])
    assert data_of(session, iid)["acceptance_notice"] == {"number": doc.number, "document_id": doc.id,
                                                          "issued_on": "2025-09-26", "time_limit_wd": 10}
    assert documents.for_instance(session, iid, internal=False) == [doc]  # the applicant's to download
    _audited(session, doc, receipts.ACCEPTANCE_KIND)
    flat = _flat(doc, tmp_path)
    for shown in ("受理通知书", "胶受〔2025〕0001号", "青岛海湾智能家电有限公司", "2025-370281-26-03-012345",
                  "立项用地规划许可并联审批", "受理（材料齐全）", "2025年9月26日", "自受理之日起10个工作日",
                  "发展和改革局、自然资源局、生态环境分局", "补正材料的时间不计入审批时限", "行政审批服务局", "盖章处",
                  "行政许可法》第三十二条", documents.display_code(doc.verify_code)):
        assert "".join(shown.split()) in flat, shown
    assert "容缺" not in flat and "复议" not in flat


def test_deferred_acceptance_names_the_commitment_deadline(
        session: Session, deployed: None, people: dict[str, Actor], tmp_path: Path) -> None:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance="accept_deferred", window_opinion="环评文件容缺受理",
           deferred_materials=["eia_document"], commitment_deadline="2025-10-10")
    flat = _flat(_one(session, iid, receipts.ACCEPTANCE_KIND), tmp_path)
    assert "受理方式容缺受理" in flat and "请于2025年10月10日24时前补交容缺材料" in flat


def test_a_commitment_deadline_already_past_sends_the_acceptance_back_naming_it(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:  # noqa: F811
    # 容缺受理 with a 承诺补交期限 before today: the commitment's timer would fire at once and the case go to the leader
    iid = start_by_hand(session, people, at("2025-09-25"))
    with pytest.raises(SubmissionRefused) as refused:
        accept(session, people, iid, at("2025-09-26"), acceptance="accept_deferred", window_opinion="环评文件容缺受理",
               deferred_materials=["eia_document"], commitment_deadline="2024-10-10")
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["commitment_deadline"]
    assert "早于今天" in refused.value.errors[0].message
    assert documents.for_instance(session, iid) == []
    accept(session, people, iid, at("2025-09-26"), acceptance="accept_deferred", window_opinion="环评文件容缺受理",
           deferred_materials=["eia_document"], commitment_deadline="2025-09-26")  # today is still a deadline
    assert _one(session, iid, receipts.ACCEPTANCE_KIND).number == "胶受〔2025〕0001号"


def test_not_accepting_issues_a_decision_with_reasons_referral_and_rights(
        session: Session, deployed: None, people: dict[str, Actor], tmp_path: Path) -> None:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26", "15:00"), acceptance="reject", window_opinion=REASONS,
           refer_authority=ELSEWHERE)
    assert_completed(session, iid)
    doc = _one(session, iid, receipts.NOT_ACCEPTED_KIND)
    assert (doc.number, doc.title, doc.issued_on.isoformat(), doc.issuers) == (
        "胶不受〔2025〕0001号", "不予受理决定书", "2025-09-26", ["行政审批服务局"])
    assert data_of(session, iid)["not_accepted_notice"]["number"] == doc.number
    assert documents.for_instance(session, iid, internal=False) == [doc]  # no 受理通知书
    _audited(session, doc, receipts.NOT_ACCEPTED_KIND)
    flat = _flat(doc, tmp_path)
    for shown in ("不予受理决定书", "胶不受〔2025〕0001号", "青岛海湾智能家电有限公司", "决定不予受理", REASONS,
                  f"请向{ELSEWHERE}申请", "行政许可法》第三十二条第一款", rejection.RIGHTS, "2025年9月26日",
                  documents.display_code(doc.verify_code)):
        assert "".join(shown.split()) in flat, shown


def test_without_an_authority_named_the_decision_refers_nowhere(
        session: Session, deployed: None, people: dict[str, Actor], tmp_path: Path) -> None:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance="reject", window_opinion=REASONS)
    flat = _flat(_one(session, iid, receipts.NOT_ACCEPTED_KIND), tmp_path)
    assert REASONS in flat and "不属于本机关职权范围" not in flat and "六个月内" in flat


def test_not_accepting_without_reasons_is_refused_and_changes_nothing(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    with pytest.raises(FormInvalid) as err:
        accept(session, people, iid, at("2025-09-26"), acceptance="reject", window_opinion="")
    assert [e.field for e in err.value.errors] == ["window_opinion"]
    session.rollback()
    with pytest.raises(FormInvalid) as err:
        accept(session, people, iid, at("2025-09-26"), acceptance="reject", window_opinion=REASONS,
               refer_authority="局" * 201)
    assert [e.field for e in err.value.errors] == ["refer_authority"]
    session.rollback()
    assert documents.for_instance(session, iid) == [] and only_task(session, iid, "window_accept")


@pytest.mark.parametrize(("acceptance", "kind", "rule"), [
    ("accept", receipts.ACCEPTANCE_KIND, receipts.ACCEPTANCE_RULE),
    ("reject", receipts.NOT_ACCEPTED_KIND, receipts.NOT_ACCEPTED_RULE)])
def test_a_step_run_again_issues_nothing_twice(
        session: Session, deployed: None, people: dict[str, Actor],  # noqa: F811
        acceptance: str, kind: str, rule: str) -> None:
    """A retried completion runs the service task again: the same document, the same number, no number used."""
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"), acceptance=acceptance, window_opinion=REASONS)
    first = _one(session, iid, kind)
    running = runtime.load(session, iid)
    ctx = effects.RunContext(session=session, running=running, actor=people["window_wang"])
    with effects.bound(session, running, people["window_wang"]):
        if acceptance == "accept":
            # the run again passes what was recorded (another project would be refused: plan.approval.facts)
            again = receipts.issue_acceptance_notice(ctx, project_name=APPLICATION["project_name"], acceptance="accept",
                                                     departments=[{"code": "fgj", "name": "发展和改革局", "sla_wd": 3}])
        else:
            again = receipts.issue_not_accepted_notice(ctx, project_name=APPLICATION["project_name"], reasons=REASONS)
    assert {k: again[k] for k in ("number", "document_id")} == {"number": first.number, "document_id": first.id}
    session.commit()
    assert session.scalar(select(DocumentSequence.last).where(DocumentSequence.rule == rule)) == 1
    assert [d.kind for d in documents.for_instance(session, iid)] == [kind]


@pytest.mark.parametrize(("acceptance", "number"), [("accept", "胶受〔2025〕0001号"), ("reject", "胶不受〔2025〕0001号")])
def test_the_window_submitting_twice_at_once_issues_one_document_and_one_number(
        session: Session, factory: sessionmaker[Session], deployed: None, people: dict[str, Actor],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, acceptance: str, number: str) -> None:
    """A double click, two tabs: both runs reach the service task before either commits; one wins, one gets 409."""
    from engine.db import is_postgres
    if not is_postgres(session):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer: BEGIN IMMEDIATE)")
    iid = start_by_hand(session, people, at("2025-09-25"))
    clock.freeze(at("2025-09-26"))
    task_id = only_task(session, iid, "window_accept").id
    tasks.claim(session, task_id=task_id, actor=people["window_wang"])
    session.commit()
    submitted_twice_at_once(factory, monkeypatch, task_id, people["window_wang"],
                            [{"acceptance": acceptance, "window_opinion": f"{REASONS}{i}"} for i in range(2)])
    session.expire_all()
    assert [d.number for d in documents.for_instance(session, iid)] == [number]
    assert [tuple(r) for r in session.execute(select(DocumentSequence.rule, DocumentSequence.last))] == [
        (receipts.ACCEPTANCE_RULE if acceptance == "accept" else receipts.NOT_ACCEPTED_RULE, 1)]


def test_hostile_and_huge_reasons_print_as_text_inside_the_page(
        session: Session, deployed: None, people: dict[str, Actor], tmp_path: Path) -> None:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    reasons = (HOSTILE + "理由" * 500 + "W" * 1900)[:2000]  # the form's limit, a long latin word
    accept(session, people, iid, at("2025-09-26"), acceptance="reject", window_opinion=reasons,
           refer_authority="<b>某局</b>\u202e")
    doc = _one(session, iid, receipts.NOT_ACCEPTED_KIND)
    assert doc.pdf is not None
    words = printed_as_text_inside_the_page(doc.pdf, tmp_path, "胶不受〔2025〕0001号")
    assert "<b>某局</b>" in words
