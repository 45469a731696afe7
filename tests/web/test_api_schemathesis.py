"""Standing guard: schemathesis over /api/openapi.json, in process (WSGI), with every role's token.

Positive and negative cases for every operation: no 5xx, every answer matches the document (status,
content type, schema, negative data refused), and no request crosses an object boundary (a user who may
not see an instance gets no 2xx on it or its tasks). Bounded: a few examples per operation and role.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import read_fixture_dir
from tests.web.flows import Api, deploy_files, deploy_good, token_for

ROLES = ("applicant", "window", "fg", "st", "boss", "admin")
MAX_EXAMPLES = 4
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
postgres_only = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def _checker(operation: Any, strategy: Any, role: str, token: str, statuses: Counter[int],
             failures: list[str]) -> Any:
    @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @hypothesis.given(case=strategy)
    def check(case: Any) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures, report them together
            kinds = sorted({line.strip() for line in str(exc).splitlines() if line.strip().startswith("- ST")})
            failures.append(f"{role} {operation.label} → {response.status_code} {'; '.join(kinds)}: "
                            f"{response.text[:200]}")
    return check


def _run(app: Flask, tokens: dict[str, str], real: dict[str, Any], statuses: Counter[int],
         failures: list[str]) -> None:
    """Every operation × mode × role; operations on an object run on generated ids and on real ones."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        targets: list[dict[str, Any] | None] = [None]
        if names:
            targets.append({name: real[name] for name in names})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in targets:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                for role, token in tokens.items():
                    _checker(operation, strategy, role, token, statuses, failures)()


@postgres_only
def test_schemathesis_finds_no_5xx_and_no_schema_violation(app: Flask) -> None:
    app.config["JZFLOW_API_RATE_LIMIT"] = "100000 per minute"  # the limit is tested elsewhere
    deploy_good(app)
    tokens = {role: token_for(app, role) for role in ROLES}
    started = Api(app, tokens["applicant"]).post("/api/processes/review_process/instances", {"title": "边界"})
    assert started.status_code == 201
    assert started.json is not None
    deploy_files(app, read_fixture_dir("messages"))  # a message and a signal to send; one message kept
    kept = Api(app, tokens["admin"]).post("/api/messages", {"name": "supplement", "data": {"pages": 1},
                                                            "correlations": {"application_id": "nobody"}})
    assert kept.status_code == 202 and kept.json is not None
    real = {"instance_id": started.json["id"], "task_id": started.json["next_task_id"], "key": "review_process",
            "cosign_id": started.json["next_task_id"],  # a task that is no co-signer: the 404 path
            "message_id": kept.json["id"]}
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    _run(app, tokens, real, statuses, failures)
    print(f"\nschemathesis: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}, "
          f"{len(failures)} failures")
    assert statuses and sum(n for code, n in statuses.items() if code >= 500) == 0
    assert not failures, "\n".join(sorted(set(failures))[:20])


@postgres_only
def test_no_api_request_crosses_an_object_boundary(app: Flask) -> None:
    """Every role, every operation on the applicant's instance and task: only those who may see it succeed."""
    deploy_good(app)
    tokens = {role: token_for(app, role) for role in ROLES}
    started = Api(app, tokens["applicant"]).post("/api/processes/review_process/instances", {"title": "边界"})
    assert started.status_code == 201 and started.json is not None
    instance_id, task_id = started.json["id"], started.json["next_task_id"]
    may_see = {"applicant", "admin"}
    for role, token in tokens.items():
        api = Api(app, token)
        reads = [api.get(f"/api/instances/{instance_id}"), api.get(f"/api/tasks/{task_id}")]
        writes = [api.post(f"/api/tasks/{task_id}/{op}", body) for op, body in (
            ("transfer", {"to_username": role}), ("send-back", {"reason": "x"}), ("complete", {"data": {}}))]
        for response in reads:
            assert (response.status_code == 200) == (role in may_see), (role, response.request.path)
        for response in writes:  # nobody but the applicant holds the task; the form is empty anyway
            assert not 200 <= response.status_code < 300, (role, response.request.path, response.status_code)
        listed = api.get("/api/instances").json
        assert listed is not None
        assert (instance_id in [i["id"] for i in listed["items"]]) == (role in may_see), role
