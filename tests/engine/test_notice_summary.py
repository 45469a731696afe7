"""Past their hourly cap a person's notices are dropped, and the person is told so: once per hour, by one summary
notice (本小时另有通知因超出上限未单独发送) on their own channels, counted outside the cap, linking to their 待办; how
many were dropped is read from their counter when the summary is shown. Operators count the drops
(jzflow_notice_drops, committed ones only). Before, the rest of a big ladder or 督办 run was lost without a word.
On SQLite and PostgreSQL; twelve units of work at once on PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, notify, org
from engine.jobs import run_outbox
from engine.notify import notifications, quota
from engine.notify.models import NoticeCount, OutboxMessage
from engine.org.actors import Actor, actor_for
from engine.tasks.collab_models import Notification
from tests.engine.conftest import at_once
from tests.sinks import SmtpSink

SUMMARY = "notice_suppressed"


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    org.add_user(session, username="zhang", display_name="张伟", email="zhang@gxj.jiaozhou.test")
    org.add_user(session, username="li", display_name="李娜")
    org.add_user(session, username="root", display_name="管理员", is_admin=True)
    session.commit()
    return {u: actor_for(session, u) for u in ("zhang", "li", "root")}


def _told(session: Session, user_id: int | None, kind: str) -> int:
    return sum(1 for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
               if m.payload.get("user_id") == user_id and m.payload.get("kind") == kind)


def _ladder(session: Session, user: Actor, n: int, start: int = 0) -> None:
    """A 督办 run: n notices to one person, each its own unit of work."""
    for i in range(start, start + n):
        notify.send(session, notify.Note(user_id=int(user.user_id or 0), kind="escalation", title=f"督办{i}",
                                         key=f"esc:{user.user_id}:{i}"))
        session.commit()


def _drops(cap: str) -> float:
    return REGISTRY.get_sample_value("jzflow_notice_drops_total", {"cap": cap}) or 0.0


def test_a_person_past_their_cap_is_told_once_an_hour(session: Session, factory: sessionmaker[Session],
                                                      people: dict[str, Actor],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "3")
    zhang = int(people["zhang"].user_id or 0)
    before = _drops("recipient")
    _ladder(session, people["zhang"], 8)
    assert _told(session, zhang, "escalation") == 3
    assert _told(session, zhang, SUMMARY) == 1  # once, however many were dropped
    assert _told(session, people["li"].user_id, SUMMARY) == 0
    counter = session.scalar(select(NoticeCount).where(NoticeCount.scope == f"user:{zhang}"))
    assert counter is not None and (counter.sent, counter.dropped) == (3, 5)  # the summary took no room
    assert _drops("recipient") == before + 5
    summary = next(m for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
                   if m.payload["kind"] == SUMMARY)
    assert summary.payload["title"] == "本小时另有通知因超出上限未单独发送，请查看待办/督办"
    assert summary.payload["link"] == "/inbox"
    session.commit()  # SQLite: one writer, and this session's read holds it
    run_outbox(factory)
    _ladder(session, people["zhang"], 2, start=8)  # dropped after the summary was delivered: counted when shown
    shown = notifications.page(session, people["zhang"]).items
    counts = notifications.suppressed(session, shown)
    assert list(counts.values()) == [7] and shown[0].kind == SUMMARY and counts == {shown[0].id: 7}
    clock.advance(timedelta(hours=1))
    _ladder(session, people["zhang"], 4, start=10)  # a new hour: room again, and a summary of its own
    assert _told(session, zhang, "escalation") == 6
    assert _told(session, zhang, SUMMARY) == 2
    session.commit()
    run_outbox(factory)
    shown = notifications.page(session, people["zhang"]).items
    assert sorted(notifications.suppressed(session, shown).values()) == [1, 7]


def test_the_summary_follows_the_persons_channels(session: Session, factory: sessionmaker[Session],
                                                  people: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "1")
    with SmtpSink() as smtp:
        monkeypatch.setenv("JZFLOW_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("JZFLOW_SMTP_PORT", str(smtp.port))
        zhang = int(people["zhang"].user_id or 0)
        notify.set_preference(session, user_id=zhang, kind="*", channels=["in_app", "email"])
        session.commit()
        _ladder(session, people["zhang"], 4)
        run_outbox(factory)
        assert [m.subject for m in smtp.mails] == ["督办0", "本小时另有通知因超出上限未单独发送，请查看待办/督办"]
        assert "待办" in smtp.mails[1].text


def test_a_drop_rolled_back_tells_no_one_and_counts_nothing(session: Session, people: dict[str, Actor],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "1")
    zhang = int(people["zhang"].user_id or 0)
    _ladder(session, people["zhang"], 1)
    before = _drops("recipient")
    notify.send(session, notify.Note(user_id=zhang, kind="escalation", title="督办", key="esc:rolled-back"))
    session.rollback()
    assert _told(session, zhang, SUMMARY) == 0 and _drops("recipient") == before
    _ladder(session, people["zhang"], 1, start=1)  # the first drop that stays: told now
    assert _told(session, zhang, SUMMARY) == 1 and _drops("recipient") == before + 1


def test_a_drop_by_the_instance_cap_is_summarised_too(session: Session, people: dict[str, Actor],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_INSTANCE_HOUR", "1")
    zhang = int(people["zhang"].user_id or 0)
    before = _drops("instance")
    for i in range(3):  # about one (looping) instance: its cap is reached before his
        notify.send(session, notify.Note(user_id=zhang, kind="task_cancelled", title=f"任务已取消{i}", instance_id=7))
        session.commit()
    assert _told(session, zhang, "task_cancelled") == 1
    assert _told(session, zhang, SUMMARY) == 1
    assert _drops("instance") == before + 2


@pytest.fixture
def many(pg_factory: sessionmaker[Session], frozen: Any) -> Iterator[tuple[int, int, int]]:
    with pg_factory() as s:
        a, b = (org.add_user(s, username=u, display_name=u).id for u in ("jia", "yi"))
        admin = org.add_user(s, username="root", display_name="管理员", is_admin=True).id
        s.commit()
    yield a, b, admin


@pytest.mark.concurrency
def test_many_at_once_past_the_cap_tell_each_person_once(pg_factory: sessionmaker[Session],
                                                         many: tuple[int, int, int],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve units of work at once, each telling the same two people (in either order) past their cap: each person
    gets exactly one summary, no unit of work deadlocks or fails on the summary's key."""
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "5")
    a, b, admin = many

    def work(i: int) -> None:
        with pg_factory() as s:
            people = [a, b] if i % 2 else [b, a]
            notify.send_many(s, [notify.Note(user_id=u, kind="urge", title=f"催办{i}", instance_id=None)
                                 for u in people])
            s.commit()

    assert at_once(12, work) == [None] * 12
    with pg_factory() as s:
        assert (_told(s, a, "urge"), _told(s, b, "urge")) == (5, 5)
        assert (_told(s, a, SUMMARY), _told(s, b, SUMMARY)) == (1, 1)
        assert _told(s, admin, "notice_cap") == 2
        assert quota.dropped(s, since=clock.now() - timedelta(hours=1)) == 14
        assert s.scalar(select(Notification.id)) is None  # nothing delivered yet: queued only
