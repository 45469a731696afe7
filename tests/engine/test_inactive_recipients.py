"""A deactivated person (停用) never receives new work: not from the engine's assignment, not from 转办/委派/加签/抄送/改派.

On SQLite and PostgreSQL. An `assignee` or `candidates` expression naming a deactivated person is resolved as an unknown
name is (the next candidates, the lane, the initiator), and the process owners are told which element names whom;
an operation naming one is refused naming its field and changes nothing; a person deactivated while a 转办 to them is
under way either refuses the 转办 or takes the task back in the handover, never keeps it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org, tasks
from engine.audit.models import AuditEvent
from engine.deploy import deploy
from engine.errors import EngineError, UserNotFound
from engine.notify.models import OutboxMessage
from engine.org import leaving
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import OrgUnit, User
from engine.runtime import assignment, instances
from engine.tasks import collab, operations, people
from engine.tasks.models import HumanTask
from plan import supervision
from tests import access_world
from tests.engine.conftest import at_once
from tests.engine.test_task_lost_updates import Meanwhile, meanwhile  # noqa: F401 (its fixture)

pytestmark = pytest.mark.usefixtures("review_org")

LANED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="laned" /></bpmn:collaboration>
  <bpmn:process id="laned" name="发改审查" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l1" name="发改">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>review</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="review" name="发改审查">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="assignee" value="who" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""

# No lane: `first` goes to whom `who` names, `then` to nobody named (the initiator, 发起人).
PLAIN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="plain" name="核对" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="first" name="初核">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="candidates" value="who" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="then" name="复核">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="first" />
    <bpmn:sequenceFlow id="f2" sourceRef="first" targetRef="then" />
    <bpmn:sequenceFlow id="f3" sourceRef="then" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _id(s: Session, username: str) -> int:
    found = s.scalar(select(User.id).where(User.username == username))
    assert found is not None, username
    return found


def _deactivate(s: Session, username: str) -> None:
    leaving.deactivate_user(s, user_id=_id(s, username), actor=actor_for(s, "admin"))
    s.commit()


@pytest.fixture
def owner(session: Session) -> int:
    """A process owner (流程管理员), who is told when a process names a deactivated person; the two processes."""
    org.add_role(session, code="process_owner", name="流程管理员")
    po = org.add_user(session, username="po", display_name="流程管理员甲", role_codes=["process_owner"])
    deploy(session, {"laned.bpmn": LANED.encode(), "plain.bpmn": PLAIN.encode()}, actor=SYSTEM)
    session.commit()
    return po.id


def _open(s: Session, instance_id: int, bpmn_id: str) -> HumanTask:
    s.expire_all()
    task = s.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.bpmn_id == bpmn_id,
                                            HumanTask.state.in_(("ready", "suspended"))))
    assert task is not None, bpmn_id
    return task


def _told(s: Session, user_id: int) -> list[str]:
    return [f"{m.payload['title']}\n{m.payload.get('body') or ''}" for m in s.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "in_app").order_by(OutboxMessage.id))
        if m.payload.get("user_id") == user_id]


def _notices(s: Session, instance_id: int) -> list[dict[str, Any]]:
    return [e.after for e in s.scalars(select(AuditEvent).where(
        AuditEvent.stream == f"instance:{instance_id}", AuditEvent.action == "task.assignee_inactive")
        .order_by(AuditEvent.seq))]


def _unknown(s: Session, instance_id: int) -> list[dict[str, Any]]:
    return [e.after for e in s.scalars(select(AuditEvent).where(
        AuditEvent.stream == f"instance:{instance_id}", AuditEvent.action == "task.assignee_unknown")
        .order_by(AuditEvent.seq))]


# -- the engine's assignment ---------------------------------------------------------------------------------------

def test_a_lane_task_whose_assignee_is_deactivated_goes_to_the_lane_and_the_owner_is_told(
        session: Session, owner: int) -> None:
    _deactivate(session, "fg")
    row = instances.start(session, process_key="laned", actor=actor_for(session, "applicant"), data={"who": "fg"})
    session.commit()
    assert row.status == "running"  # as for a name nobody has: no incident, the next way applies
    task = _open(session, row.id, "review")
    fgj = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "fgj"))
    assert task.assignee_id is None and task.owner_id is None and task.state == "ready"
    assert [(c.user_id, c.org_unit_id) for c in task.candidates] == [(None, fgj)]  # the lane 发改
    [notice] = _notices(session, row.id)
    assert notice["bpmn_id"] == "review" and notice["property"] == "assignee" and notice["username"] == "fg"
    [told] = _told(session, owner)
    assert "review" in told and "fg" in told and "发改王五" in told and "已停用" in told
    assert _told(session, _id(session, "fg")) == []
    # A name nobody has goes the same way, and is told too (task.assignee_unknown), not dropped silently.
    other = instances.start(session, process_key="laned", actor=actor_for(session, "applicant"),
                            data={"who": "nobody"})
    session.commit()
    assert [(c.user_id, c.org_unit_id) for c in _open(session, other.id, "review").candidates] == [(None, fgj)]
    assert _notices(session, other.id) == []
    assert _unknown(session, other.id) == [
        {"bpmn_id": "review", "property": "assignee", "usernames": ["nobody"], "count": 1}]
    told = _told(session, owner)[1:]
    assert len(told) == 1 and "review" in told[0] and "nobody" in told[0] and "不存在" in told[0]


def test_an_active_assignee_is_still_assigned(session: Session, owner: int) -> None:
    row = instances.start(session, process_key="laned", actor=actor_for(session, "applicant"), data={"who": "fg"})
    session.commit()
    assert _open(session, row.id, "review").assignee_id == _id(session, "fg") and _notices(session, row.id) == []


def test_candidates_drop_a_deactivated_person_and_one_left_alone_falls_back_to_the_initiator(
        session: Session, owner: int) -> None:
    _deactivate(session, "fg")
    both = instances.start(session, process_key="plain", actor=actor_for(session, "applicant"),
                           data={"who": ["fg", "zr"]})
    alone = instances.start(session, process_key="plain", actor=actor_for(session, "applicant"), data={"who": "fg"})
    session.commit()
    assert [c.user_id for c in _open(session, both.id, "first").candidates] == [_id(session, "zr")]
    assert [c.user_id for c in _open(session, alone.id, "first").candidates] == [_id(session, "applicant")]
    assert [n["property"] for n in _notices(session, both.id)] == ["candidates"]
    assert [n["username"] for n in _notices(session, alone.id)] == ["fg"]


def test_a_deactivated_initiator_is_not_the_fallback_the_task_waits_for_an_administrator(
        session: Session, owner: int) -> None:
    row = instances.start(session, process_key="plain", actor=actor_for(session, "applicant"), data={"who": "zr"})
    session.commit()
    first = _open(session, row.id, "first")
    _deactivate(session, "applicant")
    tasks.complete(session, task_id=first.id, actor=actor_for(session, "zr"), data={})
    session.commit()
    then = _open(session, row.id, "then")
    assert then.assignee_id is None and list(then.candidates) == []  # administrators see it and 改派 it
    [notice] = _notices(session, row.id)
    assert notice["bpmn_id"] == "then" and notice["property"] == "initiator" and notice["username"] == "applicant"
    assert any("applicant" in t for t in _told(session, owner))


def test_unknown_candidates_are_told_once_per_element_and_names_that_resolve_are_not(
        session: Session, owner: int) -> None:
    """A unit code, a role and a person resolve; a deactivated person is told as such; a name left empty (None, "")
    is no name; the rest are unknown: one event and one note per element and property, naming them."""
    _deactivate(session, "fg")
    row = instances.start(session, process_key="plain", actor=actor_for(session, "applicant"),
                          data={"who": ["zr", "fgj", "nobody", "fg", None, "", "ghost", "nobody"]})
    session.commit()
    task = _open(session, row.id, "first")
    assert [c.user_id for c in task.candidates if c.user_id] == [_id(session, "zr")]
    assert [n["username"] for n in _notices(session, row.id)] == ["fg"]
    assert _unknown(session, row.id) == [
        {"bpmn_id": "first", "property": "candidates", "usernames": ["nobody", "ghost"], "count": 2}]
    unknown = [t for t in _told(session, owner) if "不存在" in t]
    assert len(unknown) == 1 and "nobody" in unknown[0] and "ghost" in unknown[0] and "first" in unknown[0]
    assert "zr" not in unknown[0] and "fgj" not in unknown[0]


def test_a_task_whose_every_name_is_unknown_falls_back_to_the_initiator_and_the_owner_learns_why(
        session: Session, owner: int) -> None:
    row = instances.start(session, process_key="plain", actor=actor_for(session, "applicant"),
                          data={"who": ["Zhang.San", "lisi"]})
    session.commit()
    assert row.status == "running"  # as before: no incident, the initiator takes it
    assert [c.user_id for c in _open(session, row.id, "first").candidates] == [_id(session, "applicant")]
    [event] = _unknown(session, row.id)
    assert event["usernames"] == ["Zhang.San", "lisi"] and event["count"] == 2
    [told] = _told(session, owner)
    assert "Zhang.San" in told and "lisi" in told and "plain" in told and "first" in told


def test_a_hostile_owner_cannot_make_the_notice_huge_nor_forge_its_lines(session: Session, owner: int) -> None:
    """MAX_NAMES names of 1,500 characters each, with markup and line breaks: the event and the note name the first
    few, each cut short and on one line, and count the rest; nothing else is written per name."""
    hostile = [f"x{i}<script>alert(1)</script>\n请联系 evil@example.com" + "y" * 1_500
               for i in range(assignment.MAX_NAMES)]
    before = session.scalar(select(func.count()).select_from(OutboxMessage))
    row = instances.start(session, process_key="plain", actor=actor_for(session, "applicant"), data={"who": hostile})
    session.commit()
    assert [c.user_id for c in _open(session, row.id, "first").candidates] == [_id(session, "applicant")]
    [event] = _unknown(session, row.id)
    assert event["count"] == assignment.MAX_NAMES
    assert 0 < len(event["usernames"]) <= assignment.MAX_TOLD < assignment.MAX_NAMES
    assert all(len(n) <= assignment.NAME_TOLD_CHARS + 1 and "\n" not in n for n in event["usernames"])
    assert event["usernames"][0].startswith("x0<script>")  # told as it is: pages escape it (tests/web)
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) - before == 1  # one note, one owner
    [told] = _told(session, owner)
    assert len(told) < 2_000 and told.count("\n") == 1  # the title, then the body: no line from the names
    assert f"{assignment.MAX_NAMES}" in told


# -- operations naming a deactivated person ------------------------------------------------------------------------

Refusal = Callable[[Session, access_world.Situation], Any]
NAMING: dict[str, tuple[str, Refusal]] = {
    "transfer": ("to_username", lambda s, x: operations.transfer(
        s, task_id=x.task_id, actor=actor_for(s, "fg"), to_username="head")),
    "delegate": ("to_username", lambda s, x: operations.delegate(
        s, task_id=x.task_id, actor=actor_for(s, "fg"), to_username="head")),
    "cosign": ("usernames", lambda s, x: operations.add_cosigners(
        s, task_id=x.task_id, actor=actor_for(s, "fg"), usernames=["zr", "head"], position="before")),
    "cc": ("usernames", lambda s, x: collab.carbon_copy(
        s, instance_id=_instance_of(s, x.task_id), actor=actor_for(s, "fg"), usernames=["head"])),
    "reassign": ("to_username", lambda s, x: supervision.reassign(
        s, actor=actor_for(s, "admin"), object_type="task", object_id=x.task_id, to_username="head", seen=None)),
}


def _instance_of(s: Session, task_id: int) -> int:
    found = s.scalar(select(HumanTask.instance_id).where(HumanTask.id == task_id))
    assert found is not None
    return found


@pytest.mark.parametrize("operation", sorted(NAMING))
def test_naming_a_deactivated_person_is_refused_naming_the_field_and_changes_nothing(
        session: Session, operation: str) -> None:
    access_world.prepare(session)
    where = access_world.build(session, "holder")  # fg holds the review; head (发改局长) is in fg's scope
    _deactivate(session, "head")
    before = session.scalar(select(func.count()).select_from(AuditEvent))
    field, call = NAMING[operation]
    with pytest.raises(UserNotFound) as caught:
        call(session, where)
    session.rollback()
    message = str(caught.value)
    assert caught.value.details.get("field") == field and f"（{field}）" in message
    assert "已停用" in message and "head" in message and "发改局长" in message
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before
    task = session.get(HumanTask, where.task_id)
    assert task is not None and task.assignee_id == _id(session, "fg")
    assert session.scalar(select(func.count()).select_from(HumanTask).where(
        HumanTask.assignee_id == _id(session, "head"))) == 0


def test_a_person_deactivated_after_the_page_showed_them_is_refused_at_submit(session: Session) -> None:
    access_world.prepare(session)
    where = access_world.build(session, "holder")
    instance_id = _instance_of(session, where.task_id)
    shown = {p.username for g in people.tree(session, actor_for(session, "fg"), instance_id) for p in g.people}
    assert "head" in shown  # the 转办 page offered 发改局长
    _deactivate(session, "head")
    assert "head" not in {p.username for g in people.tree(session, actor_for(session, "fg"), instance_id)
                          for p in g.people}  # a page loaded now no longer offers him
    with pytest.raises(UserNotFound) as caught:
        operations.transfer(session, task_id=where.task_id, actor=actor_for(session, "fg"), to_username="head")
    session.rollback()
    assert caught.value.details.get("field") == "to_username"


# -- two at once ----------------------------------------------------------------------------------------------------

def _holder(factory: sessionmaker[Session], task_id: int) -> tuple[int | None, bool]:
    with factory() as s:
        task = s.get(HumanTask, task_id)
        head = s.scalar(select(User).where(User.username == "head"))
        assert task is not None and head is not None
        return task.assignee_id, task.assignee_id == head.id and not head.is_active


def _transfer(factory: sessionmaker[Session], task_id: int) -> object:
    with factory() as s:
        try:
            operations.transfer(s, task_id=task_id, actor=actor_for(s, "fg"), to_username="head")
            s.commit()
            return "done"
        except EngineError as exc:
            s.rollback()
            return exc


def test_deactivated_while_a_transfer_to_them_is_under_way_they_do_not_keep_it(
        factory: sessionmaker[Session], session: Session, meanwhile: Meanwhile) -> None:  # noqa: F811
    """fg's 转办 to head has read head (active) when an administrator deactivates head: the deactivation waits for
    the 转办 and then hands the task over, instead of missing it and leaving it with a person who cannot log in."""
    access_world.prepare(session)
    where = access_world.build(session, "holder")
    session.close()
    meanwhile.at(people, "require_in_scope", lambda s: leaving.deactivate_user(
        s, user_id=_id(s, "head"), actor=actor_for(s, "admin")))
    assert _transfer(factory, where.task_id) == "done"
    assert meanwhile.join() == ["done"]
    assignee, kept_by_inactive = _holder(factory, where.task_id)
    assert not kept_by_inactive and assignee is None  # back to its candidates, audited as a handover


def test_a_transfer_waiting_for_the_deactivation_is_refused(
        factory: sessionmaker[Session], session: Session, meanwhile: Meanwhile) -> None:  # noqa: F811
    access_world.prepare(session)
    where = access_world.build(session, "holder")
    session.close()
    meanwhile.at(leaving.handover, "hand_over", lambda s: operations.transfer(
        s, task_id=where.task_id, actor=actor_for(s, "fg"), to_username="head"))
    with factory() as s:
        leaving.deactivate_user(s, user_id=_id(s, "head"), actor=actor_for(s, "admin"))
        s.commit()
    [outcome] = meanwhile.join()
    assert isinstance(outcome, UserNotFound) and outcome.details.get("field") == "to_username", outcome
    assert _holder(factory, where.task_id)[0] == _id(session, "fg")


def test_a_transfer_and_a_deactivation_at_once_never_leave_the_task_with_the_deactivated(
        factory: sessionmaker[Session], session: Session) -> None:
    access_world.prepare(session)
    where = access_world.build(session, "holder")
    session.close()
    outcomes: list[object] = [None, None]

    def work(i: int) -> None:
        if i == 0:
            outcomes[0] = _transfer(factory, where.task_id)
            return
        with factory() as s:
            leaving.deactivate_user(s, user_id=_id(s, "head"), actor=actor_for(s, "admin"))
            s.commit()
            outcomes[1] = "done"

    assert at_once(2, work) == [None, None]
    assert outcomes[1] == "done" and (outcomes[0] == "done" or isinstance(outcomes[0], UserNotFound)), outcomes
    assert not _holder(factory, where.task_id)[1]


def test_a_step_sent_back_to_someone_deactivated_since_goes_to_its_candidates(session: Session, owner: int) -> None:
    """退回 reopens a step for whoever did it; done by 张三, since deactivated, it goes to the step's lane instead."""
    from engine.tasks import sendback
    access_world.prepare(session)
    where = access_world.build(session, "holder")  # fill done by applicant; fg holds the review
    _deactivate(session, "applicant")
    reopened = sendback.send_back(session, task_id=where.task_id, actor=actor_for(session, "fg"), to="previous",
                                  reason="材料不全")
    session.commit()
    session.refresh(reopened)
    assert reopened.bpmn_id == "fill" and reopened.assignee_id is None
    assert _id(session, "applicant") not in {c.user_id for c in reopened.candidates}
    assert all("退回" not in t for t in _told(session, _id(session, "applicant")))  # nobody told who cannot log in
