"""A person's language (app_user.language, engine.notify.language): their e-mail and own JSON webhook are worded in
it from the notice's text id and arguments; a person who has not chosen, or chose Chinese, gets Chinese; group robots
stay Chinese (they address a group). Arguments are data: a task name that looks like a format string or markup is
mailed as typed, in plain text, and a line break in it starts no header. Choosing is one's own, checked and audited.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import notify, org
from engine.audit.models import AuditEvent
from engine.errors import InvalidInput
from engine.jobs import run_outbox
from engine.notify import language
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit, User
from engine.tasks.operations import notice
from tests.sinks import HookSink, SmtpSink

HOSTILE = "审批 %(x)s {0} %s %(actor)s <b>粗</b>"


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_user(session, username="anna", display_name="Anna Li", unit_codes=["gxj"], email="anna@gxj.jiaozhou.test")
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"], email="zhang@gxj.jiaozhou.test")
    org.add_user(session, username="wang", display_name="王建国", email="wang@jiaozhou.test")
    session.commit()
    found = {u: actor_for(session, u) for u in ("anna", "zhang", "wang")}
    language.choose(session, actor=found["anna"], language="en")
    language.choose(session, actor=found["wang"], language="zh-CN")  # zhang has not chosen: the default
    for who in found.values():
        notify.set_preference(session, user_id=int(who.user_id or 0), kind="*", channels=["email"])
    session.commit()
    return found


@pytest.fixture(autouse=True)
def webhooks_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")


def _uid(actor: Actor) -> int:
    return int(actor.user_id or 0)


def _mails(smtp: SmtpSink, to: str) -> dict[str, str]:
    return {m.subject: m.text.replace("\r\n", "\n").strip() for m in smtp.mails if m.recipients[0] == to}


def test_transfer_and_urge_are_mailed_in_each_persons_language(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink) -> None:
    notes = []
    for who in people.values():
        notes.append(notice(_uid(who), "task_assigned", "transferred",
                            {"actor": "刘洋", "task": "项目立项审批", "note": "请今天办理"}, instance_id=None,
                            link="/tasks/7"))
        notes.append(notice(_uid(who), "urge", "urged", {"actor": "刘洋", "task": "项目立项审批", "note": "尽快"},
                            instance_id=None, link="/tasks/7"))
    notify.send_many(session, notes)
    session.commit()
    assert run_outbox(factory) == 6
    anna = _mails(smtp, "anna@gxj.jiaozhou.test")
    assert anna == {"刘洋 transferred a task to you: 项目立项审批": "请今天办理\n\nhttps://jzflow.jiaozhou.test/tasks/7",
                    "刘洋 sent a reminder (urge): 项目立项审批": "尽快\n\nhttps://jzflow.jiaozhou.test/tasks/7"}
    for chinese in ("zhang@gxj.jiaozhou.test", "wang@jiaozhou.test"):  # not chosen, and chosen Chinese
        assert _mails(smtp, chinese) == {"刘洋转办给您: 项目立项审批": "请今天办理\n\nhttps://jzflow.jiaozhou.test/tasks/7",
                                         "刘洋催办: 项目立项审批": "尽快\n\nhttps://jzflow.jiaozhou.test/tasks/7"}


def test_an_escalations_fixed_words_are_english_too(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink) -> None:
    notify.send(session, notify.worded(_uid(people["anna"]), "escalation", "escalated_late",
                                       {"step": "单位负责人", "title": "用电增容", "days": 2, "note": ""},
                                       words=("step",), key="esc:1"))
    session.commit()
    assert run_outbox(factory) == 1
    [(subject, text)] = _mails(smtp, "anna@gxj.jiaozhou.test").items()
    assert subject == "Escalated (Head of the units): 用电增容"
    assert text.startswith("Escalated automatically to Head of the units: 用电增容, 2 working days overdue.")


def test_hostile_arguments_are_mailed_as_typed_in_plain_text(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink) -> None:
    """Arguments fill placeholders and are never a format string; plain text is not HTML: nothing escaped, no markup
    added; a line break in a name starts no header of the mail."""
    for who in ("anna", "zhang"):
        notify.send_many(session, [
            notice(_uid(people[who]), "urge", "urged", {"actor": "%(task)s", "task": HOSTILE,
                                                        "note": "请 %(actor)s {0} <i>办理</i>"}, instance_id=None),
            notice(_uid(people[who]), "task_assigned", "transferred",
                   {"actor": "刘洋", "task": "审批\r\nBcc: victim@example.test", "note": ""}, instance_id=None)])
    session.commit()
    assert run_outbox(factory) == 4
    anna, zhang = _mails(smtp, "anna@gxj.jiaozhou.test"), _mails(smtp, "zhang@gxj.jiaozhou.test")
    assert anna[f"%(task)s sent a reminder (urge): {HOSTILE}"] == "请 %(actor)s {0} <i>办理</i>"
    assert zhang[f"%(task)s催办: {HOSTILE}"] == "请 %(actor)s {0} <i>办理</i>"
    for mails in (anna, zhang):
        assert not any("&lt;" in s or "translate=" in s or "<span" in s for pair in mails.items() for s in pair)
        assert not any("\n" in s for s in mails)  # one line: no Bcc header made of the name
    assert all(m.recipients == [m.recipients[0]] for m in smtp.mails)  # nobody else received it


def test_a_json_webhook_carries_the_text_id_and_arguments_and_a_group_robot_stays_chinese(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink) -> None:
    anna, zhang = _uid(people["anna"]), _uid(people["zhang"])
    unit = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "gxj"))
    with HookSink() as hooks:
        notify.set_preference(session, user_id=anna, kind="*", channels=["webhook"])
        notify.set_preference(session, user_id=zhang, kind="*", channels=["webhook"])
        session.execute(update(User).where(User.id == zhang).values(language="en"))
        notify.set_webhook(session, user_id=anna, url=hooks.url("/own/anna"), flavor="json")
        notify.set_webhook(session, org_unit_id=unit, url=hooks.url("/robot/gxj"), flavor="robot")
        args = {"actor": "刘洋", "task": HOSTILE, "note": "尽快"}
        notify.send_many(session, [notice(anna, "urge", "urged", args, instance_id=None),
                                   replace(notice(zhang, "urge", "urged", args, instance_id=None), unit_id=unit)])
        session.commit()
        assert run_outbox(factory) == 2
        by_path = {h.path: h.body for h in hooks.hooks}
    own = by_path["/own/anna"]
    assert own["title"] == f"刘洋 sent a reminder (urge): {HOSTILE}" and own["body"] == "尽快"
    assert own["text_id"] == "urged" and own["args"] == args and own["language"] == "en"
    robot = by_path["/robot/gxj"]["text"]["content"]  # zhang chose English; the group reads Chinese
    assert robot.splitlines()[0] == f"刘洋催办: {HOSTILE}"


def test_choosing_is_checked_and_audited(session: Session, people: dict[str, Actor]) -> None:
    zhang = people["zhang"]
    for bad in ("fr", "zh", "EN", "", "en\n", "zh-CN" * 10):
        with pytest.raises(InvalidInput) as refused:
            language.choose(session, actor=zhang, language=bad)
        assert refused.value.details["field"] == "language" and "language" in refused.value.message
    assert session.get(User, _uid(zhang)).language is None  # type: ignore[union-attr]
    assert language.choose(session, actor=zhang, language="en") is True
    assert language.choose(session, actor=zhang, language="en") is False  # unchanged: no second event
    session.commit()
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "notify.language",
                                                      AuditEvent.object_id == str(_uid(zhang)))).all()
    assert [(e.before, e.after) for e in events] == [({"language": None}, {"language": "en"})]
    assert language.of(session, _uid(zhang)) == "en" and language.of(session, _uid(people["wang"])) == "zh-CN"
    assert language.of(session, -1) == "zh-CN"


def test_a_list_of_names_is_joined_in_each_persons_language(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], smtp: SmtpSink) -> None:
    """A list argument (the names a process problem lists) is kept as a list and joined by the renderer: “、” in
    Chinese, “, ” in English (it was joined in Chinese before it was stored, for every reader)."""
    args = {"process": "plain", "element": "two", "task": "第四步", "who": ["ghost", "phantom"], "prop": "candidates",
            "count": 2}
    notify.send_many(session, [notify.worded(_uid(people[who]), "process_problem", "assignee_unknown", args,
                                             key=f"list:{who}") for who in ("anna", "zhang")])
    session.commit()
    assert run_outbox(factory) == 2
    [english] = _mails(smtp, "anna@gxj.jiaozhou.test")
    [chinese] = _mails(smtp, "zhang@gxj.jiaozhou.test")
    assert english.endswith("ghost, phantom") and "、" not in english
    assert chinese.endswith("ghost、phantom")
    # a row stored before lists were kept as lists (one joined string) reads as stored
    assert language.worded("t", "b", {"text": "assignee_unknown", "args": {**args, "who": "ghost、phantom"}},
                           "en")[0].endswith("ghost、phantom")
