"""16 concurrent deliveries of one message resume one instance once (PostgreSQL, real threads)."""
from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, org
from engine.audit.models import AuditEvent
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, messages
from engine.runtime.message_models import BpmnMessage, MessageSubscription
from tests.engine.conftest import at_once
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
