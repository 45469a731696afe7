"""PostgreSQL: what completing a task reads does not grow with its instance's finished steps.

A looping instance (an investment-loop period, an approval with several 补正 rounds) keeps every finished step's
human_task row. The completion's first read asked for "the task, or the instance's open rows" as one OR: the
planner answered it from ix_human_task_guid, every row the instance ever had, so each round cost more than the last.
It now reads the open rows from uq_human_task_guid_open, in a custom plan and in a prepared statement's generic one.
"""
from __future__ import annotations

from uuid import uuid4

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, org, tasks
from engine.org.actors import SYSTEM, actor_for
from engine.runtime import instances
from engine.tasks import lookup
from engine.tasks.models import HumanTask
from tests.engine.conftest import staff
from tests.engine.test_hot_instances import LOOP

FINISHED = 3000  # rows of earlier rounds on the instance


def _tuples_read(session: Session) -> int:
    """human_task rows this transaction has read so far, by sequential and by index scans (live counters)."""
    return int(session.scalar(text(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
        "WHERE relname = 'human_task'")) or 0)


def _finished_rows(session: Session, instance_id: int, process_key: str) -> None:
    session.execute(insert(HumanTask), [
        {"instance_id": instance_id, "task_guid": str(uuid4()), "bpmn_id": "earlier", "name": "上一轮",
         "process_key": process_key, "state": "completed", "kind": "bpmn"} for _ in range(FINISHED)])
    session.commit()


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_first_read_of_a_completion_skips_the_instances_finished_rows(
        pg: Engine, pg_factory: sessionmaker[Session], plan_mode: str) -> None:
    people = staff(pg_factory, 1)
    with pg_factory() as session:
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()
        open_ids = list(session.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                                    HumanTask.state == "ready")))
        _finished_rows(session, instance_id, "siblings")
    with pg.connect() as conn:
        conn.execute(text("ANALYZE human_task"))  # as autovacuum would: the planner knows the instance's size
        conn.commit()
    with pg_factory() as session:
        session.execute(text(f"SET plan_cache_mode = {plan_mode}"))
        for _ in range(6):  # psycopg prepares a statement on its 5th run: the later runs use the prepared plan
            lookup.get_open_to_complete(session, open_ids[0])
        before = _tuples_read(session)
        seen = lookup.get_open_to_complete(session, open_ids[0])
        read = _tuples_read(session) - before
    assert sorted(h.id for h in seen.open_rows.values()) == sorted(open_ids)
    assert read < 20, f"the first read went through {read} human_task rows for {len(open_ids)} open ones"


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
def test_a_whole_completion_reads_no_more_with_a_long_history(
        pg: Engine, pg_factory: sessionmaker[Session], plan_mode: str) -> None:
    with pg_factory() as session:
        org.add_user(session, username="clerk", display_name="办事员")
        deploy.deploy(session, deploy.read_directory(LOOP), actor=SYSTEM, check_lanes=False)
        session.commit()
        clerk = actor_for(session, "clerk")
        instance_id = instances.start(session, process_key="perf_loop", actor=clerk, data={"who": "clerk"}).id
        session.commit()
        _finished_rows(session, instance_id, "perf_loop")
    with pg.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    with pg_factory() as session:
        session.execute(text(f"SET plan_cache_mode = {plan_mode}"))
        session.commit()
        reads = []
        for n in range(8):  # prepared from the 5th completion on: the last ones run the prepared plans
            task_id = session.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                                 HumanTask.state == "ready")).one()
            before = _tuples_read(session)
            tasks.complete(session, task_id=task_id, actor=clerk,
                           data={"progress": f"第{n}轮", "done": False} if n % 2 else {})
            reads.append(_tuples_read(session) - before)
            session.commit()
    assert max(reads[-3:]) < 50, f"human_task rows read per completion: {reads}"
