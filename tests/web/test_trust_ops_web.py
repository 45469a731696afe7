"""Through the web and the API: a client cannot name the initiator (hole 6); 退回 says which branches it cancels
before it is confirmed (defect 5); an applicant's instance page shows the public history only (hole 9)."""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine import deploy, tasks
from engine.org.actors import SYSTEM, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks import collab, sendback
from engine.tasks.models import HumanTask
from tests.engine.test_operations import THREE_STEPS
from tests.engine.test_trust_ops import PARALLEL
from tests.web.flows import Api, db, post, token_for

Login = Callable[[str], FlaskClient]


def _deploy(app: Flask) -> None:
    with db(app) as s:
        deploy.deploy(s, {"three_steps.bpmn": THREE_STEPS.encode(), "two_reviews.bpmn": PARALLEL.encode()},
                      actor=SYSTEM)


def test_hole6_initiator_spoofing_refused_by_the_api(app: Flask) -> None:
    _deploy(app)
    api = Api(app, token_for(app, "applicant"))
    refused = api.post("/api/processes/three_steps/instances", {"data": {"initiator": "fg"}})
    assert refused.status_code == 422 and refused.json is not None
    assert [f["field"] for f in refused.json["fields"]] == ["initiator"]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 0
    started = api.post("/api/processes/three_steps/instances", {"data": {"project": "园区"}})
    assert started.status_code == 201 and started.json is not None
    with db(app) as s:
        first = s.scalar(select(HumanTask).where(HumanTask.instance_id == started.json["id"]))
        assert first is not None and first.assignee_id == actor_for(s, "applicant").user_id


def _at_reviews(app: Flask) -> tuple[int, int, int]:
    with db(app) as s:
        row = instances.start(s, process_key="two_reviews", actor=actor_for(s, "applicant"))
        accept = s.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "accept"))
        assert accept is not None
        tasks.complete(s, task_id=accept.id, actor=actor_for(s, "window"), data={})
        found = {t.bpmn_id: t.id for t in s.scalars(select(HumanTask).where(HumanTask.instance_id == row.id,
                                                                            HumanTask.state == "ready"))}
        return row.id, found["review_a"], found["review_b"]


def test_defect5_sendback_asks_before_it_cancels_branches(app: Flask, login: Login) -> None:
    _deploy(app)
    _, review_a, review_b = _at_reviews(app)
    api = Api(app, token_for(app, "fg"))
    preview = api.post(f"/api/tasks/{review_a}/send-back/preview", {"to": "previous"})
    assert preview.status_code == 200 and preview.json is not None
    assert preview.json["target"]["bpmn_id"] == "accept"
    assert [c["task_id"] for c in preview.json["cancels"]] == [review_b]
    unconfirmed = api.post(f"/api/tasks/{review_a}/send-back", {"reason": "材料不全"})
    assert unconfirmed.status_code == 409 and unconfirmed.json is not None
    assert unconfirmed.json["error"] == "confirmation_required" and unconfirmed.json["cancels"][0]["task_id"] == review_b

    fg = login("fg")
    asked = post(fg, f"/tasks/{review_a}/send-back", {"to": "previous", "reason": "材料不全"})
    html = asked.get_data(as_text=True)
    assert asked.status_code == 409 and "自然资源审查" in html and 'name="confirm" value="1"' in html
    with db(app) as s:
        assert s.get(HumanTask, review_b).state == "ready"  # type: ignore[union-attr]
    done = post(fg, f"/tasks/{review_a}/send-back", {"to": "previous", "reason": "材料不全", "confirm": "1"})
    assert done.status_code == 302
    with db(app) as s:
        assert s.get(HumanTask, review_b).state == "cancelled"  # type: ignore[union-attr]


def test_hole9_applicant_instance_page_shows_the_public_history(app: Flask, login: Login) -> None:
    _deploy(app)
    with db(app) as s:
        row = instances.start(s, process_key="three_steps", actor=actor_for(s, "applicant"))
        fill = s.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "fill"))
        assert fill is not None
        tasks.complete(s, task_id=fill.id, actor=actor_for(s, "applicant"), data={"project": "园区"})
        instance_id = row.id
    with db(app) as s:
        review = s.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready"))
        assert review is not None
        fg = actor_for(s, "fg")
        tasks.claim(s, task_id=review.id, actor=fg)
        collab.add_comment(s, instance_id=instance_id, actor=fg, body="内部意见：再核一下", task_id=review.id)
        collab.carbon_copy(s, instance_id=instance_id, actor=fg, usernames=["boss"], note="内部抄送说明")
        sendback.send_back(s, task_id=review.id, actor=fg, to="applicant", reason="请补正用地材料")
    mine = login("applicant").get(f"/instances/{instance_id}").get_data(as_text=True)
    assert "请补正用地材料" in mine and "内部意见" not in mine and "内部抄送说明" not in mine
    theirs = login("admin").get(f"/instances/{instance_id}").get_data(as_text=True)
    assert "内部意见" in theirs and "内部抄送说明" in theirs
