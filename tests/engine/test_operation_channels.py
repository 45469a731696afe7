"""The inbox operations' notices (转办, 委派, 委派退回, 加签, 加签完成, 催办, 抄送, 退回) follow the person's 通知设置 like
every other notice: e-mail and webhook too when they chose them, in-app only when they did not. They were queued
in-app only whatever the person had chosen. Recorded in the operation's transaction (nothing for one rolled back),
delivered by the outbox after the commit, and once: a second delivery run sends nothing again. On SQLite and
PostgreSQL, to a local SMTP server and HTTP server (tests/sinks.py).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, notify
from engine.jobs import run_outbox
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor
from engine.org.models import User
from engine.runtime import instances
from engine.tasks import collab, operations
from engine.tasks.collab_models import Notification
from tests.engine.test_operations import THREE_STEPS, at_review
from tests.sinks import HookSink, SmtpSink


@pytest.fixture
def instance(session: Session, review_org: dict[str, Actor], frozen: Any) -> int:
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key="three_steps", actor=review_org["applicant"])
    session.commit()
    return row.id


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookSink]:
    monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")  # the sink listens on loopback
    with HookSink() as sink:
        yield sink


def _zr(session: Session, org: dict[str, Actor], channels: list[str], kind: str = "*") -> int:
    zr = int(org["zr"].user_id or 0)
    user = session.get(User, zr)
    assert user is not None
    user.email = "zhaoliu@zrzy.jiaozhou.test"
    notify.set_preference(session, user_id=zr, kind=kind, channels=channels)
    session.commit()
    return zr


def test_a_transfer_reaches_the_person_on_the_channels_they_chose(
        session: Session, factory: sessionmaker[Session], instance: int, review_org: dict[str, Actor],
        smtp: SmtpSink, hooks: HookSink) -> None:
    zr = _zr(session, review_org, ["in_app", "email", "webhook"], kind="task_assigned")
    notify.set_webhook(session, user_id=zr, url=hooks.url("/wecom/zr"))
    session.commit()
    review = at_review(session, instance, review_org)
    operations.transfer(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note="请赵六办理")
    session.commit()
    assert run_outbox(factory) >= 3
    assert run_outbox(factory) == 0  # delivered once: a second run sends nothing again
    assert [(m.recipients, m.subject) for m in smtp.mails] == [
        (["zhaoliu@zrzy.jiaozhou.test"], f"发改王五转办给您: {review.name}")]
    assert f"https://jzflow.jiaozhou.test/tasks/{review.id}" in smtp.mails[0].text and "请赵六办理" in smtp.mails[0].text
    assert [h.path for h in hooks.hooks] == ["/wecom/zr"]
    assert hooks.hooks[0].body["text"]["content"].startswith("发改王五转办给您")
    assert session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == zr, Notification.kind == "task_assigned")) == 1


def test_a_person_who_chose_in_app_only_gets_no_mail(session: Session, factory: sessionmaker[Session],
                                                     instance: int, review_org: dict[str, Actor],
                                                     smtp: SmtpSink) -> None:
    zr = _zr(session, review_org, ["in_app"])
    review = at_review(session, instance, review_org)
    operations.transfer(session, task_id=review.id, actor=review_org["fg"], to_username="zr")
    session.commit()
    run_outbox(factory)
    assert smtp.mails == []
    assert session.scalar(select(func.count()).select_from(Notification).where(Notification.user_id == zr)) == 1


@pytest.mark.parametrize("name", ["委派", "催办", "抄送"])
def test_the_other_operations_follow_the_settings_too(session: Session, factory: sessionmaker[Session],
                                                      instance: int, review_org: dict[str, Actor], smtp: SmtpSink,
                                                      name: str) -> None:
    _zr(session, review_org, ["email"])  # every kind by e-mail only
    review = at_review(session, instance, review_org)
    if name == "委派":
        operations.delegate(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note="请先看看")
    elif name == "催办":
        operations.transfer(session, task_id=review.id, actor=review_org["fg"], to_username="zr")
        session.commit()
        operations.urge(session, task_id=review.id, actor=review_org["applicant"], message="请尽快审查")
    else:
        collab.carbon_copy(session, instance_id=instance, actor=review_org["admin"], usernames=["zr"], note="请知悉")
    session.commit()
    run_outbox(factory)
    subjects = [m.subject for m in smtp.mails]
    assert {"委派": "发改王五委派给您", "催办": "项目单位张三催办", "抄送": "管理员抄送给您"}[name] in " ".join(subjects)
    assert session.scalar(select(func.count()).select_from(Notification)) == 0  # they chose no in-app


def test_an_operation_rolled_back_delivers_nothing(session: Session, factory: sessionmaker[Session], instance: int,
                                                   review_org: dict[str, Actor], smtp: SmtpSink) -> None:
    _zr(session, review_org, ["in_app", "email"])
    review = at_review(session, instance, review_org)
    before = session.scalar(select(func.count()).select_from(OutboxMessage))
    operations.transfer(session, task_id=review.id, actor=review_org["fg"], to_username="zr")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == before
    session.rollback()  # SQLite: this session's read ends before the deliverer writes
    run_outbox(factory)
    assert smtp.mails == []
    assert session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == review_org["zr"].user_id)) == 0


@pytest.mark.parametrize("name", ["转办", "催办", "抄送"])
def test_a_huge_note_leaves_the_building_cut_to_the_length_a_comment_keeps(
        session: Session, factory: sessionmaker[Session], instance: int, review_org: dict[str, Actor],
        smtp: SmtpSink, name: str) -> None:
    """The API takes a note of any length (the 25 MB body limit): the 催办 comment and the 抄送 kept 2,000 characters
    of it, but the notice carried all of it — in-app, and now in an e-mail and a webhook post to every recipient."""
    zr = _zr(session, review_org, ["in_app", "email"])
    review = at_review(session, instance, review_org)
    huge = "<b>请办理</b>\r\nBcc: x@evil.test\r\n" + "长" * 1_000_000
    if name == "转办":
        operations.transfer(session, task_id=review.id, actor=review_org["fg"], to_username="zr", note=huge)
    elif name == "催办":
        operations.transfer(session, task_id=review.id, actor=review_org["fg"], to_username="zr")
        session.commit()
        operations.urge(session, task_id=review.id, actor=review_org["applicant"], message=huge)
    else:
        collab.carbon_copy(session, instance_id=instance, actor=review_org["admin"], usernames=["zr"], note=huge)
    session.commit()
    run_outbox(factory)
    [mail] = [m for m in smtp.mails if "长" in m.text]
    assert 2000 <= len(mail.text) <= 2000 + 200 and "…" in mail.text  # the note cut, and the link after it
    assert mail.recipients == ["zhaoliu@zrzy.jiaozhou.test"]  # the "Bcc:" line is the body's text, no header
    assert "<b>请办理</b>" in mail.text  # plain text: shown, never markup
    [note] = session.scalars(select(Notification).where(Notification.user_id == zr, Notification.body.contains("长")))
    assert len(note.body) <= 2001
