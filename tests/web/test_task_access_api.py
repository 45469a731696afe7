"""The task access table through the JSON API: every cell, and no task route without its row (Trust I item 5)."""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from engine.org.models import User
from engine.tasks import task_access
from engine.tasks.models import HumanTask
from engine.tasks.task_access import Op
from tests import access_world
from tests.access_world import API, build, prepare
from tests.web.conftest import PASSWORD_HASH
from tests.web.flows import Api, db, token_for, two_at_once
from tests.web.test_task_page import post

# The task routes that are operations of the table; the others act on what the actor may see (comments,
# attachments, CC), on what they themselves did (撤回) or on what only the holder asks (申请延期), and check that in
# their own services.
WEB_ROUTES: dict[str, Op] = {
    "tasks.show": Op.VIEW, "tasks.claim": Op.CLAIM, "tasks.unclaim": Op.UNCLAIM, "tasks.complete": Op.COMPLETE,
    "tasks.resolve": Op.RESOLVE, "tasks.transfer": Op.TRANSFER, "tasks.delegate": Op.DELEGATE,
    "tasks.add_cosigners": Op.ADD_COSIGNER, "tasks.remove_cosigner": Op.REMOVE_COSIGNER,
    "tasks.send_back": Op.SEND_BACK, "tasks.urge": Op.URGE,
    "api.task_show": Op.VIEW, "api.task_claim": Op.CLAIM, "api.task_unclaim": Op.UNCLAIM,
    "api.task_complete": Op.COMPLETE, "api.task_resolve": Op.RESOLVE, "api.task_transfer": Op.TRANSFER,
    "api.task_delegate": Op.DELEGATE, "api.task_add_cosigners": Op.ADD_COSIGNER,
    "api.task_remove_cosigner": Op.REMOVE_COSIGNER, "api.task_send_back": Op.SEND_BACK,
    "api.task_send_back_preview": Op.SEND_BACK, "api.task_urge": Op.URGE,
}
OUTSIDE_THE_TABLE = {"tasks.withdraw", "tasks.carbon_copy", "tasks.comment", "tasks.attach", "tasks.attachment",
                     "tasks.diagram", "tasks.request_extension", "api.task_request_extension"}


def test_hole5_every_task_route_is_an_operation_of_the_table(app: Flask) -> None:
    task_routes = {rule.endpoint for rule in app.url_map.iter_rules() if "task_id" in rule.arguments}
    missing = task_routes - set(WEB_ROUTES) - OUTSIDE_THE_TABLE
    assert not missing, f"task routes without a row in the access table (engine/tasks/task_access.py): {missing}"
    assert set(WEB_ROUTES.values()) == set(Op)


@pytest.mark.parametrize("relation", list(access_world.ACTORS))
def test_hole5_every_cell_through_the_api(app: Flask, relation: str) -> None:
    with db(app) as s:
        prepare(s)
    client = Api(app, token_for(app, access_world.ACTORS[relation]))
    outcome: dict[Op, int] = {}
    for op, call in API.items():
        with db(app) as s:
            where = build(s, relation)
        method, path, payload = call(where)
        response = client.get(path) if method == "GET" else client.post(path, payload)
        outcome[op] = response.status_code
        body: Any = response.json
        if response.status_code == 403:  # one who sees the task is told why not
            assert body["error"] in ("not_your_task", "forbidden") and "(" in body["message"], (op, body)
    wanted = {op: task_access.allows(op, access_world.RELATIONS[relation]) for op in Op}
    assert {op: code < 300 for op, code in outcome.items()} == wanted, outcome
    if relation == "stranger":  # one who may not see it at all: as if it did not exist, whatever the operation
        assert set(outcome.values()) == {404}, outcome
    else:
        assert all(code < 300 or code == 403 for code in outcome.values()), outcome


def _as_missing(response: Any, task_id: int, missing: int) -> tuple[int, str, list[tuple[str, str]]]:
    """A problem answer with the id asked for blotted out: what tells an unseen task from a missing one, if anything."""
    text = response.get_data(as_text=True)
    for raw in (str(task_id), str(missing)):
        text = re.sub(rf"(?<![0-9]){raw}(?![0-9])", "{id}", text)
    headers = sorted((k, v) for k, v in response.headers.items()  # per request, whatever was asked: not compared
                     if k not in ("Content-Length", "X-Request-ID", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                                   "Retry-After"))
    return response.status_code, text, headers


def test_a_task_one_may_not_see_answers_as_one_that_does_not_exist(app: Flask) -> None:
    """Open or done, a task the stranger may not see answers every operation as a missing id does: status, body and
    headers; malformed input too. The initiator sees the done step: told it is done (409), not that it is absent."""
    with db(app) as s:
        prepare(s)
        where = build(s, "holder")
        instance_id = s.scalar(select(HumanTask.instance_id).where(HumanTask.id == where.task_id))
        fill = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.bpmn_id == "fill"))
    assert fill is not None and instance_id is not None
    stranger = Api(app, token_for(app, "stranger"))
    missing = 999_999
    for task_id in (where.task_id, fill):  # the open review, the done fill
        for op, call in API.items():
            asked = replace(where, task_id=task_id, parent_id=task_id)
            method, path, payload = call(asked)
            gone = path.replace(f"/{task_id}/", f"/{missing}/") if path.count("/") > 3 else f"/api/tasks/{missing}"
            if method == "GET":
                seen, absent = stranger.get(path), stranger.get(gone)
            else:
                seen, absent = stranger.post(path, payload), stranger.post(gone, payload)
                bad = [stranger.client.post(p, data="{no", headers=stranger.headers, content_type="application/json")
                       for p in (path, gone)]
                assert _as_missing(bad[0], task_id, missing) == _as_missing(bad[1], task_id, missing), (op, path)
            assert seen.status_code == 404 and seen.json is not None, (op, path, seen.status_code, seen.json)
            assert seen.json["error"] == "task_not_found" and "任务不存在" in seen.json["message"], (op, seen.json)
            assert _as_missing(seen, task_id, missing) == _as_missing(absent, task_id, missing), (op, path)
    stranger_instance = stranger.get(f"/api/instances/{instance_id}")
    assert _as_missing(stranger_instance, instance_id, missing) == _as_missing(
        stranger.get(f"/api/instances/{missing}"), instance_id, missing)
    assert stranger_instance.status_code == 404 and stranger_instance.json["error"] == "instance_not_found"  # type: ignore[index]
    initiator = Api(app, token_for(app, "applicant"))
    done = initiator.post(f"/api/tasks/{fill}/claim")
    assert done.status_code == 409 and done.json is not None and done.json["error"] == "task_already_done"
    assert initiator.get(f"/api/instances/{instance_id}").status_code == 200
    with db(app) as s:  # nothing was changed by any of it
        review = s.get(HumanTask, where.task_id)
        assert review is not None and review.state == "ready" and review.assignee_id == s.scalar(
            select(User.id).where(User.username == "fg"))


def test_a_stranger_and_a_candidate_at_once(app: Flask) -> None:
    """Two claims of one group task at once: the candidate gets it, the stranger is told there is no such task."""
    with db(app) as s:
        prepare(s)
        where = build(s, "candidate")
    candidate, stranger = Api(app, token_for(app, "st")), Api(app, token_for(app, "stranger"))
    mine, refused = two_at_once(lambda: candidate.post(f"/api/tasks/{where.task_id}/claim"),
                                lambda: stranger.post(f"/api/tasks/{where.task_id}/claim"))
    assert mine.status_code == 200 and mine.json["assignee"] == "st", mine.json
    assert refused.status_code == 404 and refused.json["error"] == "task_not_found", refused.json


def test_hole5_the_api_shows_what_the_table_permits(app: Flask) -> None:
    with db(app) as s:
        prepare(s)
        where = build(s, "delegate")
    shown = Api(app, token_for(app, "zr")).get(f"/api/tasks/{where.task_id}").json
    assert shown is not None and shown["permitted"] == ["resolve", "view"]
    moved = Api(app, token_for(app, "zr")).post(f"/api/tasks/{where.task_id}/transfer", {"to_username": "window"})
    assert moved.status_code == 403 and moved.json is not None and moved.json["error"] == "not_your_task"


def test_a_co_signer_after_the_holder_is_told_to_wait_not_given_a_500(app: Flask, login: Any) -> None:
    with db(app) as s:
        prepare(s)
        where = build(s, "holder")  # its co-signer "cs" signs after the holder: nothing to sign yet
        s.execute(update(User).where(User.username == "cs").values(password_hash=PASSWORD_HASH))  # added after the app
    signed = Api(app, token_for(app, "cs")).post(f"/api/tasks/{where.removable_id}/complete",
                                                 {"data": {}, "opinion": "同意"})
    assert signed.status_code == 409 and signed.json is not None, signed.status_code
    assert signed.json["error"] == "task_not_ready" and "等待经办人提交" in signed.json["message"]
    shown = Api(app, token_for(app, "cs")).get(f"/api/tasks/{where.removable_id}").json
    assert shown is not None and shown["permitted"] == []
    cs = login("cs")
    page = cs.get(f"/tasks/{where.removable_id}")
    assert page.status_code == 200 and f'action="/tasks/{where.removable_id}/complete"' not in page.get_data(as_text=True)
    posted = post(cs, f"/tasks/{where.removable_id}/complete", {"opinion": "同意"})
    assert posted.status_code == 409 and "等待经办人提交" in posted.get_data(as_text=True)
    with db(app) as s:
        cosign = s.get(HumanTask, where.removable_id)
        assert cosign is not None and cosign.state == "pending"


def test_the_openapi_document_says_an_unseen_task_or_instance_is_not_found(app: Flask) -> None:
    document = app.test_client().get("/api/openapi.json").json
    assert document is not None
    assert "may not see" in document["components"]["responses"]["NotFound"]["description"]
    for path in ("/api/tasks/{task_id}", "/api/instances/{instance_id}"):  # a read never answers 403 now
        assert set(document["paths"][path]["get"]["responses"]) >= {"404"}, path
        assert "403" not in document["paths"][path]["get"]["responses"], path
    assert "403" in document["paths"]["/api/tasks/{task_id}/claim"]["post"]["responses"]  # seen, not permitted
