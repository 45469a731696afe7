"""A unit's or role's code and name, as `jzflow add-unit` / `add-role` (engine/org/core.py `add_unit`, `add_role`)
take them: no longer than their columns, and nothing hidden in them."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine import cli
from engine.db import make_engine, make_sessionmaker
from engine.org.models import OrgUnit, Role


@pytest.mark.parametrize(("command", "field"), [
    (["add-unit", "u" * 81, "新单位"], "code"), (["add-unit", "newu", "名" * 121], "name"),
    (["add-unit", "   ", "新单位"], "code"), (["add-unit", "new\u202eu", "新单位"], "code"),
    (["add-unit", "newu", "新\x00单位"], "name"), (["add-role", "r" * 81, "新角色"], "code"),
    (["add-role", "newr", "角\u200b色"], "name"), (["add-role", "newr", "\n"], "name")])
def test_the_cli_refuses_a_unit_or_role_code_or_name_its_column_or_lists_cannot_hold(
        db_url: str, tmp_path: Path, command: list[str], field: str) -> None:
    """They took any code and name: PostgreSQL refused an over-long one with a traceback (SQLite kept it), and a NUL,
    a bidi override or a zero-width space went into every list."""
    result = CliRunner().invoke(cli.main, command, env={"JZFLOW_DATABASE_URL": db_url,
                                                        "JZFLOW_INSTANCE_DIR": str(tmp_path)})
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert f"{field}:" in result.output and "characters" in result.output, result.output
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            assert s.scalar(select(func.count()).select_from(OrgUnit)) == 0
            assert s.scalar(select(func.count()).select_from(Role).where(Role.code.in_(["newr", "r" * 81]))) == 0
    finally:
        engine.dispose()


def test_the_cli_still_adds_a_plain_unit_and_role(db_url: str, tmp_path: Path) -> None:
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}
    assert CliRunner().invoke(cli.main, ["add-unit", " fgj ", "发改局"], env=env).exit_code == 0
    assert CliRunner().invoke(cli.main, ["add-role", "reviewer2", "审查员\u3000二"], env=env).exit_code == 0
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            assert s.scalar(select(OrgUnit.code)) == "fgj"
            assert s.scalar(select(Role.name).where(Role.code == "reviewer2")) == "审查员\u3000二"
    finally:
        engine.dispose()
