"""项目导入 and 项目录入 under a hostile reading: a file naming one code twice, a NUL byte in a CSV cell, an
investment that rounds out of range, and an import confirmed while another officer's change to one of its projects
is being saved. Each refusal names its line and column and stores nothing. On SQLite and PostgreSQL (the race on
PostgreSQL: SQLite serialises every writer at BEGIN)."""
from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import Conflict, InvalidInput
from engine.org.actors import actor_for
from plan.indicators.upload import UploadInvalid
from plan.projects import core, edits, entry, imports, schedule
from plan.projects.models import Project
from tests.engine.conftest import waits_for_a_lock
from tests.engine.test_project_slice import OFFICER, SECOND, new_project, world  # noqa: F401

HEAD = "项目编号,项目名称,总投资（万元）,责任单位,项目库,类别,计划竣工日期\n"


def _csv(*rows: str) -> bytes:
    return (HEAD + "".join(f"{r}\n" for r in rows)).encode()


def _refused(session: Session, data: bytes) -> list[tuple[int, str]]:
    """Preview and store the file: both refuse it, naming (line, column) of each bad row; nothing is stored."""
    officer = actor_for(session, OFFICER)
    before = session.scalar(select(func.count()).select_from(Project))
    preview = imports.run(session, filename="p.csv", data=data, actor=officer, store=False)
    assert not preview.ok
    with pytest.raises(UploadInvalid):
        imports.run(session, filename="p.csv", data=data, actor=officer, store=True)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Project)) == before
    return [(e.line, e.column) for e in preview.errors]


def test_a_file_naming_one_new_code_twice_is_refused_naming_the_second_row(world: Session) -> None:  # noqa: F811
    """Two rows with one 项目编号 (a row copied and not renumbered): the second used to update the project the first
    added, its name, investment and unit silently dropped. Refused, naming the second row's 项目编号."""
    planned = core.today().replace(year=core.today().year + 1)
    errors = _refused(world, _csv(f"DUP-1,项目甲,100,tcj,key,key,{planned}", f"DUP-1,项目乙,900,tcj,key,key,{planned}"))
    assert errors == [(3, "code")]
    assert world.scalar(select(func.count()).select_from(Project).where(Project.code == "DUP-1")) == 0


def test_a_file_naming_an_existing_code_twice_is_refused(world: Session) -> None:  # noqa: F811
    """Two rows updating one project with different dates: which one won depended on the order. Refused."""
    code = new_project(world).code
    errors = _refused(world, _csv(f"{code},,,,,,2031-01-01", f" {code} ,,,,,,2032-01-01"))
    assert errors == [(3, "code")]


@pytest.mark.parametrize("row,column", [("XM\x00A,项目甲,100,tcj,key,key,", 1),
                                        (",项目甲,100,tcj,ke\x00y,key,", 5)])
def test_a_nul_byte_in_a_csv_cell_is_refused_naming_its_row_and_column(world: Session, row: str,  # noqa: F811
                                                                        column: int) -> None:
    """The web refuses NUL in every form field (web.guards), but a CSV file's cells are read past it: PostgreSQL
    then refused the statement (an unnamed 422 for the whole file), SQLite stored a code holding NUL. The file is
    refused when it is read (plan.indicators.upload.read_table), preview and store alike, naming line and column."""
    officer = actor_for(world, OFFICER)
    before = world.scalar(select(func.count()).select_from(Project))
    for store in (False, True):
        with pytest.raises(UploadInvalid) as refused:
            imports.run(world, filename="p.csv", data=_csv(row), actor=officer, store=store)
        assert f"第2行第{column}列" in refused.value.message and refused.value.details.get("field") == "file"
    world.rollback()
    assert world.scalar(select(func.count()).select_from(Project)) == before


@pytest.mark.parametrize("value", ["999999999999.995", "0.001", "0.004"])
def test_an_investment_that_rounds_out_of_range_is_refused_naming_the_field(value: str) -> None:
    """The amount was checked before it was rounded to 分: 999999999999.995 became 10¹² (past NUMERIC(14,2): an
    unnamed database error), 0.001 became 0.00 (a project of no investment)."""
    with pytest.raises(InvalidInput) as refused:
        entry.amount(value)
    assert refused.value.details.get("field") == "investment"


def test_an_import_confirmed_while_a_manual_change_is_being_saved_is_refused(
        world: Session, factory: sessionmaker[Session]) -> None:  # noqa: F811
    """The confirmation compared the preview's `seen` with the projects as last committed, and locked each project
    only when it reached its row: a 计划日期 change saved in between (its lock held, not yet committed) passed that
    check, and the file then overwrote it unseen. The file's projects are now locked before `seen` is compared."""
    if world.get_bind().dialect.name != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite serialises every writer at BEGIN)")
    project = new_project(world)
    code, pid = project.code, project.id
    data = _csv(f"{code},,,,,,2031-06-30")
    preview = imports.run(world, filename="p.csv", data=data, actor=actor_for(world, OFFICER), store=False)
    assert preview.ok
    world.commit()
    manual, importer = factory(), factory()
    outcome: dict[str, Any] = {}

    def confirm() -> None:
        try:
            outcome["result"] = imports.run(importer, filename="p.csv", data=data, actor=actor_for(importer, OFFICER),
                                            store=True, seen=preview.seen)
            importer.commit()
        except BaseException as exc:  # reported below
            importer.rollback()
            outcome["error"] = exc

    try:
        mine = manual.get(Project, pid)
        assert mine is not None
        edits.set_planned(manual, mine, actor=actor_for(manual, SECOND), dates={"planned_complete": date(2032, 1, 1)},
                          seen=edits.planned_version(mine))  # holds the project's row, not committed yet
        pid_importer = importer.execute(text("SELECT pg_backend_pid()")).scalar()
        thread = threading.Thread(target=confirm)
        thread.start()
        for _ in range(2000):  # until the confirmation waits for the row the manual change holds (or has finished)
            if waits_for_a_lock(factory, int(pid_importer or 0)) or not thread.is_alive():
                break
            time.sleep(0.01)
        manual.commit()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        manual.close()
        importer.close()
    assert isinstance(outcome.get("error"), Conflict), outcome
    world.expire_all()
    assert world.get(Project, pid).planned_complete == date(2032, 1, 1)  # type: ignore[union-attr]


@pytest.mark.parametrize("complete,construction,produce,field", [(date(2100, 12, 31), 10, 2000, "produce_wd"),
                                                                  (date(2000, 3, 1), 2000, 10, "construction_wd")])
def test_backward_planning_past_the_years_dates_may_hold_is_refused(world: Session, complete: date,  # noqa: F811
                                                                    construction: int, produce: int,
                                                                    field: str) -> None:
    """倒排工期 counted 2,000 working days past a 竣工 in 2100 (or before one in 2000) and stored a 计划投产 in 2108
    (a 计划签约 in 1992): dates the plan's forms and import refuse (plan.dates), so the page showing them could not
    be sent back. Refused naming the working days that carried it there; nothing changed."""
    project = new_project(world)
    before = edits.planned_version(project)
    with pytest.raises(InvalidInput) as refused:
        schedule.schedule_backward(world, project, actor=actor_for(world, OFFICER), planned_complete=complete,
                                   construction_wd=construction, produce_wd=produce, seen=before)
    assert refused.value.details.get("field") == field
    world.rollback()
    assert edits.planned_version(world.get(Project, project.id)) == before  # type: ignore[arg-type]
