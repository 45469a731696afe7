"""Defect 2 (issue "Trust II") over HTTP: two process owners deploy the same process from the modeller at once.

The modeller sends the version its edit started from; a stale one gets a 409 naming who deployed which
version when, with a link to the visual diff between that base and the latest version. Never a 500.
Also: the diff page answers a bad version argument with a 4xx and a message.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from engine import org
from tests.engine.test_deploy_concurrency import bundle
from tests.web.conftest import PASSWORD_HASH, csrf_of
from tests.web.test_modeller import count_versions, version_id

ROUNDS = 20
NAMES = {"owner": "流程管理员甲", "owner2": "流程管理员乙"}


@pytest.fixture
def owners(session: Session, review_org: dict[str, Any], app: Flask,
           login: Callable[[str], FlaskClient]) -> dict[str, tuple[FlaskClient, str]]:
    """Two process owners, logged in, each with the CSRF token of their session."""
    org.add_role(session, code="process_owner", name="流程管理员")
    for username, name in NAMES.items():
        org.add_user(session, username=username, display_name=name, role_codes=["process_owner"]).password_hash = \
            PASSWORD_HASH
    session.commit()
    session.close()
    clients = {}
    for username in NAMES:
        client = login(username)
        clients[username] = (client, csrf_of(client, "/modeller"))
    return clients


def post_deploy(owner: tuple[FlaskClient, str], body: dict[str, Any]) -> Any:
    client, token = owner
    return client.post("/modeller/deploy", json=body, headers={"X-CSRFToken": token, "Accept": "application/json"})


def test_defect2_concurrent_deploys_from_the_modeller_get_a_version_or_a_409_never_a_500(
        app: Flask, owners: dict[str, tuple[FlaskClient, str]]) -> None:
    first = post_deploy(owners["owner"], {"files": bundle("v1"), "base_versions": {"minimal": 0}})
    assert first.status_code == 200 and first.json["deployed"][0]["version"] == 1
    statuses: list[int] = []
    for rnd in range(ROUNDS):
        base = count_versions(app)
        barrier = threading.Barrier(2)
        responses: dict[str, Any] = {}

        def attempt(username: str, rnd: int = rnd, base: int = base, barrier: threading.Barrier = barrier,
                    responses: dict[str, Any] = responses) -> None:
            barrier.wait()
            responses[username] = post_deploy(owners[username], {"files": bundle(f"{username}-{rnd}"),
                                                                 "base_versions": {"minimal": base}})

        threads = [threading.Thread(target=attempt, args=(u,)) for u in NAMES]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        statuses += [r.status_code for r in responses.values()]
        assert sorted(r.status_code for r in responses.values()) == [200, 409], (rnd, responses)
        [winner] = [u for u, r in responses.items() if r.status_code == 200]
        [loser] = [u for u, r in responses.items() if r.status_code == 409]
        assert responses[winner].json["deployed"][0]["version"] == base + 1
        refusal = responses[loser].json
        assert refusal["error"] == "stale_base_version" and refusal["latest_version"] == base + 1
        assert refusal["since"][0]["deployed_by"] == NAMES[winner] and refusal["since"][0]["version"] == base + 1
        old, new = version_id(app, "minimal", base), version_id(app, "minimal", base + 1)
        assert refusal["diff_url"] == f"/modeller/processes/minimal/diff?old={old}&new={new}"
    assert statuses.count(500) == 0 and statuses.count(200) == ROUNDS and statuses.count(409) == ROUNDS
    assert count_versions(app) == 1 + ROUNDS


def test_a_stale_base_gets_409_naming_the_other_owner_with_the_diff_one_click_away(
        app: Flask, owners: dict[str, tuple[FlaskClient, str]]) -> None:
    assert post_deploy(owners["owner"], {"files": bundle("v1"), "base_versions": {"minimal": 0}}).status_code == 200
    assert post_deploy(owners["owner2"], {"files": bundle("b"), "base_versions": {"minimal": 1}}).status_code == 200
    stale = post_deploy(owners["owner"], {"files": bundle("a"), "base_versions": {"minimal": 1}})
    assert stale.status_code == 409
    body = stale.json
    assert "v1" in body["message"] and "v2" in body["message"]
    [row] = body["since"]
    assert row["deployed_by"] == "流程管理员乙" and row["version"] == 2 and row["deployed_at_local"]
    assert row["edit_url"] == f"/modeller/versions/{version_id(app, 'minimal', 2)}/edit"
    assert count_versions(app) == 2  # nothing stored
    diff = owners["owner"][0].get(body["diff_url"])
    assert diff.status_code == 200 and "审批 a" not in diff.get_data(as_text=True)
    assert "审批 b" in diff.get_data(as_text=True)  # the other owner's edit, in the element table
    # The same content as the latest is a no-op whatever the base; a new process (base 0) over an existing key: 409.
    same = post_deploy(owners["owner"], {"files": bundle("b"), "base_versions": {"minimal": 1}})
    assert same.status_code == 200 and same.json["deployed"][0] == {**same.json["deployed"][0], "created": False}
    new = post_deploy(owners["owner"], {"files": bundle("c"), "base_versions": {"minimal": 0}})
    assert new.status_code == 409 and new.json["diff_url"] is None and new.json["versions_url"]
    assert [r["version"] for r in new.json["since"]] == [1, 2]
    # No base (older clients, imports): deployed as before.
    assert post_deploy(owners["owner"], {"files": bundle("c")}).json["deployed"][0]["version"] == 3


@pytest.mark.parametrize("bases", [[1], "1", {"minimal": "1"}, {"minimal": -1}, {"minimal": True},
                                   {"minimal": 2**40}, {"minimal": 5}, {"other": 1}])
def test_a_bad_base_version_is_refused_naming_the_field(app: Flask, owners: dict[str, tuple[FlaskClient, str]],
                                                        bases: Any) -> None:
    assert post_deploy(owners["owner"], {"files": bundle("v1")}).status_code == 200
    response = post_deploy(owners["owner"], {"files": bundle("v2"), "base_versions": bases})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.json["field"] in ("base_versions", "base_version")
    assert count_versions(app) == 1


def test_the_diff_of_a_process_with_one_version_answers_bad_arguments_with_a_4xx(
        app: Flask, owners: dict[str, tuple[FlaskClient, str]]) -> None:
    assert post_deploy(owners["owner"], {"files": bundle("v1")}).status_code == 200
    client = owners["owner"][0]
    v1 = version_id(app, "minimal", 1)
    for query, status in [("old=x", 422), ("old=0", 404), ("old=99999", 404), (f"old={v1}&new=abc", 422),
                          ("old=-1", 422), ("new=1e3", 422)]:
        response = client.get(f"/modeller/processes/minimal/diff?{query}")
        assert response.status_code == status, (query, response.status_code)
        assert "版本" in response.get_data(as_text=True)
    assert client.get(f"/modeller/processes/minimal/diff?old={v1}").status_code == 200
    assert client.get("/modeller/processes/minimal/diff").status_code == 302  # nothing to compare: back to the list
    assert client.get("/modeller/processes/nope/diff?old=x").status_code == 404
