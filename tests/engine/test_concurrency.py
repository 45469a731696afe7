"""Two people complete the same task at once: exactly one wins, the other gets ConcurrentModification."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, deploy, org, tasks
from engine.audit.models import AuditEvent
from engine.errors import ConcurrentModification
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
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
