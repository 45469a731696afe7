"""The embedded default: SQLite database, SQLite broker (no Redis), and a real Celery worker (docs/architecture.md).

kombu's SQLAlchemy transport hands every broker transport option to create_engine(); the
Redis-only visibility_timeout used to make the first publish fail with TypeError
(celery_app._transport_options). This transport has no visibility timeout: a message is marked
invisible when a worker takes it, and a worker killed mid-job loses it (a warm shutdown puts
unacked messages back). Beat's next sweep resumes such work (docs/operations.md).
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, config, deploy, runtime
from engine.audit.models import AuditEvent
from engine.db import make_engine, make_sessionmaker, session_scope
from engine.notify import outbox
from engine.notify.models import OutboxMessage
from engine.ops import queues
from engine.org.actors import SYSTEM
from engine.runtime.models import ProcessInstance
from tests.conftest import FIXTURES
from tests.workers import Workers, send_task, start_due_instances


@pytest.fixture
def embedded(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[config.Settings, sessionmaker[Session]]]:
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "jzflow.sqlite").write_bytes(sqlite_template.read_bytes())
    settings = config.Settings(instance_dir=instance, database_url=f"sqlite:///{instance / 'jzflow.sqlite'}")
    assert settings.broker_url.startswith("sqla+sqlite:///")
    engine = make_engine(settings.database_url)
    yield settings, make_sessionmaker(engine)
    engine.dispose()


# kombu's SQLAlchemy transport declares relationship(lazy="noload"), deprecated in SQLAlchemy 2.1;
# setup.cfg ignores kombu's deprecations, but `-W error` on the command line overrides that.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")
def test_embedded_worker_fires_timers_and_delivers_the_outbox(
        embedded: tuple[config.Settings, sessionmaker[Session]], tmp_path: Path) -> None:
    settings, factory = embedded
    with session_scope(factory) as session:
        deploy.deploy(session, deploy.read_directory(FIXTURES / "good" / "timer_wait.bpmn"), actor=SYSTEM)
    ids = start_due_instances(factory, "timer_wait", 5, {"wait_for": "PT1H"})
    with session_scope(factory) as session:
        message = outbox.enqueue(session, "event", {"what": "项目签约", "instance_id": ids[0]})
        assert message is not None
        message_id = message.id

    def count(stmt: Select[Any]) -> int:
        with session_scope(factory) as session:
            return int(session.scalar(stmt) or 0)

    with Workers(tmp_path / "logs") as workers:
        worker = workers.start({"JZFLOW_DATABASE_URL": settings.database_url,
                                "JZFLOW_INSTANCE_DIR": str(settings.instance_dir)})
        send_task(settings, "engine.jobs.sweep_timers")
        send_task(settings, "engine.jobs.deliver_outbox")
        worker.wait_until(lambda: count(select(func.count()).select_from(ProcessInstance).where(
            ProcessInstance.id.in_(ids), ProcessInstance.status == "completed")) == len(ids), 60,
            what="the 5 timer instances to complete")
        worker.wait_until(lambda: count(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.id == message_id, OutboxMessage.delivered_at.is_not(None))), 60,
            what="the outbox message to be delivered")
        assert broker_messages(settings).get(False, 0) >= 2  # the two jobs' messages, kept by kombu
        send_task(settings, "engine.jobs.purge_broker")
        worker.wait_until(lambda: re.search(r"engine\.jobs\.purge_broker\[\S+\] succeeded", worker.log_tail(10_000)),
                          60, what="the broker's clean-up")
        log = worker.log_tail(10_000)

    assert "transport:   sqla+sqlite:///" in log
    assert broker_messages(settings) == {}  # the clean-up's own message went with the others
    with session_scope(factory) as session:
        msg = session.get(OutboxMessage, message_id)
        assert msg is not None and msg.attempts == 1 and msg.last_error is None
        fires = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "timer.fire"))
        assert fires == len(ids)
        assert audit.verify(session).ok


def broker_messages(settings: config.Settings) -> dict[bool, int]:
    """Count the embedded broker's messages by kombu's `visible` flag (False: taken by a worker, never deleted)."""
    path = settings.broker_url.removeprefix("sqla+sqlite:///")
    with closing(sqlite3.connect(path)) as broker:
        return {bool(visible): n for visible, n in broker.execute(
            "SELECT visible, count(*) FROM kombu_message GROUP BY visible")}


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")
def test_a_job_killed_on_the_embedded_broker_is_not_redelivered_and_beat_s_next_sweep_finishes_it(
        embedded: tuple[config.Settings, sessionmaker[Session]], tmp_path: Path) -> None:
    """docs/operations.md, "What the embedded default guarantees": kombu's SQLAlchemy transport has no visibility
    timeout, so a job whose worker is SIGKILLed is gone; the periodic sweep beat sends next does its work, and
    nothing is done twice."""
    settings, factory = embedded
    n = 30
    with session_scope(factory) as session:
        deploy.deploy(session, deploy.read_directory(FIXTURES / "scale"), actor=SYSTEM)
    ids = start_due_instances(factory, "slow_timer", n, {"wait_for": "PT1H", "fire_count": 0})

    def fires() -> int:  # a plain reader: the engine's sessions begin IMMEDIATE and would queue behind the worker
        with closing(sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))) as db:
            return int(db.execute("SELECT count(*) FROM audit_event WHERE action = 'timer.fire'").fetchone()[0])

    env = {"JZFLOW_DATABASE_URL": settings.database_url, "JZFLOW_INSTANCE_DIR": str(settings.instance_dir),
           "JZFLOW_SWEEP_BATCH": "5"}
    with Workers(tmp_path / "logs") as workers:
        first = workers.start(env)
        send_task(settings, "engine.jobs.sweep_timers")
        first.wait_until(lambda: 1 < fires() < n - 1, 60, poll=0.01, what="the sweep to be under way")
        first.kill()
        midway = fires()
        assert midway < n and "succeeded" not in first.log_tail(10_000), "not killed mid-job"
        # The killed job's message stays taken (visible = False) for good: no worker will get it again.
        assert broker_messages(settings) == {False: 1}

        second = workers.start({**env, "JZFLOW_TIMER_SWEEP_SECONDS": "1"}, beat=True)
        second.wait_until(lambda: fires() == n, 60, what=f"beat's sweeps to fire all {n} timers")
        log = second.log_tail(10_000)

    assert "Sending due task sweep-timers" in log
    with session_scope(factory) as session:
        per_instance = dict(session.execute(select(AuditEvent.object_id, func.count())
                                            .where(AuditEvent.action == "timer.fire").group_by(AuditEvent.object_id)).all())
        assert per_instance == {str(i): 1 for i in ids}
        statuses = set(session.scalars(select(ProcessInstance.status).where(ProcessInstance.id.in_(ids))))
        assert statuses == {"completed"}
        for instance_id in ids:
            work = [t for t in runtime.load(session, instance_id).workflow.get_tasks()
                    if t.task_spec.bpmn_id == "slow_work"]
            assert [t.data.get("fire_count") for t in work] == [1], instance_id  # the script's effect once
        assert audit.verify(session).ok


def test_beat_deletes_the_messages_workers_took_from_the_embedded_broker(tmp_path: Path) -> None:
    """kombu's SQLAlchemy transport never deletes a message a worker took (an ack changes nothing in the table):
    every beat tick added a row for good (about 26 000 a day), and each poll of the queue read past them all."""
    from engine.celery_app import make_celery

    settings = config.Settings(instance_dir=tmp_path / "instance", database_url="sqlite://")
    assert make_celery(settings).conf.beat_schedule["purge-broker"] == {"task": "engine.jobs.purge_broker",
                                                                         "schedule": 3600.0}
    with Connection(settings.broker_url) as connection:
        queue = connection.SimpleQueue("celery")
        for n in range(4):
            queue.put({"n": n})
        done = queue.get_nowait()
        done.ack()  # a job that finished
        in_hand = queue.get_nowait()  # a job a worker runs now: its row may go too, the worker holds the message
        assert broker_messages(settings) == {False: 2, True: 2}
        assert queues.purge_taken(settings.broker_url, batch=1) == 2
        assert broker_messages(settings) == {True: 2}
        in_hand.ack()
        assert [queue.get_nowait().payload for _ in range(2)] == [{"n": 2}, {"n": 3}]  # the waiting ones stay
        queue.close()
    assert queues.purge_taken(settings.broker_url) == 2

    with_redis = config.Settings(instance_dir=tmp_path / "redis", database_url="sqlite://",
                                 redis_url="redis://127.0.0.1:6379/15")
    assert "purge-broker" not in make_celery(with_redis).conf.beat_schedule  # Redis deletes what was acked
