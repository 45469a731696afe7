"""A small organisation for the people picker (engine/tasks/people.py), on top of review_org:

  市政府办 (city)            mayor 韩市长
    └ 发改 (fgj)             fg 发改王五, lzy 林志远, head 孙主任 (head, leader_id); responsible leader: chief 曾凡
        └ 发改一科 (fgj1)     clerk 赵科员
  远方局 (far)               stranger 陌生人 — nobody's unit, parent, leader or case

and an instance of three_steps (fill → review → sign_off) at its review (candidates: the reviewer role: fg, zr, st),
claimed by fg. Shared by the engine test and the web test.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine import deploy, org, tasks
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import OrgUnit
from engine.runtime import instances
from engine.tasks.models import HumanTask
from tests.engine.test_operations import THREE_STEPS


@dataclass(frozen=True)
class PeopleWorld:
    instance_id: int
    fill_id: int
    review_id: int


def build(session: Session, review_org: dict[str, Actor]) -> PeopleWorld:
    org.add_unit(session, code="city", name="市政府办")
    session.execute(update(OrgUnit).where(OrgUnit.code == "fgj").values(
        parent_id=session.scalar(select(OrgUnit.id).where(OrgUnit.code == "city"))))
    org.add_unit(session, code="fgj1", name="发改一科", parent_code="fgj")
    org.add_unit(session, code="far", name="远方局")
    org.add_user(session, username="mayor", display_name="韩市长", unit_codes=["city"])
    org.add_user(session, username="lzy", display_name="林志远", unit_codes=["fgj"])
    head = org.add_user(session, username="head", display_name="孙主任", unit_codes=["fgj"], is_head=True)
    chief = org.add_user(session, username="chief", display_name="曾凡")
    org.add_user(session, username="clerk", display_name="赵科员", unit_codes=["fgj1"])
    org.add_user(session, username="stranger", display_name="陌生人", unit_codes=["far"])
    session.execute(update(OrgUnit).where(OrgUnit.code == "fgj").values(leader_id=head.id,
                                                                         responsible_leader_id=chief.id))
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key="three_steps", actor=review_org["applicant"])
    session.flush()
    fill = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "fill"))
    assert fill is not None
    tasks.complete(session, task_id=fill.id, actor=review_org["applicant"], data={"project": "胶州湾新材料项目"})
    review = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "review"))
    assert review is not None
    tasks.claim(session, task_id=review.id, actor=actor_for(session, "fg"))
    session.commit()
    return PeopleWorld(row.id, fill.id, review.id)
