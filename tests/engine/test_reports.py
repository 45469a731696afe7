"""周调度 / 月通报: counts per unit from the ledger and the projects, XLSX and PDF (Chinese text), the run job."""
from __future__ import annotations

import io
import shutil
import subprocess
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, org
from engine.deadlines import sla
from engine.errors import Forbidden, InvalidInput
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit
from engine.tasks.collab_models import Notification
from plan import reports
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project, ProjectLibrary, ProjectStage
from plan.reports.models import ReportRun

SH = clock.SHANGHAI


def at(y: int, m: int, d: int, hh: int = 10) -> datetime:
    return datetime(y, m, d, hh, tzinfo=SH)


@pytest.fixture
def ledger(session: Session, frozen: Any) -> dict[str, Actor]:
    """Issues of two units over September 2025 and three projects, as of Friday 26 Sep."""
    org.add_role(session, code="ledger_officer", name="台账管理员")
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_unit(session, code="zrzyj", name="自然资源局")
    org.add_user(session, username="officer", display_name="台账管理员", role_codes=["ledger_officer"])
    org.add_user(session, username="staff", display_name="普通用户", unit_codes=["gxj"])
    units = {u.code: u.id for u in session.scalars(select(OrgUnit))}

    def issue(code: str, unit: str, created: datetime, due: date, closed: datetime | None = None) -> LedgerIssue:
        return LedgerIssue(code=code, title=f"问题{code}", unit_id=units[unit], created_at=created,
                           due_at=sla.deadline_of(due), status="closed" if closed else "in_progress", closed_at=closed)
    session.add_all([
        issue("A1", "gxj", at(2025, 9, 2), date(2025, 9, 10), at(2025, 9, 9)),     # closed on time, earlier week
        issue("A2", "gxj", at(2025, 9, 22), date(2025, 9, 30), at(2025, 9, 24)),   # new and closed this week
        issue("A3", "gxj", at(2025, 9, 23), date(2025, 10, 15)),                   # new, in progress
        issue("B1", "zrzyj", at(2025, 9, 3), date(2025, 9, 19)),                   # overdue
        issue("B2", "zrzyj", at(2025, 9, 15), date(2025, 9, 20), at(2025, 9, 25)),  # closed late this week
        issue("B3", "zrzyj", at(2025, 9, 24), date(2025, 10, 20)),                 # new, in progress
    ])
    library = ProjectLibrary(code="key", name="重点项目")
    session.add(library)
    session.flush()
    behind = Project(code="XM-1", name="智能家电产业园", library_id=library.id, category="focus", investment=60000,
                     stage="signed", responsible_unit_id=units["gxj"], planned_start=date(2025, 9, 15),
                     created_at=at(2025, 3, 1))
    fine = Project(code="XM-2", name="新材料基地", library_id=library.id, category="key", investment=20000,
                   stage="started", responsible_unit_id=units["zrzyj"], planned_complete=date(2026, 6, 30),
                   created_at=at(2025, 9, 23))
    session.add_all([behind, fine])
    session.flush()
    session.add(ProjectStage(project_id=fine.id, stage="started", on=date(2025, 9, 24)))
    session.commit()
    clock.freeze(at(2025, 9, 26, 17))
    return {u: actor_for(session, u) for u in ("officer", "staff")}


def test_weekly_and_monthly_counts_per_unit(session: Session, ledger: dict[str, Actor]) -> None:
    start, end, title = reports.period("weekly", date(2025, 9, 26))
    assert (start, end) == (date(2025, 9, 22), date(2025, 9, 29)) and "周调度" in title
    week = reports.build(session, kind="weekly", start=start, end=end)
    lines = {line.unit: line for line in week.issues}
    gxj, zr = lines["工业和信息化局"], lines["自然资源局"]
    assert (gxj.new, gxj.in_progress, gxj.closed, gxj.overdue, gxj.closed_late, gxj.total, gxj.closed_total) == \
        (2, 1, 1, 0, 0, 3, 2)
    assert (zr.new, zr.in_progress, zr.closed, zr.overdue, zr.closed_late, zr.total, zr.closed_total) == \
        (1, 2, 1, 1, 1, 3, 1)
    assert [line.unit for line in week.issues] == ["工业和信息化局", "自然资源局"]  # ranked by 销号率 67 % vs 33 %
    assert [line.rank for line in week.issues] == [1, 2] and round(gxj.close_rate, 3) == 0.667
    totals = week.totals()
    assert (totals.new, totals.total, totals.closed_total) == (3, 6, 3)
    projects = {line.unit: line for line in week.projects}
    assert (projects["工业和信息化局"].behind, projects["自然资源局"].started, projects["自然资源局"].new) == (1, 1, 1)
    assert [line.unit for line in week.projects] == ["自然资源局", "工业和信息化局"]  # fewest behind first

    start, end, title = reports.period("monthly", date(2025, 9, 26))
    assert (start, end, title) == (date(2025, 9, 1), date(2025, 10, 1), "问题台账与项目推进月通报（2025年09月）")
    month = {line.unit: line for line in reports.build(session, kind="monthly", start=start, end=end).issues}
    assert (month["工业和信息化局"].new, month["工业和信息化局"].closed) == (3, 2)
    assert reports.period("monthly", date(2025, 12, 3))[1] == date(2026, 1, 1)
    with pytest.raises(InvalidInput):
        reports.period("daily", date(2025, 9, 1))


def test_xlsx_holds_the_chinese_tables(session: Session, ledger: dict[str, Actor]) -> None:
    from openpyxl import load_workbook
    start, end, _ = reports.period("weekly", date(2025, 9, 26))
    book = load_workbook(io.BytesIO(reports.to_xlsx(reports.build(session, kind="weekly", start=start, end=end))))
    assert book.sheetnames == ["问题台账", "项目推进"]
    rows = list(book["问题台账"].iter_rows(values_only=True))
    assert "周调度" in str(rows[0][0]) and rows[2] == reports.ISSUE_HEAD
    assert rows[3][:4] == (1, "工业和信息化局", 2, 1)
    rate = book["问题台账"].cell(row=4, column=len(reports.ISSUE_HEAD))
    assert rate.data_type == "n" and round(rate.value, 3) == 0.667 and rate.number_format == "0.0%"  # a number, shown as %
    assert rows[-1][1] == "合计"
    assert list(book["项目推进"].iter_rows(values_only=True))[3][1] == "自然资源局"
    assert not [c.coordinate for sheet in book for row in sheet.iter_rows() for c in row if c.data_type == "f"]


def test_a_unit_named_like_a_formula_is_text_in_the_workbook(session: Session, ledger: dict[str, Actor]) -> None:
    from openpyxl import load_workbook
    unit = session.scalar(select(OrgUnit).where(OrgUnit.name == "工业和信息化局"))
    assert unit is not None
    unit.name = '=HYPERLINK("http://evil.example/","工业和信息化局")'
    session.flush()
    start, end, _ = reports.period("weekly", date(2025, 9, 26))
    book = load_workbook(io.BytesIO(reports.to_xlsx(reports.build(session, kind="weekly", start=start, end=end))))
    named = [c for row in book["问题台账"].iter_rows() for c in row if c.value == unit.name]
    assert named and all(c.data_type == "s" for c in named)


def test_pdf_renders_chinese_with_an_embedded_cjk_font(session: Session, ledger: dict[str, Actor],
                                                       tmp_path: Path) -> None:
    start, end, _ = reports.period("monthly", date(2025, 9, 26))
    pdf = reports.to_pdf(reports.build(session, kind="monthly", start=start, end=end))
    assert pdf.startswith(b"%PDF") and b"STSong-Light" not in pdf  # a font the reader may not have: not any more
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the text check needs it")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, check=True, text=True).stdout.splitlines()[2:]
    # Embedded as a subset; reportlab lists the standard Helvetica in every PDF's resources, never drawn with.
    cjk = [line for line in fonts if not line.startswith("Helvetica ")]
    assert cjk and all(line.split()[-5:-3] == ["yes", "yes"] for line in cjk), fonts
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True).stdout.decode()
    for words in ("问题台账与项目推进月通报", "工业和信息化局", "自然资源局", "销号率", "滞后"):
        assert words in text, text


def test_a_run_commits_its_progress_and_keeps_both_files(session: Session, factory: sessionmaker[Session],
                                                         ledger: dict[str, Actor]) -> None:
    with pytest.raises(Forbidden):
        reports.create_run(session, actor=ledger["staff"], kind="weekly", day=date(2025, 9, 26))
    run = reports.create_run(session, actor=ledger["officer"], kind="weekly", day=date(2025, 9, 26))
    session.commit()
    assert (run.status, run.progress) == ("pending", 0)
    assert reports.stale_runs(session, now=clock.now()) == []
    run_id = run.id
    assert reports.stale_runs(session, now=clock.now() + timedelta(minutes=1)) == [run_id]
    session.rollback()  # SQLite: let go of the write lock (and touch no expired attribute after this)
    assert reports.run(factory, run_id) == "done"
    assert reports.run(factory, run_id) == "done"  # a second delivery of the job changes nothing
    done = session.scalar(select(ReportRun).where(ReportRun.id == run_id).execution_options(populate_existing=True))
    assert done is not None and (done.status, done.progress) == ("done", 100)
    assert done.xlsx is not None and done.xlsx[:2] == b"PK" and done.pdf is not None and done.pdf[:4] == b"%PDF"
    assert done.summary["issues"][0]["unit"] == "工业和信息化局"
    messages = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app")).all()
    assert [m.payload["title"] for m in messages] == [f"报表已生成: {done.title}"]
    assert session.scalar(select(Notification)) is None  # delivered by the outbox job, not here


@pytest.mark.parametrize(("kind", "day"), [("monthly", date(9999, 12, 5)), ("weekly", date(9999, 12, 31)),
                                           ("weekly", date(1, 1, 1)), ("monthly", date(1899, 5, 1))])
def test_a_day_out_of_range_is_refused_naming_it(session: Session, ledger: dict[str, Actor], kind: str,
                                                 day: date) -> None:
    with pytest.raises(InvalidInput) as refused:
        reports.create_run(session, actor=ledger["officer"], kind=kind, day=day)
    assert refused.value.details.get("field") == "day" and "超出范围" in refused.value.message
    assert session.scalar(select(ReportRun)) is None


def test_asking_twice_for_a_report_being_generated_queues_it_once(session: Session, ledger: dict[str, Actor]) -> None:
    """A double click, or a second tab, on 生成报表: the run being generated is the answer, not a second one."""
    first = reports.create_run(session, actor=ledger["officer"], kind="weekly", day=date(2025, 9, 24))
    again = reports.create_run(session, actor=ledger["officer"], kind="weekly", day=date(2025, 9, 26))  # same week
    monthly = reports.create_run(session, actor=ledger["officer"], kind="monthly", day=date(2025, 9, 26))
    assert again.id == first.id and monthly.id != first.id
    first.status = "done"
    later = reports.create_run(session, actor=ledger["officer"], kind="weekly", day=date(2025, 9, 26))
    assert later.id not in (first.id, monthly.id)  # once done, asking again is asking for fresh figures
    assert len(session.scalars(select(ReportRun)).all()) == 3


def _slow_render(monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> tuple[threading.Event, threading.Event,
                                                                                   list[int]]:
    """The first PDF render waits (a long report) until released, then renders (or fails); (rendering, release, renders)."""
    from plan.reports import core, lease
    real = core.to_pdf
    rendering, release, renders = threading.Event(), threading.Event(), []

    def to_pdf(report: reports.Report) -> bytes:
        renders.append(1)
        if len(renders) == 1:
            rendering.set()
            assert release.wait(30)
            if fail:
                raise RuntimeError("渲染失败 (the render failed)")
        return real(report)

    monkeypatch.setattr(core, "to_pdf", to_pdf)
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.02)  # a live worker says so often (tests)
    return rendering, release, renders


def _beat_takes_up_stale_runs(factory: sessionmaker[Session], *, wait: float) -> list[str]:
    """Beat's pending-reports job, once the runs stop looking stale or after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        with factory() as s:
            ids = reports.stale_runs(s, now=clock.now())
        if not ids or time.monotonic() > deadline:
            return [reports.run(factory, run_id) for run_id in ids]
        time.sleep(0.02)


def _first_run(factory: sessionmaker[Session], run_id: int) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def generate() -> None:
        try:
            result.append(reports.run(factory, run_id))
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=generate)
    thread.start()
    return thread, result


def test_a_run_still_generating_after_ten_minutes_is_not_generated_again(
        session: Session, factory: sessionmaker[Session], ledger: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A report that takes more than ten minutes: beat's pending-reports job (and a redelivered job) took it up
    again and generated it a second time beside the first. The worker generating it keeps its lease alive."""
    run_id = reports.create_run(session, actor=ledger["officer"], kind="weekly", day=date(2025, 9, 26)).id
    session.commit()
    rendering, release, renders = _slow_render(monkeypatch)
    thread, result = _first_run(factory, run_id)
    try:
        assert rendering.wait(30)
        clock.advance(timedelta(minutes=11))
        assert _beat_takes_up_stale_runs(factory, wait=3) == []
        assert reports.run(factory, run_id) == "running"  # the job delivered again: left to its worker
    finally:
        release.set()
        thread.join(30)
    assert result == ["done"] and len(renders) == 1
    done = session.scalar(select(ReportRun).where(ReportRun.id == run_id).execution_options(populate_existing=True))
    assert done is not None and (done.status, done.progress) == ("done", 100)


def test_a_worker_that_stopped_answering_is_replaced_and_cannot_undo_its_successors_report(
        session: Session, factory: sessionmaker[Session], ledger: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker silent for ten minutes (stopped, its lease not renewed) is replaced: the next worker generates the
    report. When the first one wakes up and fails, it must not mark the finished report failed."""
    run_id = reports.create_run(session, actor=ledger["officer"], kind="weekly", day=date(2025, 9, 26)).id
    session.commit()
    rendering, release, renders = _slow_render(monkeypatch, fail=True)
    monkeypatch.setattr("plan.reports.lease.HEARTBEAT_SECONDS", 3600.0)  # it says nothing
    thread, result = _first_run(factory, run_id)
    try:
        assert rendering.wait(30)
        clock.advance(timedelta(minutes=11))
        assert _beat_takes_up_stale_runs(factory, wait=0) == ["done"]
    finally:
        release.set()
        thread.join(30)
    assert result == ["taken"] and len(renders) == 2
    done = session.scalar(select(ReportRun).where(ReportRun.id == run_id).execution_options(populate_existing=True))
    assert done is not None and (done.status, done.progress, done.error) == ("done", 100, None)
    assert reports.run_file(session, run_id, "pdf", ledger["officer"]) is not None
    told = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app")).all()
    assert [m.payload["title"] for m in told] == [f"报表已生成: {done.title}"]


LONG_UNIT = "胶州市经济技术开发区管理委员会招商引资和项目建设服务中心重点项目推进督导工作专班第三工作组（临时机构）" * 2


def _words(pdf: bytes, tmp_path: Path) -> tuple[float, list[tuple[float, float, str]]]:
    """Return a PDF's first page width and its words with their left and right edges (pdftotext -bbox)."""
    import re
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    html = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, check=True).stdout.decode()
    width = float(re.search(r'<page width="([\d.]+)"', html).group(1))  # type: ignore[union-attr]
    words = [(float(a), float(b), w) for a, b, w in
             re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', html)]
    return width, words


def test_a_long_unit_name_wraps_inside_its_column(session: Session, ledger: dict[str, Actor], tmp_path: Path) -> None:
    """A unit's name longer than its column went on across the figures and off the page; it wraps in its cell."""
    unit = session.scalar(select(OrgUnit).where(OrgUnit.name == "工业和信息化局"))
    assert unit is not None
    unit.name = LONG_UNIT
    session.flush()
    start, end, _ = reports.period("weekly", date(2025, 9, 26))
    pdf = reports.to_pdf(reports.build(session, kind="weekly", start=start, end=end))
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the text check needs it")
    width, words = _words(pdf, tmp_path)
    margin = 15 * 72 / 25.4
    assert words and all(left >= margin - 1 and right <= width - margin + 1 for left, right, _w in words), \
        [(w, right) for _l, right, w in words if right > width - margin + 1]
    text = subprocess.run(["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True,
                          check=True).stdout.decode()
    assert LONG_UNIT in "".join(text.split()), text  # all of it, over several lines of its cell
    assert "销号率" in text and "合计" in text
