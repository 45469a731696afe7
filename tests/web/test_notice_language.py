"""Notices in the reader's language: each is kept as its text id and arguments (engine.notify.texts) and rendered on
通知 through the catalogue, so a person who chose English reads 转办, 委派, 催办, 抄送, 督办升级 and the hourly summary
in English; a Chinese reader reads them as before; a row written before notices kept their words shows as stored; and
a task name that looks like a format string (or markup) prints as typed."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, notify
from engine.deadlines import escalation
from engine.jobs import run_outbox
from engine.notify import quota
from engine.org.actors import actor_for
from engine.tasks import collab, operations
from engine.tasks import core as tasks
from engine.tasks.collab_models import Notification
from engine.tasks.models import HumanTask
from tests.web.test_task_page import deployed, start, task_of  # noqa: F401

Login = Callable[[str], FlaskClient]
HOSTILE = "审批 %(x)s {0} %s %(actor)s <b>粗</b>"  # a task name as a BPMN author may type it
SHOWN = "审批 %(x)s {0} %s %(actor)s &lt;b&gt;粗&lt;/b&gt;"


def _page(client: FlaskClient, lang: str) -> str:
    client.get(f"/lang/{lang}")
    return client.get("/notifications").get_data(as_text=True)


def _told(factory: sessionmaker[Session]) -> int:
    """Every kind of notice the test reads, queued and delivered; the hostile task's id."""
    task_id = task_of(factory, start(factory, "minimal", title="园区审批"), "approve")
    with factory() as s:
        s.execute(update(HumanTask).where(HumanTask.id == task_id).values(name=HOSTILE))
        s.commit()
        fg, st, admin = (actor_for(s, u) for u in ("fg", "st", "admin"))
        tasks.claim(s, task_id=task_id, actor=fg)
        operations.transfer(s, task_id=task_id, actor=fg, to_username="st", note="请 %(actor)s {0} 办理")
        s.commit()
        operations.delegate(s, task_id=task_id, actor=st, to_username="fg", note="委派说明")
        s.commit()
        operations.urge(s, task_id=task_id, actor=admin, message="尽快")
        instance_id = s.get(HumanTask, task_id).instance_id  # type: ignore[union-attr]
        collab.carbon_copy(s, instance_id=instance_id, actor=st, usernames=["fg"], note="知悉")
        now = clock.now()
        kind, text, args = escalation._note("unit_head", SimpleNamespace(title=HOSTILE),  # type: ignore[arg-type]
                                            SimpleNamespace(due_at=now - timedelta(days=20)), now, st, "请关注")
        notify.send(s, notify.worded(fg.user_id or 0, kind, text, args, words=("step",)))
        quota._tell_person(s, [fg.user_id or 0], now.replace(minute=0, second=0, microsecond=0))
        notify.send(s, notify.Note(user_id=fg.user_id or 0, kind="info", title="旧的通知标题", body="旧的正文"))
        s.commit()
    assert run_outbox(factory) >= 7
    return task_id


def test_an_english_reader_reads_each_notice_in_english_a_chinese_one_in_chinese(
        deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    _told(deployed)
    st, fg = login("st"), login("fg")
    english = _page(st, "en")
    assert "transferred a task to you: " in english and "转办给您" not in english
    assert SHOWN in english and "<b>粗</b>" not in english  # the name as typed: never a format string, never markup
    assert "请 %(actor)s {0} 办理" in english
    english = _page(fg, "en")
    for said in ("delegated a task to you: ", "sent a reminder (urge): ", "copied you in (CC)",
                 "Escalated (Head of the units): ", "working days overdue.",
                 "More notices this hour were not sent one by one (over the limit)"):
        assert said in english, said
    for chinese in ("委派给您", "催办:", "抄送给您", "督办升级", "本小时另有通知"):
        assert chinese not in english, chinese
    assert "旧的通知标题" in english and "旧的正文" in english  # before notices kept their words: as stored
    assert english.count(SHOWN) >= 3 and "<b>粗</b>" not in english
    chinese = _page(fg, "zh")
    for said in ("委派给您: ", "催办: ", "抄送给您", "督办升级(单位负责人): ", "本小时另有通知因超出上限未单独发送",
                 "旧的通知标题", "尽快", "知悉", "委派说明", "请关注"):
        assert said in chinese, said
    assert "delegated a task to you" not in chinese and "Escalated" not in chinese
    assert chinese.count(SHOWN) >= 3 and "<b>粗</b>" not in chinese


def test_the_stored_title_stays_chinese_for_mail_and_webhooks(deployed: sessionmaker[Session]) -> None:  # noqa: F811
    _told(deployed)
    with deployed() as s:
        rows = {n.params["text"] if n.params else None: (n.title, n.params) for n in s.scalars(select(Notification))}
        s.rollback()
    assert rows["transferred"][0].endswith(f"转办给您: {HOSTILE}")
    assert rows["transferred"][1]["args"]["task"] == HOSTILE
    assert rows["escalated_by_late"][1]["words"] == ["step"]
    assert rows["escalated_by_late"][0] == f"督办升级(单位负责人): {HOSTILE}"
    assert rows[None][0] == "旧的通知标题"


def test_a_params_row_that_no_longer_fits_is_shown_as_stored(deployed: sessionmaker[Session],  # noqa: F811
                                                             login: Login) -> None:
    """A text since removed, arguments of the wrong shape, a placeholder without its argument: the stored words."""
    bad: list[Any] = [{"text": "no_such_text", "args": {}}, {"text": "transferred", "args": "x"},
                      {"text": "transferred", "args": {"actor": "某人"}}, {"text": "cc", "args": {}, "words": "actor"},
                      ["transferred"],
                      {"text": "notice_suppressed", "args": {"month": "03", "day": "07", "start": "01:00", "end": "02:00",
                                                             "cap": 200}},  # as the summary was kept before its day
                      {"text": "notice_suppressed", "args": {"date": "<b>7</b>", "start": "", "end": "", "cap": 1}},
                      {"text": "notice_suppressed", "args": {"date": 7, "start": "", "end": "", "cap": 1}}]
    with deployed() as s:
        fg = actor_for(s, "fg").user_id or 0
        s.add_all([Notification(user_id=fg, kind="info", title=f"存储的标题{i}", body="", params=p)
                   for i, p in enumerate(bad)])
        s.commit()
    english = _page(login("fg"), "en")
    for i in range(len(bad)):
        assert f"存储的标题{i}" in english


def test_the_apps_own_words_among_the_arguments_are_translated(app: Any) -> None:
    """A reason the engine gives ("中文 (English)") and a step of the ladder: the reader's half, or the catalogue's."""
    from engine.runtime import linked
    from web.notifications.wording import shown
    cancelled = {"text": "task_cancelled_by", "args": {"task": "复核", "actor": "张三", "reason": linked.ENDED},
                 "words": ["reason"]}
    with app.test_request_context(headers={"Cookie": "lang=en"}):
        title, body = shown("任务已取消: 复核", "", cancelled)
        assert title == 'Task cancelled: <span translate="no">复核</span>'
        assert body == ('<span translate="no">张三</span> handled another step: the process ended: this task is no '
                        'longer needed')
    with app.test_request_context():
        title, body = shown("任务已取消: 复核", "", cancelled)
        assert title == '任务已取消: <span translate="no">复核</span>'
        assert body == '<span translate="no">张三</span>办理了其他步骤: 流程已结束，此任务不再需要办理'


def _told_owner_and_summary(factory: sessionmaker[Session]) -> None:
    """A process problem naming more names than a note lists (and one naming a few), and a summary of a set hour."""
    from engine.runtime import assignment
    with factory() as s:
        fg = actor_for(s, "fg").user_id or 0
        many = [f"nobody{i}" for i in range(assignment.MAX_TOLD + 5)]
        assignment._tell_unknown(s, assignment.Unnamed(1, "plain", "first", "第一步", "candidates"), many, [fg])
        assignment._tell_unknown(s, assignment.Unnamed(1, "plain", "group", "第二步", "assignee", kind="group"),
                                 many, [fg])
        assignment._tell_unknown(s, assignment.Unnamed(1, "plain", "few", "第三步", "candidates"), ["ghost"], [fg])
        quota._tell_person(s, [fg], datetime(2026, 3, 6, 17, tzinfo=UTC))  # 03-07 01:00 in Beijing
        s.commit()
    assert run_outbox(factory) >= 4


def test_the_count_of_names_and_the_summary_s_date_read_in_the_reader_s_language(
        deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    """The process-problem notice listed its names with “等 N 个” and the hourly summary dated itself “03月07日” whatever
    the reader's language: both were words inside an argument. The count and the day are arguments now, worded by the
    text: an English reader reads “and others, 15 in all” and “March 7”, a Chinese one as before."""
    _told_owner_and_summary(deployed)
    fg = login("fg")
    english = re.sub(r"<[^>]+>", "", _page(fg, "en"))
    assert english.count("15 in all") >= 2 and "等 " not in english and " 个" not in english
    assert "on March 7 (Beijing time)" in english and "月" not in english and "03/07" not in english
    chinese = re.sub(r"<[^>]+>", "", _page(fg, "zh"))
    assert chinese.count("等 15 个") >= 2 and "ghost" in chinese
    assert "03月07日 01:00–02:00（北京时间）" in chinese
    assert "in all" not in chinese and "March" not in chinese
    with deployed() as s:  # as e-mail and webhooks read it: the Chinese as before
        rows = [(n.title, n.body or "", n.params or {}) for n in s.scalars(select(Notification))]
        s.rollback()
    stored = [t for t, _, _ in rows if "不存在的人员" in t or "单位/角色" in t]
    assert sum(t.endswith("等 15 个") for t in stored) == 2 and any(t.endswith("ghost") for t in stored)
    [summary] = [(b, p) for _, b, p in rows if p.get("text") == "notice_suppressed"]
    assert summary[0].startswith("03月07日 01:00–02:00（北京时间）给您的通知已超出上限")
    assert summary[1]["args"]["date"] == "2026-03-07"  # a day, not the words of one language


def test_a_tampered_text_id_of_any_json_shape_is_shown_as_stored(deployed: sessionmaker[Session],  # noqa: F811
                                                                 login: Login) -> None:
    """`params` is JSON a person with the database may have edited: a text id that is a list or an object (not a key
    of the catalogue, and unhashable) shows the stored words, the page is no 500."""
    args = {"actor": "某人", "task": "复核", "note": ""}
    bad: list[Any] = [{"text": ["transferred"], "args": args}, {"text": {"transferred": 1}, "args": args},
                      {"text": "transferred", "args": args, "words": [["actor"], {"a": 1}]},
                      {"text": "transferred", "args": {"actor": ["x"], "task": {"y": None}, "note": 12.5}}]
    with deployed() as s:
        fg = actor_for(s, "fg").user_id or 0
        s.add_all([Notification(user_id=fg, kind="info", title=f"存储的标题{i}", body="", params=p)
                   for i, p in enumerate(bad)])
        s.commit()
    client = login("fg")
    client.get("/lang/en")
    page = client.get("/notifications")
    assert page.status_code == 200
    english = page.get_data(as_text=True)
    for i in range(2):
        assert f"存储的标题{i}" in english


def test_a_list_of_names_is_joined_in_the_reader_s_language(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    """A process problem naming two names joined them with “、” for every reader: the names are a list argument now,
    joined by the text's renderer (“ghost、phantom” in Chinese, “ghost, phantom” in English); the stored Chinese and
    mail stay as before."""
    from engine.runtime import assignment
    with deployed() as s:
        fg = actor_for(s, "fg").user_id or 0
        assignment._tell_unknown(s, assignment.Unnamed(1, "plain", "two", "第四步", "candidates"), ["ghost", "phantom"],
                                 [fg])
        s.commit()
    assert run_outbox(deployed) >= 1
    with deployed() as s:
        [params] = [n.params for n in s.scalars(select(Notification))]
        s.rollback()
    assert params["args"]["who"] == ["ghost", "phantom"]
    client = login("fg")
    english = re.sub(r"<[^>]+>", "", _page(client, "en"))
    assert "ghost, phantom" in english and "、" not in english
    chinese = re.sub(r"<[^>]+>", "", _page(client, "zh"))
    assert "ghost、phantom" in chinese and "ghost, phantom" not in chinese
    with deployed() as s:
        [title] = [n.title for n in s.scalars(select(Notification))]
        s.rollback()
    assert title.endswith("ghost、phantom")
