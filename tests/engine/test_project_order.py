"""Project codes and stages keep their order: a new code continues after the year's highest one, however
that one was made (entered, imported with its own code); a stage reached never goes backwards; and the import
template's example dates are valid on any day, 29 February too. On SQLite and PostgreSQL."""
from __future__ import annotations

import io
from datetime import date

from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.actors import actor_for
from plan.projects import core, entry, imports
from plan.projects.models import ProjectStage
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
