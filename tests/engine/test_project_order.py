"""Project codes and stages keep their order: a new code continues after the year's highest one, however
that one was made (entered, imported with its own code); a stage reached never goes backwards; and the import
template's example dates are valid on any day, 29 February too. On SQLite and PostgreSQL."""
from __future__ import annotations

import io
import threading
import time
from datetime import date
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import InvalidInput
from engine.org.actors import actor_for
from plan.indicators.upload import UploadInvalid
from plan.projects import core, entry, imports
from plan.projects.models import Project, ProjectStage, StageReport
from tests.engine.conftest import waits_for_a_lock
from tests.engine.test_project_slice import OFFICER, new_project, world  # noqa: F401


def test_new_codes_continue_after_the_highest_code_of_the_year_however_it_was_made(world: Session) -> None:  # noqa: F811
    session = world
    year = core.today().year
    first = new_project(session, "项目一")
    assert first.code == f"XM-{year}-0001"
    imported = entry.create_project(session, actor=actor_for(session, OFFICER), code=f"XM-{year}-0041",
                                    data=entry.read_input({"name": "导入项目", "investment": "10", "unit_code": "tcj",
                                                           "libraries": "key", "category": "key"}))
    session.commit()
    assert imported.code == f"XM-{year}-0041"
    assert new_project(session, "项目二").code == f"XM-{year}-0042"
    last_year = entry.create_project(session, actor=actor_for(session, OFFICER), created_on=date(year - 1, 12, 30),
                                     data=entry.read_input({"name": "去年的项目", "investment": "10",
                                                            "unit_code": "tcj", "libraries": "key",
                                                            "category": "key"}))
    session.commit()
    assert last_year.code == f"XM-{year - 1}-0001"  # each year counts on its own
    assert new_project(session, "项目三").code == f"XM-{year}-0043"


def test_a_stage_recorded_after_a_later_one_does_not_move_the_project_back(world: Session) -> None:  # noqa: F811
    session = world
    project = new_project(session)
    officer = actor_for(session, OFFICER)
    # 开工 by a 施工许可 certificate before any 签约 was recorded (plan.projects.approvals.certified)
    core.reach_stage(session, project, "started", on=core.today(), actor=officer, evidence="施工许可证",
                     exception="施工许可核发")
    # a call's signing recorded late (plan.projects.core.sign does this): the day is kept, the stage stays
    core.reach_stage(session, project, "signed", on=core.today(), actor=officer, evidence="合同")
    session.commit()
    session.expire_all()
    assert project.stage == "started"
    assert sorted(session.scalars(select(ProjectStage.stage).where(ProjectStage.project_id == project.id))) == [
        "lead", "signed", "started"]


def test_the_import_template_is_valid_on_a_leap_day() -> None:
    sheet = load_workbook(io.BytesIO(imports.template_xlsx("tcj", date(2028, 2, 29)))).active
    assert sheet is not None
    header, example = ([str(c.value or "") for c in row] for row in sheet.iter_rows())
    assert example[header.index("计划竣工日期")] == "2029-02-28"


def test_two_imports_naming_the_same_new_code_at_once_take_turns(world: Session,  # noqa: F811
                                                                  factory: sessionmaker[Session]) -> None:
    """The second import waits for the first (two connections on PostgreSQL; SQLite's BEGIN IMMEDIATE queues them):
    once the first commits it finds the project and updates it, as if it had come after — never the unique key's
    IntegrityError (a 500)."""
    if world.get_bind().dialect.name != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite serialises every writer at BEGIN)")
    world.commit()
    sheet = ("项目编号,项目名称,总投资（万元）,责任单位,项目库,类别,计划竣工日期\n"
             f"XM-IMPORT-7,同时导入的项目,9000,tcj,key,key,{core.today().replace(year=core.today().year + 1)}\n").encode()
    first, second = factory(), factory()
    outcome: dict[str, Any] = {}

    def run_second() -> None:
        try:
            outcome["result"] = imports.run(second, filename="b.csv", data=sheet, actor=actor_for(second, OFFICER),
                                            store=True)
            second.commit()
        except BaseException as exc:  # reported below
            second.rollback()
            outcome["error"] = exc

    try:
        done = imports.run(first, filename="a.csv", data=sheet, actor=actor_for(first, OFFICER), store=True)
        assert done.ok and done.rows[0].action == "add"
        pid = second.execute(text("SELECT pg_backend_pid()")).scalar()
        thread = threading.Thread(target=run_second)
        thread.start()
        for _ in range(2000):  # until the second waits for a lock the first holds (or has finished)
            if waits_for_a_lock(factory, int(pid or 0)) or not thread.is_alive():
                break
            time.sleep(0.01)
        first.commit()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()
    assert "error" not in outcome, outcome["error"]
    assert outcome["result"].ok and outcome["result"].rows[0].action == "update"
    assert world.scalar(select(func.count()).select_from(Project).where(Project.code == "XM-IMPORT-7")) == 1


def _sheet(*codes: str) -> bytes:
    planned = core.today().replace(year=core.today().year + 1)
    rows = "".join(f"{code},同时导入的项目{code},9000,tcj,key,key,{planned}\n" for code in codes)
    return ("项目编号,项目名称,总投资（万元）,责任单位,项目库,类别,计划竣工日期\n" + rows).encode()


def test_two_imports_naming_the_same_codes_in_opposite_orders_do_not_deadlock(
        world: Session, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """File 1 names [A, B], file 2 [B, A], both stored at once: each holds all its codes before its first row, taken
    in one order, so the second waits for the first instead of each holding one code and waiting for the other
    (PostgreSQL's deadlock error 40P01, a 500). Each import pauses after its first row until the other has done one
    too (or 3 s have passed): without the codes taken up front, both then hold one code each."""
    if world.get_bind().dialect.name != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite serialises every writer at BEGIN)")
    world.commit()
    after_first_row = threading.Barrier(2, timeout=3)
    row = imports._row

    def row_then_wait(session: Session, cells: dict[str, str], actor: Any) -> Any:
        done = row(session, cells, actor)
        if cells["code"] in ("XM-ORDER-A", "XM-ORDER-B") and session.info.setdefault("rows", 0) == 0:
            session.info["rows"] = 1
            try:
                after_first_row.wait()
            except threading.BrokenBarrierError:  # the other import waits for this one's codes: go on alone
                pass
        return done

    monkeypatch.setattr(imports, "_row", row_then_wait)
    outcome: dict[str, Any] = {}

    def store(name: str, codes: tuple[str, ...]) -> None:
        with factory() as session:
            try:
                outcome[name] = imports.run(session, filename=f"{name}.csv", data=_sheet(*codes),
                                            actor=actor_for(session, OFFICER), store=True)
                session.commit()
            except BaseException as exc:  # reported below
                session.rollback()
                outcome[f"{name} error"] = exc

    threads = [threading.Thread(target=store, args=("one", ("XM-ORDER-A", "XM-ORDER-B"))),
               threading.Thread(target=store, args=("two", ("XM-ORDER-B", "XM-ORDER-A")))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not [key for key in outcome if key.endswith("error")], outcome
    assert outcome["one"].ok and outcome["two"].ok
    actions = sorted(r.action for name in ("one", "two") for r in outcome[name].rows)
    assert actions == ["add", "add", "update", "update"]  # whichever went second updated what the first added
    assert world.scalar(select(func.count()).select_from(Project).where(
        Project.code.in_(["XM-ORDER-A", "XM-ORDER-B"]))) == 2


def test_a_preview_holds_no_code_locks_so_stores_of_those_codes_go_on(
        world: Session, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A preview changes nothing, so it need not keep a store of the same codes waiting: while a preview goes
    through its rows it holds no advisory lock (a big file's preview used to hold every code it had passed)."""
    if world.get_bind().dialect.name != "postgresql":
        pytest.skip("advisory locks: PostgreSQL only")
    world.commit()
    pid = world.execute(text("SELECT pg_backend_pid()")).scalar()
    held: list[int] = []
    row = imports._row

    def row_then_look(session: Session, cells: dict[str, str], actor: Any) -> Any:
        done = row(session, cells, actor)
        with factory() as look:
            held.append(look.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :p"),
                                     {"p": pid}).scalar_one())
        return done

    monkeypatch.setattr(imports, "_row", row_then_look)
    result = imports.run(world, filename="a.csv", data=_sheet("XM-PREVIEW-1", "XM-PREVIEW-2"),
                         actor=actor_for(world, OFFICER), store=False)
    assert result.ok and [r.action for r in result.rows] == ["add", "add"]
    assert held == [0, 0]


def _stage_refused(call: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        call()
    assert refused.value.details.get("field") == "stage", refused.value.details
    return refused.value


def test_a_stage_cannot_be_skipped_forward(world: Session) -> None:  # noqa: F811
    """签约 → 投产 without 开工 and 竣工, 线索 → 竣工: the plan's stages follow one another (签约 → 开工 → 竣工 → 投产);
    a form or an import that jumps ahead is refused naming the stage, and nothing is recorded."""
    session = world
    project = new_project(session)
    officer = actor_for(session, OFFICER)
    today = core.today()
    refused = _stage_refused(lambda: entry.record_stage(session, project, actor=officer, stage="completed", on=today,
                                                        evidence="竣工验收备案"))
    assert "签约" in refused.message  # names the stage that comes next
    session.rollback()
    entry.record_stage(session, project, actor=officer, stage="signed", on=today, evidence="合同 HT-1")
    session.commit()
    refused = _stage_refused(lambda: entry.record_stage(session, project, actor=officer, stage="producing", on=today,
                                                        evidence="试生产备案"))
    assert "开工" in refused.message
    session.rollback()
    _stage_refused(lambda: core.reach_stage(session, project, "producing", on=today, actor=officer))
    session.rollback()
    session.expire_all()
    assert project.stage == "signed"
    assert session.scalar(select(func.count()).select_from(StageReport).where(StageReport.project_id == project.id)) == 0
    assert sorted(session.scalars(select(ProjectStage.stage).where(ProjectStage.project_id == project.id))) == [
        "lead", "signed"]


def test_an_import_row_that_skips_a_stage_is_refused_naming_its_column(world: Session) -> None:  # noqa: F811
    session = world
    project = new_project(session)
    day = core.today().isoformat()
    sheet = f"项目编号,签约日期,签约证明,投产日期,投产证明\n{project.code},{day},合同,{day},试生产备案\n".encode()
    with pytest.raises(UploadInvalid) as refused:
        imports.run(session, filename="skip.csv", data=sheet, actor=actor_for(session, OFFICER), store=True)
    assert refused.value.details["errors"][0]["column"] == "produced_on", refused.value.details
    assert "开工" in refused.value.message
    session.rollback()
    session.expire_all()
    assert project.stage == "lead"


def test_reports_of_completion_and_production_may_wait_together_but_are_confirmed_in_order(
        world: Session) -> None:  # noqa: F811
    """A unit entering a finished project after the fact files 竣工 and 投产 together (an import row with both dates);
    投产 counts only once 竣工 is confirmed."""
    session = world
    project = new_project(session)
    day = core.today().isoformat()
    sheet = (f"项目编号,签约日期,签约证明,开工日期,开工证明,竣工日期,竣工证明,投产日期,投产证明\n"
             f"{project.code},{day},合同,{day},施工许可证,{day},竣工备案,{day},试生产备案\n").encode()
    done = imports.run(session, filename="all.csv", data=sheet, actor=actor_for(session, OFFICER), store=True)
    session.commit()
    assert done.ok and done.rows[0].stages == ("signed", "started", "completed", "producing")
    reports = {r.stage: r for r in session.scalars(select(StageReport).where(StageReport.project_id == project.id))}
    second = actor_for(session, "liming")
    _stage_refused(lambda: entry.decide_report(session, project, actor=second, report_id=reports["producing"].id,
                                               confirm=True))
    session.rollback()
    session.expire_all()
    assert project.stage == "started" and reports["producing"].status == "reported"
    entry.decide_report(session, project, actor=second, report_id=reports["completed"].id, confirm=True)
    entry.decide_report(session, project, actor=second, report_id=reports["producing"].id, confirm=True)
    session.commit()
    assert project.stage == "producing"
