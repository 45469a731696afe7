"""A message the outbox cannot route (its waiting instance busy at every try) ends in a state of its own.

Given up after the outbox's ten tries it was left `pending` for good, with only the outbox alert to show it: it is
now `refused` with the reason, audited once, told to its sender and on 消息与信号, and an admin may route it again.
A message with `ttl: 0` (now or never) that meets a busy instance is refused at once, nothing kept; a kept one whose
time to live runs out while the instance is still busy is expired. On SQLite and PostgreSQL; two admins at once on
PostgreSQL.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, jobs, org
from engine.audit.models import AuditEvent
from engine.errors import Conflict, Forbidden, NotFound
from engine.notify import outbox
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, message_worker, messages
from engine.runtime.message_models import BpmnMessage
from tests.engine.conftest import at_once
from tests.engine.test_messages import MESSAGES, resumed_count
from tests.engine.test_messages_concurrency import _busy_while


class Killed(BaseException):
    """The worker's process dies here (nothing after it runs, its transaction is rolled back)."""


def _world(factory: sessionmaker[Session]) -> tuple[int, Actor, Actor]:
    """Deploy the 补正 case, start one instance waiting for application 16; a portal (admin) and a process owner."""
    with factory() as s:
        deploy.deploy(s, deploy.read_directory(MESSAGES), actor=SYSTEM, check_lanes=False)
        org.add_user(s, username="portal", display_name="门户", is_admin=True)
        org.add_user(s, username="owner", display_name="流程管理员")
        iid = instances.start(s, process_key="msg_case", actor=SYSTEM, data={"application_id": 16, "resumed": 0}).id
        s.commit()
        return iid, actor_for(s, "portal"), actor_for(s, "owner")


def _publish(factory: sessionmaker[Session], by: Actor, *, ttl: int | None = 86400, message_id: str | None = None
             ) -> messages.Outcome:
    with factory() as s:
        out = messages.publish(s, name="supplement", actor=by, correlations={"application_id": 16},
                               payload={"pages": 2}, ttl=ttl, message_id=message_id)
        s.commit()
        return out


def _tries(factory: sessionmaker[Session], frozen: Any, n: int) -> None:
    for _ in range(n):
        frozen.advance(timedelta(hours=1))  # past the outbox's backoff (at most an hour)
        jobs.run_outbox(factory)


def _events(s: Session, message_id: int | None, action: str) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.stream == f"message:{message_id}",
                                                   AuditEvent.action == action)))


def _outbox_row(s: Session, message_id: int | None) -> OutboxMessage:
    row = s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"bpmn_message:{message_id}"))
    assert row is not None
    return row


@pytest.mark.parametrize("source", ["outside", "thrown"])
def test_a_message_given_up_after_ten_busy_tries_is_refused_with_the_reason_once(
        factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, frozen: Any, source: str) -> None:
    iid, portal, _owner = _world(factory)
    busy = _busy_while(monkeypatch, iid)
    if source == "outside":
        out = _publish(factory, portal)
        assert (out.status, out.instance_id) == ("pending", None)  # not delivered to the busy instance
        message_id = out.id
    else:
        with factory() as s:
            instances.start(s, process_key="msg_sender", actor=SYSTEM, data={"application_id": 16, "pages": 4})
            s.commit()
            message_id = s.scalar(select(BpmnMessage.id).where(BpmnMessage.source_instance_id.is_not(None)))
    _tries(factory, frozen, outbox.MAX_ATTEMPTS - 1)
    with factory() as s:
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == message_id)) == "pending"
        s.rollback()
    _tries(factory, frozen, 3)  # the tenth, then nothing more
    with factory() as s:
        row = s.get(BpmnMessage, message_id)
        assert row is not None and row.status == "refused" and row.instance_id is None
        assert row.reason is not None and f"#{iid}" in row.reason and "10" in row.reason and "busy" in row.reason
        refused = _events(s, message_id, "message.refuse")
        assert len(refused) == 1 and refused[0].after["reason"] == row.reason and refused[0].after["tries"] == 10
        assert _outbox_row(s, message_id).attempts == outbox.MAX_ATTEMPTS
        told = messages.describe(s, message_id)  # what its sender reads (GET /api/messages/<id>)
        assert (told.status, told.reason) == ("refused", row.reason)
        assert told.to_dict()["reason"] == row.reason
        assert resumed_count(s, iid) == 0
        s.rollback()
    busy.clear()
    _tries(factory, frozen, 2)  # the instance is free now: a refused message is not routed behind the admin's back
    with factory() as s:
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == message_id)) == "refused"
        assert resumed_count(s, iid) == 0
        s.rollback()


def test_a_worker_killed_while_giving_up_leaves_it_pending_and_the_next_run_gives_up_once(
        factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, frozen: Any) -> None:
    iid, portal, _owner = _world(factory)
    _busy_while(monkeypatch, iid)
    message_id = _publish(factory, portal).id
    _tries(factory, frozen, outbox.MAX_ATTEMPTS - 1)
    real = message_worker.audit_message

    def dies(*_a: Any, **_kw: Any) -> None:
        raise Killed

    monkeypatch.setattr(message_worker, "audit_message", dies)
    frozen.advance(timedelta(hours=1))
    with pytest.raises(Killed):
        jobs.run_outbox(factory)
    with factory() as s:  # the tenth try rolled back whole: its count, the refusal
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == message_id)) == "pending"
        assert _outbox_row(s, message_id).attempts == outbox.MAX_ATTEMPTS - 1
        assert _events(s, message_id, "message.refuse") == []
        s.rollback()
    monkeypatch.setattr(message_worker, "audit_message", real)
    _tries(factory, frozen, 2)
    with factory() as s:
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == message_id)) == "refused"
        assert len(_events(s, message_id, "message.refuse")) == 1
        assert _outbox_row(s, message_id).attempts == outbox.MAX_ATTEMPTS
        s.rollback()


def test_an_admin_routes_a_given_up_message_again_and_it_reaches_the_instance_once(
        factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, frozen: Any) -> None:
    iid, portal, owner = _world(factory)
    busy = _busy_while(monkeypatch, iid)
    out = _publish(factory, portal)
    _tries(factory, frozen, outbox.MAX_ATTEMPTS)
    busy.clear()
    with factory() as s:
        with pytest.raises(Forbidden):  # a process owner reads the message, and may not route it
            message_worker.retry(s, out.id or 0, actor=owner)
        with pytest.raises(NotFound):
            message_worker.retry(s, 2**31 - 1, actor=portal)
        s.rollback()
    with factory() as s:
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == out.id)) == "refused"
        again = message_worker.retry(s, out.id or 0, actor=portal)
        s.commit()
        assert again.status == "pending" and again.reason is None
    with factory() as s:
        with pytest.raises(Conflict):  # sent twice (a double click): the second finds it pending
            message_worker.retry(s, out.id or 0, actor=portal)
        s.rollback()
    jobs.run_outbox(factory)  # due at once, its tries counted afresh
    _tries(factory, frozen, 2)
    with factory() as s:
        row = s.get(BpmnMessage, out.id)
        assert row is not None and (row.status, row.instance_id, row.reason) == ("delivered", iid, None)
        assert resumed_count(s, iid) == 1
        retried = _events(s, out.id, "message.retry")
        assert len(retried) == 1 and retried[0].actor_id == portal.user_id
        assert retried[0].before is not None and retried[0].before["status"] == "refused"
        assert _outbox_row(s, out.id).delivered_at is not None
        with pytest.raises(Conflict):  # delivered: nothing to route again
            message_worker.retry(s, out.id or 0, actor=portal)
        s.rollback()
    with factory() as s:
        buffered = messages.publish(s, name="supplement", actor=portal, correlations={"application_id": 99},
                                    payload={"pages": 1}, ttl=600)
        s.commit()
        with pytest.raises(Conflict):  # only a refused message is routed again
            message_worker.retry(s, buffered.id or 0, actor=portal)
        s.rollback()


def test_a_ttl_zero_message_meeting_a_busy_instance_is_refused_at_once_and_nothing_kept(
        factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    iid, portal, _owner = _world(factory)
    busy = _busy_while(monkeypatch, iid)
    for message_id in (None, "portal-0"):
        with factory() as s:
            with pytest.raises(Conflict) as refused:
                messages.publish(s, name="supplement", actor=portal, correlations={"application_id": 16},
                                 payload={"pages": 2}, ttl=0, message_id=message_id)
            s.rollback()
        assert refused.value.http_status == 409 and refused.value.code == "message_busy"
        assert f"#{iid}" in refused.value.message and "ttl" in refused.value.message
        with factory() as s:
            assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 0
            assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.kind == "bpmn_message")) == 0
            s.rollback()
    busy.clear()  # the sender tries again with its id: delivered, not answered as a duplicate of nothing
    out = _publish(factory, portal, ttl=0, message_id="portal-0")
    assert (out.status, out.instance_id) == ("delivered", iid)


def test_a_kept_message_whose_time_to_live_ends_while_the_instance_is_busy_is_expired(
        factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, frozen: Any) -> None:
    iid, portal, _owner = _world(factory)
    _busy_while(monkeypatch, iid)
    out = _publish(factory, portal, ttl=30)
    assert out.status == "pending"
    frozen.advance(timedelta(seconds=31))
    jobs.run_outbox(factory)
    _tries(factory, frozen, 2)
    with factory() as s:
        row = s.get(BpmnMessage, out.id)
        assert row is not None and row.status == "expired"
        assert row.reason is not None and f"#{iid}" in row.reason
        assert len(_events(s, out.id, "message.expire")) == 1
        assert _outbox_row(s, out.id).delivered_at is not None  # settled: not tried again
        assert messages.describe(s, out.id or 0).status == "expired"
        s.rollback()


@pytest.mark.concurrency
def test_two_admins_routing_one_given_up_message_at_once_route_it_once(
        pg_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, frozen: Any) -> None:
    iid, portal, _owner = _world(pg_factory)
    busy = _busy_while(monkeypatch, iid)
    out = _publish(pg_factory, portal)
    _tries(pg_factory, frozen, outbox.MAX_ATTEMPTS)
    busy.clear()
    answers: list[str] = [""] * 4

    def retry(i: int) -> None:
        with pg_factory() as s:
            try:
                answers[i] = message_worker.retry(s, out.id or 0, actor=portal).status
                s.commit()
            except Conflict:
                answers[i] = "conflict"

    assert at_once(4, retry) == [None] * 4
    assert sorted(answers) == ["conflict"] * 3 + ["pending"]
    at_once(2, lambda _i: jobs.run_outbox(pg_factory) and None)
    with pg_factory() as s:
        assert s.scalar(select(BpmnMessage.status).where(BpmnMessage.id == out.id)) == "delivered"
        assert resumed_count(s, iid) == 1 and len(_events(s, out.id, "message.retry")) == 1
        s.rollback()
