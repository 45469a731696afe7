"""Co-signers (加签) and 申请延期 left waiting on a closed step by a database from before saves closed them with it:
`jzflow migrate` closes them after the upgrade, as the save would have, with the instance's audit event and a notice
to each co-signer who had been asked; run again it finds nothing, and nothing open is touched.
"""
from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, cli, clock
from engine.audit.models import AuditEvent
from engine.deadlines.models import ExtensionRequest
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor
from engine.runtime import orphans
from engine.tasks.models import HumanTask
from plan import supervision
from tests.engine.conftest import at_once
from tests.engine.test_cosigners_closed import start, states, with_cosigners


def _orphaned(session: Session, org: dict[str, Actor]) -> dict[str, int]:
    """A review with co-signers zr (asked) and st (pending) and fg's pending 申请延期, whose review row was then
    cancelled the way an older release left it: the co-signers and the request untouched (commits)."""
    instance_id, review = start(session, org)
    cosigners = with_cosigners(session, org, review)
    supervision.request_extension(session, actor=org["fg"], task_id=review.id,
                                  due_date=(clock.now() + timedelta(days=30)).date(), reason="材料未齐")
    session.commit()
    session.execute(update(HumanTask).where(HumanTask.id == review.id)
                    .values(state="cancelled", completed_at=clock.now()))
    session.commit()
    return {"instance": instance_id, "review": review.id, **cosigners}


def _pending_requests(session: Session, task_id: int) -> int:
    return len(session.scalars(select(ExtensionRequest.id).where(
        ExtensionRequest.object_type == "task", ExtensionRequest.object_id == task_id,
        ExtensionRequest.status == "pending")).all())


def _repairs(session: Session, instance_id: int) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}",
                                                         AuditEvent.action == orphans.ACTION)))


def test_waiting_co_signers_and_requests_of_a_closed_step_are_closed_once(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    left = _orphaned(session, review_org)
    assert orphans.find(session) == {left["instance"]: [left["review"]]}
    repaired = orphans.close_orphans(session)
    assert (repaired.instances, repaired.cosigners, repaired.requests) == (1, 2, 1)
    assert states(session, factory, [left["zr"], left["st"]]) == [("cancelled", True)] * 2
    assert _pending_requests(session, left["review"]) == 0
    [event] = _repairs(session, left["instance"])
    assert event.after == {"tasks": [left["review"]], "cosigners": [left["zr"], left["st"]],
                           "extension_requests": event.after["extension_requests"]}
    assert len(event.after["extension_requests"]) == 1
    told = [m.payload for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            if m.payload.get("kind") == "task_cancelled"]
    assert [(n["user_id"], n["link"]) for n in told] == [(review_org["zr"].user_id, f"/tasks/{left['zr']}")]
    # asked; st, still pending, never was
    # run again (the next upgrade): nothing found, nothing written
    assert orphans.find(session) == {}
    assert orphans.close_orphans(session) == orphans.Repaired()
    assert len(_repairs(session, left["instance"])) == 1
    assert audit.verify(session).ok


def test_co_signers_of_an_open_step_are_left_alone(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    _instance_id, review = start(session, review_org)
    cosigners = with_cosigners(session, review_org, review)
    assert orphans.find(session) == {}
    assert orphans.close_orphans(session) == orphans.Repaired()
    assert states(session, factory, [cosigners["zr"], cosigners["st"]]) == [("ready", False), ("pending", False)]


def test_migrate_closes_them_after_the_upgrade(db_engine: Engine, factory: sessionmaker[Session],
                                               review_org: dict[str, Actor], tmp_path: Path,
                                               session: Session) -> None:
    left = _orphaned(session, review_org)
    url = db_engine.url.render_as_string(hide_password=False)
    env = {"JZFLOW_DATABASE_URL": url, "JZFLOW_INSTANCE_DIR": str(tmp_path / "instance")}
    session.close()
    result = CliRunner().invoke(cli.main, ["migrate"], env=env)
    assert result.exit_code == 0, result.output
    assert "co-sign task(s)" in result.output and "加签任务 2 个" in result.output
    assert states(session, factory, [left["zr"], left["st"]]) == [("cancelled", True)] * 2
    again = CliRunner().invoke(cli.main, ["migrate"], env=env)
    assert again.exit_code == 0 and "co-sign" not in again.output, again.output
    assert len(_repairs(session, left["instance"])) == 1


def test_two_repairs_at_once_close_once(session: Session, factory: sessionmaker[Session], db_url: str,
                                        review_org: dict[str, Actor]) -> None:
    """PostgreSQL: two upgrades' repairs at once, both having found the step: the second waits for the instance,
    reads again under its lock and writes nothing."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer: BEGIN IMMEDIATE)")
    left = _orphaned(session, review_org)
    session.close()
    results: list[orphans.Repaired] = []

    def repair(_i: int) -> None:
        with factory() as s:
            found = orphans.find(s)  # both find the step before either closes it
            barrier.wait(timeout=10)
            repaired = orphans.Repaired()
            for instance_id, parents in found.items():
                orphans._close(s, instance_id, parents, repaired)
            s.commit()
            results.append(repaired)

    barrier = threading.Barrier(2)
    assert at_once(2, repair) == [None, None]
    assert sorted(r.instances for r in results) == [0, 1]
    with factory() as s:
        assert len(_repairs(s, left["instance"])) == 1
        assert audit.verify(s).ok
