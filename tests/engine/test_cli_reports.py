"""What `jzflow deactivate-user` and `jzflow reset-password` print they did: each task, item and 申请延期 withdrawn,
and the totals; the API tokens revoked. On SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import cli, org
from engine.org import tokens
from engine.org.actors import actor_for
from engine.org.models import OrgUnit
from tests.engine.test_mover_marks import _asked, _user
from tests.engine.test_moves import _claimed_and_named


def _cli(db_url: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.setenv("JZFLOW_DATABASE_URL", db_url)
    return CliRunner().invoke(cli.main, list(args))


def test_deactivate_user_prints_the_requests_it_withdrew_and_the_totals(
        db_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    claimed, named = _claimed_and_named(factory)
    _asked(factory, claimed)
    _asked(factory, named)
    with factory() as s:  # u0 heads 审批部门
        dept = s.scalar(select(OrgUnit).where(OrgUnit.code == "dept"))
        assert dept is not None
        dept.leader_id = _user(s, "u0").id
        s.commit()
    done = _cli(db_url, monkeypatch, "deactivate-user", "u0", "--successor", "u1")
    assert done.exit_code == 0, done.output
    for task_id in (claimed, named):
        assert f"延期申请已撤回 (extension request withdrawn): task {task_id}" in done.output, done.output
    assert ("共 (total): 待办移交 (tasks handed over) 2; 事项移交 (items handed over) 0; "
            "延期申请撤回 (extension requests withdrawn) 2; "
            "单位取消负责人/责任领导 (units without their head or leader) 1") in done.output, done.output


def test_deactivate_user_with_nothing_to_hand_over_prints_zero_totals(
        db_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    with factory() as s:
        org.add_user(s, username="idle", display_name="闲人")
        s.commit()
    done = _cli(db_url, monkeypatch, "deactivate-user", "idle")
    assert done.exit_code == 0, done.output
    assert "已停用 (deactivated): idle" in done.output and "延期申请已撤回" not in done.output
    assert "待办移交 (tasks handed over) 0;" in done.output and "延期申请撤回 (extension requests withdrawn) 0;" \
        in done.output


def test_reset_password_prints_how_many_api_tokens_it_revoked(
        db_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        org.add_user(s, username="fg", display_name="发改")
        s.flush()
        for name in ("接口", "备用"):
            tokens.issue(s, _user(s, "fg"), name, actor=actor_for(s, "root"))
        s.commit()
    reset = _cli(db_url, monkeypatch, "reset-password", "fg")
    assert reset.exit_code == 0, reset.output
    assert "吊销令牌 (tokens revoked): 2;" in reset.output, reset.output
