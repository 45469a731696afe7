"""Benchmark: the deadline sweep (SLA lights + escalation ladder) on PostgreSQL with two real Celery workers.

    python bench/sweep.py [--tasks 100000] [--crossing 10000] [--workers 2] [--batch 500]

Setup (not timed): a fresh PostgreSQL database; 10 units with a head and 20 staff each; --tasks open
human tasks with a 5wd SLA, assigned to staff (one instance each), bulk-loaded with COPY; a first
sweep at T0 puts every task under watch (its time is printed as `discover_s`). At T1, --crossing of
the tasks have turned yellow and nothing else is due.

Timed: two messages `sweep_deadlines(now=T1)` go to Redis, one for each of --workers worker
processes (concurrency 1 each, prefork, like production); the clock stops when every crossing
task has its yellow step and both jobs have finished. Each step is a row in escalation_step (unique
per task, round and step), an audit event chained onto the task's instance stream, and an in-app
notification in the outbox for the task's holder. Checked afterwards: exactly one step per crossing
task, one outbox row each, the audit chain verifies.

Last line: `sweep_s=<seconds> applied=<steps>` (target: <= 10 s for 10,000 on 100,000).
"""
from __future__ import annotations

import argparse
import fcntl
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

import redis
from sqlalchemy import func, select, text

from bench import common
from engine import audit, clock, config, org
from engine.celery_app import make_celery
from engine.db import session_scope
from engine.deadlines import (
    calendar,
    sla,
)
from engine.deadlines.models import DeadlineWatch, EscalationStep
from engine.jobs_deadlines import run_sweep
from engine.notify.models import OutboxMessage
from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion
from engine.tasks.models import HumanTask

SH = clock.SHANGHAI
T0 = datetime(2025, 9, 1, 10, 0, tzinfo=SH)  # Monday
T1 = T0 + timedelta(hours=6)
UNITS, STAFF = 10, 20
SWEEP = "engine.jobs_deadlines.sweep_deadlines"


def redis_server() -> str:
    return os.environ.get("JZFLOW_BENCH_REDIS", "redis://127.0.0.1:6379")


@contextmanager
def redis_db() -> Iterator[str]:
    """Take a free Redis database 15..1 (the same file locks the scale tests use), empty before and after."""
    for n in range(15, 0, -1):
        url = f"{redis_server()}/{n}"
        name = "".join(c if c.isalnum() else "_" for c in url)
        lock = open(Path(tempfile.gettempdir()) / f"jzflow-test-{name}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
            yield url
            client.flushdb()
        finally:
            client.close()
            lock.close()
        return
    raise SystemExit("every Redis database 15..1 is in use")


def seed(db: common.BenchDatabase, tasks: int, crossing: int) -> None:
    """Units, staff, one definition, and `tasks` open tasks (one instance each), `crossing` of them yellow at T1."""
    with session_scope(db.factory) as session:
        staff: list[int] = []
        for u in range(UNITS):
            org.add_unit(session, code=f"u{u:02d}", name=f"单位{u:02d}")
            org.add_user(session, username=f"head{u:02d}", display_name=f"负责人{u:02d}", unit_codes=[f"u{u:02d}"],
                         is_head=True)
            staff += [org.add_user(session, username=f"s{u:02d}{i:02d}", display_name=f"承办人{u:02d}{i:02d}",
                                   unit_codes=[f"u{u:02d}"]).id for i in range(STAFF)]
        definition = ProcessDefinition(key="bench_sla", name="期限基准", latest_version=1, created_at=T0)
        session.add(definition)
        session.flush()
        version = ProcessVersion(definition_id=definition.id, version=1, name="期限基准", bundle_sha256="0" * 64,
                                 spec_json="{}", deployed_at=T0)
        session.add(version)
        session.flush()
        def_id, ver_id = definition.id, version.id
    rng = random.Random(20250901)
    instances: list[dict[str, Any]] = []
    human: list[dict[str, Any]] = []
    yellow = set(rng.sample(range(tasks), crossing))
    for n in range(tasks):
        while True:  # yellow (under the policy's thresholds) between T0 and T1, or only after T1
            created = T0 - (timedelta(days=rng.uniform(5, 6)) if n in yellow else timedelta(hours=rng.uniform(0, 70)))
            due = calendar.due_from_sla(created, "5wd")
            warn = sla.task_warn_time("bench_sla", created, due)
            if (T0 < warn <= T1 < due) if n in yellow else warn > T1:
                break
        iid = n + 1
        instances.append(dict(id=iid, definition_id=def_id, version_id=ver_id, business_key=f"SLA-{n:06d}",
                              title=f"期限基准 {n:06d}", status="running", state="{}", serializer_version="1",
                              lock_version=0, next_timer_at=None, started_by_id=None, started_at=created,
                              updated_at=created, ended_at=None))
        holder = rng.choice(staff)
        human.append(dict(id=iid, instance_id=iid, task_guid=f"00000000-0000-0000-0000-{iid:012d}", bpmn_id="fill",
                          name="填报项目信息", process_key="bench_sla", lane=None, state="ready", assignee_id=holder,
                          owner_id=holder, form_schema=None, form_ui_schema=None, priority=50, sla="5wd",
                          created_at=created, due_at=due, warn_at=warn, completed_at=None, completed_by_id=None,
                          instructions=None, kind="bpmn", parent_task_id=None, cosign_position=None,
                          delegation_state=None, pending_data=None, blocked=False, escalation=None))
    raw = db.engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            common._copy_postgres(cursor, ProcessInstance.__table__, instances)  # type: ignore[arg-type]
            common._copy_postgres(cursor, HumanTask.__table__, human)  # type: ignore[arg-type]
        raw.commit()
    finally:
        raw.close()
    common._after_bulk_load(db)


class Workers:
    """Celery worker subprocesses on the bench database and Redis; stopped on exit."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = []

    def start(self, count: int) -> None:
        for n in range(count):
            log = self.log_dir / f"worker{n + 1}.log"
            fh = open(log, "wb")  # noqa: SIM115 (closed in stop)
            argv = [sys.executable, "-m", "celery", "-A", "engine.celery_app:celery", "worker", "--concurrency=1",
                    "--pool=prefork", "--loglevel=INFO", "--without-gossip", "--without-mingle",
                    f"--hostname=bench{n}-{os.getpid()}@%h"]
            proc = subprocess.Popen(argv, cwd=_ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            self.procs.append((proc, log, fh))
        deadline = time.monotonic() + 60
        while not all(b" ready." in log.read_bytes() for _, log, _ in self.procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _, _ in self.procs):
                raise SystemExit("workers did not start:\n" + self.tail())
            time.sleep(0.05)

    def succeeded(self) -> int:
        return sum(sum(1 for line in log.read_text(errors="replace").splitlines()
                       if f"Task {SWEEP}[" in line and " succeeded in " in line) for _, log, _ in self.procs)

    def tail(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for _, log, _ in self.procs)

    def stop(self) -> None:
        import signal
        for proc, _, fh in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
            fh.close()


def count(db: common.BenchDatabase, stmt: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--crossing", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"# jzflow deadline sweep bench: tasks={args.tasks} crossing={args.crossing} workers={args.workers} "
          f"batch={args.batch} db=postgres", flush=True)
    with common.database("postgres", suffix="_sweep") as db, redis_db() as broker, \
            tempfile.TemporaryDirectory(prefix="jzflow_sweep_") as tmp:
        # One audit key and anchor file for this process and its workers, so the chain they write verifies here.
        audit_env = {"JZFLOW_AUDIT_KEY": secrets.token_hex(32), "JZFLOW_AUDIT_ANCHOR": str(Path(tmp) / "anchors.log")}
        os.environ.update(audit_env)
        t = time.perf_counter()
        seed(db, args.tasks, args.crossing)
        print(f"seed_s={time.perf_counter() - t:.1f}", flush=True)
        t = time.perf_counter()
        first = run_sweep(db.factory, now=T0, batch=args.batch)
        watched = count(db, select(func.count()).select_from(DeadlineWatch))
        print(f"discover_s={time.perf_counter() - t:.2f} watched={watched} steps_at_T0={first.steps}", flush=True)
        assert watched == args.tasks and first.steps == 0
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE deadline_watch"))

        env = {k: v for k, v in os.environ.items() if not k.startswith("JZFLOW_")}
        env.update(JZFLOW_DATABASE_URL=db.url, JZFLOW_REDIS_URL=broker, JZFLOW_INSTANCE_DIR=tmp,
                   JZFLOW_SWEEP_BATCH=str(args.batch), PYTHONUNBUFFERED="1", **audit_env)
        workers = Workers(env, Path(tmp))
        workers.start(args.workers)
        try:
            settings = config.Settings(instance_dir=Path(tmp), database_url=db.url, redis_url=broker)
            app = make_celery(settings)
            yellow = select(func.count()).select_from(EscalationStep).where(EscalationStep.step == "yellow")
            t = time.perf_counter()
            with app.producer_or_acquire() as producer:
                for _ in range(args.workers):
                    app.send_task(SWEEP, kwargs={"now": T1.isoformat()}, producer=producer)
            while count(db, yellow) < args.crossing or workers.succeeded() < args.workers:
                if time.perf_counter() - t > 300:
                    raise SystemExit("the sweep did not finish in 300 s:\n" + workers.tail())
                time.sleep(0.02)
            sweep_s = time.perf_counter() - t
            app.close()
        finally:
            workers.stop()
        applied = count(db, select(func.count()).select_from(EscalationStep))
        per_task = count(db, select(func.count()).select_from(select(EscalationStep.object_id).group_by(
            EscalationStep.object_id).having(func.count() != 1).subquery()))
        outbox = count(db, select(func.count()).select_from(OutboxMessage))
        both = [line for line in workers.tail().splitlines() if f"Task {SWEEP}[" in line and "succeeded" in line]
        print("workers: " + "; ".join(line.split("] ", 1)[-1] for line in both), flush=True)
        with session_scope(db.factory) as session:
            report = audit.verify(session)
        print(f"check: steps={applied} tasks_with_other_than_one_step={per_task} outbox={outbox} "
              f"audit_ok={report.ok} audit_events={report.events}", flush=True)
        assert applied == args.crossing and per_task == 0 and outbox == args.crossing and report.ok
        print(f"sweep_s={sweep_s:.2f} applied={applied}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
