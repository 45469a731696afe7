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

from engine.org.actors import actor_for
from plan.projects import core, entry, imports
from plan.projects.models import Project, ProjectStage
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
    entry.record_stage(session, project, actor=officer, stage="started", on=core.today(), evidence="施工许可证")
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
            with factory() as look:
                if look.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p"),
                                {"p": pid}).scalar() or not thread.is_alive():
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
