"""Every benchmark in bench/ runs at a tiny size, so a schema change cannot silently break one.

The benches print figures and are never timed tests: here only their shape is checked — they exit 0
and their last line is the figure line their docstring promises. PostgreSQL (and Redis, for the sweep)
are skipped where missing and a failure under CI=true, like the other scale-path tests.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import PG_ADMIN_URL, _pg_available, require_service

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
NUM = r"[0-9]+(?:\.[0-9]+)?"
REDIS_SERVER = os.environ.get("JZFLOW_BENCH_REDIS", "redis://127.0.0.1:6379")

# id -> (bench file, tiny arguments, the last line's shape, services it needs)
RUNS: dict[str, tuple[str, list[str], str, tuple[str, ...]]] = {
    "engine-sqlite": ("engine.py", ["--db", "sqlite", "--others", "30", "--repeat", "3", "--warmup", "1"],
                      rf"ratio={NUM} durable_ratio={NUM} ours_ms={NUM} bare_ms={NUM} growth=\S+ db=sqlite", ()),
    "engine-postgres": ("engine.py", ["--db", "postgres", "--others", "30", "--repeat", "3", "--warmup", "1"],
                        rf"ratio={NUM} durable_ratio={NUM} ours_ms={NUM} bare_ms={NUM} growth=\S+ db=postgres",
                        ("postgres",)),
    "dashboard-sqlite": ("dashboard.py", ["--db", "sqlite", "--repeat", "2", "--warmup", "1"],
                         rf"p95_ms={NUM}", ()),
    "inbox-postgres": ("inbox.py", ["--tasks", "200", "--users", "30", "--repeat", "3", "--warmup", "1", "--smoke"],
                       rf"p50_ms={NUM} p95_ms={NUM} rows=[0-9]+", ("postgres",)),
    "history-sqlite": ("history.py", ["--instances", "1", "--completions", "3", "--others", "20"],
                       rf"growth={NUM} first_ms={NUM} last_ms={NUM} bytes=[0-9]+", ()),
    "throughput-postgres": ("throughput.py", ["--duration", "2", "--warmup", "1", "--clients", "2", "--instances", "1",
                                              "--others", "20"],
                            rf"per_s={NUM} p95_ms={NUM}", ("postgres",)),
    "after-read-postgres": ("after_read.py", ["--cycles", "1", "--warmup", "0", "--others", "10"],
                            rf"after_read_ms={NUM} alone_ms={NUM} ratio={NUM}", ("postgres",)),
    "messages-postgres": ("messages.py", ["--waiting", "60", "--repeat", "5", "--warmup", "1", "--others", "10"],
                          rf"msgs_per_s={NUM} ratio={NUM} waiting=60", ("postgres",)),
    "archiving-sqlite": ("archiving.py", ["--instances", "3", "--rounds", "2", "--batch", "2"],
                         rf"per_s={NUM} ms={NUM} moved=3 tasks=[0-9]+ db=sqlite", ()),
    "wide-postgres": ("wide.py", ["--instances", "1", "--items", "2"],
                      rf"wide_ms={NUM} loop_ms={NUM} cpu_wide_ms={NUM} cpu_loop_ms={NUM} growth={NUM} sql=[0-9]+ "
                      r"bytes=[0-9]+", ("postgres",)),
    "sweep-postgres": ("sweep.py", ["--tasks", "40", "--crossing", "4", "--workers", "1", "--batch", "10"],
                       r"sweep_s=" + NUM + r" applied=4", ("postgres", "redis")),
}


def _redis_problem() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as exc:  # any connection failure means "not available"
        return str(exc).splitlines()[0]


def test_every_bench_has_a_smoke_run() -> None:
    benches = {p.name for p in BENCH.glob("*.py")} - {"common.py", "__init__.py"}
    covered = {file for file, *_ in RUNS.values()}
    assert benches == covered, f"add a tiny run to RUNS for: {sorted(benches - covered)}"


@pytest.mark.parametrize("run_id", [pytest.param(k, marks=[pytest.mark.scale] if "redis" in v[3] else [])
                                    for k, v in RUNS.items()])
def test_bench_runs_at_a_tiny_size(run_id: str) -> None:
    file, args, last_line, services = RUNS[run_id]
    if "postgres" in services:
        require_service("PostgreSQL", _pg_available())
    if "redis" in services:
        require_service("Redis", _redis_problem())
    env = {k: v for k, v in os.environ.items() if not k.startswith("JZFLOW_")}
    env.update(JZFLOW_BENCH_PG_URL=PG_ADMIN_URL, JZFLOW_BENCH_REDIS=REDIS_SERVER, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(BENCH / file), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    output = f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"bench/{file} {' '.join(args)} exited {done.returncode}\n{output}"
    lines = done.stdout.strip().splitlines()
    assert lines and re.fullmatch(last_line, lines[-1]), f"last line is not {last_line!r}\n{output}"
