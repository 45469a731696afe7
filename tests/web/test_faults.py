"""Defect "database connections lost mid-request" and the fault suite (PostgreSQL).

A connection lost before any commit began: the request runs again on a fresh connection. Lost at the
commit: 503 with Retry-After, and the client's retry with its Idempotency-Key gets the first result or
runs the work once. A side thread kills connections (pg_terminate_backend) through a stream of API
requests: no acknowledged write is lost, none is done twice, and nothing answers 500.
"""
from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, event, func, select, text
from werkzeug.test import TestResponse

from engine.org.token_models import IdempotencyRecord
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.conftest import PG_ADMIN_URL
from tests.web.flows import Api, db, deploy_good, token_for

postgres_only = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
FORM = {"project_name": "胶州智能家电产业园", "investment": 6000.5, "project_type": "industrial"}


def _count(app: Flask, model: Any, *where: Any) -> int:
    with db(app) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def admin() -> Iterator[Engine]:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _kill_own_backend_when(admin: Engine, engine: Engine, statement_starts: str, times: int = 1) -> list[int]:
    """Terminate the connection that is about to run a statement beginning with `statement_starts`."""
    killed: list[int] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _kill(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if len(killed) < times and statement.lstrip().upper().startswith(statement_starts):
            pid = conn.exec_driver_sql("select pg_backend_pid()").scalar()
            with admin.connect() as c:
                c.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
            killed.append(pid)
    return killed


def _kill_at_commit(admin: Engine, engine: Engine) -> list[int]:
    """Terminate a connection just before its COMMIT goes out (the first time only)."""
    killed: list[int] = []

    @event.listens_for(engine, "commit")
    def _kill(conn: Any) -> None:
        if not killed and conn.in_transaction():
            pid = conn.exec_driver_sql("select pg_backend_pid()").scalar()
            with admin.connect() as c:
                c.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
            killed.append(pid)
    return killed


@postgres_only
def test_a_connection_lost_before_commit_runs_the_request_again(app: Flask, admin: Engine) -> None:
    deploy_good(app)
    api = Api(app, token_for(app, "applicant"))
    killed = _kill_own_backend_when(admin, app.extensions["jzflow.engine"], "INSERT INTO PROCESS_INSTANCE")
    response = api.post("/api/processes/review_process/instances", {"title": "断线重试"})
    assert killed and response.status_code == 201, response.get_data(as_text=True)
    assert _count(app, ProcessInstance) == 1


@postgres_only
def test_a_connection_lost_at_commit_is_a_503_and_the_keyed_retry_starts_one_instance(app: Flask,
                                                                                      admin: Engine) -> None:
    deploy_good(app)
    api = Api(app, token_for(app, "applicant"))
    killed = _kill_at_commit(admin, app.extensions["jzflow.engine"])
    headers = {**api.headers, "Idempotency-Key": "start-1"}
    lost = api.client.post("/api/processes/review_process/instances", json={"title": "提交时断线"}, headers=headers)
    assert killed and lost.status_code == 503 and lost.headers["Retry-After"].isdigit()
    assert lost.mimetype == "application/problem+json" and lost.json is not None and lost.json["message"]
    retried = api.client.post("/api/processes/review_process/instances", json={"title": "提交时断线"}, headers=headers)
    assert retried.status_code == 201
    again = api.client.post("/api/processes/review_process/instances", json={"title": "提交时断线"}, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == retried.json
    assert _count(app, ProcessInstance) == 1


def test_idempotency_key_returns_the_first_result_and_refuses_another_body(app: Flask) -> None:
    deploy_good(app)
    api, other = Api(app, token_for(app, "applicant")), Api(app, token_for(app, "window"))
    path = "/api/processes/review_process/instances"

    def start(client: Api, body: dict[str, Any], key: str) -> TestResponse:
        return client.client.post(path, json=body, headers={**client.headers, "Idempotency-Key": key})

    first = start(api, {"title": "一次"}, "k1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    replay = start(api, {"title": "一次"}, "k1")
    assert replay.status_code == 201 and replay.json == first.json and replay.headers["Idempotent-Replayed"] == "true"
    reused = start(api, {"title": "另一个"}, "k1")
    assert reused.status_code == 422 and reused.json is not None and reused.json["error"] == "idempotency_key_reused"
    assert start(api, {"title": "一次"}, "k\x01").status_code in (400, 422)
    assert start(api, {"title": "一次"}, "x" * 256).status_code == 422
    theirs = start(other, {"title": "一次"}, "k1")  # keys are per user: another user's k1 is a new request
    assert theirs.status_code == 201 and theirs.json["id"] != first.json["id"]  # type: ignore[index]
    task_id = first.json["next_task_id"]  # type: ignore[index]
    claim = [api.client.post(f"/api/tasks/{task_id}/claim", headers={**api.headers, "Idempotency-Key": "c1"})
             for _ in range(2)]
    assert [r.status_code for r in claim] == [200, 200] and claim[0].json == claim[1].json
    assert _count(app, ProcessInstance) == 2 and _count(app, IdempotencyRecord) == 3


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite: every transaction takes the write lock
def test_a_keyed_completion_sent_twice_at_once_answers_both_with_the_first_answer(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sends its completion again before the first answer (a double click, a retrying proxy) gets the
    first answer twice. The twin used to meet its first copy only at the key's unique constraint, after the
    instance's lock had already refused it: "someone else just acted; reload", to the one person who acted."""
    from engine.org import idempotency
    deploy_good(app)
    api = Api(app, token_for(app, "applicant"))
    task_id = api.post("/api/processes/review_process/instances", {"title": "双击"}).json["next_task_id"]  # type: ignore[index]
    looked_up, original = threading.Barrier(2), idempotency.find

    def find(*args: Any, **kwargs: Any) -> Any:  # both copies have looked their key up before either works
        found = original(*args, **kwargs)
        if threading.current_thread() is not threading.main_thread() and found is None:
            try:
                looked_up.wait(timeout=1.5)  # with the fix the second copy waits inside find: the wait ends unmet
            except threading.BrokenBarrierError:
                pass
        return found

    monkeypatch.setattr(idempotency, "find", find)
    headers = {**api.headers, "Idempotency-Key": "complete-1"}
    form = {"project_name": "胶州智能家电产业园", "investment": 6000.5, "project_type": "industrial"}
    answers: list[TestResponse] = []

    def send() -> None:
        answers.append(api.client.post(f"/api/tasks/{task_id}/complete", json={"data": form}, headers=headers))

    copies = [threading.Thread(target=send) for _ in range(2)]
    for copy in copies:
        copy.start()
    for copy in copies:
        copy.join(60)
    assert sorted(a.status_code for a in answers) == [200, 200], [a.get_data(as_text=True)[:200] for a in answers]
    assert answers[0].json == answers[1].json
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(HumanTask).where(HumanTask.id == task_id,
                                                                          HumanTask.state == "completed")) == 1


class Killer(threading.Thread):
    """Terminate every connection of the test database but its own, a chosen delay after being armed.

    The client arms it before about half of its requests (a seeded choice), with a delay of 0–80 ms: the
    kill lands before, during or after the request's statements, its commit, or on the idle pool.
    """

    def __init__(self, database: str) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.stop, self.armed = threading.Event(), threading.Event()
        self.delay = 0.0
        self.kills = 0

    def arm(self, delay: float) -> None:
        self.delay = delay
        self.armed.set()

    def run(self) -> None:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            while not self.stop.is_set():
                if not self.armed.wait(0.05):
                    continue
                self.armed.clear()
                if self.stop.wait(self.delay):  # stopped while it waited: the test's own checks follow, unkilled
                    break
                self.kills += conn.execute(text(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                    "where datname = :db and pid <> pg_backend_pid()"), {"db": self.database}).scalar() or 0
        admin.dispose()


@pytest.fixture
def killer(app: Flask) -> Iterator[Killer]:
    thread = Killer(str(app.extensions["jzflow.engine"].url.database))
    thread.start()
    yield thread
    thread.stop.set()
    thread.join()


def _until_answered(send: Any, statuses: Counter[int], killer: Killer, rng: random.Random,
                    attempts: int = 30) -> TestResponse:
    """Send until the answer is not a 503 (the client's retry loop: same request, same key)."""
    for _ in range(attempts):
        if rng.random() < 0.5:
            killer.arm(rng.uniform(0, 0.08))
        response: TestResponse = send()
        statuses[response.status_code] += 1
        if response.status_code != 503:
            return response
        assert response.headers["Retry-After"].isdigit()
    raise AssertionError(f"still 503 after {attempts} attempts")


@postgres_only
def test_fault_suite_connections_killed_during_a_stream_of_api_requests(app: Flask, killer: Killer) -> None:
    deploy_good(app)
    api = Api(app, token_for(app, "applicant"))
    statuses: Counter[int] = Counter()
    acknowledged: dict[str, int] = {}
    completed: list[int] = []
    rng = random.Random(20261204)
    for n in range(40):
        key = f"start-{n}"
        headers = {**api.headers, "Idempotency-Key": key}
        started = _until_answered(lambda h=headers, n=n: api.client.post(
            "/api/processes/review_process/instances", json={"title": f"故障 {n}", "business_key": f"F-{n}"},
            headers=h), statuses, killer, rng)
        assert started.status_code == 201, started.get_data(as_text=True)
        acknowledged[key] = started.json["id"]  # type: ignore[index]
        task_id = started.json["next_task_id"]  # type: ignore[index]
        for op, body in (("claim", None), ("complete", {"data": FORM, "opinion": "请受理"})):
            h = {**api.headers, "Idempotency-Key": f"{op}-{n}"}
            done = _until_answered(lambda op=op, body=body, h=h, t=task_id: api.client.post(
                f"/api/tasks/{t}/{op}", json=body or {}, headers=h), statuses, killer, rng)
            assert done.status_code == 200, (op, done.get_data(as_text=True))
        completed.append(task_id)
        listed = _until_answered(lambda: api.get("/api/instances", limit="5"), statuses, killer, rng)
        assert listed.status_code == 200
    killer.stop.set()
    killer.join()
    print(f"\nfault suite: {sum(statuses.values())} requests, {killer.kills} connections killed, statuses {dict(statuses)}")
    assert killer.kills >= 10, "the killer must actually have hit connections"
    assert statuses[500] == 0
    with db(app) as s:
        rows = s.execute(select(ProcessInstance.id, ProcessInstance.business_key)).all()
        done_tasks = s.scalars(select(HumanTask.id).where(HumanTask.id.in_(completed),
                                                          HumanTask.state == "completed")).all()
    assert sorted(r.id for r in rows) == sorted(acknowledged.values())  # 0 lost, 0 duplicated
    assert len({r.business_key for r in rows}) == len(rows) == 40
    assert sorted(done_tasks) == sorted(completed)
