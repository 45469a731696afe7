"""The people picker's scope (engine/tasks/people.py) and its enforcement by 转办 / 委派 / 加签 / 抄送."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.errors import Forbidden
from engine.org.actors import Actor, actor_for
from engine.tasks import collab, operations, people
from engine.tasks.collab_models import CarbonCopy
from engine.tasks.models import HumanTask
from tests.people_world import PeopleWorld, build


@pytest.fixture
def world(session: Session, review_org: dict[str, Actor]) -> PeopleWorld:
    return build(session, review_org)


def names(session: Session, actor: Actor, q: str = "", instance_id: int | None = None) -> set[str]:
    return {p.username for p in people.search(session, actor, q, instance_id, limit=500)}


def test_staff_see_their_units_parent_units_and_leader_chain_only(session: Session, world: PeopleWorld) -> None:
    fg = actor_for(session, "fg")
    assert names(session, fg) == {"lzy", "head", "chief", "mayor"}  # own unit, its parent, head, responsible leader
    on_case = names(session, fg, instance_id=world.instance_id)
    assert {"zr", "st", "applicant"} <= on_case  # the case's handlers (reviewer role, the applicant who filled)
    assert not {"stranger", "clerk", "window", "fg"} & on_case  # another unit, a sub-unit, nobody's case, oneself
    head = actor_for(session, "head")
    assert "clerk" in names(session, head)  # a unit's head reaches its sub-units (their area)


def test_an_applicant_never_lists_the_directory(session: Session, world: PeopleWorld) -> None:
    applicant = actor_for(session, "applicant")
    assert names(session, applicant) == set()
    assert names(session, applicant, "王") == set()
    on_case = names(session, applicant, instance_id=world.instance_id)
    assert {"fg", "zr", "st", "lzy", "head"} <= on_case  # the people of the units handling their case
    assert not {"stranger", "mayor", "chief", "window", "admin", "clerk"} & on_case
    assert people.tree(session, applicant) == []


def test_admins_see_everyone(session: Session, world: PeopleWorld) -> None:
    admin = actor_for(session, "admin")
    assert {"stranger", "clerk", "mayor", "window", "applicant"} <= names(session, admin)
    groups = people.tree(session, admin)
    order = [g.name for g in groups]
    assert order.index("市政府办") < order.index("发改") < order.index("发改一科")  # the unit tree, parents first
    assert [g.depth for g in groups if g.name in ("市政府办", "发改", "发改一科")] == [0, 1, 2]
    assert groups[-1].unit_id is None and "chief" in {p.username for p in groups[-1].people}  # no unit: last


def test_pinyin_initials_full_pinyin_and_readings_find_people(session: Session, world: PeopleWorld) -> None:
    fg = actor_for(session, "fg")
    assert [p.username for p in people.search(session, fg, "lzy")] == ["lzy"]
    assert [p.username for p in people.search(session, fg, "LinZhi")] == ["lzy"]
    assert [p.username for p in people.search(session, fg, "林志")] == ["lzy"]
    assert people.search(session, fg, "lzy")[0].label == "林志远（发改）"
    assert "chief" in {p.username for p in people.search(session, fg, "zf")}  # 曾 read zeng …
    assert "chief" in {p.username for p in people.search(session, fg, "cf")}  # … or ceng
    assert people.search(session, fg, "<script>") == [] and people.search(session, fg, "x" * 100_000) == []
    assert people.initials("林志远") == ("lzy",)


def test_transfer_delegate_cosign_and_cc_outside_the_scope_are_refused(session: Session, world: PeopleWorld) -> None:
    fg = actor_for(session, "fg")
    calls = {
        "to_username": [lambda: operations.transfer(session, task_id=world.review_id, actor=fg, to_username="stranger"),
                        lambda: operations.delegate(session, task_id=world.review_id, actor=fg, to_username="clerk")],
        "usernames": [lambda: operations.add_cosigners(session, task_id=world.review_id, actor=fg,
                                                       usernames=["zr", "stranger"], position="before"),
                      lambda: collab.carbon_copy(session, instance_id=world.instance_id, actor=fg,
                                                 usernames=["window"])],
    }
    for field, attempts in calls.items():
        for attempt in attempts:
            with pytest.raises(Forbidden) as refused:
                attempt()
            session.rollback()
            assert refused.value.details["field"] == field
            assert f"（{field}）" in refused.value.message and "不在您可选择的人员范围内" in refused.value.message
    review = session.get(HumanTask, world.review_id)
    assert review is not None and review.assignee_id == fg.user_id and not review.blocked
    assert session.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.kind == "cosign")) == 0
    assert session.scalar(select(func.count()).select_from(CarbonCopy)) == 0


def test_transfer_within_the_scope_goes_through(session: Session, world: PeopleWorld) -> None:
    fg = actor_for(session, "fg")
    operations.transfer(session, task_id=world.review_id, actor=fg, to_username="mayor")  # the parent unit
    session.commit()
    review = session.get(HumanTask, world.review_id)
    assert review is not None and review.assignee_id == actor_for(session, "mayor").user_id
