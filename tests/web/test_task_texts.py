"""The task page's free texts (意见, 评论, 说明, 理由) are kept whole or refused, never cut.

A browser counts a line break as one character against a textarea's `maxlength` and sends it as two (CR LF): a
4,000-character opinion with line breaks arrived longer and its end was cut off without a word — so was anything
longer posted by hand, and an API client's opinion or note past 4,000 characters. Line breaks are now read as the
browser counted them; a text still past the limit is refused (422) naming its field, and nothing is changed.
"""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.tasks.collab_models import Comment
from tests.web.flows import token_for
from tests.web.test_task_page import at_review, deployed, post, row, task_of

__all__ = ["deployed"]
Login = Callable[[str], FlaskClient]
LINES = "\n".join(["同意立项，请按程序办理后续手续。" + "。" * 24] * 100)[:4000]  # 100 lines, 4,000 as a browser counts


def _comments(factory: sessionmaker[Session], kind: str) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(Comment.body).where(Comment.kind == kind).order_by(Comment.id)))


def test_an_opinion_with_line_breaks_at_the_browsers_limit_is_kept_whole(deployed: sessionmaker[Session],
                                                                          login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    sent = LINES.replace("\n", "\r\n")  # as the browser sends it
    assert len(LINES) == 4000 and len(sent) > 4000
    response = post(fg, f"/tasks/{review}/complete", {"f/approved": "true", "opinion": sent})
    assert response.status_code == 302
    assert _comments(deployed, "opinion") == [LINES]


def test_texts_past_the_limit_are_refused_naming_the_field_not_cut(deployed: sessionmaker[Session],
                                                                   login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    long = "意" * 4001
    refused = post(fg, f"/tasks/{review}/complete", {"f/approved": "true", "opinion": long})
    assert refused.status_code == 422 and "opinion" in refused.get_data(as_text=True)
    assert long in refused.get_data(as_text=True)  # the page again, what was typed kept
    assert row(deployed, review).state == "ready" and _comments(deployed, "opinion") == []
    comment = post(fg, f"/tasks/{review}/comments", {"body": long})
    assert comment.status_code == 422 and "body" in comment.get_data(as_text=True)
    with deployed() as s:
        assert s.scalar(select(func.count()).select_from(Comment)) == 0
    assert post(fg, f"/tasks/{review}/comments", {"body": LINES.replace("\n", "\r\n")}).status_code == 302
    assert _comments(deployed, "comment") == [LINES]


def test_the_apis_texts_past_the_limit_are_refused_naming_the_field(app: Flask, deployed: sessionmaker[Session],
                                                                    login: Login) -> None:
    instance_id, review = at_review(deployed)
    client = login("fg")
    headers = {"Authorization": f"Bearer {token_for(app, 'fg')}"}
    refused = client.post(f"/api/tasks/{review}/complete", headers=headers,
                          json={"data": {"approved": True}, "opinion": "意" * 4001})
    assert refused.status_code == 422 and refused.json["field"] == "opinion", refused.json  # type: ignore[index]
    assert row(deployed, review).state == "ready" and _comments(deployed, "opinion") == []
    moved = client.post(f"/api/tasks/{review}/transfer", headers=headers,
                        json={"to_username": "boss", "note": "转" * 4001})
    assert moved.status_code == 422 and moved.json["field"] == "note", moved.json  # type: ignore[index]
    assert task_of(deployed, instance_id, "review") == review and row(deployed, review).assignee_id is None
