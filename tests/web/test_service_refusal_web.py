"""A service refusing a person's submission, as people and clients see it: the inbox form comes back (422) with the
service's message under the field and what they typed; the API answers 422 naming the field. Nothing is kept.

Before: the submission was kept and the page said 已提交，但流程出现故障 (an incident for an administrator).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine import deploy, org
from engine.audit.models import AuditEvent
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM
from engine.runtime import core as runtime_core
from engine.runtime import effects, instances
from engine.runtime.models import Incident, ProcessInstance
from engine.tasks.models import HumanTask
from tests.engine.test_service_refusal import AT_START, FORM, PARALLEL, SEQUENTIAL, check
from tests.web.conftest import PASSWORD_HASH
from tests.web.flows import Api, db, post, token_for

Login = Callable[[str], FlaskClient]


@pytest.fixture
def refusing(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setitem(effects.REGISTRY, "test_refusal_check", check)
    monkeypatch.setattr(runtime_core, "_engine", None)  # the script engine copies the registry when it is built
    with db(app) as s:
        org.add_unit(s, code="dept", name="审批部门")
        for name in ("clerk_a", "clerk_b"):
            org.add_user(s, username=name, display_name=name, unit_codes=["dept"]).password_hash = PASSWORD_HASH
        deploy.deploy(s, {"seq.bpmn": SEQUENTIAL, "par.bpmn": PARALLEL, "start.bpmn": AT_START,
                          "amount.schema.json": FORM.encode()}, actor=SYSTEM, check_lanes=False)
    return app


def _open(app: Flask) -> tuple[int, int]:
    with db(app) as s:
        iid = instances.start(s, process_key="refusal_seq", actor=SYSTEM).id
    with db(app) as s:
        task_id = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == iid, HumanTask.state == "ready"))
        assert task_id is not None
        return iid, task_id


def _kept(app: Flask, iid: int) -> tuple[Any, ...]:
    with db(app) as s:
        row = s.get(ProcessInstance, iid)
        assert row is not None
        tasks = s.execute(select(HumanTask.id, HumanTask.bpmn_id, HumanTask.state, HumanTask.assignee_id)
                          .where(HumanTask.instance_id == iid).order_by(HumanTask.id)).all()
        return (row.state, row.status, row.lock_version, [tuple(t) for t in tasks],
                s.scalar(select(func.count()).select_from(AuditEvent)),
                s.scalar(select(func.count()).select_from(OutboxMessage)),
                s.scalar(select(func.count()).select_from(Incident)))


def test_the_inbox_form_comes_back_with_the_message_under_the_field(refusing: Flask, login: Login) -> None:
    iid, task_id = _open(refusing)
    clerk = login("clerk_a")
    before = _kept(refusing, iid)
    refused = post(clerk, f"/tasks/{task_id}/complete", {"f/amount": "-5", "f/note": "写好的说明", "opinion": "同意"},
                   page=f"/tasks/{task_id}")
    body = refused.get_data(as_text=True)
    assert refused.status_code == 422, body[:3000]
    assert "金额不能为负数" in body and "故障" not in body
    assert "写好的说明" in body  # what they typed is there to correct
    field = body[body.index('name="f/amount"') - 2000:body.index('name="f/amount"') + 2000]
    assert "金额不能为负数" in field  # next to the field, not only at the top
    assert _kept(refusing, iid) == before
    done = post(clerk, f"/tasks/{task_id}/complete", {"f/amount": "5"}, page=f"/tasks/{task_id}")
    assert done.status_code == 302, done.get_data(as_text=True)[:3000]
    assert _kept(refusing, iid)[1:3] == ("running", before[2] + 1)


def test_the_api_answers_422_naming_the_field_and_keeps_nothing(refusing: Flask) -> None:
    iid, task_id = _open(refusing)
    api = Api(refusing, token_for(refusing, "clerk_a"))
    before = _kept(refusing, iid)
    refused = api.post(f"/api/tasks/{task_id}/complete", {"data": {"amount": -5}, "opinion": "同意"})
    assert refused.status_code == 422, refused.get_data(as_text=True)[:2000]
    assert refused.json["error"] == "form_invalid" and refused.json["bpmn_id"] == "check"
    assert [f["field"] for f in refused.json["fields"]] == ["amount"]
    assert "负数" in refused.json["fields"][0]["message"]
    assert _kept(refusing, iid) == before
    done = api.post(f"/api/tasks/{task_id}/complete", {"data": {"amount": 5}})
    assert done.status_code == 200 and done.json["incident"] is None, done.get_data(as_text=True)[:2000]


def test_the_bulk_form_lists_each_refused_task_with_the_message(refusing: Flask, login: Login) -> None:
    """批量办理: each task in its savepoint; a refused one is listed with the service's message, nothing of it kept."""
    first, second = _open(refusing), _open(refusing)
    clerk = login("clerk_a")
    before = _kept(refusing, first[0])
    response = post(clerk, "/inbox/bulk", {"ids": [first[1], second[1]], "action": "complete", "confirm": "1",
                                           "f/amount": "-1"}, page="/inbox")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.count("金额不能为负数") == 2, body[:3000]
    assert _kept(refusing, first[0]) == before and _kept(refusing, second[0])[2] == before[2]


def test_an_api_start_a_service_refuses_is_422_and_starts_nothing(refusing: Flask) -> None:
    api = Api(refusing, token_for(refusing, "clerk_a"))
    with db(refusing) as s:
        before = s.scalar(select(func.count()).select_from(ProcessInstance))
    refused = api.post("/api/processes/refusal_start/instances", {"data": {"amount": -5}})
    assert refused.status_code == 422, refused.get_data(as_text=True)[:2000]
    assert [f["field"] for f in refused.json["fields"]] == ["amount"] and refused.json["bpmn_id"] == "check"
    with db(refusing) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == before
        assert s.scalar(select(func.count()).select_from(Incident)) == 0
    started = api.post("/api/processes/refusal_start/instances", {"data": {"amount": 5}})
    assert started.status_code == 201, started.get_data(as_text=True)[:2000]
