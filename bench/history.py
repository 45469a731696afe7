"""Completion cost against an instance's own history: a looping instance through jzflow's services.

Process `bench_loop` (fixtures/bench_loop.bpmn): start → init → merge → report (user task, form
round.schema.json, sla 5wd) → tally (script) → again? (exclusive: default back to merge). Every
completion of `report` runs one more round, so the instance's task tree grows by four levels a round.

`--instances` instances are started and completed round-robin `--completions` times each; each
completion is timed around *new session → engine.tasks.complete(...) → commit* (as bench/engine.py).
The figure at completion k is the median over all instances of completions k-2 … k+2 (k = 1: 1 … 3).
Last line: `growth=<200th/1st> first_ms=<x> last_ms=<y> bytes=<state bytes after the last completion>`
(growth uses the last checkpoint, 200 by default).

`--others N` bulk-loads N other instances first and analyses them, as bench/engine.py does.

`--baseline` first runs the same with the hot-instance cache off and compaction off (the engine
before issue #17) and prints that run's line, prefixed `baseline:`, before the figure line.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench import common
from bench import engine as engine_bench
from engine import tasks
from engine.runtime import hot
from engine.runtime.instances import start
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask

PROCESS = "bench_loop"
WINDOW = 2


def _open_task(session: object, instance_id: int) -> int:
    task_id = session.scalar(select(HumanTask.id).where(  # type: ignore[attr-defined]
        HumanTask.instance_id == instance_id, HumanTask.state == "ready", HumanTask.bpmn_id == "report"))
    if task_id is None:
        raise SystemExit(f"instance {instance_id} has no open report task")
    return int(task_id)


def run(kind: str, instances: int, completions: int, checkpoints: Sequence[int],
        others: int = 0) -> tuple[str, dict[int, float]]:
    """Run the loop and return the figure line and the median ms at each checkpoint."""
    hot.CACHE.clear()
    with common.database(kind) as db:
        setup = engine_bench.prepare(db)  # the bench org and processes, and the templates of other instances
        if others:
            engine_bench.grow_to(setup, others)  # bulk-loaded and analysed, as in bench/engine.py
        with db.factory() as session:
            bench_org = setup.org
            username = bench_org.username("applicant", 0)
            actor = common.actor(session, username)
            ids = [start(session, process_key=PROCESS, actor=actor).id for _ in range(instances)]
            session.commit()
        times: dict[int, list[float]] = {i: [] for i in ids}
        for n in range(completions):
            for instance_id in ids:
                with db.factory() as session:
                    task_id = _open_task(session, instance_id)
                    session.commit()
                with db.factory() as session:
                    began = time.perf_counter()
                    tasks.complete(session, task_id=task_id, actor=actor,
                                   data={"progress": f"第{n + 1}轮进展", "done": False})
                    session.commit()
                    times[instance_id].append(time.perf_counter() - began)
        with db.factory() as session:
            rounds = session.scalar(select(func.count()).select_from(HumanTask).where(
                HumanTask.instance_id == ids[0], HumanTask.state == "completed"))
            if rounds != completions:
                raise SystemExit(f"expected {completions} completed rounds, found {rounds}")
            size = session.scalar(select(func.length(ProcessInstance.state)).where(ProcessInstance.id == ids[0]))
    medians: dict[int, float] = {}
    for k in checkpoints:
        lo, hi = max(1, k - WINDOW), min(completions, k + WINDOW)
        if k == 1:
            lo, hi = 1, min(completions, 1 + WINDOW)
        samples = [t for per in times.values() for t in per[lo - 1:hi]]
        medians[k] = statistics.median(samples) * 1000
    first, last = medians[checkpoints[0]], medians[checkpoints[-1]]
    line = f"growth={last / first:.2f} first_ms={first:.2f} last_ms={last:.2f} bytes={size}"
    return line, medians


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--completions", type=int, default=200)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--others", type=int, default=0,
                        help="other instances bulk-loaded and analysed first (bench/engine.py's seeding; default 0). "
                             "On PostgreSQL, past a few hundred completions an empty database measures the plans "
                             "made while its tables were empty (bench/README.md, fourth pass)")
    args = parser.parse_args(argv)
    checkpoints = sorted({k for k in (1, 50, 100, 200, args.completions) if k <= args.completions})
    if args.baseline:
        saved = {k: os.environ.get(k) for k in ("JZFLOW_INSTANCE_CACHE_SIZE", "JZFLOW_STATE_KEEP_LEVELS")}
        os.environ["JZFLOW_INSTANCE_CACHE_SIZE"] = "0"
        os.environ["JZFLOW_STATE_KEEP_LEVELS"] = "1000000"
        try:
            line, medians = run(args.db, args.instances, args.completions, checkpoints, args.others)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        print("baseline: " + " ".join(f"{k}th={v:.2f}ms" for k, v in medians.items()))
        print(f"baseline: {line}")
    line, medians = run(args.db, args.instances, args.completions, checkpoints, args.others)
    print(" ".join(f"{k}th={v:.2f}ms" for k, v in medians.items()) + f" db={args.db} hot_hits={hot.CACHE.hits} "
          f"hot_misses={hot.CACHE.misses}")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
