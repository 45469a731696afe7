"""消息与信号's read model (engine/runtime/message_views.py): who reads what, filters, pages. SQLite and PostgreSQL.

甲 deploys the 补正 case (msg_case), 乙 the signal processes and the message start, 丙 the process that throws
`supplement` (msg_sender). A message belongs to the processes it reached, started or came from; one that reached
nobody, to the processes that declare its name; a signal's deliveries are counted for the reader's instances only.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy, org
from engine.errors import Forbidden, InvalidInput
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, message_views, messages, signals
from engine.runtime.message_models import BpmnMessage
from tests.conftest import read_fixture_dir


def _bundle(*names: str) -> dict[str, bytes]:
    return {k: v for k, v in read_fixture_dir("messages").items() if k in names or k.endswith(".json")}


@pytest.fixture
def owners(session: Session) -> dict[str, Actor]:
    org.add_role(session, code="process_owner", name="流程管理员")
    org.add_role(session, code="clerk", name="办事员")
    for username in ("jia", "yi", "bing", "ding"):
        org.add_user(session, username=username, display_name=username, role_codes=["process_owner"])
    org.add_user(session, username="clerk", display_name="办事员", role_codes=["clerk"])
    org.add_user(session, username="root", display_name="管理员", is_admin=True)
    session.commit()
    people = {u: actor_for(session, u) for u in ("jia", "yi", "bing", "ding", "clerk", "root")}
    deploy.deploy(session, _bundle("messages.bpmn"), actor=people["jia"], check_lanes=False)
    deploy.deploy(session, _bundle("signals.bpmn", "started.bpmn"), actor=people["yi"], check_lanes=False)
    deploy.deploy(session, _bundle("sender.bpmn"), actor=people["bing"], check_lanes=False)
    session.commit()
    return people


def _ids(page: message_views.MessagePage | message_views.SignalPage) -> list[int]:
    return [r.id for r in page.rows]


def _scope(session: Session, actor: Actor) -> message_views.Scope:
    return message_views.require_reader(session, actor)


def test_only_admins_and_process_owners_read_and_an_owner_of_nothing_reads_nothing(
        session: Session, owners: dict[str, Actor]) -> None:
    with pytest.raises(Forbidden):
        message_views.require_reader(session, owners["clerk"])
    assert message_views.require_reader(session, owners["root"]).everything
    nothing = _scope(session, owners["ding"])
    assert nothing.owns_nothing()
    messages.publish(session, name="withdraw", actor=owners["root"], business_key="K", ttl=60)
    assert message_views.recent_messages(session, nothing, message_views.MessageFilter()).rows == []
    assert message_views.waiting_names(session, nothing) == []
    assert message_views.recent_signals(session, nothing).rows == []
    jia = _scope(session, owners["jia"])
    assert ("message", "supplement") in jia.names and ("message", "withdraw") in jia.names
    assert not any(kind == "signal" for kind, _name in jia.names)


def test_a_message_belongs_to_where_it_went_where_it_came_from_and_else_to_who_declares_it(
        session: Session, owners: dict[str, Actor]) -> None:
    root = owners["root"]
    waiting = instances.start(session, process_key="msg_case", actor=SYSTEM, data={"application_id": 5, "resumed": 0})
    thrower = instances.start(session, process_key="msg_sender", actor=SYSTEM, data={"application_id": 5, "pages": 1})
    session.commit()
    thrown = session.scalar(select(BpmnMessage).where(BpmnMessage.source_instance_id == thrower.id))
    assert thrown is not None and thrown.status == "pending"
    messages.route_pending(session, thrown.id)
    kept = messages.publish(session, name="withdraw", actor=root, business_key="NOBODY", ttl=60)
    started = messages.publish(session, name="application_filed", actor=root, payload={"project": "x"})
    session.commit()
    assert (thrown.status, thrown.instance_id) == ("delivered", waiting.id)
    every = message_views.MessageFilter()
    seen = {who: _ids(message_views.recent_messages(session, _scope(session, owners[who]), every))
            for who in ("jia", "yi", "bing", "root")}
    assert seen["jia"] == [kept.id, thrown.id]  # reached its instance; declares withdraw
    assert seen["yi"] == [started.id]
    assert seen["bing"] == [thrown.id]  # came from its instance
    assert seen["root"] == [started.id, kept.id, thrown.id]
    row = message_views.recent_messages(session, _scope(session, owners["bing"]), every).rows[0]
    assert (row.state, row.instance_id, row.source_instance_id, row.sender) == ("delivered", waiting.id, thrower.id,
                                                                                None)
    assert row.correlation == {"application_id": "5"}
    assert message_views.message_names(session, _scope(session, owners["yi"])) == ["application_filed"]
    assert message_views.message_names(session, _scope(session, root)) == ["application_filed", "supplement",
                                                                            "withdraw"]


def test_state_filters_and_a_buffered_message_past_its_time_reads_expired(session: Session,
                                                                          owners: dict[str, Actor]) -> None:
    root = owners["root"]
    short = messages.publish(session, name="withdraw", actor=root, business_key="A", ttl=60)
    long = messages.publish(session, name="withdraw", actor=root, business_key="B", ttl=3600)
    session.commit()
    scope = _scope(session, root)

    def ids(state: str | None = None, name: str | None = None) -> list[int]:
        flt = message_views.message_filter(name, state)
        return _ids(message_views.recent_messages(session, scope, flt))

    assert ids("buffered") == [long.id, short.id] and ids("expired") == []
    clock.freeze(clock.now() + timedelta(seconds=61))
    assert ids("buffered") == [long.id] and ids("expired") == [short.id]
    assert message_views.recent_messages(session, scope, message_views.MessageFilter()).rows[1].state == "expired"
    assert ids(name="withdraw") == [long.id, short.id] and ids(name="supplement") == []
    for bad, field in ((("x", "bogus"), "state"), (("长" * 201, None), "name")):
        with pytest.raises(InvalidInput) as refused:
            message_views.message_filter(*bad)
        assert refused.value.details["field"] == field
    with pytest.raises(InvalidInput):
        message_views.check_kind("queue")


def test_pages_are_bounded_and_continue_below_the_last_id(session: Session, owners: dict[str, Actor]) -> None:
    root = owners["root"]
    made = [messages.publish(session, name="withdraw", actor=root, business_key=f"K{i}", ttl=60).id for i in range(5)]
    session.commit()
    scope, every = _scope(session, root), message_views.MessageFilter()
    first = message_views.recent_messages(session, scope, every, limit=2)
    assert _ids(first) == made[:-3:-1] and first.next_after == made[-2]
    second = message_views.recent_messages(session, scope, every, after=first.next_after, limit=2)
    third = message_views.recent_messages(session, scope, every, after=second.next_after, limit=2)
    assert _ids(first) + _ids(second) + _ids(third) == made[::-1] and third.next_after is None
    assert len(message_views.recent_messages(session, scope, every, limit=10**9).rows) == 5  # clamped to 200
    assert message_views.recent_messages(session, scope, every, limit=-3).rows[0].id == made[-1]  # at least one
    assert message_views.recent_messages(session, scope, every, after=0).rows == []


def test_waiting_catches_and_signal_progress_count_the_readers_instances_only(session: Session,
                                                                              owners: dict[str, Actor]) -> None:
    root = owners["root"]
    cases = [instances.start(session, process_key="msg_case", actor=SYSTEM, data={"application_id": i, "resumed": 0}).id
             for i in (1, 2)]
    waits = [instances.start(session, process_key="sig_wait", actor=SYSTEM, data={"resumed": 0}).id for _ in range(3)]
    session.commit()
    out = signals.broadcast(session, name="plan_revised", actor=root, payload={})
    session.commit()
    signals.deliver_one(session, signals.pending_ids(session, limit=1)[0])
    session.commit()
    jia, yi = _scope(session, owners["jia"]), _scope(session, owners["yi"])
    assert [(w.kind, w.name, w.catches, w.instances) for w in message_views.waiting_names(session, jia)] == [
        ("message", "supplement", 2, 2)]
    assert [(w.name, w.instances) for w in message_views.waiting_names(session, yi)] == [("plan_revised", 2)]
    assert message_views.waiting_names(session, yi, kind="message") == []
    page = message_views.waiting(session, jia, kind="message", name="supplement", limit=1)
    assert [r.instance_id for r in page.rows] == [cases[0]] and page.next_after is not None
    rest = message_views.waiting(session, jia, kind="message", name="supplement", after=page.next_after)
    assert [r.instance_id for r in rest.rows] == [cases[1]] and rest.next_after is None
    assert message_views.waiting(session, yi, kind="message", name="supplement").rows == []  # not 乙's instances
    shown = message_views.recent_signals(session, yi).rows
    assert [(s.id, s.done, s.pending, s.total) for s in shown] == [(out.id, 1, 2, 3)]
    assert shown[0].started_instance_id == out.started[0]  # 乙's own signal start process
    admin = message_views.recent_signals(session, _scope(session, root), name="plan_revised").rows
    assert [(s.done, s.pending) for s in admin] == [(1, 2)]
    assert message_views.recent_signals(session, jia).rows == []
    assert len(waits) == 3
