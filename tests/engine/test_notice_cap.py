"""A process owner's BPMN cannot make the engine send notices without bound: a loop whose user task an interrupting
timer cancels every minute tells its holder each time (任务已取消). Past JZFLOW_NOTICE_CAP_INSTANCE_HOUR notices of one
instance in an hour, or JZFLOW_NOTICE_CAP_RECIPIENT_HOUR to one person, nothing more is queued: the process owners
are told once, the count of those dropped is kept for ops (jzflow_notices_dropped), and the person's notices arrive
until the cap. On SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import clock, deploy, notify, org
from engine.notify import quota
from engine.notify.models import NoticeCount, OutboxMessage
from engine.org.actors import SYSTEM, actor_for
from engine.runtime import instances, timers

LOOP = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="t">
  <bpmn:process id="nagging" name="反复提醒" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:exclusiveGateway id="again"><bpmn:incoming>f1</bpmn:incoming><bpmn:incoming>f3</bpmn:incoming>
      <bpmn:outgoing>f4</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:userTask id="review" name="审查"><bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="tick" attachedToRef="review" cancelActivity="true"><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition id="td"><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"PT1M"</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="again" />
    <bpmn:sequenceFlow id="f4" sourceRef="again" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="tick" targetRef="again" />
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def world(session: Session, frozen: Any) -> dict[str, int]:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_role(session, code="process_owner", name="流程管理员")
    owner = org.add_user(session, username="po", display_name="流程管理员甲", role_codes=["process_owner"])
    zhang = org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"])
    deploy.deploy(session, {"nagging.bpmn": LOOP.encode()}, actor=SYSTEM)
    session.commit()
    return {"owner": owner.id, "zhang": zhang.id}


def _tick(session: Session, times: int) -> None:
    for _ in range(times):
        clock.advance(timedelta(seconds=61))
        for instance_id in timers.due_ids(session, now=clock.now()):
            assert timers.fire_instance(session, instance_id, now=clock.now())
        session.commit()


def _told(session: Session, user_id: int, kind: str) -> int:
    return sum(1 for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
               if m.payload.get("user_id") == user_id and m.payload.get("kind") == kind)


def test_a_looping_timer_fills_the_outbox_only_to_the_instance_cap(session: Session, world: dict[str, int],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_INSTANCE_HOUR", "5")
    instances.start(session, process_key="nagging", actor=actor_for(session, "zhang"))
    session.commit()
    _tick(session, 12)  # twelve tasks cancelled within the hour
    assert _told(session, world["zhang"], "task_cancelled") == 5  # his own work's notices arrive until the cap
    assert _told(session, world["owner"], "notice_cap") == 1  # told once, however many more are dropped
    assert quota.dropped(session, since=clock.now() - timedelta(hours=2)) == 7
    assert _told(session, world["zhang"], quota.SUMMARY_KIND) == 1  # he learns once that more were not sent
    clock.advance(timedelta(hours=1))
    _tick(session, 7)  # a new hour: room again, and the owner is not told again
    assert _told(session, world["zhang"], "task_cancelled") == 10
    assert _told(session, world["owner"], "notice_cap") == 1
    assert _told(session, world["zhang"], quota.SUMMARY_KIND) == 2  # the new hour's drops: its own summary
    outbox = session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "in_app"))
    assert outbox == 13


def test_one_person_is_sent_at_most_the_recipient_cap_an_hour(session: Session, world: dict[str, int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "3")
    for _ in range(3):  # three instances: each below its own cap, together past his
        instances.start(session, process_key="nagging", actor=actor_for(session, "zhang"))
    session.commit()
    _tick(session, 2)
    assert _told(session, world["zhang"], "task_cancelled") == 3
    assert _told(session, world["owner"], "notice_cap") == 1
    assert quota.dropped(session, since=clock.now() - timedelta(hours=2)) == 3


def test_notices_of_the_engine_services_count_and_repeats_do_not(session: Session, world: dict[str, int],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "3")
    zhang = world["zhang"]
    row = instances.start(session, process_key="nagging", actor=actor_for(session, "zhang"))
    for key in ("urge:1", "urge:1", "urge:2"):
        notify.send(session, notify.Note(user_id=zhang, kind="urge", title="催办", key=key, instance_id=row.id))
    for key in ("plan:1", "plan:2", "plan:3"):  # about no instance (a plan item's 督办): counted for the person alone
        notify.send(session, notify.Note(user_id=zhang, kind="urge", title="督办", key=key))
    notify.send(session, notify.Note(user_id=zhang, kind="urge", title="催办", key="urge:3", instance_id=row.id))
    session.commit()
    assert _told(session, zhang, "urge") == 3  # the repeated urge:1 was no new notice: it took no room
    assert quota.dropped(session, since=clock.now() - timedelta(hours=1)) == 3
    counted = {scope: sent for scope, sent in session.execute(select(NoticeCount.scope, NoticeCount.sent))}
    assert counted == {f"instance:{row.id}": 2, f"user:{zhang}": 3}  # the plan's notices took no room of the instance


def test_the_caps_have_sane_defaults_and_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import config
    settings = config.load()
    assert settings.notice_cap_instance_hour >= 100 and settings.notice_cap_recipient_hour >= 60
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_INSTANCE_HOUR", "0")
    with pytest.raises(config.SettingInvalid, match="JZFLOW_NOTICE_CAP_INSTANCE_HOUR"):
        config.load()
