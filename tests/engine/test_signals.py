"""Signals (issue "Engine II"): broadcast to every waiting instance through the worker, each resumed once."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, jobs
from engine.audit.models import AuditEvent
from engine.jobs_messages import run_signal_deliveries
from engine.org.actors import SYSTEM
from engine.runtime import instances, messages, signals
from engine.runtime.message_models import SignalDelivery
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.engine.test_messages import MESSAGES, resumed_count


@pytest.fixture
def deployed(session: Session) -> Session:
    deploy.deploy(session, deploy.read_directory(MESSAGES), actor=SYSTEM, check_lanes=False)
    session.commit()
    return session


def waiters(session: Session, n: int) -> list[int]:
    ids = [instances.start(session, process_key="sig_wait", actor=SYSTEM, data={"resumed": 0}).id for _ in range(n)]
    session.commit()
    return ids


def ready(session: Session, process_key: str) -> int:
    return int(session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.process_key == process_key, HumanTask.state == "ready")) or 0)


def test_a_broadcast_resumes_every_waiting_instance_once_and_starts_signal_start_events(
        deployed: Session, factory: sessionmaker[Session]) -> None:
    ids = waiters(deployed, 7)
    out = signals.broadcast(deployed, name="plan_revised", actor=SYSTEM, payload={"revision": 2})
    deployed.commit()
    assert (out.status, out.waiting, len(out.started)) == ("broadcast", 7, 1)
    assert ready(deployed, "sig_started") == 1  # the signal start event started its process
    assert ready(deployed, "sig_wait") == 0  # the waiting ones are resumed by the worker
    deployed.rollback()
    resumed, more = run_signal_deliveries(factory, batch=3)
    assert (resumed, more) == (7, False)
    deployed.expire_all()
    assert ready(deployed, "sig_wait") == 7
    assert [resumed_count(deployed, i) for i in ids] == [1] * 7
    deployed.rollback()
    assert run_signal_deliveries(factory) == (0, False)  # a second job finds nothing to do
    assert deployed.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "signal.deliver")) == 7


def test_an_instance_that_stopped_waiting_is_skipped(deployed: Session, factory: sessionmaker[Session]) -> None:
    a, b = waiters(deployed, 2)
    signals.broadcast(deployed, name="plan_revised", actor=SYSTEM)
    deployed.commit()
    instances.terminate(deployed, instance_id=a, actor=SYSTEM)
    deployed.commit()
    assert run_signal_deliveries(factory) == (1, False)
    states = dict(deployed.execute(select(SignalDelivery.instance_id, SignalDelivery.state)).all())
    assert states == {a: "skipped", b: "done"}


def test_a_signal_thrown_by_an_instance_reaches_the_others(deployed: Session, factory: sessionmaker[Session]) -> None:
    ids = waiters(deployed, 3)
    thrower = instances.start(deployed, process_key="sig_thrower", actor=SYSTEM)
    deployed.commit()
    assert thrower.status == "completed"
    deployed.rollback()
    assert jobs.run_outbox(factory) >= 1  # fans out (and kicks the worker)
    assert run_signal_deliveries(factory) == (3, False)
    deployed.expire_all()
    assert [resumed_count(deployed, i) for i in ids] == [1] * 3
    assert ready(deployed, "sig_started") == 1


def test_an_unknown_signal_is_refused(deployed: Session) -> None:
    with pytest.raises(messages.MessageUnknown):
        signals.broadcast(deployed, name="no_such_signal", actor=SYSTEM)
    assert deployed.scalar(select(func.count()).select_from(ProcessInstance)) == 0
