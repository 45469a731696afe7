"""Every state change is audited; the hash chains and checkpoints reveal rows changed by hand."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from engine import audit, cli, deploy, org, tasks
from engine.audit.models import AuditEvent
from engine.db import is_postgres
from engine.org.actors import SYSTEM, actor_for
from engine.runtime import instances
from engine.tasks.models import HumanTask
from tests.conftest import FIXTURES


@pytest.fixture
def history(session: Session) -> int:
    org.add_unit(session, code="dept", name="审批部门")
    org.add_user(session, username="a", display_name="甲", unit_codes=["dept"])
    org.add_user(session, username="root", display_name="管理员", is_admin=True)
    deploy.deploy(session, deploy.read_directory(FIXTURES / "good"), actor=SYSTEM, check_lanes=False)
    a, root = actor_for(session, "a"), actor_for(session, "root")
    row = instances.start(session, process_key="minimal", actor=a, business_key="B-1")
    task_id = session.scalar(select(HumanTask.id).where(HumanTask.instance_id == row.id))
    assert task_id is not None
    tasks.claim(session, task_id=task_id, actor=a)
    tasks.unclaim(session, task_id=task_id, actor=a)
    tasks.claim(session, task_id=task_id, actor=a)
    instances.suspend(session, instance_id=row.id, actor=root)
    instances.resume(session, instance_id=row.id, actor=root)
    tasks.complete(session, task_id=task_id, actor=a, data={"approved": True, "comment": "同意，<b>请</b>办理"})
    other = instances.start(session, process_key="minimal", actor=a, business_key="B-2")
    instances.terminate(session, instance_id=other.id, actor=root)
    session.commit()
    return row.id


def test_every_state_change_has_an_event(session: Session, history: int) -> None:
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"instance:{history}")
                                   .order_by(AuditEvent.seq)))
    assert actions == ["instance.start", "task.claim", "task.unclaim", "task.claim", "instance.suspend",
                       "instance.resume", "task.complete"]
    complete = session.scalar(select(AuditEvent).where(AuditEvent.action == "task.complete"))
    assert complete is not None and complete.actor_name == "a"
    assert complete.after["data"]["comment"] == "同意，<b>请</b>办理"
    report = audit.verify(session)
    # two instances, three deployed processes, one unit and two users
    assert report.ok and report.streams == 8
    assert report.events == session.query(AuditEvent).count()


def _tamper(session: Session, sql: str, **params: object) -> None:
    if is_postgres(session):
        session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
    session.execute(text(sql), params)
    if is_postgres(session):
        session.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
    session.commit()


def test_a_row_changed_by_hand_is_named(session: Session, history: int, db_url: str, tmp_path: Path) -> None:
    target = session.scalar(select(AuditEvent).where(AuditEvent.action == "task.unclaim"))
    assert target is not None
    _tamper(session, "UPDATE audit_event SET actor_name = 'someone_else' WHERE id = :id", id=target.id)
    report = audit.verify(session)
    assert not report.ok and report.first_bad_event_id == target.id
    assert "altered" in (report.problem or "")
    session.rollback()
    result = CliRunner().invoke(cli.main, ["audit-verify"],
                                env={"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert f"event #{target.id}" in result.output


def test_a_deleted_row_is_named(session: Session, history: int) -> None:
    target = session.scalar(select(AuditEvent).where(AuditEvent.action == "instance.suspend"))
    assert target is not None
    _tamper(session, "DELETE FROM audit_event WHERE id = :id", id=target.id)
    report = audit.verify(session)
    assert not report.ok and "deleted" in (report.problem or "")
    assert report.first_bad_event_id == target.id + 1


def test_a_deleted_stream_is_caught_by_the_checkpoint(session: Session, history: int) -> None:
    assert audit.seal(session) is not None
    session.commit()
    assert audit.seal(session) is None  # nothing new
    assert audit.verify(session).ok
    _tamper(session, "DELETE FROM audit_event WHERE stream = :s", s=f"instance:{history}")
    report = audit.verify(session)
    assert not report.ok and "checkpoint" in (report.problem or "")


def test_postgres_refuses_update_and_delete(session: Session, history: int) -> None:
    if not is_postgres(session):
        pytest.skip("the append-only trigger is PostgreSQL's")
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("UPDATE audit_event SET action = 'x'"))
    session.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("DELETE FROM audit_event"))
    session.rollback()
