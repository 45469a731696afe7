"""Two people complete the same task at once: exactly one wins, the other gets ConcurrentModification; a claim
committed while another candidate acts on the task (and so claims it) wins, the other is refused."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, deploy, org, tasks
from engine.audit.models import AuditEvent
from engine.errors import AlreadyClaimed, ConcurrentModification, EngineError
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks import operations, sendback
from engine.tasks.models import HumanTask
from tests import access_world
from tests.conftest import FIXTURES

REPETITIONS = 200


@pytest.fixture
def reviewers(session: Session) -> tuple[Actor, Actor]:
    org.add_unit(session, code="dept", name="审批部门")
    org.add_user(session, username="a", display_name="甲", unit_codes=["dept"])
    org.add_user(session, username="b", display_name="乙", unit_codes=["dept"])
    deploy.deploy(session, deploy.read_directory(FIXTURES / "good"), actor=SYSTEM, check_lanes=False)
    session.commit()
    return actor_for(session, "a"), actor_for(session, "b")


def _race(factory: sessionmaker[Session], task_id: int, actors: tuple[Actor, Actor]) -> list[object]:
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def attempt(i: int) -> None:
        with factory() as s:
            barrier.wait()
            try:
                tasks.complete(s, task_id=task_id, actor=actors[i], data={"approved": i == 0, "comment": f"意见{i}"})
                s.commit()
                outcomes[i] = "won"
            except ConcurrentModification as exc:
                s.rollback()
                outcomes[i] = exc
            except Exception as exc:  # anything else is a failure of the test
                s.rollback()
                outcomes[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_concurrent_completions_exactly_one_wins(session: Session, factory: sessionmaker[Session],
                                                 reviewers: tuple[Actor, Actor]) -> None:
    conflicts_before_commit = 0
    for rep in range(REPETITIONS):
        row = instances.start(session, process_key="minimal", actor=reviewers[0], business_key=f"R{rep}")
        session.commit()
        task_id = session.scalar(select(HumanTask.id).where(HumanTask.instance_id == row.id))
        assert task_id is not None
        session.close()
        outcomes = _race(factory, task_id, reviewers)
        winners = [i for i, o in enumerate(outcomes) if o == "won"]
        losers = [o for o in outcomes if isinstance(o, ConcurrentModification)]
        assert len(winners) == 1 and len(losers) == 1, (rep, outcomes)
        if type(losers[0]) is ConcurrentModification:
            conflicts_before_commit += 1  # both loaded the same lock_version; the UPDATE refused one
        inst = session.get(ProcessInstance, row.id)
        assert inst is not None and inst.status == "completed" and inst.lock_version == 2
        task = session.get(HumanTask, task_id)
        assert task is not None and task.state == "completed"
        assert task.completed_by_id == reviewers[winners[0]].user_id
        completes = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"instance:{row.id}", AuditEvent.action == "task.complete"))
        assert completes == 1
        session.commit()
    assert audit.verify(session).ok
    print(f"lost at the optimistic lock: {conflicts_before_commit}/{REPETITIONS}")


ACTING: dict[str, access_world.Call] = {  # what a candidate does to an unclaimed group task: each claims it for them first
    "transfer": lambda s, a, x: operations.transfer(s, task_id=x.task_id, actor=a, to_username="fg"),
    "delegate": lambda s, a, x: operations.delegate(s, task_id=x.task_id, actor=a, to_username="fg"),
    "add_cosigners": lambda s, a, x: operations.add_cosigners(s, task_id=x.task_id, actor=a, usernames=["head"],
                                                              position="before"),
    "send_back": lambda s, a, x: sendback.send_back(s, task_id=x.task_id, actor=a, reason="材料不全"),
    "complete": lambda s, a, x: tasks.complete(s, task_id=x.task_id, actor=a, data={}, opinion="同意"),
}


def _waits_for_a_lock(factory: sessionmaker[Session], but: int) -> bool:
    with factory() as watcher:  # its own transactions: pg_stat_activity is a snapshot within one
        for _ in range(200):
            waiting = watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> :me"
                " AND datname = current_database()"), {"me": but}).scalar()
            watcher.rollback()
            if waiting:
                return True
            time.sleep(0.05)
    return False


@pytest.mark.parametrize("acting", list(ACTING))
def test_a_claim_committed_while_another_candidate_acts_is_not_overwritten(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor],
        acting: str) -> None:
    """st claims the review; zr, who read it unclaimed, acts on it before st commits: zr is refused."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer)")
    access_world.prepare(session)
    where = access_world.build(session, "candidate")
    session.close()
    outcome: list[object] = []
    with factory() as claimer:
        tasks.claim(claimer, task_id=where.task_id, actor=actor_for(claimer, "st"))  # holds the row, uncommitted
        claimer_pid = claimer.execute(text("SELECT pg_backend_pid()")).scalar()

        def act() -> None:
            with factory() as mover:
                try:
                    ACTING[acting](mover, actor_for(mover, "zr"), where)
                    mover.commit()
                    outcome.append("done")
                except EngineError as exc:
                    mover.rollback()
                    outcome.append(exc)

        worker = threading.Thread(target=act)
        worker.start()
        assert _waits_for_a_lock(factory, int(claimer_pid or 0)), outcome  # zr has read it unclaimed
        claimer.commit()
    worker.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyClaimed), outcome
    assert "此任务刚被他人认领" in outcome[0].message
    with factory() as s:
        review = s.get(HumanTask, where.task_id)
        assert review is not None and review.state == "ready" and review.assignee_id == actor_for(s, "st").user_id
        assert review.delegation_state is None and not review.blocked


def test_a_claim_committed_while_another_candidate_submits_wins_and_the_submission_writes_nothing(
        db_url: str, factory: sessionmaker[Session], session: Session, reviewers: tuple[Actor, Actor]) -> None:
    """The submission's claim is taken in the save's one statement (no co-signers: the fused save): a claim that
    holds the row makes the statement wait, and once committed stops the whole statement."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer)")
    row = instances.start(session, process_key="minimal", actor=reviewers[0], business_key="CLAIM-RACE")
    session.commit()
    task_id = session.scalar(select(HumanTask.id).where(HumanTask.instance_id == row.id))
    assert task_id is not None
    session.close()
    outcome: list[object] = []
    with factory() as claimer:
        tasks.claim(claimer, task_id=task_id, actor=reviewers[0])  # holds the row, uncommitted
        claimer_pid = claimer.execute(text("SELECT pg_backend_pid()")).scalar()

        def submit() -> None:
            with factory() as mover:
                try:
                    tasks.complete(mover, task_id=task_id, actor=reviewers[1], data={"approved": True})
                    mover.commit()
                    outcome.append("done")
                except EngineError as exc:
                    mover.rollback()
                    outcome.append(exc)

        worker = threading.Thread(target=submit)
        worker.start()
        assert _waits_for_a_lock(factory, int(claimer_pid or 0)), outcome
        claimer.commit()
    worker.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyClaimed), outcome
    with factory() as s:
        task = s.get(HumanTask, task_id)
        assert task is not None and task.state == "ready" and task.assignee_id == reviewers[0].user_id
        instance = s.get(ProcessInstance, row.id)
        assert instance is not None and instance.lock_version == row.lock_version and instance.status == "running"
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"instance:{row.id}", AuditEvent.action == "task.complete")) == 0
