"""Deadlines end to end on the scale path: PostgreSQL, Redis and real Celery workers (docs/architecture.md).

Time across processes: the test freezes engine.clock in its own process (services, the web app) and
tells the workers what time it is by sending `sweep_deadlines(now=…)` — the job's own argument,
which beat never passes (then the job reads the clock). Nothing in the worker is patched.

1. An issue from issue_ledger.bpmn walks the whole ladder as the clock advances: yellow, red, handler,
   unit head, responsible leader, city leader — two workers sweep each moment twice, and every step
   happens exactly once. The city leader then sees it in 督办 and urges it with a new deadline; the
   next sweeps start round 2.
2. Redis "stopped": the web app's broker points at a port where nothing listens. Requests still
   complete tasks and urge; their notifications wait in the outbox. A worker on the real Redis then
   delivers every one of them once — in-app rows, e-mail to a local SMTP server, webhooks to a local
   HTTP server — and delivering again sends nothing twice.
"""
from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine import audit, celery_app, clock, config, deploy, notify, org, tasks
from engine.audit.models import AuditEvent
from engine.db import session_scope
from engine.deadlines import escalation, sla
from engine.deadlines.models import EscalationStep
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import OrgUnit, User
from engine.runtime import instances
from engine.tasks.collab_models import Notification
from engine.tasks.models import HumanTask
from plan.ledger.models import LedgerIssue
from tests.processes.test_issue_ledger import ledger_files
from tests.scale import test_worker
from tests.scale.test_worker import Stack
from tests.sinks import HookSink, SmtpSink
from tests.web.conftest import PASSWORD, csrf_of, form_at
from web import create_app

pytestmark = pytest.mark.scale
# The scale tests' fixtures: a fresh PostgreSQL database, our own Redis database, workers started on them.
redis_db, redis_url, stack = test_worker.redis_db, test_worker.redis_url, test_worker.stack
SH = clock.SHANGHAI
SWEEP = "engine.jobs_deadlines.sweep_deadlines"
PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


def at(y: int, m: int, d: int, hh: int = 10) -> datetime:
    return datetime(y, m, d, hh, tzinfo=SH)


def send(stack: Stack, name: str, **kwargs: Any) -> None:
    """Enqueue a job with arguments on the stack's Redis, as beat or an operator would."""
    app = celery_app.make_celery(stack.settings)
    try:
        with app.producer_or_acquire() as producer:
            app.send_task(name, kwargs=kwargs, producer=producer)
    finally:
        app.close()


def succeeded(stack: Stack, task: str) -> int:
    pattern = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] succeeded")
    return sum(len(pattern.findall(w.log_path.read_text(encoding="utf-8", errors="replace")))
               for w in stack.workers.started if w.log_path.exists())


def make_org(session: Session) -> dict[str, Actor]:
    """The ledger's roles and 工信局: head 周, staff 张, responsible leader 孙 (role leader), city leader 王."""
    for code, name in [("ledger_officer", "台账管理员"), ("handler", "承办人"), ("leader", "责任领导"),
                       ("city_leader", "市级领导")]:
        org.add_role(session, code=code, name=name)
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_user(session, username="officer", display_name="台账管理员王敏", role_codes=["ledger_officer"])
    org.add_user(session, username="zhou", display_name="局长周建华", unit_codes=["gxj"], is_head=True)
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"], role_codes=["handler"],
                 email="zhang@gxj.jiaozhou.test")
    org.add_user(session, username="li", display_name="李娜", unit_codes=["gxj"], role_codes=["handler"])
    org.add_user(session, username="sun", display_name="副市长孙建国", role_codes=["leader"])
    wang = org.add_user(session, username="wang", display_name="市领导王建国", role_codes=["city_leader", "leader"])
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert unit is not None
    unit.responsible_leader_id = wang.id
    for user in session.scalars(select(User)):
        user.password_hash = PASSWORD_HASH
    deploy.deploy(session, ledger_files(), actor=SYSTEM)
    return {u: actor_for(session, u) for u in ("officer", "zhou", "zhang", "li", "sun", "wang")}


def open_issue(session: Session, people: dict[str, Actor], due: str) -> tuple[int, int]:
    """登记 → 派单 (to 工信局, due `due`) → 响应: the issue is in 张伟's hands; return (instance, issue) ids."""
    row = instances.start(session, process_key="issue_ledger", actor=people["officer"], title="问题台账")
    session.flush()
    steps = [("register_issue", "officer", {"title": "企业用电增容迟迟未落实", "description": "10kV 增容两个月未批复",
                                            "enterprise": "青岛海智电器有限公司", "source": "service_visit",
                                            "unit_code": "gxj"}),
             ("dispatch", "officer", {"unit_code": "gxj", "deadline_kind": "date", "due_date": due}),
             ("respond", "zhang", {"response": "accept"})]
    for bpmn_id, who, form in steps:
        task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == bpmn_id,
                                                      HumanTask.state == "ready"))
        assert task is not None, bpmn_id
        tasks.claim(session, task_id=task.id, actor=people[who])
        tasks.complete(session, task_id=task.id, actor=people[who], data=form)
    issue = session.scalar(select(LedgerIssue.id).where(LedgerIssue.instance_id == row.id))
    assert issue is not None
    return row.id, issue


def web_app(stack: Stack, **extra: Any) -> Flask:
    return create_app({"DATABASE_URL": stack.settings.database_url, "TESTING": True, "WTF_CSRF_ENABLED": True,
                       "SECRET_KEY": "test-secret", "RATELIMIT_ENABLED": False, **extra})


def log_in(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def steps(stack: Stack, issue: int) -> list[tuple[int, str, bool]]:
    with session_scope(stack.factory) as session:
        return [(s.round, s.step, s.manual) for s in session.scalars(
            select(EscalationStep).where(EscalationStep.object_type == "issue", EscalationStep.object_id == issue)
            .order_by(EscalationStep.id))]


@pytest.fixture
def frozen_2025() -> Iterator[None]:
    clock.freeze(at(2025, 9, 1, 9))
    yield
    clock.unfreeze()


def test_workers_walk_an_issue_up_the_ladder_exactly_once_and_the_leader_acts(stack: Stack, frozen_2025: None) -> None:
    with session_scope(stack.factory) as session:
        people = make_org(session)
    with session_scope(stack.factory) as session:
        _, issue = open_issue(session, people, due="2025-09-05")  # Friday; dispatched Monday 1 Sep
    stack.start_worker()
    stack.start_worker()
    timeline = [  # the issue's ladder (escalation.yaml, issues.default): +0, +1, +3, +5 working days
        (at(2025, 9, 3), []),
        (at(2025, 9, 5), ["yellow"]),  # from Thu 4 Sep 23:59:59 (one working day before)
        (at(2025, 9, 6), ["red", "handler"]),
        (at(2025, 9, 9), ["unit_head"]),  # Mon 8 Sep 23:59:59
        (at(2025, 9, 11), ["responsible_leader"]),  # Wed 10 Sep
        (at(2025, 9, 13), ["city_leader"]),  # Fri 12 Sep
        (at(2025, 9, 20), []),
    ]
    expected: list[tuple[int, str, bool]] = []
    sent = 0
    for when, new in timeline:
        for _ in range(2):  # two workers, two sweeps of the same moment
            send(stack, SWEEP, now=when.isoformat())
            sent += 1
        stack.workers.started[0].wait_until(lambda n=sent: succeeded(stack, SWEEP) == n, 60,
                                            what=f"{sent} sweeps to finish")
        expected += [(1, s, False) for s in new]
        assert steps(stack, issue) == expected, (when, stack.workers.tails())

    ids = {k: v.user_id for k, v in people.items()}
    with session_scope(stack.factory) as session:
        recipients = {s.step: s.recipients for s in session.scalars(select(EscalationStep))}
        assert recipients == {"yellow": [ids["zhang"]], "red": [], "handler": [ids["zhang"]],
                              "unit_head": [ids["zhou"]], "responsible_leader": [ids["wang"]],
                              "city_leader": [ids["wang"]]}
        escalations = session.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"ledger_issue:{issue}",
                                                                      AuditEvent.action.like("escalation.%"))).all()
        assert sorted(escalations) == sorted(f"escalation.{s}" for _, s, _ in expected)

    # The city leader opens 督办 (web, in this process, at the frozen time) and urges with a new deadline.
    clock.freeze(at(2025, 9, 15))
    app = web_app(stack)
    try:
        wang = log_in(app, "wang")
        page = wang.get("/supervision").get_data(as_text=True)
        assert "工业和信息化局" in page and "企业用电增容迟迟未落实" in page and 'class="light red"' in page
        assert "市级领导" in page
        action = f"/supervision/issue/{issue}/urge"  # the form as the page gave it: a new deadline needs its `seen`
        response = wang.post(action, data={**form_at(wang, "/supervision", action), "due_date": "2025-09-19",
                                           "message": "本周五前办结"})
        assert response.status_code == 302
    finally:
        app.extensions["jzflow.engine"].dispose()
    with session_scope(stack.factory) as session:
        assert session.get(LedgerIssue, issue).due_at == sla.deadline_of(date(2025, 9, 19))  # type: ignore[union-attr]
        handle = session.scalar(select(HumanTask).where(HumanTask.bpmn_id == "handle", HumanTask.state == "ready"))
        assert handle is not None and handle.due_at == sla.deadline_of(date(2025, 9, 19))

    for _ in range(2):
        send(stack, SWEEP, now=at(2025, 9, 22).isoformat())
        sent += 1
    stack.workers.started[0].wait_until(lambda: succeeded(stack, SWEEP) == sent, 60, what="round 2's sweeps")
    assert steps(stack, issue) == [*expected, (2, "yellow", False), (2, "red", False), (2, "handler", False)]

    send(stack, "engine.jobs.deliver_outbox")
    with session_scope(stack.factory) as session:
        pending = session.scalar(select(func.count()).select_from(OutboxMessage))
    stack.workers.started[0].wait_until(lambda: stack.count(select(func.count()).select_from(Notification)) == pending,
                                        60, what=f"{pending} in-app notifications")
    with session_scope(stack.factory) as session:
        titles = session.scalars(select(Notification.title).where(Notification.user_id == ids["zhang"])
                                 .order_by(Notification.id)).all()
        assert titles == ["临期提醒: WT-2025-0001 企业用电增容迟迟未落实", "逾期提醒: WT-2025-0001 企业用电增容迟迟未落实",
                          "市领导王建国督办: WT-2025-0001 企业用电增容迟迟未落实",
                          "临期提醒: WT-2025-0001 企业用电增容迟迟未落实", "逾期提醒: WT-2025-0001 企业用电增容迟迟未落实"]
        assert audit.verify(session).ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_with_redis_down_the_web_serves_and_notifications_wait_then_arrive_once(
        stack: Stack, frozen_2025: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpSink() as smtp, HookSink() as hooks:
        monkeypatch.setenv("JZFLOW_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("JZFLOW_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")  # the hook sink is on loopback
        with session_scope(stack.factory) as session:
            people = make_org(session)
            zhang = int(people["zhang"].user_id or 0)
            notify.set_preference(session, user_id=zhang, kind="*", channels=["in_app", "email", "webhook"])
            notify.set_webhook(session, user_id=zhang, url=hooks.url("/wecom/zhang"))
        with session_scope(stack.factory) as session:
            instance, issue = open_issue(session, people, due="2025-09-03")

        # The web app's broker: a port where nothing listens (Redis "stopped"); the app does kick the outbox.
        dead = config.Settings(instance_dir=stack.settings.instance_dir, database_url=stack.settings.database_url,
                               redis_url=f"redis://127.0.0.1:{free_port()}/0")
        monkeypatch.setattr(celery_app, "celery", celery_app.make_celery(dead))
        clock.freeze(at(2025, 9, 5))
        app = web_app(stack, TESTING=False)
        try:
            zhang_web = log_in(app, "zhang")
            handle = stack.count(select(HumanTask.id).where(HumanTask.instance_id == instance,
                                                            HumanTask.bpmn_id == "handle", HumanTask.state == "ready"))
            started = time.monotonic()
            done = zhang_web.post(f"/tasks/{handle}/complete", data={
                "csrf_token": csrf_of(zhang_web, f"/tasks/{handle}"), "f/action": "progress",
                "f/progress": "已约谈供电公司，方案三日内批复。", "f/percent": "40"})
            completing = time.monotonic() - started
            assert done.status_code == 302, done.get_data(as_text=True)
            assert stack.count(select(func.count()).select_from(HumanTask).where(
                HumanTask.instance_id == instance, HumanTask.bpmn_id == "handle", HumanTask.state == "completed")) == 1

            with session_scope(stack.factory) as session:  # what beat's sweep would have done
                escalation.sweep(session, now=clock.now())
            zhou = log_in(app, "zhou")
            urged = zhou.post(f"/supervision/issue/{issue}/urge", data={
                "csrf_token": csrf_of(zhou, "/supervision"), "message": "请今天内反馈"})
            assert urged.status_code == 302
            assert zhou.get("/supervision").status_code == 200
        finally:
            app.extensions["jzflow.engine"].dispose()

        with session_scope(stack.factory) as session:
            kinds = dict(session.execute(select(OutboxMessage.kind, func.count()).group_by(OutboxMessage.kind)).all())
            assert session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.delivered_at.is_not(None))) == 0
        # 张伟 (all three channels): yellow, handler, the urge; 周 (in-app only): unit head (+1 working day).
        assert kinds == {"in_app": 4, "email": 3, "webhook": 3}, kinds
        assert smtp.mails == [] and hooks.hooks == [] and stack.count(select(func.count()).select_from(Notification)) == 0

        # Redis is back: a worker with beat delivers what waited, by itself.
        worker = stack.start_worker({"JZFLOW_OUTBOX_SECONDS": "1", "JZFLOW_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}, beat=True)
        worker.wait_until(lambda: stack.count(select(func.count()).select_from(OutboxMessage)
                                              .where(OutboxMessage.delivered_at.is_not(None))) == 10,
                          60, what="all 10 outbox messages to be delivered")
        runs = succeeded(stack, "engine.jobs.deliver_outbox")
        worker.wait_until(lambda: succeeded(stack, "engine.jobs.deliver_outbox") >= runs + 3, 30,
                          what="three more deliveries by beat (which must find nothing)")

    with session_scope(stack.factory) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 4
        assert set(session.scalars(select(OutboxMessage.attempts))) == {1}
    assert len(smtp.mails) == 3 and len(hooks.hooks) == 3
    assert sorted(m.subject for m in smtp.mails) == sorted(h.body["text"]["content"].splitlines()[0]
                                                           for h in hooks.hooks)
    assert completing < 30, f"completing a task with the broker down took {completing:.1f} s"
