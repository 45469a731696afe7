"""The 迁移实例 page's bulk migration and a message reaching one of its instances at once (PostgreSQL: row locks).

`versions.migrate` locks every instance of its list in one statement, in id order, before it loads any. Whatever
else locks more than one instance in a transaction must not take them in another order, or the two wait for each
other until PostgreSQL ends one as a deadlock (a 500 for the page, or a message routed again later).

- A completion that throws a message locks only its own instance: the message is queued and routed after the commit
  by the outbox job, whose transaction locks only the instance it resumes (`messages.deliver_to`, FOR UPDATE).
- A message published by a user walks the waiting instances it matches oldest subscription first, each locked to
  look whether it may take the message (`messageSenders`: initiator). One that may not was let go with its lock still
  held (its savepoint released, not rolled back) while the next was locked: two instances, in subscription order, not
  id order. Against the migration holding the lower id and waiting for the higher, that was a deadlock. Now a
  candidate that does not take the message is let go with its lock (the savepoint rolled back): the walk holds one
  instance at a time.
- A person leaving (停用) hands over their open task rows, locked in task id order across instances, without their
  instances: holding an older row of a later instance, it waited for a newer row of an earlier one the migration had
  rewritten, while the migration waited for the older row: a deadlock. Now it share-locks those instances first, in
  id order (`handover.lock_instances`), as a submission takes its instance before its task's row.
- One of the page's instances held by a long transaction kept the page waiting as long as that lasted; now it is
  named busy after LOCK_WAIT_SECONDS (409, try again) and none is moved.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, jobs, org, runtime, tasks
from engine.deploy import versions
from engine.errors import InstanceBusy
from engine.notify.models import OutboxMessage
from engine.org import leaving
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, messages
from engine.runtime.message_models import BpmnMessage
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.engine.test_lock_order import _race, _verified
from tests.engine.test_messages import MESSAGES, resumed_count
from tests.engine.test_task_lost_updates import Meanwhile, Work, meanwhile  # noqa: F401 (its fixture)

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

RECEIVERS = 12  # instances on the page's list; the one the message is for sits in the middle
ROUNDS = 8
WALKS = 16  # rounds of the withdrawal's race, the migration begun a little later each second round

# start → confirm (the starter's user task) → send (throws `supplement` to the case with its application_id) → end
NOTIFIER = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="notify_defs" targetNamespace="http://jzflow/t">
  <bpmn:message id="m_supplement" name="supplement" />
  <bpmn:correlationProperty id="application_id" name="申请编号">
    <bpmn:correlationPropertyRetrievalExpression messageRef="m_supplement">
      <bpmn:formalExpression>application_id</bpmn:formalExpression>
    </bpmn:correlationPropertyRetrievalExpression>
  </bpmn:correlationProperty>
  <bpmn:process id="msg_notify" name="补正通知" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="confirm" />
    <bpmn:userTask id="confirm" name="确认补正材料"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="confirm" targetRef="send" />
    <bpmn:intermediateThrowEvent id="send" name="发送补正材料">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_supplement">
        <bpmn:extensionElements>
          <spiffworkflow:messagePayload>{"application_id": application_id, "pages": pages}</spiffworkflow:messagePayload>
        </bpmn:extensionElements>
      </bpmn:messageEventDefinition>
    </bpmn:intermediateThrowEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="send" targetRef="end" />
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""
_apps = itertools.count(1000)


@pytest.fixture(autouse=True)
def _fresh_spec_cache() -> Iterator[None]:
    runtime._spec_cache.clear()  # version ids repeat across the throwaway databases
    yield
    runtime._spec_cache.clear()


def _redeploy(session: Session) -> int:
    """Deploy msg_case once more (the review renamed, so it is a new version) and return the new version's id."""
    files = {**deploy.read_directory(MESSAGES), "notify.bpmn": NOTIFIER.encode()}
    n = next(_apps)
    files["messages.bpmn"] = files["messages.bpmn"].replace(
        "审核补正材料".encode(), f"审核补正材料（第{n}版）".encode())
    deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    session.commit()
    target = deploy.latest_version(session, "msg_case")
    assert target is not None
    return target.id


def _case(session: Session, actor: Actor, application_id: int, business_key: str | None = None) -> int:
    row = instances.start(session, process_key="msg_case", actor=actor, business_key=business_key,
                          data={"application_id": application_id, "resumed": 0})
    session.commit()
    return row.id


class Thrown(NamedTuple):
    cases: list[int]  # the page's list, ascending
    target: int  # the case the message is for
    application_id: int
    confirm: int  # the notifier's task whose completion throws the message
    version: int  # the id of the version the cases move to


def _thrown(session: Session, review_org: dict[str, Actor]) -> Thrown:
    """RECEIVERS cases waiting for `supplement`, a notifier whose confirm throws it to the middle one, a new version."""
    apps = [next(_apps) for _ in range(RECEIVERS)]
    cases = [_case(session, SYSTEM, a) for a in apps]
    middle = RECEIVERS // 2
    notifier = instances.start(session, process_key="msg_notify", actor=review_org["applicant"],
                               data={"application_id": apps[middle], "pages": 3})
    session.commit()
    confirm = session.scalar(select(HumanTask.id).where(HumanTask.instance_id == notifier.id,
                                                        HumanTask.state == "ready"))
    assert confirm is not None
    target = _redeploy(session)
    session.close()
    return Thrown(cases, cases[middle], apps[middle], confirm, target)


def _migrate(ids: list[int], target: int) -> Work:
    def work(s: Session) -> None:
        report = versions.migrate(s, ids, target, actor_for(s, "admin"))
        assert set(report.migrated) | set(report.refused) == set(ids), report
    return work


def _on(factory: sessionmaker[Session], ids: list[int]) -> dict[int, tuple[int, str]]:
    """Each instance's version id and status."""
    with factory() as s:
        return {i: (v, st) for i, v, st in s.execute(
            select(ProcessInstance.id, ProcessInstance.version_id, ProcessInstance.status)
            .where(ProcessInstance.id.in_(ids)))}


def _ready(factory: sessionmaker[Session], instance_id: int) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(HumanTask.bpmn_id).where(HumanTask.instance_id == instance_id,
                                                              HumanTask.state == "ready")))


def _resumed(factory: sessionmaker[Session], instance_id: int) -> int:
    with factory() as s:
        return resumed_count(s, instance_id)


def _confirm(task_id: int) -> Work:
    return lambda s: tasks.complete(s, task_id=task_id, actor=actor_for(s, "applicant"), data={})


def _no_deadlock(outcomes: list[Any]) -> None:
    assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
    assert None not in outcomes, f"a side hung: {outcomes}"


def _delivered_once(factory: sessionmaker[Session], world: Thrown) -> None:
    """The message resumed its case once, at its first try (no try lost to a deadlock), and every case moved."""
    with factory() as s:
        row = s.scalar(select(BpmnMessage).where(BpmnMessage.name == "supplement",
                                                 BpmnMessage.correlation.contains(str(world.application_id))))
        assert row is not None and (row.status, row.instance_id) == ("delivered", world.target), row
        box = s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"bpmn_message:{row.id}"))
        assert box is not None and box.delivered_at is not None and box.attempts == 1, (box.attempts, box.last_error)
    assert _ready(factory, world.target) == ["review"] and _resumed(factory, world.target) == 1
    assert {v for v, _st in _on(factory, world.cases).values()} == {world.version}
    assert all(_ready(factory, c) == [] for c in world.cases if c != world.target)


@pytest.fixture
def notifying(session: Session, review_org: dict[str, Actor]) -> dict[str, Actor]:
    _redeploy(session)
    return review_org


def test_a_completion_that_throws_to_a_case_being_migrated_never_deadlocks(
        session: Session, factory: sessionmaker[Session], notifying: dict[str, Actor]) -> None:
    """The page moves twelve cases while the notifier's confirm is submitted, started at once in both orders, many
    times: the completion locks only its own instance (the message is queued), so neither waits for the other; the
    outbox job then resumes the case on the version it is on, once."""
    for round_ in range(ROUNDS):
        world = _thrown(session, notifying)
        submit = _confirm(world.confirm)
        migrate = _migrate(world.cases, world.version)
        outcomes = _race(factory, [migrate, submit] if round_ % 2 else [submit, migrate])
        _no_deadlock(outcomes)
        assert outcomes == ["done", "done"], outcomes
        assert jobs.run_outbox(factory) == 1
        _delivered_once(factory, world)
    _verified(factory)


def test_the_outbox_routing_a_thrown_message_to_a_case_being_migrated_never_deadlocks(
        session: Session, factory: sessionmaker[Session], notifying: dict[str, Actor]) -> None:
    """The confirm has been submitted (its message queued); the outbox job routes it while the page moves the twelve
    cases, started at once in both orders: the routing waits for the migration (or it for the routing) and resumes
    the case once, at its first try, on whichever version the case is on."""
    for round_ in range(ROUNDS):
        world = _thrown(session, notifying)
        with factory() as s:
            _confirm(world.confirm)(s)
            s.commit()
        route: Work = lambda s: jobs.run_outbox(factory)  # noqa: E731 (its own transactions)
        migrate = _migrate(world.cases, world.version)
        outcomes = _race(factory, [migrate, route] if round_ % 2 else [route, migrate])
        _no_deadlock(outcomes)
        assert outcomes == ["done", "done"], outcomes
        _delivered_once(factory, world)
    _verified(factory)


class Withdrawals(NamedTuple):
    low: int  # window's case: window withdraws it
    high: int  # applicant's case, at review first: window may not withdraw it (messageSenders: initiator)
    version: int
    key: str


def _withdrawals(session: Session, review_org: dict[str, Actor]) -> Withdrawals:
    """Two cases of one business key at review, window's with the lower id, applicant's with the higher, which
    reached review first: its `withdraw` subscription is the older, so window's withdrawal looks at it first."""
    key = f"APP-{next(_apps)}"
    low_app, high_app = next(_apps), next(_apps)
    low = _case(session, review_org["window"], low_app, key)
    high = _case(session, review_org["applicant"], high_app, key)
    for app in (high_app, low_app):
        messages.publish(session, name="supplement", actor=SYSTEM, correlations={"application_id": app},
                         payload={"pages": 1})
        session.commit()
    target = _redeploy(session)
    session.close()
    return Withdrawals(low, high, target, key)


def _withdraw(key: str) -> Work:
    def work(s: Session) -> None:
        out = messages.publish(s, name="withdraw", actor=actor_for(s, "window"), business_key=key,
                               payload={"why": "重复申报"}, ttl=0)
        assert out.status == "delivered", out
    return work


def _ended(work: Work, ended: list[OperationalError]) -> Work:
    """The work, a database error it meets noted in `ended` (and its transaction rolled back) instead of raised."""
    def caught(s: Session) -> None:
        try:
            work(s)
        except OperationalError as exc:
            s.rollback()
            ended.append(exc)
    return caught


def _late(work: Work, seconds: float) -> Work:
    """The work, begun `seconds` after the barrier (the race's rounds try several interleavings)."""
    def later(s: Session) -> None:
        time.sleep(seconds)
        work(s)
    return later


def _withdrawn_once(factory: sessionmaker[Session], world: Withdrawals, migrated: object) -> None:
    """window's case was withdrawn (once), applicant's still waits at review; the migration moved both, or window's
    was withdrawn before it read it and it said so."""
    on = _on(factory, [world.low, world.high])
    assert on[world.low][1] == "completed" and _ready(factory, world.low) == []
    assert on[world.high] == (world.version, "running") and _ready(factory, world.high) == ["review"]
    with factory() as s:
        rows = list(s.scalars(select(BpmnMessage).where(BpmnMessage.name == "withdraw",
                                                        BpmnMessage.business_key == world.key)))
        assert [(r.status, r.instance_id) for r in rows] == [("delivered", world.low)]
    assert migrated == "done", migrated


def test_a_withdrawal_walking_past_a_case_it_may_not_resume_lets_it_go_before_the_next(
        session: Session, factory: sessionmaker[Session], notifying: dict[str, Actor],
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """window's withdrawal has locked applicant's case (the older subscription, the higher id) and found it may not
    withdraw it when the page moves both: the migration locks window's case (the lower id) and waits for
    applicant's. The withdrawal went on to window's case still holding applicant's: each waited for the other until
    PostgreSQL ended one as a deadlock. Now it has let applicant's case go: the migration moves both, and the
    withdrawal then resumes window's case on the new version."""
    world = _withdrawals(session, notifying)
    ended: list[OperationalError] = []  # what PostgreSQL ended as a deadlock, on either side
    meanwhile.at(messages, "may_deliver", _ended(_migrate([world.low, world.high], world.version), ended), after=True)
    with factory() as s:
        _ended(_withdraw(world.key), ended)(s)
        s.commit()
    assert meanwhile.join() == ["done"]
    assert ended == [], ended
    _withdrawn_once(factory, world, "done")
    _verified(factory)


def test_withdrawals_walking_the_cases_of_a_migration_never_deadlock(
        session: Session, factory: sessionmaker[Session], notifying: dict[str, Actor]) -> None:
    """The withdrawal and the page's migration of both cases, started at once in both orders, many times: never a
    deadlock; the withdrawal reaches window's case once, on whichever version it is on then."""
    for round_ in range(WALKS):
        world = _withdrawals(session, notifying)
        withdraw, migrate = _withdraw(world.key), _migrate([world.low, world.high], world.version)
        migrate = _late(migrate, 0.002 * (round_ // 2))  # the withdrawal holds applicant's case a few ms
        outcomes = _race(factory, [migrate, withdraw] if round_ % 2 else [withdraw, migrate])
        _no_deadlock(outcomes)
        withdrawn, migrated = (outcomes[1], outcomes[0]) if round_ % 2 else (outcomes[0], outcomes[1])
        assert withdrawn == "done", outcomes
        _withdrawn_once(factory, world, migrated)
    _verified(factory)


# --- an instance held by a long transaction ------------------------------------------------------------------------

def _hold(factory: sessionmaker[Session], instance_id: int) -> Session:
    """A transaction that holds the instance's row and does not end (a long job, a stuck request)."""
    holder = factory()
    holder.execute(select(ProcessInstance.id).where(ProcessInstance.id == instance_id).with_for_update())
    return holder


def test_the_page_names_an_instance_held_by_a_long_transaction_busy_and_moves_none(
        session: Session, factory: sessionmaker[Session], notifying: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One of the page's instances is held by a transaction that does not end: the migration waited for it as long
    as that lasted (the page hung). Now it waits LOCK_WAIT_SECONDS, then refuses naming the instance (409
    instance_busy, try again), moves none and keeps none of the others locked; tried again once the holder is done,
    it moves them all, and the session's own lock_timeout is as it was."""
    monkeypatch.setattr(versions, "LOCK_WAIT_SECONDS", 0.5)
    cases = [_case(session, SYSTEM, next(_apps)) for _ in range(3)]
    target = _redeploy(session)
    session.close()
    holder = _hold(factory, cases[1])
    try:
        with factory() as s:
            began = time.monotonic()
            with pytest.raises(InstanceBusy) as busy:
                versions.migrate(s, cases, target, actor_for(s, "admin"))
            assert time.monotonic() - began < 5
            assert busy.value.http_status == 409 and busy.value.code == "instance_busy"
            assert busy.value.details["instance_id"] == cases[1]
            assert f"流程实例 {cases[1]} 正在被其他操作处理，请稍后重试" in busy.value.message
            assert f"instance {cases[1]} is busy, try again" in busy.value.message
            with factory() as other:  # the first case is not left locked by the refused call
                other.execute(text("SET LOCAL lock_timeout = '1s'"))
                other.execute(select(ProcessInstance.id).where(ProcessInstance.id == cases[0]).with_for_update())
            s.rollback()
        assert {v for v, _st in _on(factory, cases).values()} != {target}
    finally:
        holder.rollback()
        holder.close()
    with factory() as s:
        s.execute(text("SET lock_timeout = '20s'"))
        report = versions.migrate(s, cases, target, actor_for(s, "admin"))
        assert report.migrated == cases, report
        assert s.scalar(text("SHOW lock_timeout")) == "20s"
        s.commit()
    assert {v for v, _st in _on(factory, cases).values()} == {target}
    _verified(factory)


# --- a person leaving (停用): their open tasks across instances, handed over ----------------------------------------

TWO_STEPS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="two_defs" targetNamespace="http://jzflow/t">
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="two_steps" /></bpmn:collaboration>
  <bpmn:process id="two_steps" name="两步审查" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l2" name="审批部门"><bpmn:flowNodeRef>fill</bpmn:flowNodeRef><bpmn:flowNodeRef>check</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fill" />
    <bpmn:userTask id="fill" name="填写">{sla}<bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="check" />
    <bpmn:userTask id="check" name="核对">{sla}<bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="check" targetRef="end" />
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""


def _two_steps(sla: str) -> bytes:
    prop = ('<bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property name="sla" '
            f'value="{sla}" /></spiffworkflow:properties></bpmn:extensionElements>') if sla else ""
    return TWO_STEPS.replace("{sla}", prop).encode()


class Leaving(NamedTuple):
    older: int  # the lower instance id, at its second step: the newer task row
    newer: int  # the higher instance id, at its first step: the older task row
    version: int
    leaver: int  # fg's user id: fg has claimed both open steps


def _claim_ready(session: Session, instance_id: int, who: Actor) -> int:
    task = session.scalar(select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready"))
    assert task is not None
    tasks.claim(session, task_id=task, actor=who)
    session.commit()
    return task


def _leaving(session: Session, review_org: dict[str, Actor], who: str = "fg") -> Leaving:
    """Two reviews (审批部门) `who` has claimed, the lower instance one step further on: its open row is the newer
    one. A version with an SLA on both steps (the migration rewrites both rows)."""
    deploy.deploy(session, {"two.bpmn": _two_steps("")}, actor=SYSTEM)
    if who not in review_org:
        org.add_user(session, username=who, display_name=who, unit_codes=["fgj"], role_codes=["reviewer"])
        session.commit()
    fg = actor_for(session, who)
    older = instances.start(session, process_key="two_steps", actor=review_org["applicant"]).id
    newer = instances.start(session, process_key="two_steps", actor=review_org["applicant"]).id
    session.commit()
    tasks.complete(session, task_id=_claim_ready(session, older, fg), actor=fg, data={})
    session.commit()
    assert _claim_ready(session, newer, fg) < _claim_ready(session, older, fg)
    deploy.deploy(session, {"two.bpmn": _two_steps("3wd")}, actor=SYSTEM)
    session.commit()
    target = deploy.latest_version(session, "two_steps")
    assert target is not None and fg.user_id is not None
    session.close()
    return Leaving(older, newer, target.id, fg.user_id)


def _deactivate(user_id: int) -> Work:
    return lambda s: leaving.deactivate_user(s, user_id=user_id, actor=actor_for(s, "admin"), successor="window")


def _handed_over(factory: sessionmaker[Session], world: Leaving) -> None:
    """Both moved with their SLA, both held by window now."""
    assert {v for v, _st in _on(factory, [world.older, world.newer]).values()} == {world.version}
    with factory() as s:
        rows = list(s.scalars(select(HumanTask).where(HumanTask.instance_id.in_([world.older, world.newer]),
                                                      HumanTask.state == "ready").order_by(HumanTask.instance_id)))
        assert [(r.bpmn_id, r.sla) for r in rows] == [("check", "3wd"), ("fill", "3wd")]
        assert {r.assignee_id for r in rows} == {actor_for(s, "window").user_id}, rows


def test_a_person_leaving_while_the_page_moves_their_instances_waits_for_it(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor],
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """The migration has moved the lower instance (its open row, the newer one, rewritten) when fg is deactivated
    (停用, window the successor): the handover locks fg's rows in id order, the older row (the higher instance's)
    first, then waits for the newer; the migration then rewrites the older row."""
    world = _leaving(session, review_org)
    ended: list[OperationalError] = []
    meanwhile.at(versions, "_move", _ended(_deactivate(world.leaver), ended), after=True)
    with factory() as s:
        _ended(_migrate([world.older, world.newer], world.version), ended)(s)
        s.commit()
    assert meanwhile.join() == ["done"]
    assert ended == [], ended
    _handed_over(factory, world)
    _verified(factory)


def test_people_leaving_and_the_page_moving_their_instances_at_once_never_deadlock(
        session: Session, factory: sessionmaker[Session], review_org: dict[str, Actor]) -> None:
    """The 停用 of a reviewer and the migration of the two instances they hold steps of, started at once in both
    orders, many times: never a deadlock; both done whole, whichever went first."""
    for round_ in range(ROUNDS):
        world = _leaving(session, review_org, who=f"leaver{round_}")
        migrate, leave = _migrate([world.older, world.newer], world.version), _deactivate(world.leaver)
        outcomes = _race(factory, [migrate, leave] if round_ % 2 else [leave, migrate])
        _no_deadlock(outcomes)
        assert outcomes == ["done", "done"], outcomes
        _handed_over(factory, world)
    _verified(factory)
