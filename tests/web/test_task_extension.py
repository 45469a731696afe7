"""申请延期 from the task page: the step's holder asks for a later deadline with a reason; 督办 sees the request and
decides it; the task page shows it pending (the form gone) and then its outcome. A refusal (no reason, a reason past
2,000 characters, a day not later than the deadline) names its field, keeps what was typed and stores nothing; a
double click stores one request; a second form sent while one is pending is refused (409)."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, tasks
from engine.audit.models import AuditEvent
from engine.deadlines import sla
from engine.deadlines.models import ExtensionRequest
from engine.org.actors import actor_for
from engine.org.models import OrgUnit, User
from engine.tasks.models import HumanTask
from tests.web.conftest import form_at
from tests.web.test_task_page import at_review, deployed, page, post

__all__ = ["deployed"]
Login = Callable[[str], FlaskClient]


def _today() -> date:
    return clock.now().astimezone(clock.SHANGHAI).date()


def with_deadline(factory: sessionmaker[Session], days: int = 3) -> tuple[int, date]:
    """The review step, claimed by fg (发改), with a deadline in `days` days; 领导孙八 (boss) heads 发改."""
    _, review = at_review(factory)
    due = _today() + timedelta(days=days)
    with factory() as s:
        tasks.claim(s, task_id=review, actor=actor_for(s, "fg"))
        task = s.get(HumanTask, review)
        assert task is not None
        task.due_at = sla.deadline_of(due)
        unit = s.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
        assert unit is not None
        unit.leader_id = s.scalar(select(User.id).where(User.username == "boss"))
        s.commit()
    return review, due


def stored(factory: sessionmaker[Session]) -> tuple[list[ExtensionRequest], int]:
    with factory() as s:
        rows = list(s.scalars(select(ExtensionRequest).order_by(ExtensionRequest.id)))
        s.expunge_all()
        audited = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "supervision.extension_request")) or 0
        return rows, audited


def test_the_holder_asks_and_the_leader_sees_and_decides(deployed: sessionmaker[Session], login: Login) -> None:
    review, due = with_deadline(deployed)
    fg = login("fg")
    action = f"/tasks/{review}/extension-requests"
    fields = {**form_at(fg, f"/tasks/{review}", action), "due_date": (due + timedelta(days=7)).isoformat(),
              "reason": "环评批复\r\n尚未下达"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first, second = fg.post(action, data=fields), fg.post(action, data=fields)  # a double click
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"] and "#extension" in first.headers["Location"]
    rows, audited = stored(deployed)
    assert len(rows) == 1 and audited == 1
    assert rows[0].reason == "环评批复\n尚未下达" and rows[0].status == "pending"
    assert rows[0].requested_due_at == sla.deadline_of(due + timedelta(days=7))
    html = page(fg, review)
    assert "待审批" in html and "环评批复" in html and action not in html  # the request shown, the form gone

    boss = login("boss")
    listed = boss.get("/supervision").get_data(as_text=True)
    assert f'id="task-{review}"' in listed and "申请延期" in listed
    decide = f"/supervision/task/{review}/extension"
    decided = boss.post(decide, data={**form_at(boss, "/supervision", decide), "decision": "grant",
                                      "due_date": (due + timedelta(days=7)).isoformat(), "opinion": "同意"})
    assert decided.status_code == 302
    html = page(fg, review)
    assert "已批准" in html and "同意" in html and action in html  # the outcome, and a new request may be made


def test_refusals_name_the_field_keep_the_text_and_store_nothing(deployed: sessionmaker[Session],
                                                                 login: Login) -> None:
    review, due = with_deadline(deployed)
    fg = login("fg")
    action = f"/tasks/{review}/extension-requests"
    later = (due + timedelta(days=7)).isoformat()
    at_limit = "理由\r\n" * 500  # 2,000 as the browser counts
    cases = [({"due_date": later, "reason": "  "}, "reason"),
             ({"due_date": later, "reason": "长" * 2001}, "reason"),
             ({"due_date": due.isoformat(), "reason": "材料未齐全"}, "due_date"),
             ({"due_date": "", "reason": "材料未齐全"}, "due_date"),
             ({"due_date": "2026-13-45", "reason": "材料未齐全"}, "due_date")]
    for data, field in cases:
        refused = fg.post(action, data={**form_at(fg, f"/tasks/{review}", action), **data})
        body = refused.get_data(as_text=True)
        assert refused.status_code == 422 and field in body, (data, body[:500])
        if data["reason"].strip():
            assert data["reason"] in body  # what was typed, on the page again
        assert stored(deployed) == ([], 0)
    kept = fg.post(action, data={**form_at(fg, f"/tasks/{review}", action), "due_date": later, "reason": at_limit})
    assert kept.status_code == 302 and stored(deployed)[0][0].reason == at_limit.replace("\r\n", "\n").strip()


def test_a_second_request_while_one_is_pending_is_refused(deployed: sessionmaker[Session], login: Login) -> None:
    review, due = with_deadline(deployed)
    fg = login("fg")
    action = f"/tasks/{review}/extension-requests"
    later = (due + timedelta(days=7)).isoformat()
    one, two = (form_at(fg, f"/tasks/{review}", action) for _ in range(2))  # two tabs, drawn before either was sent
    assert fg.post(action, data={**one, "due_date": later, "reason": "第一次"}).status_code == 302
    again = fg.post(action, data={**two, "due_date": later, "reason": "第二次"}, headers={"Accept": "text/html"})
    assert again.status_code == 409
    assert [r.reason for r in stored(deployed)[0]] == ["第一次"]


def test_who_does_not_hold_the_step_is_refused(deployed: sessionmaker[Session], login: Login) -> None:
    review, due = with_deadline(deployed)
    action = f"/tasks/{review}/extension-requests"
    data = {"due_date": (due + timedelta(days=7)).isoformat(), "reason": "材料未齐全"}
    applicant = login("applicant")  # the instance's initiator sees the step, does not hold it
    assert action not in page(applicant, review)
    refused = post(applicant, action, data)
    assert refused.status_code == 403
    assert post(applicant, action, {}).status_code == 403  # not theirs: said before what the fields lack
    hidden = post(login("window"), action, data)  # may not see it: as if it did not exist
    assert hidden.status_code == 404 and f"任务不存在: {review}" in hidden.get_data(as_text=True)
    assert stored(deployed) == ([], 0)


def test_no_form_without_a_deadline(deployed: sessionmaker[Session], login: Login) -> None:
    review, _ = with_deadline(deployed)
    with deployed() as s:
        task = s.get(HumanTask, review)
        assert task is not None
        task.due_at = task.warn_at = None
        s.commit()
    assert f"/tasks/{review}/extension-requests" not in page(login("fg"), review)
