"""Forms that add rows and carried no `once` (web/once.py): 生成报表, a task's and 督办's 催办, and 新建用户. Sent
twice — a double click, a resend after a slow answer, a refresh — the second copy is answered with the first's page
and nothing is added twice; the same page used again with another form is refused (409, 此表单已提交过), a malformed
key too (422, naming `once`), nothing written."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.audit.models import AuditEvent
from engine.deadlines import sla
from engine.deadlines.models import DeadlineAction
from engine.org import idempotency
from engine.org.models import User
from engine.org.token_models import IdempotencyRecord
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask
from plan import reports
from plan.ledger.models import LedgerIssue
from plan.reports.models import ReportRun
from tests.web.conftest import form_at
from tests.web.flows import db
from tests.web.test_supervision import SH, leaders, swept
from tests.web.test_task_page import at_review, deployed, flashes, post

__all__ = ["deployed", "leaders"]
Login = Callable[[str], FlaskClient]


def sent_twice(client: FlaskClient, action: str, fields: dict[str, Any], *, said: str,
               other: dict[str, str]) -> None:
    """Post the form twice: the second copy is the first's answer (redirected alike, its flash `said` shown again);
    the same page sent with `other` fields is refused 409."""
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first = client.post(action, data=fields)
    assert first.status_code == 302
    client.get(first.headers["Location"])  # its flash shown
    second = client.post(action, data=fields)
    assert second.status_code == 302 and second.headers["Location"] == first.headers["Location"]
    assert said in client.get(second.headers["Location"]).get_data(as_text=True)
    reused = client.post(action, data={**fields, **other})
    assert reused.status_code == 409 and "此表单已提交过" in reused.get_data(as_text=True)


def _runs(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(ReportRun)) or 0


def test_a_report_asked_for_twice_is_one_run_even_after_the_first_is_done(
        leaders: dict[str, int], login: Login, factory: sessionmaker[Session]) -> None:
    """A pending run was found again by `create_run`, but a resend after the report was generated (a refresh of the
    POST, a slow answer clicked again) asked for a second one: the form carries `once`."""
    boss = login("boss")
    fields: dict[str, Any] = {**form_at(boss, "/reports", "/reports"), "kind": "weekly", "day": "2025-09-03"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first = boss.post("/reports", data=fields)
    assert first.status_code == 302
    run_id = int(first.headers["Location"].rsplit("/", 1)[1])
    assert reports.run(factory, run_id) == "done"
    second = boss.post("/reports", data=fields)
    assert second.status_code == 302 and second.headers["Location"] == first.headers["Location"]
    assert _runs(factory) == 1
    reused = boss.post("/reports", data={**fields, "kind": "monthly"})
    assert reused.status_code == 409 and "此表单已提交过" in reused.get_data(as_text=True) and _runs(factory) == 1
    malformed = boss.post("/reports", data={**fields, "once": "x" * 65})
    assert malformed.status_code == 422 and "once" in malformed.get_data(as_text=True) and _runs(factory) == 1
    fresh = {**form_at(boss, "/reports", "/reports"), "kind": "weekly", "day": "2025-09-03"}
    assert boss.post("/reports", data=fresh).status_code == 302 and _runs(factory) == 2  # a page drawn again: anew


def _urges(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as s:
        return (s.scalar(select(func.count()).select_from(Comment).where(Comment.kind == "urge")) or 0,
                s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "task.urge")) or 0)


def test_an_urge_sent_twice_is_one_urge_and_the_second_is_told_what_the_first_did(
        deployed: sessionmaker[Session], login: Login) -> None:
    """The second copy of 催办 was refused 429 一小时内已催办过, as if someone had urged before: it is the first's
    answer now (已催办 1 人), one urge comment, one notice per person."""
    _, review = at_review(deployed)
    fg, applicant = login("fg"), login("applicant")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/urge"
    fields = {**form_at(applicant, f"/tasks/{review}", action), "message": "请尽快"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first = applicant.post(action, data=fields)
    assert "已催办 1 人" in flashes(applicant.get(first.headers["Location"]).get_data(as_text=True))
    second = applicant.post(action, data=fields)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert _urges(deployed) == (1, 1)
    assert "已催办 1 人" in flashes(applicant.get(second.headers["Location"]).get_data(as_text=True))
    reused = applicant.post(action, data={**fields, "message": "再催"})
    assert reused.status_code == 409 and "此表单已提交过" in reused.get_data(as_text=True) and _urges(deployed) == (1, 1)
    malformed = applicant.post(action, data={**fields, "once": "é"})
    assert malformed.status_code == 422 and "once" in malformed.get_data(as_text=True) and _urges(deployed) == (1, 1)
    fresh = {**form_at(applicant, f"/tasks/{review}", action), "message": "再催"}  # a new page: the hour's limit
    assert applicant.post(action, data=fresh).status_code == 429 and _urges(deployed) == (1, 1)


def test_a_new_user_form_sent_twice_makes_one_user_and_keeps_no_plain_hash_of_the_password(
        app: Flask, login: Login) -> None:
    """新建用户 sent twice was refused 409 用户已存在 by its own first copy: it is the first's answer now. The key's
    record holds a fingerprint of the form; a plain SHA-256 over the password would be a fast hash of it kept beside
    the user's slow one, so the password enters it only keyed with the app's secret."""
    admin = login("admin")
    fields = {**form_at(admin, "/admin", "/admin/users"), "username": "li", "display_name": "李明",
              "password": "Secret-pass-1"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first, second = admin.post("/admin/users", data=fields), admin.post("/admin/users", data=fields)
    assert first.status_code == second.status_code == 302, second.get_data(as_text=True)
    assert first.headers["Location"] == second.headers["Location"]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.username == "li")) == 1
        prints = list(s.scalars(select(IdempotencyRecord.fingerprint)))
    sent = sorted((k, v) for k, v in fields.items() if k != "csrf_token")
    assert prints and idempotency.fingerprint("POST", "/admin/users", json.dumps(sent).encode()) not in prints
    other = admin.post("/admin/users", data={**fields, "password": "Secret-pass-2"})  # the page used again
    assert other.status_code == 409 and "此表单已提交过" in other.get_data(as_text=True)
    malformed = admin.post("/admin/users", data={**fields, "username": "wang", "once": "x" * 65})
    assert malformed.status_code == 422 and "once" in malformed.get_data(as_text=True)
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.username.in_(("li", "wang")))) == 1


def test_a_supervision_urge_sent_twice_is_one_urge(leaders: dict[str, int], login: Login,
                                                   factory: sessionmaker[Session]) -> None:
    """督办's 催办 (with a new deadline) sent twice: the second copy was refused 429 一小时内已催办过 by its own
    first; it is the first's answer now, one action, the deadline moved once."""
    swept(factory, datetime(2025, 9, 5, 10, tzinfo=SH))
    boss, issue = login("boss"), leaders["issue"]
    action = f"/supervision/issue/{issue}/urge"
    fields = {**form_at(boss, "/supervision", action), "due_date": "2025-09-12", "message": "请本周办结"}
    sent_twice(boss, action, fields, said="已催办", other={"message": "再催"})
    with factory() as session:
        assert session.scalars(select(DeadlineAction.action)).all() == ["urge"]
        assert session.get(LedgerIssue, issue).due_at == sla.deadline_of(date(2025, 9, 12))  # type: ignore[union-attr]


def test_cosigners_added_twice_are_added_once(deployed: sessionmaker[Session], login: Login) -> None:
    """加签 sent twice was refused 422 "zr 已是办理人或加签人" by its own first copy: it is the first's answer now,
    one co-signing task."""
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/cosigners"
    fields = {**form_at(fg, f"/tasks/{review}", action), "usernames": "zr", "position": "before", "note": "请会签"}
    sent_twice(fg, action, fields, said="已加签", other={"usernames": "st"})
    with deployed() as s:
        assert s.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.kind == "cosign")) == 1
