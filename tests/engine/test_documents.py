"""Documents: number rules, the gap-free per-year sequence under concurrency, verification codes, PDFs with the
Chinese font embedded, and read-only views of submitted forms (labels and enum titles, not raw keys)."""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, documents, org
from engine.documents import numbering, pdf
from engine.documents.models import DocumentSequence, IssuedDocument
from engine.errors import InvalidInput
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import formtext, instances
from tests.conftest import FIXTURES, pdf_text
from tests.processes.test_parallel_approval import deployed, people  # noqa: F401 (fixtures used by name)

RULE = numbering.NumberRule("cert", "胶审〔{year}〕{seq:04d}号")


@pytest.fixture
def clerk(session: Session) -> Actor:
    org.add_unit(session, code="dept", name="审批部门")
    org.add_user(session, username="clerk", display_name="窗口 王芳", unit_codes=["dept"])
    deploy.deploy(session, deploy.read_directory(FIXTURES / "good"), actor=SYSTEM, check_lanes=False)
    session.commit()
    return actor_for(session, "clerk")


def _instances(session: Session, actor: Actor, n: int) -> list[int]:
    ids = [instances.start(session, process_key="minimal", actor=actor, title=f"事项{i}").id for i in range(n)]
    session.commit()
    return ids


def _issue(session: Session, iid: int, actor: Actor, day: date = date(2026, 3, 2)) -> IssuedDocument:
    return documents.issue(session, instance_id=iid, kind="cert", rule=RULE, title="联合意见书", subject=f"事项{iid}",
                           issuers=["发展和改革局", "自然资源局"], issued_on=day, actor=actor)


# --- rules ------------------------------------------------------------------------------------------------


def test_a_rule_formats_prefix_year_and_padded_sequence() -> None:
    assert RULE.format(2026, 1) == "胶审〔2026〕0001号"
    assert RULE.format(2026, 12345) == "胶审〔2026〕12345号"  # past the padding it grows, never wraps
    assert numbering.check_template("r", "JZ-{year}-{seq:06d}").format(2025, 7) == "JZ-2025-000007"


@pytest.mark.parametrize("template", ["", "无序号", "{seq}{seq}", "{year}", "{seq.__class__}", "{seq[0]}",
                                      "胶审〔2025〕{seq:04d}号", "胶审{seq:04d}号",  # the sequence restarts each year

                                      "{other}{seq}", "{seq!r}", "{seq:>99}", "{seq:099d}", "{seq", "x" * 101])
def test_a_bad_template_is_refused_naming_the_rule(template: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        numbering.check_template("approval_certificate", template)
    assert "approval_certificate" in str(caught.value)


def test_the_environment_overrides_a_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NUMBER_RULES", '{"cert": "青审[{year}]{seq:05d}"}')
    assert numbering.rule("cert", "胶审〔{year}〕{seq:04d}号").format(2026, 3) == "青审[2026]00003"
    assert numbering.rule("other", "A{year}-{seq}").format(2026, 3) == "A2026-3"
    monkeypatch.setenv("JZFLOW_NUMBER_RULES", "not json")
    with pytest.raises(InvalidInput, match="JZFLOW_NUMBER_RULES"):
        numbering.rule("cert", "A{seq}")


# --- the sequence -----------------------------------------------------------------------------------------


def test_numbers_follow_per_year_and_an_instance_gets_one(session: Session, clerk: Actor) -> None:
    a, b, c = _instances(session, clerk, 3)
    first = _issue(session, a, clerk)
    assert _issue(session, a, clerk).id == first.id  # issuing again (a step run again) issues nothing twice
    second = _issue(session, b, clerk)
    next_year = _issue(session, c, clerk, date(2027, 1, 4))
    session.commit()
    assert [first.number, second.number, next_year.number] == ["胶审〔2026〕0001号", "胶审〔2026〕0002号",
                                                               "胶审〔2027〕0001号"]
    assert len(documents.normalize_code(first.verify_code)) == 20 and first.verify_code != second.verify_code


def test_a_rolled_back_issue_leaves_no_gap(session: Session, clerk: Actor) -> None:
    a, b = _instances(session, clerk, 2)
    assert _issue(session, a, clerk).seq == 1
    session.rollback()  # the step that issued it failed (e.g. someone else saved the instance first)
    assert _issue(session, b, clerk).number == "胶审〔2026〕0001号"
    session.commit()
    assert session.scalar(select(DocumentSequence.last).where(DocumentSequence.rule == "cert")) == 1


def test_certificates_issued_at_once_get_consecutive_distinct_numbers(
        session: Session, factory: sessionmaker[Session], clerk: Actor) -> None:
    n = 6
    ids = _instances(session, clerk, n)
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def attempt(i: int) -> None:
        with factory() as s:
            barrier.wait()
            try:
                doc = _issue(s, ids[i], clerk)
                time.sleep(0.05)  # hold the sequence row: the others must wait, not take the same number
                number = doc.number
                s.commit()
                results[i] = number
            except Exception as exc:  # a failure of the test, shown below
                s.rollback()
                results[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(isinstance(r, str) for r in results), results
    assert sorted(results) == [f"胶审〔2026〕{i:04d}号" for i in range(1, n + 1)]  # type: ignore[type-var]
    with factory() as s:
        rows = s.scalars(select(IssuedDocument.seq).order_by(IssuedDocument.seq)).all()
    assert list(rows) == list(range(1, n + 1))


def test_allocations_racing_with_a_rollback_stay_gap_free(factory: sessionmaker[Session], session: Session) -> None:
    n = 8
    barrier = threading.Barrier(n)
    taken: list[int | None] = [None] * n

    def attempt(i: int) -> None:
        with factory() as s:
            barrier.wait()
            value = numbering.allocate(s, "race", 2026)
            if i % 3 == 0:
                s.rollback()  # given back
            else:
                s.commit()
                taken[i] = value

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    kept = sorted(v for v in taken if v is not None)
    assert kept == list(range(1, len(kept) + 1))  # no duplicate, no hole
    assert session.scalar(select(DocumentSequence.last).where(DocumentSequence.rule == "race")) == len(kept)


# --- verification codes -------------------------------------------------------------------------------------


def test_codes_verify_typed_loosely_and_malformed_ones_are_named(session: Session, clerk: Actor) -> None:
    (iid,) = _instances(session, clerk, 1)
    doc = _issue(session, iid, clerk)
    session.commit()
    shown = documents.display_code(doc.verify_code)
    assert shown.count("-") == 4
    facts = documents.verify(session, shown.lower())
    assert facts is not None and facts.number == "胶审〔2026〕0001号" and facts.issuers == ["发展和改革局", "自然资源局"]
    assert set(vars(facts)) == {"number", "title", "subject", "issued_on", "issuers", "digest"}  # nothing else
    assert facts.title == "联合意见书"
    other = documents.new_code()
    assert documents.verify(session, other if other != doc.verify_code else documents.new_code()) is None
    for bad in ("", "ABC", "<script>", "A" * 21, "U" * 20, "' OR 1=1 --"):
        with pytest.raises(InvalidInput, match="核验码"):
            documents.verify(session, bad)


# --- the issued file ------------------------------------------------------------------------------------------


def test_an_issued_document_keeps_its_file_and_the_file_s_digest(session: Session, clerk: Actor) -> None:
    """The verification page vouched for the number, subject, date and issuers only: a PDF whose body was edited (a
    department's opinion changed) still "verified". The file is made once, when the document is issued; its SHA-256
    is kept with it and in the audit trail."""
    from engine.audit.models import AuditEvent
    (iid,) = _instances(session, clerk, 1)
    doc = _issue(session, iid, clerk)
    session.commit()
    assert doc.pdf is not None and doc.pdf.startswith(b"%PDF")
    assert doc.digest == hashlib.sha256(doc.pdf).hexdigest()
    facts = documents.verify(session, doc.verify_code)
    assert facts is not None and facts.digest == doc.digest
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "document.issue")).one()
    assert event.after["sha256"] == doc.digest  # the audit chain vouches for the digest too


def test_the_genuine_file_matches_and_one_changed_byte_does_not(session: Session, clerk: Actor) -> None:
    (iid,) = _instances(session, clerk, 1)
    doc = _issue(session, iid, clerk)
    session.commit()
    facts = documents.verify(session, doc.verify_code)
    assert facts is not None and doc.pdf is not None
    assert documents.matches(facts, io.BytesIO(doc.pdf)) is True
    for at in (0, len(doc.pdf) // 2, len(doc.pdf) - 1):
        altered = bytearray(doc.pdf)
        altered[at] ^= 0x01
        assert documents.matches(facts, io.BytesIO(bytes(altered))) is False, at
    assert documents.matches(facts, io.BytesIO(doc.pdf + b"\n")) is False
    assert documents.matches(facts, io.BytesIO(b"")) is False


def test_a_file_larger_than_the_limit_is_refused_unread(session: Session, clerk: Actor) -> None:
    (iid,) = _instances(session, clerk, 1)
    doc = _issue(session, iid, clerk)
    session.commit()
    facts = documents.verify(session, doc.verify_code)
    assert facts is not None
    with pytest.raises(documents.FileTooLarge, match="10 MB"):
        documents.matches(facts, io.BytesIO(b"%PDF" + b"x" * documents.MAX_CHECKED_FILE))


def test_every_download_is_the_issued_file_byte_for_byte(session: Session, clerk: Actor) -> None:
    """The PDF was rendered again on each download (a new creation time, the reader's address in the link): a
    digest of one rendering would not match the next."""
    from engine.documents import render
    (iid,) = _instances(session, clerk, 1)
    doc = _issue(session, iid, clerk)
    session.commit()
    clock.freeze(clock.now().replace(year=2030))
    try:
        _, first = render.issued_pdf(session, clerk, iid, doc.id, lambda code: f"http://evil.example/verify/{code}")
        _, second = render.issued_pdf(session, clerk, iid, doc.id)
    finally:
        clock.unfreeze()
    assert first == second == doc.pdf
    assert hashlib.sha256(first).hexdigest() == doc.digest


def test_a_document_issued_before_digests_has_none_and_matches_nothing(session: Session, clerk: Actor) -> None:
    (iid,) = _instances(session, clerk, 1)
    doc = _issue(session, iid, clerk)
    doc.pdf, doc.digest = None, None  # as migration 0040 leaves the documents issued before it
    session.commit()
    facts = documents.verify(session, doc.verify_code)
    assert facts is not None and facts.digest is None
    with pytest.raises(documents.NoDigest, match="未记录"):
        documents.matches(facts, io.BytesIO(b"%PDF-1.4"))
    from engine.documents import render
    _, body = render.issued_pdf(session, clerk, iid, doc.id)  # still printed, as before, on each download
    assert body.startswith(b"%PDF")


# --- PDF ------------------------------------------------------------------------------------------------------


def test_the_pdf_embeds_the_chinese_font_and_escapes_values(tmp_path: Path) -> None:
    fields = [formtext.Field("a", "意见", "<b>不</b>同意 & <script>alert(1)</script>")]
    body = pdf.render(pdf.Document(title="联合意见书", number="胶审〔2026〕0001号", sections=[
        pdf.Section("发展和改革局", fields=fields, opinions=["<font size=80>同意</font>"])],
        seal=pdf.Seal(["发展和改革局"], "2026年3月2日"), verify_code="ABCD-EFGH-JKMN-PQRS-TVWX",
        verify_url="http://example.test/verify/ABCD"))
    path = tmp_path / "doc.pdf"
    path.write_bytes(body)
    if shutil.which("pdffonts") is None:
        pytest.skip("poppler-utils (pdffonts) is not installed: make system-packages")
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    cjk = [line for line in fonts.splitlines() if "WenQuanYi" in line or "CJK" in line or "Droid" in line]
    assert cjk and all(" yes yes " in " ".join(line.split()) + " " for line in cjk), fonts
    assert "STSong" not in fonts
    words = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "胶审〔2026〕0001号" in words and "盖章处" in words
    assert "<script>alert(1)</script>" in words and "<font size=80>同意</font>" in words  # shown as text


@pytest.mark.parametrize("long", ["同意\n" * 600, "审" * 4000, "x" * 4000, "a\n" * 1999])
def test_a_value_taller_than_a_page_flows_onto_the_next(long: str, tmp_path: Path) -> None:
    """An applicant's note or a department's opinion within the forms' limits (2000, 4000 characters) made a table row
    taller than a page: reportlab refused it (LayoutError), and the 审批单 and the certificate were a 500 for good."""
    body = pdf.render(pdf.Document(title="联合意见书", facts=[("项目", long)], sections=[
        pdf.Section("发展和改革局", fields=[formtext.Field("note", "说明", long)], opinions=[long, "同意"])],
        seal=pdf.Seal(["发展和改革局"], "2026年3月2日")))
    assert body.startswith(b"%PDF")
    words = pdf_text(body, tmp_path)
    assert "盖章处" in words and words.count("第") >= 2  # pages after the first, and the seal at the end


def test_a_missing_font_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_PDF_FONT", "/nonexistent/font.ttf")
    with pytest.raises(pdf.FontMissing, match="JZFLOW_PDF_FONT"):
        pdf.render(pdf.Document(title="x"))


def test_a_long_table_prints_the_rows_a_form_takes_and_says_how_many_more(tmp_path: Path) -> None:
    """The API takes a table of any length (the form page: 500 rows): 5,000 rows made the 审批单 take 35 s, one
    request holding a worker; the PDF prints the rows a form takes, then how many it left out."""
    from engine import content_limits
    schema = {"type": "object", "properties": {"t": {"type": "array", "title": "走访", "items": {
        "type": "object", "title": "企业", "properties": {"a": {"type": "string", "title": "名称"}}}}}}
    rows = content_limits.MAX_TABLE_ROWS
    fields = formtext.describe(schema, {}, {"t": [{"a": f"企业{i:05d}"} for i in range(5_000)]})
    started = time.monotonic()
    body = pdf.render(pdf.Document(title="审批单", sections=[pdf.Section("1. 填报", fields=fields)]))
    assert time.monotonic() - started < 10
    words = pdf_text(body, tmp_path)
    assert f"企业{rows - 1:05d}" in words and f"企业{rows:05d}" not in words
    assert f"另有 {5_000 - rows:,} 行未打印" in words


def test_a_document_prints_at_most_its_row_limit_in_all(tmp_path: Path) -> None:
    """Values the form does not describe still print, under their key: 20,000 of them made as many rows."""
    from engine import content_limits
    fields = formtext.describe(None, None, {f"k{i:05d}": "v" for i in range(20_000)})
    body = pdf.render(pdf.Document(title="审批单", sections=[pdf.Section("1. 填报", fields=fields),
                                                             pdf.Section("2. 审核", opinions=["同意"])]))
    words = pdf_text(body, tmp_path)
    limit = content_limits.MAX_PRINTED_ROWS
    assert f"k{limit - 2:05d}" in words and f"k{limit:05d}" not in words and "未打印" in words


# --- submitted forms as people read them ------------------------------------------------------------------------


def test_submitted_data_reads_with_labels_and_enum_titles() -> None:
    schema = {"type": "object", "properties": {
        "decision": {"type": "string", "title": "审查结论", "oneOf": [{"const": "approve", "title": "同意"},
                                                                    {"const": "no", "title": "不同意"}]},
        "materials": {"type": "array", "title": "已提交材料", "items": {"type": "string", "enum": ["a", "b", "c"]}},
        "pledge": {"type": "boolean", "title": "承诺"},
        "rows": {"type": "array", "title": "走访", "items": {"type": "object", "title": "企业", "properties": {
            "name": {"type": "string", "title": "名称"}}}},
        "empty": {"type": "string", "title": "空"}}}
    ui = {"ui:order": ["pledge", "*"], "materials": {"items": {"ui:enumNames": ["营业执照", "可研报告", "环评"]}}}
    out = formtext.describe(schema, ui, {"decision": "approve", "materials": ["a", "c"], "pledge": True,
                                         "rows": [{"name": "海湾"}], "empty": "", "extra": "<i>x</i>"})
    assert [(f.label, f.text) for f in out if not f.children] == [
        ("承诺", "是"), ("审查结论", "同意"), ("已提交材料", "营业执照、环评"), ("extra", "<i>x</i>")]
    rows = next(f for f in out if f.label == "走访")
    assert rows.children[0].label == "企业 1" and rows.children[0].children[0].text == "海湾"


def test_opinions_count_towards_the_row_limit(tmp_path: Path) -> None:
    """A step's opinions are rows too: 5,000 of them (one per 加签 round, say) printed all, past the limit."""
    from engine import content_limits
    limit = content_limits.MAX_PRINTED_ROWS
    opinions = [f"意见{i:05d}" for i in range(5_000)]
    body = pdf.render(pdf.Document(title="审批单", sections=[pdf.Section("1. 审核", opinions=opinions)]))
    words = pdf_text(body, tmp_path)
    assert f"意见{limit - 1:05d}" in words and f"意见{limit:05d}" not in words
    assert f"另有 {5_000 - limit:,} 条未打印" in words


# --- two at once --------------------------------------------------------------------------------------------


def test_the_certificate_step_submitted_twice_at_once_issues_one_document(
        session: Session, factory: sessionmaker[Session], deployed: None, people: dict[str, Actor],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """联合出证 submitted twice at once (a double click, two tabs): both runs reach the service task before either
    commits. The second waited for the first's number, then stored a second document of the same instance and kind:
    the unique constraint failed inside the engine run, a database error instead of the 409 of a lost save."""
    from engine import runtime, tasks
    from engine.db import is_postgres
    from tests.processes.test_parallel_approval import APPLICATION, accept, at, review
    from tests.steps import do, only_task, submitted_twice_at_once
    if not is_postgres(session):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer: BEGIN IMMEDIATE)")
    runtime._spec_cache.clear()
    clock.freeze(at("2025-09-25"))
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"],
                          business_key=APPLICATION["project_code"], title="并联审批")
    session.commit()
    do(session, only_task(session, row.id, "submit_application"), people["qiye_zhang"], dict(APPLICATION))
    accept(session, people, row.id, at("2025-09-26"))
    for code in ("fgj", "zrzyj", "sthjj"):
        review(session, people, row.id, code)
    clock.freeze(at("2025-10-10", "10:00"))
    task_id = only_task(session, row.id, "issue_certificate").id
    tasks.claim(session, task_id=task_id, actor=people["window_wang"])
    session.commit()
    submitted_twice_at_once(factory, monkeypatch, task_id, people["window_wang"], [{"issued_on": "2025-10-10"}] * 2)
    session.expire_all()
    # the certificate and the 审批单 issued with it, once each
    assert [d.number for d in documents.for_instance(session, row.id)] == [
        "胶受〔2025〕0001号", "胶审〔2025〕0001号", "胶审单〔2025〕0001号"]  # the 受理通知书 issued at 一窗受理 before
    assert list(session.execute(select(DocumentSequence.rule, DocumentSequence.last).order_by(DocumentSequence.rule))) \
        == [("approval_acceptance", 1), ("approval_certificate", 1), ("approval_sheet", 1)]  # the loser's given back


def test_verify_shows_the_subject_and_issuers_as_the_paper_prints_them(session: Session, clerk: Actor,
                                                                       tmp_path: Path) -> None:
    """The paper drops control characters and bidi overrides (pdf.text); /verify showed them, so a subject with a
    right-to-left override read backwards beside a genuine copy, and a checker comparing the two saw a forgery."""
    (iid,) = _instances(session, clerk, 1)
    doc = documents.issue(session, instance_id=iid, kind="cert", rule=RULE, title="联合意见书",
                          subject="胶州湾\u202e目项业产\u202c（一期）\x07", issuers=["发展\u2066和改革局\u2069"],
                          issued_on=date(2026, 3, 2), actor=clerk)
    session.commit()
    facts = documents.verify(session, doc.verify_code)
    assert facts is not None
    assert facts.subject == "胶州湾目项业产（一期）" and facts.issuers == ["发展和改革局"]
    assert facts.subject == pdf.printed(doc.subject)
