"""Benchmark: a completion right after a read that ended without a commit, against one after other completions.

    python bench/after_read.py [--cycles 60] [--others 1000]

An office's traffic mixes completions with requests that only read: the inbox and other pages, the load
balancer's health check. Such a request ends its transaction without a commit (the web app's teardown rolls
back what the view did not commit). On PostgreSQL, psycopg forgets every prepared statement of the connection
on a ROLLBACK, so the next completion on that connection had its statements planned again; engine/pgconn.py
ends a transaction that only read with COMMIT instead.

Through the services on a fresh PostgreSQL database (bench/common.py), as bench/engine.py times its completion
(new session → engine.tasks.complete → commit), each on a fresh instance. One cycle: sixteen completions back to
back (the last four timed as `alone`: their statements have run often enough to be prepared and planned for
good), then sixteen completions each right after the applicant's 待办 read in a session closed without a
commit, as a page does (the last four timed as `after_read`). Medians over the cycles.

Last line: `after_read_ms=<x> alone_ms=<y> ratio=<x/y>` (about 1.0 when a read costs the next completion nothing).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

from bench import common
from bench import engine as engine_bench
from engine import tasks

# psycopg prepares a statement at its 6th run, and PostgreSQL plans a prepared statement anew for its first 5
# executions before it settles on a generic plan: a completion's statements are fully settled from its 11th on.
RUN = 16  # completions per block
TIMED = 4  # the last ones of a block are timed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=3, help="untimed cycles first (default 3)")
    parser.add_argument("--others", type=int, default=1000, help="other instances in the database (default 1000)")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.warmup < 0 or args.others < 0:
        parser.error("--cycles must be positive, --warmup and --others not negative")
    after_read: list[float] = []
    alone: list[float] = []
    with common.database("postgres") as db:
        setup = engine_bench.prepare(db)
        engine_bench.grow_to(setup, args.others)

        def complete(task_id: int) -> float:
            seconds, result = engine_bench.complete_ours(setup, task_id)
            if result.status != "running" or result.incident or len(result.next_tasks) != 1:
                raise SystemExit(f"unexpected completion: {result}")
            return seconds

        def page() -> None:
            with db.factory() as session:  # reads, and ends without a commit
                if not tasks.open_tasks(session, setup.applicant):
                    raise SystemExit("the applicant's 待办 is empty")

        for cycle in range(args.warmup + args.cycles):
            task_ids = engine_bench.start_fresh(setup, 2 * RUN)  # untimed; its last read ends without a commit too
            block = [complete(task_id) for task_id in task_ids[:RUN]]
            if cycle >= args.warmup:
                alone += block[-TIMED:]
            block = []
            for task_id in task_ids[RUN:]:
                page()
                block.append(complete(task_id))
            if cycle >= args.warmup:
                after_read += block[-TIMED:]
        _seconds, last = engine_bench.complete_ours(setup, engine_bench.start_fresh(setup, 1)[0])
        engine_bench.check_completion(setup, last)  # the full check once, outside the timing: it reads afterwards
    read_ms = statistics.median(after_read) * 1000
    alone_ms = statistics.median(alone) * 1000
    print(f"cycles={args.cycles} others={args.others} timed={len(after_read)}+{len(alone)}")
    print(f"after_read_ms={read_ms:.2f} alone_ms={alone_ms:.2f} ratio={read_ms / alone_ms:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
