"""A 周调度 / 月通报 shows each reader the lines of the units they may see (the ledger's and project library's reach).

A run counts and ranks every unit once (a rank is a place among all units); a reader who sees only some units reads
their lines, each with its place in the city, on the page and in the files — not the other units' figures, which
their ledger and project pages answer 404 for.
"""
from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.org.actors import Actor, actor_for
from plan import reports
from plan.reports.models import ReportRun
from tests.engine.test_reports import ledger  # noqa: F401  (the fixture: two units' issues and projects)

BOTH = {"工业和信息化局", "自然资源局"}


@pytest.fixture
def readers(session: Session, ledger: dict[str, Actor]) -> dict[str, Actor]:  # noqa: F811
    org.add_role(session, code="leader", name="责任领导")
    org.add_role(session, code="city_leader", name="市级领导")
    org.add_user(session, username="gxj_leader", display_name="工信局领导", unit_codes=["gxj"], role_codes=["leader"])
    org.add_user(session, username="mayor", display_name="市领导", role_codes=["city_leader"])
    session.commit()
    return {**ledger, **{u: actor_for(session, u) for u in ("gxj_leader", "mayor")}}


def _done_run(session: Session, factory: sessionmaker[Session], actor: Actor) -> int:
    run = reports.create_run(session, actor=actor, kind="weekly", day=date(2025, 9, 26))
    session.commit()
    run_id = run.id
    session.rollback()
    assert reports.run(factory, run_id) == "done"
    return run_id


def _units(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {row["unit"]: row["rank"] for row in rows}


def _sheet_units(content: bytes) -> dict[str, set[str]]:
    from openpyxl import load_workbook
    book = load_workbook(io.BytesIO(content))
    return {name: {str(row[1]) for row in book[name].iter_rows(min_row=4, values_only=True)} - {"合计"}
            for name in book.sheetnames}


def test_a_unit_leader_reads_their_units_lines_with_their_place_in_the_city(
        session: Session, factory: sessionmaker[Session], readers: dict[str, Actor]) -> None:
    run_id = _done_run(session, factory, readers["gxj_leader"])
    run = session.scalar(select(ReportRun).where(ReportRun.id == run_id).execution_options(populate_existing=True))
    assert run is not None and _units(run.summary["issues"]).keys() == BOTH  # counted and ranked once, city-wide
    city_issues, city_projects = _units(run.summary["issues"]), _units(run.summary["projects"])

    shown = reports.visible_summary(session, run, readers["gxj_leader"])
    assert _units(shown["issues"]) == {"工业和信息化局": city_issues["工业和信息化局"]}
    assert _units(shown["projects"]) == {"工业和信息化局": city_projects["工业和信息化局"]}
    assert shown["hidden"] == {"issues": 1, "projects": 1}  # 自然资源局's lines

    found = reports.run_file(session, run_id, "xlsx", readers["gxj_leader"])
    assert found is not None
    assert _sheet_units(found[1]) == {"问题台账": {"工业和信息化局"}, "项目推进": {"工业和信息化局"}}
    pdf = reports.run_file(session, run_id, "pdf", readers["gxj_leader"])
    assert pdf is not None and pdf[1][:4] == b"%PDF" and pdf[1] != run.pdf


def test_a_city_leader_reads_every_unit_and_the_stored_files(
        session: Session, factory: sessionmaker[Session], readers: dict[str, Actor]) -> None:
    run_id = _done_run(session, factory, readers["mayor"])
    run = session.scalar(select(ReportRun).where(ReportRun.id == run_id).execution_options(populate_existing=True))
    assert run is not None
    shown = reports.visible_summary(session, run, readers["mayor"])
    assert _units(shown["issues"]).keys() == BOTH and shown["hidden"] == {"issues": 0, "projects": 0}
    found = reports.run_file(session, run_id, "xlsx", readers["mayor"])
    assert found is not None and found[1] == run.xlsx
    assert _sheet_units(found[1])["问题台账"] == BOTH


def test_a_reader_of_no_unit_sees_no_units_line(session: Session, factory: sessionmaker[Session],
                                                readers: dict[str, Actor]) -> None:
    """台账管理员 with no unit: the ledger shows them nothing, and neither does the report (not the unassigned)."""
    run_id = _done_run(session, factory, readers["mayor"])
    run = session.get(ReportRun, run_id)
    assert run is not None
    shown = reports.visible_summary(session, run, readers["officer"])
    assert shown["issues"] == [] and shown["projects"] == []
    found = reports.run_file(session, run_id, "xlsx", readers["officer"])
    assert found is not None and _sheet_units(found[1]) == {"问题台账": set(), "项目推进": set()}


def test_a_run_stored_before_lines_named_their_unit_is_read_by_the_units_name(
        session: Session, factory: sessionmaker[Session], readers: dict[str, Actor]) -> None:
    run_id = _done_run(session, factory, readers["mayor"])
    run = session.get(ReportRun, run_id)
    assert run is not None
    run.summary = {part: [{k: v for k, v in line.items() if k != "unit_id"} for line in lines]
                   for part, lines in run.summary.items()}
    session.flush()
    shown = reports.visible_summary(session, run, readers["gxj_leader"])
    assert _units(shown["issues"]).keys() == {"工业和信息化局"} and _units(shown["projects"]).keys() == {"工业和信息化局"}
