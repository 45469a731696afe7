"""The task access table through the JSON API: every cell, and no task route without its row (Trust I item 5)."""
from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from engine.org.models import User
from engine.tasks import task_access
from engine.tasks.models import HumanTask
from engine.tasks.task_access import Op
from tests import access_world
from tests.access_world import API, build, prepare
from tests.web.conftest import PASSWORD_HASH
from tests.web.flows import Api, db, token_for
from tests.web.test_task_page import post

# The task routes that are operations of the table; the others act on what the actor may see (comments,
# attachments, CC) or on what they themselves did (撤回), and check that in their own services.
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
                     "tasks.diagram"}


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
        if response.status_code == 403:
            assert body["error"] in ("not_your_task", "forbidden"), (op, body)
    wanted = {op: task_access.allows(op, access_world.RELATIONS[relation]) for op in Op}
    assert {op: code < 300 for op, code in outcome.items()} == wanted, outcome
    assert all(code < 300 or code == 403 for code in outcome.values()), outcome


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
