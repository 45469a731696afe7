"""Notifications routed by preference and delivered for real: in-app rows, e-mail to a local SMTP server,
webhooks to a local HTTP server (tests/sinks.py), on SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, notify, org
from engine.deadlines.models import NotifyPreference
from engine.errors import InvalidInput
from engine.jobs import run_outbox
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit
from engine.tasks.collab_models import Notification
from tests.sinks import HookSink, SmtpSink


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"], email="zhang@gxj.jiaozhou.test")
    org.add_user(session, username="li", display_name="李娜", unit_codes=["gxj"])
    org.add_user(session, username="wang", display_name="王建国", email="wang@jiaozhou.test")
    session.commit()
    return {u: actor_for(session, u) for u in ("zhang", "li", "wang")}


@pytest.fixture(autouse=True)
def _loopback_hooks_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sinks listen on loopback, which webhooks may reach only when an administrator lists it."""
    monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")


@pytest.fixture
def hooks() -> Iterator[HookSink]:
    with HookSink() as sink:
        yield sink


def note(user: Actor, key: str | None = "esc:issue:1:1:unit_head", unit: int | None = None) -> notify.Note:
    return notify.Note(user_id=int(user.user_id or 0), kind="escalation",
                       title="督办升级(单位负责人): WT-2025-0001 用电增容",
                       body="已逾期 2 个工作日，请督促办理。", link="/supervision#issue-1", key=key, unit_id=unit)


def test_by_default_only_in_app_with_an_unread_count(session: Session, factory: sessionmaker[Session],
                                                     people: dict[str, Actor], smtp: SmtpSink) -> None:
    assert notify.send(session, note(people["zhang"])) == 1
    assert notify.send(session, note(people["zhang"])) == 0  # the same key again: nothing new
    session.commit()
    assert run_outbox(factory) == 1 and run_outbox(factory) == 0
    zhang = int(people["zhang"].user_id or 0)
    assert notify.unread_count(session, zhang) == 1
    row = session.scalar(select(Notification).where(Notification.user_id == zhang))
    assert row is not None and row.title.startswith("督办升级") and row.link == "/supervision#issue-1"
    assert notify.mark_read(session, zhang) == 1
    session.commit()
    assert notify.unread_count(session, zhang) == 0
    assert smtp.mails == []


def test_email_and_webhooks_follow_preferences(session: Session, factory: sessionmaker[Session],
                                               people: dict[str, Actor], smtp: SmtpSink, hooks: HookSink) -> None:
    zhang, li, wang = (int(people[u].user_id or 0) for u in ("zhang", "li", "wang"))
    notify.set_preference(session, user_id=zhang, kind="escalation", channels=["in_app", "email", "webhook"])
    notify.set_preference(session, user_id=zhang, kind="*", channels=["in_app"])
    notify.set_preference(session, user_id=li, kind="*", channels=["webhook"])
    notify.set_preference(session, user_id=wang, kind="*", channels=["email"])
    notify.set_webhook(session, user_id=zhang, url=hooks.url("/wecom/zhang"))
    unit = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "gxj"))
    notify.set_webhook(session, org_unit_id=unit, url=hooks.url("/dingtalk/gxj"), flavor="json")
    assert notify.channels_for(session, [zhang, li], "urge") == {zhang: ("in_app",), li: ("webhook",)}
    added = notify.send_many(session, [note(people["zhang"]), note(people["li"], unit=unit), note(people["wang"]),
                                       notify.Note(user_id=zhang, kind="urge", title="催办", key="urge:1")])
    session.commit()
    assert added == 3 + 1 + 1 + 1
    assert run_outbox(factory) == 6
    assert run_outbox(factory) == 0

    assert sorted((m.recipients[0], m.subject) for m in smtp.mails) == [
        ("wang@jiaozhou.test", "督办升级(单位负责人): WT-2025-0001 用电增容"),
        ("zhang@gxj.jiaozhou.test", "督办升级(单位负责人): WT-2025-0001 用电增容")]
    assert "https://jzflow.jiaozhou.test/supervision#issue-1" in smtp.mails[0].text
    assert "已逾期 2 个工作日" in smtp.mails[0].text
    by_path = {h.path: h for h in hooks.hooks}
    assert set(by_path) == {"/wecom/zhang", "/dingtalk/gxj"}
    robot = by_path["/wecom/zhang"]
    assert robot.body["msgtype"] == "text" and robot.content_type.startswith("application/json")
    assert robot.body["text"]["content"].splitlines()[0] == "督办升级(单位负责人): WT-2025-0001 用电增容"
    assert by_path["/dingtalk/gxj"].body["user_id"] == li  # li has no own hook: the work's unit's (his), as plain JSON
    in_app = session.scalars(select(Notification.user_id)).all()
    assert sorted(in_app) == [zhang, zhang]  # escalation and urge; li and wang chose other channels


def test_a_title_with_line_breaks_is_mailed_on_one_line(session: Session, factory: sessionmaker[Session],
                                                        people: dict[str, Actor], smtp: SmtpSink) -> None:
    """A case's title comes from whoever started it (the API takes any string): a line break in it must not make the
    mail unsendable (a header holds one line), nor start a header of its own."""
    wang = int(people["wang"].user_id or 0)
    notify.set_preference(session, user_id=wang, kind="*", channels=["email"])
    notify.send(session, notify.Note(user_id=wang, kind="escalation", key="esc:task:7:1:unit_head",
                                     title="督办升级(单位负责人): 用电增容\r\nBcc: victim@example.test\t\x0b（青岛某公司）",
                                     body="已逾期 2 个工作日。"))
    session.commit()
    assert run_outbox(factory) == 1
    [mail] = smtp.mails
    assert mail.recipients == ["wang@jiaozhou.test"]
    assert mail.subject == "督办升级(单位负责人): 用电增容 Bcc: victim@example.test （青岛某公司）"
    assert mail.message["Bcc"] is None
    assert mail.text.strip() == "已逾期 2 个工作日。"


def test_bidi_overrides_and_control_characters_never_reach_a_mail_subject(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink) -> None:
    """A task's name comes from the BPMN a process owner wrote: a right-to-left override (U+202E) in it made the
    subject read backwards in the mail client ("审批单.exe" shown as "exe.单批审"), an isolate or a C1 control hid or
    reordered text. The subject is printed as a PDF prints submitted text (engine.plaintext, shared): those dropped,
    line breaks one space; what is left is the title as written."""
    wang = int(people["wang"].user_id or 0)
    notify.set_preference(session, user_id=wang, kind="*", channels=["email"])
    hostile = ("待办: 部门\u202e审查\u202c · \u2067用电增容\u2069\u202a（青岛\u202b某\u202d公司）"
               "\u2066\u2068\x85\x9b31m\x7f\u200e\u200f\u061c完")
    notify.send(session, notify.Note(user_id=wang, kind="task_assigned", key="t:1", title=hostile, body="请办理。"))
    session.commit()
    assert run_outbox(factory) == 1
    [mail] = smtp.mails
    assert mail.subject == "待办: 部门审查 · 用电增容（青岛某公司）31m完", ascii(mail.subject)
    assert not any(0x202a <= ord(c) <= 0x202e or 0x2066 <= ord(c) <= 0x2069 or 0x7f <= ord(c) < 0xa0
                   for c in str(mail.message["Subject"])), ascii(str(mail.message["Subject"]))


def test_a_failing_webhook_is_retried_and_delivered_once(session: Session, factory: sessionmaker[Session],
                                                         people: dict[str, Actor]) -> None:
    zhang = int(people["zhang"].user_id or 0)
    with HookSink(fail_first=1) as sink:
        notify.set_preference(session, user_id=zhang, kind="*", channels=["webhook"])
        notify.set_webhook(session, user_id=zhang, url=sink.url())
        notify.send(session, note(people["zhang"]))
        session.commit()
        assert run_outbox(factory) == 0
        msg = session.scalar(select(OutboxMessage).execution_options(populate_existing=True))
        assert msg is not None and msg.attempts == 1 and "500" in (msg.last_error or "")
        session.rollback()  # SQLite: let go of the write lock the read took (BEGIN IMMEDIATE)
        assert run_outbox(factory) == 0  # backing off
        clock.advance(timedelta(seconds=5))
        assert run_outbox(factory) == 1
        assert run_outbox(factory) == 0
        assert len(sink.hooks) == 1
        # Each attempt names the message alike: a receiver that took one it answered badly can drop the retry.
        assert len(sink.keys) == 2 and len(set(sink.keys)) == 1 and sink.keys[0], sink.keys


def test_a_long_notice_reaches_a_group_robot_cut_to_what_it_takes_with_its_link(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A WeChat Work robot refuses a text over 2,048 bytes (with HTTP 200): a long 催办 note or 督办 body was lost
    without a trace. The robot gets the title, as much of the body as fits, and the link."""
    monkeypatch.setenv("JZFLOW_PUBLIC_URL", "https://jzflow.jiaozhou.test")
    zhang = int(people["zhang"].user_id or 0)
    with HookSink(robot_max_bytes=2048) as sink:
        notify.set_preference(session, user_id=zhang, kind="*", channels=["webhook"])
        notify.set_webhook(session, user_id=zhang, url=sink.url())
        notify.send(session, notify.Note(user_id=zhang, kind="urge", title="催办: WT-2025-0001 用电增容",
                                         body="请尽快办理。" + "企业反映情况" * 600, link="/tasks/7", key="urge:7"))
        session.commit()
        assert run_outbox(factory) == 1
        [robot] = sink.hooks
        content = robot.body["text"]["content"]
        assert len(content.encode()) <= 2048
        lines = content.splitlines()
        assert lines[0] == "催办: WT-2025-0001 用电增容" and lines[1].startswith("请尽快办理。企业反映情况")
        assert lines[1].endswith("…") and lines[-1] == "https://jzflow.jiaozhou.test/tasks/7"


def test_a_robot_turning_a_message_away_with_http_200_is_tried_again(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor]) -> None:
    """A group robot answers 200 with an errcode when it refuses (too many messages a minute): that is no delivery."""
    zhang = int(people["zhang"].user_id or 0)
    with HookSink(busy_first=1) as sink:
        notify.set_preference(session, user_id=zhang, kind="*", channels=["webhook"])
        notify.set_webhook(session, user_id=zhang, url=sink.url())
        notify.send(session, note(people["zhang"]))
        session.commit()
        assert run_outbox(factory) == 0
        msg = session.scalar(select(OutboxMessage).execution_options(populate_existing=True))
        assert msg is not None and msg.attempts == 1 and "45009" in (msg.last_error or "")
        session.rollback()  # SQLite: let go of the write lock the read took (BEGIN IMMEDIATE)
        clock.advance(timedelta(seconds=5))
        assert run_outbox(factory) == 1
        assert len(sink.hooks) == 1


def test_a_mail_the_relay_took_is_delivered_once_whatever_it_answers_to_quit(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay said "250" to the message, then answered QUIT with something else than 221 (a relay closing under
    load): the mail had gone, yet the failed goodbye counted as a failed delivery, and every retry mailed it again."""
    wang = int(people["wang"].user_id or 0)
    with SmtpSink(quit_reply="421 closing, too busy") as sink:
        monkeypatch.setenv("JZFLOW_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("JZFLOW_SMTP_PORT", str(sink.port))
        notify.set_preference(session, user_id=wang, kind="*", channels=["email"])
        notify.send(session, note(people["wang"]))
        session.commit()
        assert run_outbox(factory) == 1
        clock.advance(timedelta(hours=2))  # past any back-off
        assert run_outbox(factory) == 0
        msg = session.scalar(select(OutboxMessage).execution_options(populate_existing=True))
        assert msg is not None and msg.delivered_at is not None and msg.attempts == 1, msg.last_error
        assert len(sink.mails) == 1


def test_a_delivery_the_database_refuses_is_retried_later_and_the_rest_go_out(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliverer whose statement the database refuses left PostgreSQL's transaction aborted: noting the failure
    then failed too, the batch stopped there, and the message, never marked, came first again in every batch after
    it, so nothing behind it was ever delivered."""
    from sqlalchemy import text

    from engine import jobs
    original = jobs.DELIVERERS["in_app"]

    def refused(s: Session, msg: OutboxMessage) -> None:
        if msg.payload.get("title") == "坏":
            s.execute(text("SELECT * FROM no_such_table"))  # any statement the database refuses
        original(s, msg)

    monkeypatch.setitem(jobs.DELIVERERS, "in_app", refused)
    zhang = int(people["zhang"].user_id or 0)
    notify.send_many(session, [notify.Note(user_id=zhang, kind="info", title="坏", key="bad"),
                               notify.Note(user_id=zhang, kind="info", title="好", key="good")])
    session.commit()
    assert run_outbox(factory) == 1
    bad = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith("bad:"))
                         .execution_options(populate_existing=True))
    assert bad is not None and bad.delivered_at is None and bad.attempts == 1 and "no_such_table" in (bad.last_error or "")
    assert session.scalars(select(Notification.title)).all() == ["好"]


def test_a_channel_without_an_address_is_skipped(session: Session, factory: sessionmaker[Session],
                                                 people: dict[str, Actor]) -> None:
    li = int(people["li"].user_id or 0)
    notify.set_preference(session, user_id=li, kind="*", channels=["in_app", "email", "webhook"])
    assert notify.send(session, note(people["li"])) == 1  # no e-mail address, no webhook: in-app only
    assert session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "in_app")) == 1


def test_bad_preferences_are_refused(session: Session, people: dict[str, Actor]) -> None:
    with pytest.raises(InvalidInput):
        notify.set_preference(session, user_id=int(people["li"].user_id or 0), channels=["sms"])
    with pytest.raises(InvalidInput):
        notify.set_webhook(session, user_id=int(people["li"].user_id or 0), url="file:///etc/passwd")
    with pytest.raises(InvalidInput):
        notify.set_webhook(session, url="https://example.invalid/hook")


@pytest.mark.parametrize("kind", ["", "x" * 41, "urge\n", "ur\u202ege"])
def test_a_preference_kind_the_table_cannot_hold_is_refused_naming_the_field(session: Session,
                                                                           people: dict[str, Actor], kind: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        notify.set_preference(session, user_id=int(people["li"].user_id or 0), kind=kind, channels=["email"])
    assert caught.value.details["field"] == "kind"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(NotifyPreference)) == 0


def test_a_user_has_a_bounded_number_of_preferences(session: Session, people: dict[str, Actor]) -> None:
    li = int(people["li"].user_id or 0)
    for i in range(notify.MAX_PREFERENCES):
        notify.set_preference(session, user_id=li, kind=f"k{i}", channels=["email"])
    notify.set_preference(session, user_id=li, kind="k0", channels=["in_app"])  # changing one is still fine
    with pytest.raises(InvalidInput, match="at most"):
        notify.set_preference(session, user_id=li, kind="one-too-many", channels=["email"])


def test_a_message_whose_delivery_kills_the_worker_does_not_hold_up_the_rest(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed in the middle of sending (OOM, SIGKILL: stood for here by SystemExit) rolled back the
    message's attempt with everything else: it never counted towards giving up, came first in every batch again and
    killed every worker after, and nothing behind it went out. Leaving the process, a message's attempt is counted
    (and the message leased) before it is sent."""
    from engine import jobs
    from engine.notify import outbox
    original = jobs.DELIVERERS["email"]

    def dies(s: Session, msg: OutboxMessage) -> None:
        if msg.payload["subject"] == "坏":
            raise SystemExit("killed in the middle of the delivery")
        original(s, msg)

    monkeypatch.setitem(jobs.DELIVERERS, "email", dies)
    for subject in ("坏", "好"):
        outbox.enqueue(session, "email", {"subject": subject, "to": "zhang@gxj.jiaozhou.test", "text": subject,
                                          "host": "127.0.0.1", "port": smtp.port})
    session.commit()
    with pytest.raises(SystemExit):
        run_outbox(factory)
    assert run_outbox(factory) == 1  # the next worker: the poison is leased, the other message goes out
    assert [m.subject for m in smtp.mails] == ["好"]
    bad = session.scalar(select(OutboxMessage).where(OutboxMessage.payload["subject"].as_string() == "坏")
                         .execution_options(populate_existing=True))
    assert bad is not None and bad.delivered_at is None and bad.attempts == 1
    session.rollback()  # the workers write next (SQLite: one writer at a time)
    for _ in range(outbox.MAX_ATTEMPTS):  # each crash counted: given up after MAX_ATTEMPTS, never sent twice
        clock.advance(timedelta(hours=2))
        try:
            run_outbox(factory)
        except SystemExit:
            pass
    session.refresh(bad)
    assert bad.attempts == outbox.MAX_ATTEMPTS and bad.delivered_at is None and len(smtp.mails) == 1
    assert outbox.pending(session) == []


@pytest.mark.parametrize("title,body,link", [
    ("催办", "", ""), ("长" * 2000, "正文", "https://jzflow.jiaozhou.test/tasks/1"), ("", "体" * 3000, "/x"),
    ("t", "b", "https://jzflow.jiaozhou.test/" + "p" * 3000), ("标题\n第二行", "🀄" * 1000, "https://a.test/t")])
def test_a_robot_text_never_passes_what_the_robot_takes(title: str, body: str, link: str) -> None:
    text = notify.core.robot_text(title, body, link)
    assert len(text.encode()) <= notify.core.ROBOT_MAX_BYTES
    assert text.encode().decode() == text  # never a character cut in half
    if len(link.encode()) <= notify.core.ROBOT_MAX_BYTES // 2:
        assert text.endswith(link)
