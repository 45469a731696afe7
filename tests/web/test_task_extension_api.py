"""申请延期 through the JSON API (POST /api/tasks/<id>/extension-requests): the holder's request stored and audited
(201); refusals as problem answers naming the field (422), nothing stored; one who does not hold the step 403, one who
may not see it 404; an `Idempotency-Key` retry stores once; two sent at once: one stored, the other 409."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from tests.web.flows import Api, token_for, two_at_once
from tests.web.test_task_extension import stored, with_deadline
from tests.web.test_task_page import deployed

__all__ = ["deployed"]
Login = Callable[[str], FlaskClient]


def test_the_holder_asks_through_the_api(app: Flask, deployed: sessionmaker[Session]) -> None:
    review, due = with_deadline(deployed)
    fg = Api(app, token_for(app, "fg"))
    path = f"/api/tasks/{review}/extension-requests"
    later = (due + timedelta(days=7)).isoformat()
    for sent, field in [({"due_date": later, "reason": " "}, "reason"), ({"due_date": later}, "reason"),
                        ({"due_date": later, "reason": "长" * 2001}, "reason"), ({"reason": "x"}, "due_date"),
                        ({"due_date": due.isoformat(), "reason": "x"}, "due_date"),
                        ({"due_date": 20261231, "reason": "x"}, "due_date"),
                        ({"due_date": "2026-02-30", "reason": "x"}, "due_date"),
                        ({"due_date": later, "reason": ["x"]}, "reason")]:
        refused = fg.post(path, sent)
        assert refused.status_code == 422, (sent, refused.json)
        assert refused.json is not None and refused.json["field"] == field, (sent, refused.json)
        assert stored(deployed) == ([], 0)
    headers = {**fg.headers, "Idempotency-Key": "ext-1"}
    sent = {"due_date": later, "reason": "环评批复尚未下达"}
    first = fg.client.post(path, headers=headers, json=sent)
    again = fg.client.post(path, headers=headers, json=sent)
    assert first.status_code == again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert first.json == again.json and first.json is not None
    assert first.json["status"] == "pending" and first.json["task_id"] == review
    assert first.json["reason"] == "环评批复尚未下达"
    rows, audited = stored(deployed)
    assert len(rows) == 1 and audited == 1 and rows[0].id == first.json["id"]
    pending = fg.post(path, {"due_date": later, "reason": "再申请"})
    assert pending.status_code == 409 and pending.json is not None and "pending" in pending.json["message"]
    assert len(stored(deployed)[0]) == 1


def test_who_does_not_hold_the_step_is_refused(app: Flask, deployed: sessionmaker[Session]) -> None:
    review, due = with_deadline(deployed)
    sent = {"due_date": (due + timedelta(days=7)).isoformat(), "reason": "材料未齐全"}
    path = f"/api/tasks/{review}/extension-requests"
    refused = Api(app, token_for(app, "applicant")).post(path, sent)  # sees it (their instance), does not hold it
    assert refused.status_code == 403 and refused.json is not None and refused.json["error"] == "not_your_task"
    assert Api(app, token_for(app, "applicant")).post(path, {}).status_code == 403  # before what the body lacks
    hidden = Api(app, token_for(app, "window")).post(path, sent)  # may not see it: as if it did not exist
    assert hidden.status_code == 404
    assert Api(app, token_for(app, "fg")).post("/api/tasks/999999/extension-requests", sent).status_code == 404
    assert stored(deployed) == ([], 0)


def test_two_sent_at_once_store_one(app: Flask, deployed: sessionmaker[Session]) -> None:
    review, due = with_deadline(deployed)
    fg = Api(app, token_for(app, "fg"))
    path = f"/api/tasks/{review}/extension-requests"
    later = (due + timedelta(days=7)).isoformat()
    answers = two_at_once(lambda: fg.post(path, {"due_date": later, "reason": "甲"}),
                          lambda: fg.post(path, {"due_date": later, "reason": "乙"}))
    assert sorted(a.status_code for a in answers) == [201, 409], [a.json for a in answers]
    assert len(stored(deployed)[0]) == 1
