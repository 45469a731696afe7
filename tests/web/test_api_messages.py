"""POST /api/messages, GET /api/messages/{id}, POST /api/signals: rights, retries, malformed input."""
from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from engine import org
from engine.org.actors import actor_for
from engine.runtime import instances
from engine.runtime.message_models import BpmnMessage
from engine.runtime.models import ProcessInstance
from tests.conftest import read_fixture_dir
from tests.web.flows import Api, db, deploy_files, token_for


def _setup(app: Flask) -> tuple[Api, Api, Api]:
    deploy_files(app, read_fixture_dir("messages"))
    return (Api(app, token_for(app, "admin")), Api(app, token_for(app, "applicant")),
            Api(app, token_for(app, "window")))


def _waiting(app: Flask, application_id: int, username: str = "admin", business_key: str | None = None) -> int:
    with db(app) as s:
        return instances.start(s, process_key="msg_case", actor=actor_for(s, username), business_key=business_key,
                               data={"application_id": application_id, "resumed": 0}).id


def test_a_message_resumes_the_instance_and_a_retry_with_the_key_does_not_resume_it_again(app: Flask) -> None:
    admin, _applicant, _window = _setup(app)
    iid = _waiting(app, 5)
    body = {"name": "supplement", "correlations": {"application_id": "5"}, "data": {"pages": 2}}
    headers = {**admin.headers, "Idempotency-Key": "portal-5-1"}
    first = admin.client.post("/api/messages", json=body, headers=headers)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.json is not None and (first.json["status"], first.json["instance_id"]) == ("delivered", iid)
    again = admin.client.post("/api/messages", json=body, headers=headers)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json == first.json
    other = admin.client.post("/api/messages", json={**body, "data": {"pages": 3}}, headers=headers)
    assert other.status_code == 422  # the same key for another message
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 1
    shown = admin.get(f"/api/messages/{first.json['id']}")
    assert shown.status_code == 200 and shown.json is not None and shown.json["status"] == "delivered"


def test_buffered_is_202_and_only_its_sender_or_an_admin_sees_it(app: Flask) -> None:
    admin, applicant, window = _setup(app)
    iid = _waiting(app, 1, username="applicant", business_key="A-1")
    withdraw = {"name": "withdraw", "business_key": "A-1", "data": {"why": "x"}}
    # the instance is not at its review yet (it waits for 补正): the applicant's withdrawal is kept
    kept = applicant.post("/api/messages", withdraw)
    assert kept.status_code == 202 and kept.json is not None and kept.json["status"] == "buffered"
    assert kept.json["expires_at"] is not None
    assert applicant.get(f"/api/messages/{kept.json['id']}").status_code == 200
    assert window.get(f"/api/messages/{kept.json['id']}").status_code == 404
    assert admin.get(f"/api/messages/{kept.json['id']}").status_code == 200
    assert admin.get("/api/messages/999999").status_code == 404
    assert iid


def test_who_may_send_what(app: Flask) -> None:
    _admin, applicant, window = _setup(app)
    _waiting(app, 2)
    # no catch of `supplement` names any sender: only admins
    refused = applicant.post("/api/messages", {"name": "supplement", "correlations": {"application_id": 2},
                                               "data": {"pages": 1}})
    assert refused.status_code == 403 and refused.json is not None and refused.json["error"] == "forbidden"
    assert window.post("/api/signals", {"name": "plan_revised"}).status_code == 403
    # the withdrawal of someone else's application: refused outright when nothing may be kept (ttl 0)
    iid = _waiting(app, 3, username="applicant", business_key="A-3")
    assert iid
    nobody = window.post("/api/messages", {"name": "withdraw", "business_key": "A-3", "ttl": 0})
    assert nobody.status_code == 404 and nobody.json is not None and nobody.json["error"] == "message_unmatched"
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 0


def test_a_message_id_is_one_senders_not_shared_with_other_senders(app: Flask) -> None:
    admin, mine, _window = _setup(app)
    with db(app) as s:
        org.add_user(s, username="applicant2", display_name="项目单位李四", role_codes=["applicant"])
    theirs = Api(app, token_for(app, "applicant2"))
    a = _waiting(app, 1, username="applicant", business_key="A-1")
    b = _waiting(app, 2, username="applicant2", business_key="B-1")
    for n in (1, 2):  # both at their review, where the applicant may withdraw
        assert admin.post("/api/messages", {"name": "supplement", "correlations": {"application_id": str(n)},
                                            "data": {"pages": 1}}).status_code == 200
    first = mine.post("/api/messages", {"name": "withdraw", "business_key": "A-1", "message_id": "withdraw-1"})
    assert first.status_code == 200 and first.json is not None and first.json["instance_id"] == a, first.json
    second = theirs.post("/api/messages", {"name": "withdraw", "business_key": "B-1", "message_id": "withdraw-1"})
    assert second.status_code == 200 and second.json is not None, second.get_data(as_text=True)
    assert (second.json["status"], second.json["instance_id"]) == ("delivered", b), second.json
    assert second.json["id"] != first.json["id"]
    again = theirs.post("/api/messages", {"name": "withdraw", "business_key": "B-1", "message_id": "withdraw-1"})
    assert again.json is not None and (again.json["status"], again.json["id"], again.json["instance_id"]) == (
        "duplicate", second.json["id"], b)  # a retry: that sender's own first message, nobody else's
    with db(app) as s:
        assert s.scalars(select(ProcessInstance.status).where(ProcessInstance.id.in_((a, b)))).all() == [
            "completed", "completed"]  # withdrawn, each


def test_a_sender_without_the_right_learns_nothing_from_a_taken_message_id(app: Flask) -> None:
    admin, _applicant, window = _setup(app)
    iid = _waiting(app, 5)
    body = {"name": "supplement", "correlations": {"application_id": "5"}, "data": {"pages": 2},
            "message_id": "portal-5-1"}
    first = admin.post("/api/messages", body)
    assert first.json is not None and (first.json["status"], first.json["instance_id"]) == ("delivered", iid)
    assert window.post("/api/messages", {**body, "message_id": "portal-5-2"}).status_code == 403
    taken = window.post("/api/messages", body)
    assert taken.status_code == 403 and taken.json is not None and taken.json["error"] == "forbidden", taken.json
    assert "id" not in taken.json and "instance_id" not in taken.json  # neither the admin's message nor its instance
    with db(app) as s:  # nothing written for the refused sender
        assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 1
    again = admin.post("/api/messages", body)
    assert again.json is not None and (again.json["status"], again.json["id"]) == ("duplicate", first.json["id"])


def test_malformed_messages_name_the_field_and_change_nothing(app: Flask) -> None:
    admin, _applicant, _window = _setup(app)
    cases = [({}, "name"), ({"name": ""}, "name"), ({"name": 7}, "name"), ({"name": "x" * 201}, "name"),
             ({"name": "supplement", "correlations": [1]}, "correlations"),
             ({"name": "supplement", "correlations": {"a": {"b": 1}}}, "correlations"),
             ({"name": "supplement", "data": "text"}, "data"), ({"name": "supplement", "ttl": "1h"}, "ttl"),
             ({"name": "supplement", "ttl": -5}, "ttl"), ({"name": "supplement", "ttl": True}, "ttl"),
             ({"name": "supplement", "business_key": ["a"]}, "business_key"),
             ({"name": "supplement", "data": {"note": "长" * 70_000}}, "data")]
    for body, field in cases:
        response = admin.post("/api/messages", body)
        assert response.status_code == 422, (body, response.status_code)
        assert response.json is not None and response.json.get("field") == field, (body, response.json)
    unknown = admin.post("/api/messages", {"name": "<script>alert(1)</script>"})
    assert unknown.status_code == 404 and unknown.json is not None and unknown.json["error"] == "message_unknown"
    bad_payload = admin.post("/api/messages", {"name": "supplement", "correlations": {"application_id": 1},
                                               "data": {"pages": "many"}})
    assert bad_payload.status_code == 422 and bad_payload.json is not None
    assert bad_payload.json["error"] == "form_invalid"
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 0


def test_a_signal_is_broadcast_through_the_api(app: Flask) -> None:
    admin, _applicant, _window = _setup(app)
    with db(app) as s:
        for _ in range(2):
            instances.start(s, process_key="sig_wait", actor=actor_for(s, "admin"), data={"resumed": 0})
    response = admin.post("/api/signals", {"name": "plan_revised", "data": {"revision": 3}})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.json is not None and response.json["waiting"] == 2 and len(response.json["started"]) == 1


def test_a_sender_past_its_quota_of_kept_messages_gets_429_naming_it(app: Flask,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """600 requests a minute of 64 KB each, kept 30 days, were the only bound: 25 GB a month from one token."""
    monkeypatch.setenv("JZFLOW_MESSAGE_BUFFER_PER_SENDER", "2")
    _admin, applicant, _window = _setup(app)
    for n in range(2):
        kept = applicant.post("/api/messages", {"name": "withdraw", "business_key": f"X-{n}", "ttl": 86400})
        assert kept.status_code == 202, kept.get_data(as_text=True)
    refused = applicant.client.post("/api/messages", json={"name": "withdraw", "business_key": "X-9"},
                                    headers={**applicant.headers, "Idempotency-Key": "x-9"})
    assert refused.status_code == 429, refused.get_data(as_text=True)
    assert refused.json is not None and refused.json["error"] == "message_quota"
    assert (refused.json["quota"], refused.json["limit"]) == ("sender", 2)
    assert "JZFLOW_MESSAGE_BUFFER_PER_SENDER" in refused.json["message"]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 2


def test_a_sender_is_told_at_once_or_when_it_asks_that_a_busy_instance_never_got_its_message(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """ttl 0 (now or never) meeting a busy instance: 409 message_busy, nothing kept. A message kept for the worker
    and given up after its last try: GET says refused, and why, to its sender."""
    from engine.errors import ConcurrentModification
    from engine.runtime import message_worker
    from tests.engine.test_messages_concurrency import _busy_while

    admin, _applicant, window = _setup(app)
    iid = _waiting(app, 8)
    busy = _busy_while(monkeypatch, iid)
    body = {"name": "supplement", "correlations": {"application_id": 8}, "data": {"pages": 2}}
    now_or_never = admin.post("/api/messages", {**body, "ttl": 0})
    assert now_or_never.status_code == 409, now_or_never.get_data(as_text=True)
    assert now_or_never.json is not None and now_or_never.json["error"] == "message_busy"
    assert now_or_never.json["instance_id"] == iid and "ttl" in now_or_never.json["message"]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(BpmnMessage)) == 0
    kept = admin.post("/api/messages", body)
    assert kept.status_code == 202 and kept.json is not None
    assert (kept.json["status"], kept.json["instance_id"], kept.json["reason"]) == ("pending", None, None)
    with db(app) as s:
        assert message_worker.give_up(s, kept.json["id"], tries=10, error=ConcurrentModification(iid))
    busy.clear()
    told = admin.get(f"/api/messages/{kept.json['id']}")
    assert told.status_code == 200 and told.json is not None and told.json["status"] == "refused"
    assert f"#{iid}" in told.json["reason"] and "busy at every try" in told.json["reason"]
    assert window.get(f"/api/messages/{kept.json['id']}").status_code == 404  # another's: not even why
