"""The task page's forms that change state, sent twice — a double click, a resend after a slow answer — get the first
answer (its redirect, its flash) and do nothing twice; never an error caused by the user's own first click. A new
page draw after the work is done still gets today's clear refusal."""
from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.audit.models import AuditEvent
from engine.tasks.collab_models import CarbonCopy
from tests.web.conftest import form_at
from tests.web.test_forms_once import sent_twice
from tests.web.test_task_page import at_review, deployed, post

__all__ = ["deployed"]
Login = Callable[[str], FlaskClient]


def _audited(factory: sessionmaker[Session], action: str) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)) or 0


def test_a_task_submitted_twice_gets_the_first_answer(deployed: sessionmaker[Session], login: Login) -> None:
    """提交 sent twice was refused 409 (already done) by its own first click: it is the first's answer now (its
    redirect, 已提交), one completion; the form kept from before it, with a new key, is still refused 409."""
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/complete"
    fields = {**form_at(fg, f"/tasks/{review}", action), "f/approved": "true", "opinion": "同意立项"}
    before = _audited(deployed, "task.complete")  # the applicant's 填报
    sent_twice(fg, action, fields, said="已提交", other={"opinion": "另一个意见"})
    assert _audited(deployed, "task.complete") == before + 1
    again = fg.post(action, data={**fields, "once": "0" * 32})  # another page's key: the step is done, said so
    assert again.status_code == 409 and "此表单已提交过" not in again.get_data(as_text=True)
    assert _audited(deployed, "task.complete") == before + 1


def _copies(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(CarbonCopy)) or 0


def test_a_cc_sent_again_after_it_was_read_reaches_no_one_twice(deployed: sessionmaker[Session],
                                                                 login: Login) -> None:
    """抄送's own de-duplication looks at unread copies only: resent after the recipient had read the first copy, it
    reached them again. The form carries `once` now: the resend is the first's answer, one copy; a 抄送 from a page
    drawn again later still reaches them."""
    _, review = at_review(deployed)
    fg, boss = login("fg"), login("boss")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/cc"
    fields = {**form_at(fg, f"/tasks/{review}", action), "usernames": "boss", "note": "请阅"}
    first = fg.post(action, data=fields)
    assert first.status_code == 302 and _copies(deployed) == 1
    assert post(boss, "/inbox/cc/read-all").status_code == 302  # boss reads it
    sent_twice(fg, action, fields, said="已抄送给", other={"note": "另一说明"})
    assert _copies(deployed) == 1 and _audited(deployed, "instance.cc") == 1
    fresh = {**form_at(fg, f"/tasks/{review}", action), "usernames": "boss", "note": "请阅"}  # a deliberate 抄送
    assert fg.post(action, data=fresh).status_code == 302 and _copies(deployed) == 2
