"""The outbox through a real worker on PostgreSQL and Redis, SIGKILLed while a mail is out and not yet recorded.

SMTP has no exactly-once: a worker killed after the relay said "250" and before its transaction marked the
message delivered leaves the message pending, and the next delivery sends it again. What can be made true is
that the second copy is the same message: its Message-ID comes from the outbox row, so mail systems and
clients that drop a Message-ID they already hold keep one (RFC 5322 §3.6.4). Nothing is lost, and the row is
marked delivered once.
"""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from engine import notify, org
from engine.db import session_scope
from engine.notify.models import OutboxMessage
from engine.org.actors import actor_for
from tests.scale import test_worker as scale
from tests.sinks import SmtpSink

pytestmark = pytest.mark.scale
JOB = "engine.jobs.deliver_outbox"
redis_db, redis_url, stack = scale.redis_db, scale.redis_url, scale.stack  # the scale path's fixtures


def test_a_worker_killed_between_the_relay_s_250_and_its_commit_resends_the_same_message(
        stack: scale.Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    hold = threading.Event()
    with SmtpSink(hold=hold) as smtp:
        monkeypatch.setenv("JZFLOW_SMTP_HOST", "127.0.0.1")  # read when the notification is recorded
        monkeypatch.setenv("JZFLOW_SMTP_PORT", str(smtp.port))
        with session_scope(stack.factory) as session:
            org.add_user(session, username="wang", display_name="王建国", email="wang@jiaozhou.test")
            wang = int(actor_for(session, "wang").user_id or 0)
            notify.set_preference(session, user_id=wang, kind="*", channels=["email"])
            notify.send(session, notify.Note(user_id=wang, kind="escalation", title="督办升级(单位负责人): 用电增容",
                                             body="已逾期 2 个工作日。", key="esc:task:7:1:unit_head"))

        def delivered() -> int:
            return stack.count(select(func.count()).select_from(OutboxMessage)
                               .where(OutboxMessage.delivered_at.is_not(None)))

        lease = {"JZFLOW_OUTBOX_LEASE_SECONDS": "2"}  # counted and leased before it is sent: resent after this
        first = stack.start_worker(lease)
        stack.send(JOB)
        first.wait_until(smtp.received.is_set, 30, what="the relay to take the mail")
        first.kill()  # SIGKILL while the worker waits for the answer to QUIT: the mail is out, nothing recorded
        hold.set()
        assert len(smtp.mails) == 1 and delivered() == 0, stack.workers.tails()

        # Beat runs the outbox every second; the mail goes again once the killed worker's lease has run out.
        second = stack.start_worker({**lease, "JZFLOW_OUTBOX_SECONDS": "1"}, beat=True)
        second.wait_until(delivered, 30, what="the message to be delivered")

    with session_scope(stack.factory) as session:
        [msg] = session.scalars(select(OutboxMessage)).all()
        assert msg.delivered_at is not None and msg.attempts == 2  # the killed attempt counted
    assert len(smtp.mails) == 2  # what no sender can avoid; the copies are one message to whoever reads them
    ids = {m.message["Message-ID"] for m in smtp.mails}
    assert len(ids) == 1 and None not in ids, ids
    assert [m.subject for m in smtp.mails] == ["督办升级(单位负责人): 用电增容"] * 2
