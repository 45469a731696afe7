"""Every notice goes through the cap (engine.notify.core.send_many → engine.notify.quota), whoever causes it.

The inbox operations (转办, 委派, 委派退回, 加签, 催办, 抄送, 退回) queued their in-app notices straight into the outbox,
and a notice about no instance (a plan item's, an administrator's) was not counted at all: a user hammering 催办 or
抄送, or any path but the engine's own, could still flood a person. Now each counts for its person (and its instance,
when it is about one); past the cap it is dropped, counted for ops, and the owners are told once. A task completion
that tells nobody still touches no counter. On SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, notify, org, tasks
from engine.notify import quota
from engine.notify.models import NoticeCount, OutboxMessage
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.tasks import collab, operations, sendback
from tests.engine.conftest import at_once
from tests.engine.test_operations import THREE_STEPS, at_review, open_task


@pytest.fixture
def instance(session: Session, review_org: dict[str, Actor], frozen: Any) -> int:
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key="three_steps", actor=review_org["applicant"])
    session.commit()
    return row.id


def _told(session: Session, user_id: int | None, kind: str) -> int:
    return sum(1 for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
               if m.payload.get("user_id") == user_id and m.payload.get("kind") == kind)


def _fill_up(session: Session, user: Actor, instance_id: int | None = None) -> None:
    """Use up the person's hour (the cap set to one): a notice the old code counted too (about an instance)."""
    assert notify.send(session, notify.Note(user_id=int(user.user_id or 0), kind="info", title="已有通知",
                                            key=f"fill:{user.user_id}", instance_id=instance_id)) == 1


Op = Callable[[Session, int, dict[str, Actor]], None]


def _transfer(session: Session, instance: int, org: dict[str, Actor]) -> None:
    review = at_review(session, instance, org)
    operations.transfer(session, task_id=review.id, actor=org["fg"], to_username="zr", note="请赵六办理")


def _delegate(session: Session, instance: int, org: dict[str, Actor]) -> None:
    review = at_review(session, instance, org)
    operations.delegate(session, task_id=review.id, actor=org["fg"], to_username="zr", note="请先看看")


def _cosign(session: Session, instance: int, org: dict[str, Actor]) -> None:
    review = at_review(session, instance, org)
    operations.add_cosigners(session, task_id=review.id, actor=org["fg"], usernames=["zr"], position="before")


def _carbon_copy(session: Session, instance: int, org: dict[str, Actor]) -> None:
    collab.carbon_copy(session, instance_id=instance, actor=org["admin"], usernames=["zr"], note="请知悉")


def _urge(session: Session, instance: int, org: dict[str, Actor]) -> None:
    review = at_review(session, instance, org)
    operations.transfer(session, task_id=review.id, actor=org["fg"], to_username="zr")  # told: his hour is full
    session.commit()
    operations.urge(session, task_id=review.id, actor=org["applicant"], message="请尽快审查")


def _send_back(session: Session, instance: int, org: dict[str, Actor]) -> None:
    review = at_review(session, instance, org)
    operations.transfer(session, task_id=review.id, actor=org["fg"], to_username="zr")  # told: his hour is full
    session.commit()
    tasks.complete(session, task_id=review.id, actor=org["zr"], data={"ok": True})
    sign_off = open_task(session, instance, "sign_off")
    tasks.claim(session, task_id=sign_off.id, actor=org["boss"])
    session.commit()
    sendback.send_back(session, task_id=sign_off.id, actor=org["boss"], reason="投资额需重新核定")


# (operation, the kind of notice it gives 赵六, whether its own earlier notice (a 转办 to him) fills his hour)
OPERATIONS: dict[str, tuple[Op, str, bool]] = {
    "转办": (_transfer, "task_assigned", False),
    "委派": (_delegate, "task_delegated", False),
    "加签": (_cosign, "task_assigned", False),
    "抄送": (_carbon_copy, "cc", False),
    "催办": (_urge, "urge", True),
    "退回": (_send_back, "task_sent_back", True),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_an_inbox_operation_tells_no_one_past_their_cap(session: Session, instance: int, review_org: dict[str, Actor],
                                                        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "1")
    op, kind, fills_itself = OPERATIONS[name]
    zr = review_org["zr"]
    if not fills_itself:
        _fill_up(session, zr, instance)
    before = _told(session, zr.user_id, kind)
    op(session, instance, review_org)
    session.commit()
    assert _told(session, zr.user_id, kind) == before  # past his cap: not queued
    assert quota.dropped(session, since=clock.now() - timedelta(hours=1)) == 1
    assert _told(session, review_org["admin"].user_id, "notice_cap") == 1  # the owners (here: the admin) told once
    clock.advance(timedelta(hours=1))
    copies = _told(session, zr.user_id, "cc")
    collab.carbon_copy(session, instance_id=instance, actor=review_org["admin"], usernames=["zr"], note="新的一小时")
    session.commit()
    assert _told(session, zr.user_id, "cc") == copies + 1  # a new hour: room again


def test_a_user_hammering_cc_on_one_instance_meets_its_cap(session: Session, instance: int,
                                                           review_org: dict[str, Actor],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_INSTANCE_HOUR", "2")
    for note, who in (("一", "zr"), ("二", "st"), ("三", "boss"), ("四", "fg")):  # four people, each below their cap
        collab.carbon_copy(session, instance_id=instance, actor=review_org["admin"], usernames=[who], note=note)
        session.commit()
    told = sum(_told(session, review_org[u].user_id, "cc") for u in ("zr", "st", "boss", "fg"))
    assert told == 2
    assert session.scalar(select(NoticeCount.dropped).where(NoticeCount.scope == f"instance:{instance}")) == 2
    assert _told(session, review_org["admin"].user_id, "notice_cap") == 1


def test_a_notice_about_no_instance_counts_for_its_person(session: Session, review_org: dict[str, Actor],
                                                          monkeypatch: pytest.MonkeyPatch, frozen: Any) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "2")
    zr = int(review_org["zr"].user_id or 0)
    for i in range(5):  # an issue's, a document's, an administrator's notice: about no process instance
        notify.send(session, notify.Note(user_id=zr, kind="admin", title=f"通知{i}", key=f"admin:{i}"))
    session.commit()
    assert _told(session, zr, "admin") == 2
    assert quota.dropped(session, since=clock.now() - timedelta(hours=1)) == 3
    assert _told(session, review_org["admin"].user_id, "notice_cap") == 1


def test_a_completion_that_tells_no_one_touches_no_counter(session: Session, instance: int,
                                                           review_org: dict[str, Actor]) -> None:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    fill = open_task(session, instance, "fill")
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        tasks.complete(session, task_id=fill.id, actor=review_org["applicant"], data={"project": "胶州湾"})
        session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements and not [s for s in statements if "notice_count" in s]


@pytest.mark.concurrency
def test_many_at_once_to_the_same_people_are_each_counted_once(pg_factory: sessionmaker[Session], frozen: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve units of work at once, each telling the same two people (in either order): the counters lose no count
    and lock in one order (no deadlock); each person gets the cap's worth, the owners hear of each once."""
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "5")
    with pg_factory() as s:
        a, b = (org.add_user(s, username=u, display_name=u).id for u in ("jia", "yi"))
        admin = org.add_user(s, username="root", display_name="管理员", is_admin=True).id
        s.commit()

    def work(i: int) -> None:
        with pg_factory() as s:
            people = [a, b] if i % 2 else [b, a]
            notify.send_many(s, [notify.Note(user_id=u, kind="urge", title=f"催办{i}") for u in people])
            s.commit()

    assert at_once(12, work) == [None] * 12
    with pg_factory() as s:
        assert (_told(s, a, "urge"), _told(s, b, "urge")) == (5, 5)
        assert quota.dropped(s, since=clock.now() - timedelta(hours=1)) == 14
        assert _told(s, admin, "notice_cap") == 2  # once per person
