"""A refusal does not tell whether the object exists: the access matrix's ids against ids that do not exist.

For every route of the matrix (tests/web/test_authz_matrix.py) that takes an object's id or code, each role the
matrix refuses gets the same status for the world's object as for one that does not exist — a 403 for the one and
a 404 for the other would let anyone walk the ids (or try project codes) and learn which exist. The exceptions are
the documented ones (docs/security.md), each with its reason in `told`.
"""
from __future__ import annotations

from typing import Any

from tests.web.test_authz_matrix import (  # noqa: F401 (world: a fixture used by name)
    MATRIX,
    SUPERVISORS,
    USERS,
    World,
    changed,
    endpoints,
    post,
    snapshot,
    value,
    world,
)

NUMBER = 999_999  # an id no row of the world has (within the ids' range, web/guards.py)
ABSENT: dict[str, Any] = {
    **dict.fromkeys(("task_id", "instance_id", "attachment_id", "version_id", "run_id", "event_id", "meeting_id",
                     "doc_id", "project_id", "issue_id", "cc_id", "filter_id", "notification_id", "token_id",
                     "user_id", "message_id", "object_id", "cosign_id", "report_id", "need_id"), NUMBER),
    "code": "NO-SUCH-CODE", "key": "no_such_process", "process_key": "no_such_process", "name": "no_such.bpmn"}
DEFAULTS = {"task_id": "@task", "instance_id": "@instance", "attachment_id": "@attachment", "version_id": "@version",
            "run_id": "@run", "event_id": "@event", "meeting_id": "@meeting"}
SEES_THE_PROJECT = frozenset({"city_leader", "auditor", "admin"})  # the matrix's projects.show


def told(endpoint: str, name: str, role: str) -> str | None:
    """Why a refusal may tell that this object exists (docs/security.md), or None: it may not."""
    if name in ("task_id", "instance_id", "cosign_id"):
        return "a task or instance outside one's reach answers 403: ids are sequential, an old link says the case moved on"
    if endpoint.startswith("supervision.") and name == "object_id" and role in SUPERVISORS:
        return "a supervisor's object outside their area (here a task): 403 as for tasks"
    if endpoint.startswith("projects.") and name == "project_id" and role in SEES_THE_PROJECT:
        return "a project one sees but may not change: 403"
    return None


def _path(built: World, endpoint: str, rule: Any, **override: Any) -> str:
    entry = MATRIX[endpoint]
    values = {n: value(built, entry.params.get(n, DEFAULTS.get(n))) for n in rule.arguments}
    path: str = rule.build({**values, **override}, append_unknown=False)[1]
    return path


def test_a_refusal_does_not_tell_whether_the_object_exists(world: World) -> None:  # noqa: F811
    before = snapshot(world)
    wrong: list[str] = []
    checked = 0
    for endpoint, rule in sorted(endpoints(world.app).items()):
        entry = MATRIX[endpoint]
        for name in sorted(a for a in rule.arguments if a in ABSENT):
            there, absent = _path(world, endpoint, rule), _path(world, endpoint, rule, **{name: ABSENT[name]})
            for method, allowed in (("GET", entry.get), ("POST", entry.post)):
                if allowed is None:
                    continue
                for role in sorted(set(USERS) - allowed):
                    if told(endpoint, name, role):
                        continue
                    if method == "GET":
                        codes = [world.clients[role].get(p).status_code for p in (there, absent)]
                    else:
                        form = value(world, entry.form)
                        codes = [post(world, role, endpoint, p, form).status_code for p in (there, absent)]
                    checked += 1
                    if codes[0] != codes[1]:
                        wrong.append(f"{role} {method} {there}: {codes[0]}, but {codes[1]} for {absent}")
    assert checked > 100
    assert not wrong, "\n".join(wrong)
    assert changed(before, snapshot(world)) == []
