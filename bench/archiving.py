"""Archiving throughput: ended looping instances moved to the archive tables through engine.archive.run.

`--instances` instances of `bench_loop` (fixtures/bench_loop.bpmn) each complete `--rounds` rounds of
their user task (one human_task row and candidates a round, and compacted history past
JZFLOW_STATE_KEEP_LEVELS), then are terminated. The figure times one `archive.run` over all of them
(batches of `--batch`, each one transaction), checks that every row moved exactly once, and prints
as its last line: `per_s=<instances archived per second> ms=<total> moved=<instances> tasks=<steps moved> db=<kind>`.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench import common
from engine import clock, tasks
from engine.archive import core as archive
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.tasks.models import HumanTask, archived_tasks


def run(kind: str, count: int, rounds: int, batch: int) -> str:
    """Build the ended instances, archive them, check the result and return the figure line."""
    with common.database(kind) as db:
        with db.factory() as session:
            bench_org = common.setup_org(session)
            common.deploy_bench(session)
            session.commit()
            actor = common.actor(session, bench_org.username("applicant", 0))
            ids = [instances.start(session, process_key="bench_loop", actor=actor).id for _ in range(count)]
            session.commit()
        for n in range(rounds):
            with db.factory() as session:
                for task_id in common.open_task_ids(session, ids, "report").values():
                    tasks.complete(session, task_id=task_id, actor=actor, data={"progress": f"第{n + 1}轮", "done": False})
                session.commit()
        with db.factory() as session:
            for instance_id in ids:
                instances.terminate(session, instance_id=instance_id, actor=SYSTEM)
            session.commit()
            steps = int(session.scalar(select(func.count()).select_from(HumanTask)) or 0)
        tomorrow = (clock.now() + timedelta(days=1)).astimezone(clock.SHANGHAI).date()
        began = time.perf_counter()
        report = archive.run(db.factory, after_days=0, batch=batch, before=tomorrow)
        took = time.perf_counter() - began
        with db.factory() as session:
            left = int(session.scalar(select(func.count()).select_from(HumanTask)) or 0)
            moved = int(session.scalar(select(func.count()).select_from(archived_tasks)) or 0)
        if report.moved != count or left != 0 or moved != steps:
            raise SystemExit(f"expected {count} instances and {steps} steps moved; got {report.moved}, {moved} "
                             f"({left} left)")
    return f"per_s={count / took:.1f} ms={took * 1000:.1f} moved={report.moved} tasks={moved} db={kind}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    print(run(args.db, args.instances, args.rounds, args.batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
