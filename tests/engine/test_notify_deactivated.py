"""A person deactivated (停用) is neither mailed nor posted about work they may no longer see: not when the
notification is recorded after the deactivation, nor when it was waiting in the outbox (worker down, retries).
Their in-app list is kept (they cannot sign in to read it). On SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import notify, org
from engine.jobs import run_outbox
from engine.notify import outbound
from engine.notify.models import OutboxMessage
from engine.org import leaving
from engine.org.actors import Actor, actor_for
from tests.sinks import HookSink, SmtpSink


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"], email="zhang@gxj.jiaozhou.test")
    org.add_user(session, username="li", display_name="李娜", unit_codes=["gxj"], email="li@gxj.jiaozhou.test")
    session.commit()
    return {u: actor_for(session, u) for u in ("zhang", "li")}


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        monkeypatch.setenv("JZFLOW_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("JZFLOW_SMTP_PORT", str(sink.port))
        yield sink


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookSink]:
    monkeypatch.setenv(outbound.ALLOW_ENV, "127.0.0.1")
    with HookSink() as sink:
        yield sink


def urge(user: Actor, key: str) -> notify.Note:
    return notify.Note(user_id=int(user.user_id or 0), kind="urge", title="催办: WT-2025-0001 用电增容",
                       body="请尽快办理。", link="/tasks/1", key=key)


def _wants_everything(session: Session, user: Actor, hooks: HookSink) -> None:
    notify.set_preference(session, user_id=int(user.user_id or 0), channels=["in_app", "email", "webhook"])
    notify.set_webhook(session, user_id=int(user.user_id or 0), url=hooks.url("/zhang"), flavor="json")


def test_a_deactivated_person_is_neither_mailed_nor_posted(session: Session, factory: sessionmaker[Session],
                                                          people: dict[str, Actor], smtp: SmtpSink,
                                                          hooks: HookSink) -> None:
    zhang = people["zhang"]
    _wants_everything(session, zhang, hooks)
    notify.set_preference(session, user_id=int(people["li"].user_id or 0), channels=["in_app", "email"])
    leaving.deactivate_user(session, user_id=int(zhang.user_id or 0), refuse_stuck=False)
    session.commit()
    notify.send_many(session, [urge(zhang, "u1"), urge(people["li"], "u2")])
    session.commit()
    kinds = sorted(session.scalars(select(OutboxMessage.kind).where(OutboxMessage.dedupe_key.like("u1:%"))))
    session.commit()  # SQLite: a read holds the database until its transaction ends
    assert "email" not in kinds and "webhook" not in kinds
    run_outbox(factory)
    assert [m.recipients for m in smtp.mails] == [["li@gxj.jiaozhou.test"]]  # the one still in office
    assert hooks.hooks == []
    assert session.scalar(select(OutboxMessage.kind).where(OutboxMessage.dedupe_key == f"u1:{zhang.user_id}:in_app"))


def test_mail_and_posts_waiting_when_the_person_is_deactivated_are_not_sent(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink,
        hooks: HookSink) -> None:
    zhang = people["zhang"]
    _wants_everything(session, zhang, hooks)
    notify.send(session, urge(zhang, "u3"))  # queued while still in office (the worker is down, or retrying)
    session.commit()
    leaving.deactivate_user(session, user_id=int(zhang.user_id or 0), refuse_stuck=False)
    session.commit()
    run_outbox(factory)
    assert smtp.mails == [] and hooks.hooks == []
    left = list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind.in_(("email", "webhook")))
                                .execution_options(populate_existing=True)))
    assert left and all(m.delivered_at is not None and "deactivated" in (m.last_error or "") for m in left)


