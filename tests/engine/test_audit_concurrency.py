"""Trust II defect 1: concurrent appends to one audit stream lost writes (500 on uq_audit_stream_seq).

On PostgreSQL, with real threads and real connections: every writer on one stream succeeds, nothing is lost.
"""
from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, tasks
from engine.audit.models import AuditEvent
from engine.runtime import instances
from engine.tasks import collab
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask
from tests.engine.conftest import at_once, staff


def test_trust2_defect1_six_users_commenting_at_once_lose_nothing(pg_factory: sessionmaker[Session]) -> None:
    people = staff(pg_factory, 6)
    with pg_factory() as session:
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()

    def comment(i: int, rnd: int) -> None:
        with pg_factory() as s:
            collab.add_comment(s, instance_id=instance_id, actor=people[i], body=f"意见 {rnd}-{i}")
            s.commit()

    failures = []
    for rnd in range(30):
        failures += [exc for exc in at_once(6, lambda i, rnd=rnd: comment(i, rnd)) if exc is not None]
    assert failures == []
    with pg_factory() as session:
        assert session.scalar(select(func.count()).select_from(Comment).where(Comment.kind == "comment")) == 180
        seqs = list(session.scalars(select(AuditEvent.seq).where(AuditEvent.stream == f"instance:{instance_id}")
                                    .order_by(AuditEvent.seq)))
        assert seqs == list(range(1, 182))  # instance.start + 180 comments, no gap
        assert audit.verify(session).ok


def test_trust2_defect1_claiming_four_sibling_tasks_at_once_all_succeed(pg_factory: sessionmaker[Session]) -> None:
    people = staff(pg_factory, 4)
    for _rep in range(10):
        with pg_factory() as session:
            instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
            session.commit()
            siblings = list(session.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id)
                                            .order_by(HumanTask.id)))
        assert len(siblings) == 4

        def claim(i: int, siblings: list[int] = siblings) -> None:
            with pg_factory() as s:
                tasks.claim(s, task_id=siblings[i], actor=people[i])
                s.commit()

        assert at_once(4, claim) == [None] * 4
        with pg_factory() as session:
            holders = list(session.scalars(select(HumanTask.assignee_id).where(HumanTask.id.in_(siblings))
                                           .order_by(HumanTask.id)))
            assert holders == [p.user_id for p in people]
    with pg_factory() as session:
        assert audit.verify(session).ok


def test_two_seals_at_once_leave_one_chain_of_checkpoints(pg_factory: sessionmaker[Session]) -> None:
    """Two seal jobs at once (two beats, or a slow seal overlapping the next one) both read the same last checkpoint
    and both chained a new one onto it: the chain forked, and audit-verify reported checkpoints 'altered or out of
    chain' — a tamper alarm nobody caused."""
    people = staff(pg_factory, 1)
    with pg_factory() as session:
        instances.start(session, process_key="siblings", actor=people[0])
        session.commit()
    with pg_factory() as first, pg_factory() as second:
        assert audit.seal(first) is not None
        done: list[object] = []
        other = threading.Thread(target=lambda: done.append(audit.seal(second)))
        other.start()
        other.join(0.5)  # the second seal waits for the first one's transaction (or, unfixed, seals beside it)
        first.commit()
        other.join(10)
        assert not other.is_alive()
        second.commit()
    with pg_factory() as session:
        report = audit.verify(session)
        assert report.ok, report.problems
