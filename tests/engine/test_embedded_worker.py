"""The embedded default: SQLite database, SQLite broker (no Redis), and a real Celery worker (docs/architecture.md).

kombu's SQLAlchemy transport hands every broker transport option to create_engine(); the
Redis-only visibility_timeout used to make the first publish fail with TypeError
(celery_app._transport_options). This transport has no visibility timeout: a message is marked
invisible when a worker takes it and never deleted, and a worker killed mid-job loses it (a
warm shutdown puts unacked messages back). Beat's next sweep resumes such work.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, config, deploy
from engine.audit.models import AuditEvent
from engine.db import make_engine, make_sessionmaker, session_scope
from engine.notify import outbox
from engine.notify.models import OutboxMessage
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
        log = worker.log_tail(10_000)

    assert "transport:   sqla+sqlite:///" in log
    with session_scope(factory) as session:
        msg = session.get(OutboxMessage, message_id)
        assert msg is not None and msg.attempts == 1 and msg.last_error is None
        fires = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "timer.fire"))
        assert fires == len(ids)
        assert audit.verify(session).ok
