"""jzflow_notice_drops (and jzflow_audit_events) count committed work only, savepoints included.

A drop (a notice past its hourly cap, engine.notify.quota) made inside a savepoint that rolls back never happened:
its counter row went with the savepoint. One made in a savepoint that is released happened only if the transaction
around it commits. One made before a savepoint that rolls back stays, and is counted when the transaction commits.
Before, a released savepoint counted everything the transaction had collected so far (the transaction could still
roll back, and a second commit counted nothing of it again, but it had been counted), and a savepoint rolled back
threw away the drops of the whole transaction. Committed audit actions are collected the same way. On SQLite and
PostgreSQL.
"""
from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, notify, org
from engine.notify.models import NoticeCount
from engine.ops import metrics  # noqa: F401 (its listeners count what commits)
from engine.org.actors import SYSTEM


@pytest.fixture
def zhang(session: Session, frozen: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """张伟, whose cap is one notice an hour, has had it already: each further notice to him is a drop."""
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "1")
    user = org.add_user(session, username="zhang", display_name="张伟")
    session.commit()
    _send(session, user.id, 0)
    session.commit()
    return user.id


def _send(session: Session, user_id: int, i: int) -> None:
    notify.send(session, notify.Note(user_id=user_id, kind="escalation", title=f"督办{i}", key=f"esc:{user_id}:{i}"))


def _drops() -> float:
    return REGISTRY.get_sample_value("jzflow_notice_drops_total", {"cap": "recipient"}) or 0.0


def _audited(action: str) -> float:
    return REGISTRY.get_sample_value("jzflow_audit_events_total", {"action": action}) or 0.0


def _dropped(session: Session, user_id: int) -> int:
    counter = session.scalar(select(NoticeCount).where(NoticeCount.scope == f"user:{user_id}")
                             .execution_options(populate_existing=True))
    return counter.dropped if counter is not None else 0


def test_a_committed_drop_is_counted_once(session: Session, zhang: int) -> None:
    before = _drops()
    _send(session, zhang, 1)
    session.commit()
    session.commit()  # nothing more happened: nothing more counted
    assert _drops() == before + 1 and _dropped(session, zhang) == 1


def test_a_drop_in_a_savepoint_rolled_back_is_not_counted(session: Session, zhang: int) -> None:
    before = _drops()
    savepoint = session.begin_nested()
    _send(session, zhang, 1)
    savepoint.rollback()
    session.commit()
    assert _drops() == before and _dropped(session, zhang) == 0


def test_a_drop_in_a_released_savepoint_counts_only_once_its_transaction_commits(session: Session,
                                                                                 zhang: int) -> None:
    before = _drops()
    with session.begin_nested():
        _send(session, zhang, 1)
    assert _drops() == before  # released: the transaction around it may still roll back
    session.rollback()
    assert _drops() == before and _dropped(session, zhang) == 0
    with session.begin_nested():
        _send(session, zhang, 2)
    session.commit()
    assert _drops() == before + 1 and _dropped(session, zhang) == 1


def test_a_drop_before_a_savepoint_rolled_back_is_counted_when_its_transaction_commits(session: Session,
                                                                                      zhang: int) -> None:
    before = _drops()
    _send(session, zhang, 1)
    with session.begin_nested():
        with session.begin_nested() as inner:
            _send(session, zhang, 2)
            inner.rollback()
        _send(session, zhang, 3)
    savepoint = session.begin_nested()
    _send(session, zhang, 4)
    savepoint.rollback()
    session.commit()
    assert _dropped(session, zhang) == 2  # 1 and 3
    assert _drops() == before + 2


def test_audit_actions_are_counted_as_committed_too(session: Session, zhang: int) -> None:
    action = "test.metric_savepoint"
    before = _audited(action)
    audit.record(session, SYSTEM, action, stream="test:metrics", object_type="test", object_id=1)
    savepoint = session.begin_nested()
    audit.record(session, SYSTEM, action, stream="test:metrics", object_type="test", object_id=2)
    savepoint.rollback()
    with session.begin_nested():
        audit.record(session, SYSTEM, action, stream="test:metrics", object_type="test", object_id=3)
    assert _audited(action) == before
    session.commit()
    assert _audited(action) == before + 2


def test_a_drop_of_a_session_closed_without_a_commit_is_not_counted_by_its_next_commit(session: Session,
                                                                                      zhang: int) -> None:
    before = _drops()
    _send(session, zhang, 1)
    session.close()  # rolled back by the close: no after_rollback of the session's own
    _send(session, zhang, 2)
    session.rollback()
    session.commit()
    assert _drops() == before and _dropped(session, zhang) == 0
