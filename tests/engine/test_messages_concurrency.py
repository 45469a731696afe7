"""16 concurrent deliveries of one message resume one instance once; expiry jobs racing each other or a catch
(PostgreSQL, real threads)."""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, jobs, org
from engine.audit.models import AuditEvent
from engine.errors import ConcurrentModification
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import core as runtime
from engine.runtime import instances, message_worker, messages
from engine.runtime.message_models import BpmnMessage, MessageSubscription
from engine.runtime.running import Running
from tests.engine.conftest import at_once, waits_for_a_lock
from tests.engine.test_messages import MESSAGES, resumed_count

WRITERS = 16
pytestmark = pytest.mark.concurrency


def _waiting(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        deploy.deploy(s, deploy.read_directory(MESSAGES), actor=SYSTEM, check_lanes=False)
        iid = instances.start(s, process_key="msg_case", actor=SYSTEM, data={"application_id": 16, "resumed": 0}).id
        s.commit()
        return iid


def _race(factory: sessionmaker[Session], message_id: str | None, actor: Actor = SYSTEM) -> tuple[int, Counter[str]]:
    iid = _waiting(factory)
    outcomes: list[str] = [""] * WRITERS
    answers: set[tuple[int | None, int | None]] = set()

    def deliver(i: int) -> None:
        with factory() as s:
            out = messages.publish(s, name="supplement", actor=actor, correlations={"application_id": 16},
                                   payload={"pages": i + 1}, message_id=message_id)
            s.commit()
            outcomes[i] = out.status
            answers.add((out.id, out.instance_id))

    errors = at_once(WRITERS, deliver)
    assert errors == [None] * WRITERS, [repr(e) for e in errors if e]
    if message_id is not None:
        assert len(answers) == 1 and next(iter(answers))[1] == iid  # every copy answered with the one message
    return iid, Counter(outcomes)


def test_sixteen_copies_of_one_message_resume_the_instance_once(pg_factory: sessionmaker[Session]) -> None:
    iid, outcomes = _race(pg_factory, None)
    assert outcomes == Counter({"delivered": 1, "buffered": WRITERS - 1})
    with pg_factory() as s:
        assert resumed_count(s, iid) == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"instance:{iid}", AuditEvent.action == "message.deliver")) == 1
        assert s.scalar(select(func.count()).select_from(MessageSubscription).where(
            MessageSubscription.name == "supplement")) == 0
        delivered = s.scalars(select(BpmnMessage.instance_id).where(BpmnMessage.status == "delivered")).all()
        assert delivered == [iid]
        s.rollback()


@pytest.mark.parametrize("by_user", [False, True], ids=["system", "user"])
def test_sixteen_retries_with_one_message_id_are_processed_once(pg_factory: sessionmaker[Session],
                                                                by_user: bool) -> None:
    """The system's copies (no user: its own unique index) and one user's copies alike."""
    actor = SYSTEM
    if by_user:
        with pg_factory() as s:
            org.add_user(s, username="portal", display_name="门户", is_admin=True)
            s.commit()
            actor = actor_for(s, "portal")
    iid, outcomes = _race(pg_factory, "portal-16", actor)
    assert outcomes == Counter({"delivered": 1, "duplicate": WRITERS - 1})
    with pg_factory() as s:
        assert resumed_count(s, iid) == 1
        assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 1
        s.rollback()


def _buffered(factory: sessionmaker[Session], application_id: int) -> int:
    """Deploy the message processes and publish one message nobody waits for (kept a minute)."""
    with factory() as s:
        deploy.deploy(s, deploy.read_directory(MESSAGES), actor=SYSTEM, check_lanes=False)
        out = messages.publish(s, name="supplement", actor=SYSTEM, correlations={"application_id": application_id},
                               payload={"pages": 1}, ttl=60)
        s.commit()
        assert out.status == "buffered" and out.id is not None
        return out.id


def _while_held(factory: sessionmaker[Session], hold: Callable[[Session], None],
                other: Callable[[Session], object]) -> object:
    """Run `hold` in a transaction left open, then `other` in a thread until it waits for a lock or ends; then commit
    the first, and return what `other` returned (it commits too)."""
    result: list[object] = []
    pid: list[int] = []

    def run() -> None:
        with factory() as s:
            pid.append(int(s.execute(text("SELECT pg_backend_pid()")).scalar_one()))
            result.append(other(s))
            s.commit()

    with factory() as held:
        hold(held)
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 10
        while thread.is_alive() and not (pid and waits_for_a_lock(factory, pid[0])) and time.monotonic() < deadline:
            time.sleep(0.01)
        held.commit()
    thread.join(timeout=30)
    assert not thread.is_alive() and result, "the second transaction did not finish"
    return result[0]


def test_two_expiry_jobs_at_once_expire_a_message_once(pg_factory: sessionmaker[Session]) -> None:
    """Two beats (or a job overlapping itself) send expire_messages twice: one expiry, audited once."""
    message_id = _buffered(pg_factory, 31)
    later = clock.now() + timedelta(seconds=61)
    second = _while_held(pg_factory, lambda s: message_worker.expire(s, now=later),
                         lambda s: message_worker.expire(s, now=later))
    assert second == 0
    with pg_factory() as s:
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == message_id)) == "expired"
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"message:{message_id}", AuditEvent.action == "message.expire")) == 1


def test_an_expiry_job_leaves_a_message_an_instance_took_meanwhile_delivered(pg_factory: sessionmaker[Session]) -> None:
    """An instance starts waiting just before the time to live ends and consumes the message; the expiry job, a
    moment later by its own clock, must not mark that message expired."""
    message_id = _buffered(pg_factory, 32)
    taken: list[int] = []

    def consume(s: Session) -> None:
        taken.append(instances.start(s, process_key="msg_case", actor=SYSTEM,
                                     data={"application_id": 32, "resumed": 0}).id)

    expired = _while_held(pg_factory, consume, lambda s: message_worker.expire(s, now=clock.now() + timedelta(seconds=61)))
    assert expired == 0
    with pg_factory() as s:
        row = s.get(BpmnMessage, message_id)
        assert row is not None and (row.status, row.instance_id) == ("delivered", taken[0])
        assert resumed_count(s, taken[0]) == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"message:{message_id}", AuditEvent.action == "message.expire")) == 0


def _busy_while(monkeypatch: pytest.MonkeyPatch, instance_id: int) -> set[int]:
    """Make every save of the instance conflict, as if someone else saved it each time first, while its id is in the
    set returned (the test clears it: the other writer is done)."""
    busy = {instance_id}
    real = runtime.save

    def save(session: Session, running: Running, **kw: Any) -> None:
        if running.row.id in busy:
            raise ConcurrentModification(running.row.id)
        real(session, running, **kw)

    monkeypatch.setattr(runtime, "save", save)
    return busy


def _deliveries(s: Session, message_id: int | None) -> int:
    return int(s.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "message.deliver", AuditEvent.after["message"].as_integer() == message_id)) or 0)


def test_a_message_published_while_the_waiting_instance_is_busy_reaches_it_once(
        pg_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every try to resume the waiting instance conflicts (someone saves it each time first): the message was
    buffered, and the instance, waiting already, never looks at the buffer again — lost until it expired. It is
    routed again by the worker once the instance is free, as its sender, and resumes it once."""
    iid = _waiting(pg_factory)
    with pg_factory() as s:
        org.add_user(s, username="portal", display_name="门户", is_admin=True)
        s.commit()
        portal = actor_for(s, "portal")
    busy = _busy_while(monkeypatch, iid)
    with pg_factory() as s:
        out = messages.publish(s, name="supplement", actor=portal, correlations={"application_id": 16},
                               payload={"pages": 2}, ttl=600)
        s.commit()
    assert out.id is not None and out.status == "pending"  # buffered, it waited for a catch that waits already
    busy.clear()
    errors = at_once(4, lambda _i: jobs.run_outbox(pg_factory) and None)  # beat and a kick at once: once
    assert errors == [None] * 4
    later = clock.now() + timedelta(seconds=601)
    with pg_factory() as s:
        assert message_worker.expire(s, now=later) == 0
        s.commit()
        row = s.get(BpmnMessage, out.id)
        assert row is not None and (row.status, row.instance_id) == ("delivered", iid)
        assert resumed_count(s, iid) == 1 and _deliveries(s, out.id) == 1
        assert s.scalar(select(AuditEvent.actor_id).where(AuditEvent.action == "message.deliver")) == portal.user_id
        s.rollback()


def test_a_thrown_message_whose_instance_is_busy_is_routed_again_later_not_buffered(
        pg_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, frozen: Any) -> None:
    """The outbox job routes a thrown message while its waiting instance is busy every time: it stays pending and
    the outbox retries it with backoff (buffered, it was lost)."""
    target = _waiting(pg_factory)
    busy = _busy_while(monkeypatch, target)
    with pg_factory() as s:
        instances.start(s, process_key="msg_sender", actor=SYSTEM, data={"application_id": 16, "pages": 4})
        s.commit()
    jobs.run_outbox(pg_factory)
    busy.clear()
    frozen.advance(timedelta(minutes=5))  # the outbox's backoff
    jobs.run_outbox(pg_factory)
    assert jobs.run_outbox(pg_factory) == 0  # nothing left, nothing twice
    with pg_factory() as s:
        row = s.scalar(select(BpmnMessage).where(BpmnMessage.source_instance_id.is_not(None)))
        assert row is not None and (row.status, row.instance_id) == ("delivered", target)
        assert resumed_count(s, target) == 1 and _deliveries(s, row.id) == 1
        s.rollback()
