"""The scale path: PostgreSQL, Redis and a real Celery worker subprocess (docs/architecture.md).

The worker reads the wall clock; the instances are started with engine.clock two hours back, so
their one-hour timers are already due when the worker looks. A worker is SIGKILLed (its whole
process group) in the middle of a sweep, and a new one finishes the work: every timer fires
exactly once, because each instance fires in its own transaction under a row lock and re-checks
next_timer_at there (services/timers.py).

What acks_late does on Redis after a SIGKILL (kombu 5.7, measured): the killed job's message
stays in the `unacked` hash. It is only put back once it is older than the visibility timeout
(600 s, celery_app.py), by a worker's scan at its start or by its periodic scan, which runs about
every 100 s (unacked_restore_interval 10 s x unacked_restore_throttle 10). So the work resumes
on beat's next sweep, and the redelivered job later finds nothing left to do. When only the pool
child dies (the main process survives), task_reject_on_worker_lost requeues the job as soon as
the main process notices, within about 5 s.
"""
from __future__ import annotations

import fcntl
import os
import re
import signal
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, config, deploy, runtime
from engine.audit.models import AuditEvent
from engine.db import make_engine, make_sessionmaker, session_scope
from engine.org.actors import SYSTEM
from engine.runtime import instances, timers
from engine.runtime.models import Incident, ProcessInstance
from tests.conftest import FIXTURES, PgDatabases, require_service
from tests.workers import Worker, Workers, send_task, start_due_instances

pytestmark = pytest.mark.scale

# Our own Redis database, never 0: JZFLOW_TEST_REDIS_URL, else the first free one of 15..1 on the
# local server (a file lock per database keeps two test runs on one machine apart).
REDIS_URL = os.environ.get("JZFLOW_TEST_REDIS_URL")
REDIS_SERVER = "redis://127.0.0.1:6379"
SWEEP = "engine.jobs.sweep_timers"
SLOW = {"wait_for": "PT1H", "fire_count": 0}


def _redis_problem(url: str) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as exc:  # any connection failure means "not available"
        return str(exc).splitlines()[0]


def unacked_messages(url: str) -> int:
    """Count messages delivered but never acknowledged (kombu's default `unacked_key`)."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.hlen("unacked"))
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """Claim a Redis database for this test run (never 0)."""
    candidates = [REDIS_URL] if REDIS_URL else [f"{REDIS_SERVER}/{n}" for n in range(15, 0, -1)]
    for url in candidates:
        if urlsplit(url).path.strip("/") in ("", "0"):
            pytest.fail(f"JZFLOW_TEST_REDIS_URL={url} names database 0, which these tests flush")
        name = re.sub(r"\W+", "_", url)
        lock = open(Path(tempfile.gettempdir()) / f"jzflow-test-{name}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if REDIS_URL else fcntl.LOCK_NB))
        except BlockingIOError:
            lock.close()
            continue
        try:
            yield url
        finally:
            lock.close()  # releases the lock
        return
    pytest.fail("every Redis test database (15..1) is in use by another test run")


@pytest.fixture
def redis_url(redis_db: str) -> Iterator[str]:
    """Our Redis database, empty before and after the test."""
    require_service("Redis", _redis_problem(redis_db))
    client = redis.Redis.from_url(redis_db)
    try:
        client.flushdb()
        yield redis_db
        client.flushdb()
    finally:
        client.close()


@dataclass
class Stack:
    """A fresh PostgreSQL database and our Redis database, and workers started on them."""

    settings: config.Settings
    factory: sessionmaker[Session]
    workers: Workers

    def start_worker(self, extra: Mapping[str, str] | None = None, *, beat: bool = False) -> Worker:
        env = {"JZFLOW_DATABASE_URL": self.settings.database_url, "JZFLOW_REDIS_URL": str(self.settings.redis_url),
               "JZFLOW_INSTANCE_DIR": str(self.settings.instance_dir), **(extra or {})}
        return self.workers.start(env, beat=beat)

    def send(self, name: str) -> None:
        send_task(self.settings, name)

    def count(self, stmt: Select[Any]) -> int:
        with session_scope(self.factory) as session:
            return int(session.scalar(stmt) or 0)

    def fires(self) -> int:
        return self.count(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "timer.fire"))

    def completed(self, ids: list[int]) -> int:
        return self.count(select(func.count()).select_from(ProcessInstance)
                          .where(ProcessInstance.id.in_(ids), ProcessInstance.status == "completed"))

    def deploy(self, *parts: str) -> None:
        with session_scope(self.factory) as session:
            deploy.deploy(session, deploy.read_directory(FIXTURES.joinpath(*parts)), actor=SYSTEM)


@pytest.fixture
def stack(tmp_path: Path, pg_databases: PgDatabases, redis_url: str) -> Iterator[Stack]:
    settings = config.Settings(instance_dir=tmp_path / "instance", database_url=pg_databases.fresh(),
                               redis_url=redis_url)
    engine = make_engine(settings.database_url)
    try:
        with Workers(tmp_path / "logs") as workers:
            yield Stack(settings, make_sessionmaker(engine), workers)
    finally:
        engine.dispose()
        pg_databases.drop(settings.database_url)


def assert_fired_exactly_once(stack: Stack, ids: list[int]) -> None:
    """Each instance: one timer.fire event, completed, no incident; the audit chain verifies."""
    with session_scope(stack.factory) as session:
        per_instance = {object_id: n for object_id, n in session.execute(
            select(AuditEvent.object_id, func.count()).where(AuditEvent.action == "timer.fire")
            .group_by(AuditEvent.object_id))}
        twice = {k: v for k, v in per_instance.items() if v != 1}
        assert per_instance.keys() == {str(i) for i in ids} and not twice, (twice, stack.workers.tails())
        statuses = {i: status for i, status in session.execute(
            select(ProcessInstance.id, ProcessInstance.status).where(ProcessInstance.id.in_(ids)))}
        assert set(statuses.values()) == {"completed"}, (statuses, stack.workers.tails())
        incidents = session.scalars(select(Incident.message)).all()
        assert not incidents, (incidents, stack.workers.tails())
        report = audit.verify(session)
        assert report.ok, report.problem


def assert_script_ran_once(stack: Stack, ids: list[int]) -> None:
    """The slow_work script's effect was committed exactly once per instance."""
    with session_scope(stack.factory) as session:
        for instance_id in ids:
            work = [t for t in runtime.load(session, instance_id).workflow.get_tasks()
                    if t.task_spec.bpmn_id == "slow_work"]
            assert len(work) == 1, (instance_id, work)
            assert (work[0].data.get("fire_count"), work[0].data.get("fired")) == (1, True), \
                (instance_id, work[0].data, stack.workers.tails())


def test_worker_on_redis_fires_due_timers(stack: Stack) -> None:
    stack.deploy("good", "timer_wait.bpmn")
    ids = start_due_instances(stack.factory, "timer_wait", 60, {"wait_for": "PT1H"})
    with session_scope(stack.factory) as session:
        assert len(timers.due_ids(session, now=clock.now(), limit=1000)) == 60

    worker = stack.start_worker()
    stack.send(SWEEP)
    worker.wait_until(lambda: stack.completed(ids) == len(ids), 60, what="all 60 instances to complete")

    assert_fired_exactly_once(stack, ids)
    assert f"Task {SWEEP}[" in worker.log_tail(10_000)


def test_sigkill_mid_sweep_fires_every_timer_exactly_once(stack: Stack) -> None:
    n = 60
    stack.deploy("scale")
    ids = start_due_instances(stack.factory, "slow_timer", n, SLOW)
    batch = {"JZFLOW_SWEEP_BATCH": "5"}  # select five at a time; each instance commits on its own

    done = 0
    for round_ in (1, 2):
        worker = stack.start_worker(batch)
        stack.send(SWEEP)
        low = done + 1

        def mid_sweep(low: int = low) -> bool:
            return low < stack.fires() < n - 1

        worker.wait_until(mid_sweep, 60, poll=0.01,
                          what=f"round {round_}: a timer.fire count strictly between {low} and {n - 1}")
        worker.kill()
        done = stack.fires()
        log = worker.log_tail(10_000)
        assert done < n, f"round {round_}: the sweep finished before the kill"
        assert f"Task {SWEEP}[" in log and "succeeded" not in log, f"round {round_}: not killed mid-job\n{log}"
        # acks_late: the killed job is not lost, it waits unacked for the visibility timeout.
        assert unacked_messages(str(stack.settings.redis_url)) == round_

    worker = stack.start_worker(batch)
    stack.send(SWEEP)  # what beat does on its next tick
    worker.wait_until(lambda: stack.completed(ids) == n, 60, what=f"all {n} instances to complete")

    assert_fired_exactly_once(stack, ids)
    assert_script_ran_once(stack, ids)


def test_killed_pool_child_is_requeued_at_once(stack: Stack) -> None:
    n = 30
    stack.deploy("scale")
    ids = start_due_instances(stack.factory, "slow_timer", n, SLOW)
    worker = stack.start_worker({"JZFLOW_SWEEP_BATCH": "5"})
    stack.send(SWEEP)
    worker.wait_until(lambda: 1 < stack.fires() < n - 1, 60, poll=0.01, what="the sweep to be under way")

    children = worker.pool_children()
    assert len(children) == 1, children
    os.kill(children[0], signal.SIGKILL)  # what the OOM killer does to a pool process; the main process survives

    # task_reject_on_worker_lost: the main process requeues the job and a new child runs it, unasked.
    worker.wait_until(lambda: stack.completed(ids) == n, 60, what=f"all {n} instances to complete")
    assert "WorkerLostError" in worker.log_tail(10_000)
    assert_fired_exactly_once(stack, ids)
    assert_script_ran_once(stack, ids)


def test_beat_in_the_worker_sweeps_by_itself(stack: Stack) -> None:
    stack.deploy("good", "timer_wait.bpmn")
    due = start_due_instances(stack.factory, "timer_wait", 10, {"wait_for": "PT1H"})
    with session_scope(stack.factory) as session:  # due a few seconds from now on the wall clock
        later = instances.start(session, process_key="timer_wait", actor=SYSTEM, data={"wait_for": "PT3S"}).id

    worker = stack.start_worker({"JZFLOW_TIMER_SWEEP_SECONDS": "1"}, beat=True)
    worker.wait_until(lambda: stack.completed([*due, later]) == 11, 60,
                      what="beat's sweeps to complete all 11 instances (nothing sent by the test)")

    assert_fired_exactly_once(stack, [*due, later])
    assert "Sending due task sweep-timers" in worker.log_tail(10_000)
