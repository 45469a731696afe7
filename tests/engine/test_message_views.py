"""消息与信号's read model (engine/runtime/message_views.py): who may read, filters, pages. SQLite and PostgreSQL.

Process owner 甲 deploys the 补正 case (msg_case); the signal processes, the message start and the process that
throws `supplement` (msg_sender) come from the command line, with no deployer. Those who may read see all of it.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy, org
from engine.errors import Forbidden, InvalidInput
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, message_views, message_worker, messages, signals
from engine.runtime.message_models import BpmnMessage
from tests.conftest import read_fixture_dir


def _bundle(*names: str) -> dict[str, bytes]:
    return {k: v for k, v in read_fixture_dir("messages").items() if k in names or k.endswith(".json")}


ROLES = {"process_owner": "流程管理员", "auditor": "审计督查", "city_leader": "市级领导", "leader": "领导",
         "applicant": "项目单位", "clerk": "办事员"}
PEOPLE = {"jia": "process_owner", "yi": "process_owner", "qian": "auditor", "wang": "city_leader", "sun": "leader",
          "zhang": "applicant", "clerk": "clerk"}


@pytest.fixture
def people(session: Session) -> dict[str, Actor]:
    for code, name in ROLES.items():
        org.add_role(session, code=code, name=name)
    for username, role in PEOPLE.items():
        org.add_user(session, username=username, display_name=username, role_codes=[role])
    org.add_user(session, username="root", display_name="管理员", is_admin=True)
    session.commit()
    found = {u: actor_for(session, u) for u in (*PEOPLE, "root")}
    deploy.deploy(session, _bundle("messages.bpmn"), actor=found["jia"], check_lanes=False)
    deploy.deploy(session, _bundle("signals.bpmn", "started.bpmn", "sender.bpmn"), actor=SYSTEM, check_lanes=False)
    session.commit()
    return found


def _ids(page: message_views.MessagePage | message_views.SignalPage) -> list[int]:
    return [r.id for r in page.rows]


def test_process_owners_auditors_and_admins_read_and_nobody_else(session: Session,
                                                                  people: dict[str, Actor]) -> None:
    for who in ("jia", "yi", "qian", "root"):
        message_views.check_reader(session, people[who])
    for who in ("wang", "sun", "zhang", "clerk"):  # city leader, leader, applicant, staff
        with pytest.raises(Forbidden):
            message_views.check_reader(session, people[who])
    assert message_views.message_names(session) == ["application_filed", "supplement", "withdraw"]


def test_every_message_shows_where_it_went_and_where_it_came_from(session: Session,
                                                                   people: dict[str, Actor]) -> None:
    root = people["root"]
    waiting = instances.start(session, process_key="msg_case", actor=SYSTEM, data={"application_id": 5, "resumed": 0})
    thrower = instances.start(session, process_key="msg_sender", actor=SYSTEM, data={"application_id": 5, "pages": 1})
    session.commit()
    thrown = session.scalar(select(BpmnMessage).where(BpmnMessage.source_instance_id == thrower.id))
    assert thrown is not None and thrown.status == "pending"
    message_worker.route_pending(session, thrown.id)
    kept = messages.publish(session, name="withdraw", actor=root, business_key="NOBODY", ttl=60)
    started = messages.publish(session, name="application_filed", actor=root, payload={"project": "x"})
    session.commit()
    assert (thrown.status, thrown.instance_id) == ("delivered", waiting.id)
    page = message_views.recent_messages(session, message_views.MessageFilter())
    assert _ids(page) == [started.id, kept.id, thrown.id]
    by_id = {r.id: r for r in page.rows}
    row = by_id[thrown.id]  # thrown by a process deployed from the command line, caught by 甲's
    assert (row.state, row.instance_id, row.source_instance_id, row.sender) == ("delivered", waiting.id, thrower.id,
                                                                                None)
    assert row.correlation == {"application_id": "5"}
    assert (by_id[kept.id].state, by_id[kept.id].instance_id, by_id[kept.id].sender) == ("buffered", None, "管理员")
    assert by_id[started.id].state == "started" and by_id[started.id].instance_id is not None


def test_state_filters_and_a_buffered_message_past_its_time_reads_expired(session: Session,
                                                                          people: dict[str, Actor]) -> None:
    root = people["root"]
    short = messages.publish(session, name="withdraw", actor=root, business_key="A", ttl=60)
    long = messages.publish(session, name="withdraw", actor=root, business_key="B", ttl=3600)
    session.commit()

    def ids(state: str | None = None, name: str | None = None) -> list[int]:
        return _ids(message_views.recent_messages(session, message_views.message_filter(name, state)))

    assert ids("buffered") == [long.id, short.id] and ids("expired") == []
    clock.freeze(clock.now() + timedelta(seconds=61))
    assert ids("buffered") == [long.id] and ids("expired") == [short.id]
    assert message_views.recent_messages(session, message_views.MessageFilter()).rows[1].state == "expired"
    assert ids(name="withdraw") == [long.id, short.id] and ids(name="supplement") == []
    for bad, field in ((("x", "bogus"), "state"), (("长" * 201, None), "name")):
        with pytest.raises(InvalidInput) as refused:
            message_views.message_filter(*bad)
        assert refused.value.details["field"] == field
    with pytest.raises(InvalidInput):
        message_views.check_kind("queue")


def test_pages_are_bounded_and_continue_below_the_last_id(session: Session, people: dict[str, Actor]) -> None:
    root = people["root"]
    made = [messages.publish(session, name="withdraw", actor=root, business_key=f"K{i}", ttl=60).id for i in range(5)]
    session.commit()
    every = message_views.MessageFilter()
    first = message_views.recent_messages(session, every, limit=2)
    assert _ids(first) == made[:-3:-1] and first.next_after == made[-2]
    second = message_views.recent_messages(session, every, after=first.next_after, limit=2)
    third = message_views.recent_messages(session, every, after=second.next_after, limit=2)
    assert _ids(first) + _ids(second) + _ids(third) == made[::-1] and third.next_after is None
    assert len(message_views.recent_messages(session, every, limit=10**9).rows) == 5  # clamped to 200
    assert message_views.recent_messages(session, every, limit=-3).rows[0].id == made[-1]  # at least one
    assert message_views.recent_messages(session, every, after=0).rows == []


def test_waiting_catches_by_name_and_every_delivery_of_a_signal_counted(session: Session,
                                                                         people: dict[str, Actor]) -> None:
    root = people["root"]
    cases = [instances.start(session, process_key="msg_case", actor=SYSTEM, data={"application_id": i, "resumed": 0}).id
             for i in (1, 2)]
    waits = [instances.start(session, process_key="sig_wait", actor=SYSTEM, data={"resumed": 0}).id for _ in range(3)]
    session.commit()
    out = signals.broadcast(session, name="plan_revised", actor=root, payload={})
    session.commit()
    signals.deliver_one(session, signals.pending_ids(session, limit=1)[0])
    session.commit()
    assert [(w.kind, w.name, w.catches, w.instances) for w in message_views.waiting_names(session)] == [
        ("message", "supplement", 2, 2), ("signal", "plan_revised", 2, 2)]
    assert [w.name for w in message_views.waiting_names(session, kind="signal")] == ["plan_revised"]
    page = message_views.waiting(session, kind="message", name="supplement", limit=1)
    assert [r.instance_id for r in page.rows] == [cases[0]] and page.next_after is not None
    rest = message_views.waiting(session, kind="message", name="supplement", after=page.next_after)
    assert [r.instance_id for r in rest.rows] == [cases[1]] and rest.next_after is None
    still = message_views.waiting(session, kind="signal", name="plan_revised").rows
    assert len(still) == 2 and {r.instance_id for r in still} < set(waits)  # one resumed already
    shown = message_views.recent_signals(session).rows
    assert [(s.id, s.done, s.pending, s.total) for s in shown] == [(out.id, 1, 2, 3)]
    assert shown[0].started_instance_id == out.started[0]  # the signal start process (deployed with no deployer)
    assert message_views.recent_signals(session, name="plan_revised").rows[0].id == out.id
    assert message_views.recent_signals(session, name="other").rows == []
