"""A comment sent twice — a double click on 发表, a resend after a slow answer — is one comment, not two: the form
carries `once` (web/once.py); the second post gets the first's answer. The same page used for another comment after
it was sent is refused (409, reload), nothing written; a page drawn again comments anew."""
from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.audit.models import AuditEvent
from engine.tasks.collab_models import Comment
from tests.web.conftest import form_at
from tests.web.test_task_page import at_review, deployed

__all__ = ["deployed"]
Login = Callable[[str], FlaskClient]


def _count(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as s:
        return (s.scalar(select(func.count()).select_from(Comment)) or 0,
                s.scalar(select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.action == "instance.comment")) or 0)


def test_a_comment_sent_twice_is_one_comment(deployed: sessionmaker[Session], login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    action = f"/tasks/{review}/comments"
    fields = {**form_at(fg, f"/tasks/{review}", action), "body": "请补充环评批复"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields.get("once", "")), fields
    first, second = fg.post(action, data=fields), fg.post(action, data=fields)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert _count(deployed) == (1, 1)
    reused = fg.post(action, data={**fields, "body": "另一条评论"})
    assert reused.status_code == 409 and _count(deployed) == (1, 1)
    fresh = {**form_at(fg, f"/tasks/{review}", action), "body": "另一条评论"}
    assert fg.post(action, data=fresh).status_code == 302 and _count(deployed) == (2, 2)
