"""A refusal does not tell whether the object exists: the access matrix's ids against ids that do not exist.

For every route of the matrix (tests/web/test_authz_matrix.py) that takes an object's id or code, each role the
matrix refuses gets the same answer for the world's object as for one that does not exist — the same status, and
for the routes of tasks and instances the same headers and body but for the id itself: a 403 for the one and a 404
for the other would let anyone walk the ids (or try project codes) and learn which exist. The exceptions are the
documented ones (docs/security.md), each with its reason in `told`. A task or instance one may see but not act on
keeps its 403 and its reason (tests/web/test_task_access_api.py, every cell of the access table).
"""
from __future__ import annotations

import re
from typing import Any

from tests.web.test_authz_matrix import (  # noqa: F401 (world: a fixture used by name)
    MATRIX,
    SEES_ALL,
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
    if name in ("task_id", "instance_id", "cosign_id") and role in SEES_ALL:
        return "a task or instance one sees but may not act on: 403 naming why (a missing one 404)"
    if endpoint.startswith("supervision.") and name == "object_id" and role in SUPERVISORS:
        return "a supervisor's object outside their area (here a task): 403 as for tasks"
    if endpoint.startswith("projects.") and name == "project_id" and role in SEES_THE_PROJECT:
        return "a project one sees but may not change: 403"
    return None


def of_a_case(endpoint: str, rule: Any) -> bool:
    """Tell whether the route is a task's or an instance's (pages and API): those answer alike to the byte."""
    return bool({"task_id", "instance_id", "cosign_id"} & set(rule.arguments))


_CSRF = re.compile(r'(name="csrf_token" value=|name="csrf-token" content=)"[^"]*"')


def answer(response: Any, ids: tuple[Any, ...]) -> tuple[int, list[tuple[str, str]], str]:
    """A response as a client sees it, with the id asked for (and the form's per-request token) blotted out."""
    body = _CSRF.sub(r"\1", response.get_data(as_text=True))
    headers = [(k, "…" if k in ("Set-Cookie", "X-Request-ID") else v) for k, v in response.headers.items()
               if k != "Content-Length"]
    for raw in ids:
        pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(str(raw))}(?![0-9A-Za-z])")
        body = pattern.sub("{id}", body)
        headers = [(k, pattern.sub("{id}", v)) for k, v in headers]
    return response.status_code, sorted(headers), body


def _path(built: World, endpoint: str, rule: Any, **override: Any) -> str:
    entry = MATRIX[endpoint]
    values = {n: value(built, entry.params.get(n, DEFAULTS.get(n))) for n in rule.arguments}
    path: str = rule.build({**values, **override}, append_unknown=False)[1]
    return path


def test_a_refusal_does_not_tell_whether_the_object_exists(world: World) -> None:  # noqa: F811
    before = snapshot(world)
    wrong: list[str] = []
    checked = 0
    cases: set[str] = set()
    for endpoint, rule in sorted(endpoints(world.app).items()):
        entry = MATRIX[endpoint]
        for name in sorted(a for a in rule.arguments if a in ABSENT):
            there, absent = _path(world, endpoint, rule), _path(world, endpoint, rule, **{name: ABSENT[name]})
            ids = (value(world, entry.params.get(name, DEFAULTS.get(name))), ABSENT[name])
            for method, allowed in (("GET", entry.get), ("POST", entry.post)):
                if allowed is None:
                    continue
                for role in sorted(set(USERS) - allowed):
                    if told(endpoint, name, role):
                        continue
                    if method == "GET":
                        got = [world.clients[role].get(p) for p in (there, absent)]
                    else:
                        form = value(world, entry.form)
                        got = [post(world, role, endpoint, p, form) for p in (there, absent)]
                    checked += 1
                    cases.add(endpoint)
                    codes = [r.status_code for r in got]
                    if codes[0] != codes[1]:
                        wrong.append(f"{role} {method} {there}: {codes[0]}, but {codes[1]} for {absent}")
                    elif of_a_case(endpoint, rule):
                        seen, unseen = answer(got[0], ids), answer(got[1], ids)
                        if seen != unseen:
                            wrong.append(f"{role} {method} {there} and {absent}: {codes[0]} both, but told apart: "
                                         f"{_difference(seen, unseen)}")
    assert checked > 100
    # Generated from the routes: every task and instance route the matrix refuses to someone was asked.
    routed = {e for e, r in endpoints(world.app).items() if of_a_case(e, r)
              and any(set(USERS) - a for a in (MATRIX[e].get, MATRIX[e].post) if a is not None)}
    assert routed and routed <= cases, sorted(routed - cases)
    assert not wrong, "\n".join(wrong)
    assert changed(before, snapshot(world)) == []


def _difference(seen: tuple[int, list[tuple[str, str]], str], unseen: tuple[int, list[tuple[str, str]], str]) -> str:
    if seen[1] != unseen[1]:
        return f"headers {sorted(set(seen[1]) ^ set(unseen[1]))}"
    at = next((i for i, (a, b) in enumerate(zip(seen[2], unseen[2], strict=False)) if a != b),
              min(len(seen[2]), len(unseen[2])))
    return f"bodies at {at}: {seen[2][max(0, at - 80):at + 80]!r} / {unseen[2][max(0, at - 80):at + 80]!r}"
