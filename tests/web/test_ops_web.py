"""/healthz, /readyz, /metrics and request ids: who may read metrics, what they count, where the request id goes."""
from __future__ import annotations

import io
import json
import logging
import re
import runpy
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from engine import clock, config, migrate
from engine.deadlines.models import DeadlineWatch
from engine.notify import outbox
from engine.ops import logs, queues
from engine.org.models import OrgUnit
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.conftest import read_fixture_dir
from tests.scale.test_worker import redis_db, redis_url  # noqa: F401  (fixtures)
from tests.web.conftest import app_on
from tests.workers import Workers
from web import create_app

TOKEN = "metrics-" + "s3cret-token-value"


@pytest.fixture
def instance_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Our own instance folder (and so our own embedded broker), with no Redis configured."""
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path / "instance"))
    monkeypatch.delenv("JZFLOW_REDIS_URL", raising=False)
    return tmp_path / "instance"


@pytest.fixture
def ops_app(db_url: str, session: Session, review_org: dict[str, Any], instance_dir: Path) -> Iterator[Flask]:
    from engine import deploy
    from engine.org.actors import SYSTEM
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    session.commit()
    yield from app_on(db_url, session, METRICS_TOKEN=TOKEN)


def _metrics(app: Flask, **headers: str) -> str:
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.get_data(as_text=True)


def _value(body: str, name: str, **labels: str) -> float:
    for line in body.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, raw = head.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', raw))
        if metric == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


# --- who may read /metrics -----------------------------------------------------------------------------------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_metrics_are_closed_unless_a_token_or_an_allow_list_is_set(db_url: str, session: Session,
                                                                   instance_dir: Path) -> None:
    session.close()
    closed = create_app({"DATABASE_URL": db_url, "TESTING": True, "METRICS_TOKEN": ""})
    response = closed.test_client().get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403 and "JZFLOW_METRICS_TOKEN" in response.get_data(as_text=True)
    assert "jzflow_" not in response.get_data(as_text=True)

    token = create_app({"DATABASE_URL": db_url, "TESTING": True, "METRICS_TOKEN": TOKEN})
    client = token.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ", f"Bearer {TOKEN[:-1]}"):
        assert client.get("/metrics", headers={"Authorization": wrong}).status_code == 401, wrong
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200

    allowed = create_app({"DATABASE_URL": db_url, "TESTING": True, "METRICS_ALLOW": ["10.0.0.0/8", "127.0.0.1"]})
    assert allowed.test_client().get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert allowed.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    refused = allowed.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.9"})
    assert refused.status_code == 403 and "jzflow_" not in refused.get_data(as_text=True)

    with pytest.raises(ValueError, match=re.escape("JZFLOW_METRICS_ALLOW: '10.0.0.300'")):
        create_app({"DATABASE_URL": db_url, "TESTING": True, "METRICS_ALLOW": ["10.0.0.300"]})
    for app in (closed, token, allowed):
        app.extensions["jzflow.engine"].dispose()


# --- what /metrics says -----------------------------------------------------------------------------------------

def test_metrics_count_committed_work_and_read_the_state(ops_app: Flask, session: Session,
                                                         review_org: dict[str, Any]) -> None:
    factory = ops_app.extensions["jzflow.sessionmaker"]
    before = _metrics(ops_app)
    with factory() as s:  # a start that rolls back is not counted
        instances.start(s, process_key="review_process", actor=review_org["applicant"], data={})
        s.rollback()
    with factory() as s:
        row = instances.start(s, process_key="review_process", actor=review_org["applicant"], data={})
        s.commit()
        instance_id = row.id
    with factory() as s:  # state the gauges read: an overdue task of 发改 (fgj), a due timer, an outbox message
        unit = s.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
        task = s.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id))
        assert unit is not None and task is not None
        s.add(DeadlineWatch(object_type="task", object_id=task.id, unit_id=unit.id, active=True,
                            due_at=clock.now() - timedelta(days=2)))
        s.get(ProcessInstance, instance_id).next_timer_at = clock.now() - timedelta(seconds=120)  # type: ignore[union-attr]
        outbox.enqueue(s, "event", {"x": 1})
        s.commit()
    ops_app.test_client().get(f"/tasks/{task.id}")
    ops_app.test_client().get("/no/such/page/" + uuid.uuid4().hex)
    body = _metrics(ops_app)
    assert _value(body, "jzflow_instance_starts_total") == _value(before, "jzflow_instance_starts_total") + 1
    assert _value(body, "jzflow_audit_events_total", action="instance.start") >= 1
    assert _value(body, "jzflow_overdue", unit="fgj", kind="task") == 1
    assert _value(body, "jzflow_timer_lag_seconds") >= 120
    assert _value(body, "jzflow_timers_due") == 1
    assert _value(body, "jzflow_outbox_backlog") >= 1
    assert _value(body, "jzflow_broker_up") == 1
    assert 'jzflow_queue_depth{queue="celery"}' in body
    # Routes are URL rules, never raw paths: the label set stays bounded whatever people type.
    assert 'route="/tasks/<int:task_id>"' in body and f"/tasks/{task.id}" not in body
    assert 'route="<unmatched>"' in body and "/no/such/page" not in body


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
def test_queue_depth_and_age_per_queue(broker: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from engine.celery_app import make_celery
    if broker == "redis":
        url = request.getfixturevalue("redis_url")
        settings = config.Settings(instance_dir=tmp_path, database_url="sqlite://", redis_url=url)
    else:
        settings = config.Settings(instance_dir=tmp_path, database_url="sqlite://")
    name = f"jzt-{uuid.uuid4().hex[:8]}"
    app = make_celery(settings)
    try:
        with app.producer_or_acquire() as producer:
            for _ in range(3):
                app.send_task("engine.jobs.deliver_outbox", queue=name, producer=producer)
    finally:
        app.close()
    found = {q.name: q for q in queues.inspect(settings.broker_url, [name, "empty-" + name],
                                               now=time.time() + 100)}
    assert found[name].depth == 3 and 100 <= found[name].oldest_seconds < 160
    assert found["empty-" + name].depth == 0 and found["empty-" + name].oldest_seconds == 0


# --- /healthz and /readyz ----------------------------------------------------------------------------------------

def test_readyz_names_the_check_that_failed(tmp_path: Path, instance_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = f"sqlite:///{tmp_path / 'old.sqlite'}"
    migrate.upgrade(old, "0011")
    app = create_app({"DATABASE_URL": old, "TESTING": True})
    assert app.test_client().get("/healthz").status_code == 200
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.json is not None
    assert response.json["failed"] == ["migrations"] and response.json["checks"]["database"] == "ok"
    app.extensions["jzflow.engine"].dispose()
    migrate.upgrade(old)
    app = create_app({"DATABASE_URL": old, "TESTING": True})
    assert app.test_client().get("/readyz").status_code == 200
    app.extensions["jzflow.engine"].dispose()

    down = create_app({"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none", "TESTING": True,
                       "SECRET_KEY": "x" * 40})
    assert down.test_client().get("/healthz").status_code == 200  # up, though nothing behind it answers
    response = down.test_client().get("/readyz")
    assert response.status_code == 503 and response.json is not None
    assert set(response.json["failed"]) == {"database", "migrations"}
    assert "127.0.0.1" not in response.get_data(as_text=True)  # names the check, never a host or an error
    down.extensions["jzflow.engine"].dispose()

    # Every web host shares the one broker: had its absence made them unready, a load balancer that follows
    # /readyz would take them all out, and a Redis outage (which the outbox is there to ride out) would be a
    # site outage. The host serves; /readyz says the broker is down, and the alert on jzflow_broker_up fires.
    monkeypatch.setenv("JZFLOW_REDIS_URL", "redis://127.0.0.1:1/0")  # a broker that is not there
    migrate.upgrade(old)
    nobroker = create_app({"DATABASE_URL": old, "TESTING": True})
    response = nobroker.test_client().get("/readyz")
    assert response.status_code == 200 and response.json is not None, response.get_data(as_text=True)
    assert response.json["status"] == "degraded" and response.json["degraded"] == ["broker"]
    assert response.json["checks"] == {"database": "ok", "migrations": "ok", "broker": "failed"}
    assert "failed" not in response.json
    nobroker.extensions["jzflow.engine"].dispose()


# --- request ids -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_request_ids_are_echoed_or_made_and_every_log_line_carries_one(ops_app: Flask,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    client = ops_app.test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"}).headers["X-Request-ID"] == "lb-7f3a.42"
    for insane in ("has spaces", "x" * 200, "<script>", "a\"b", "-leading-dash", "新"):
        got = client.get("/healthz", headers={"X-Request-ID": insane}).headers["X-Request-ID"]
        assert got != insane and re.fullmatch(r"[0-9a-f]{32}", got), (insane, got)
    monkeypatch.setenv("JZFLOW_LOG_FORMAT", "json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter())
    handler.addFilter(logs.RequestIdFilter())
    logger = logging.getLogger("jzflow.web.request")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        client.get("/login", headers={"X-Request-ID": "trace-123"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and lines[-1]["request_id"] == "trace-123" and lines[-1]["route"] == "/login"
    assert lines[-1]["status"] == 200 and lines[-1]["level"] == "INFO"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_request_id_follows_the_job_into_the_worker_and_its_log_lines(db_url: str, session: Session, tmp_path: Path,
                                                                        instance_dir: Path) -> None:
    """A job queued while a request is served carries its id; the worker's log lines for that job show it."""
    from engine.celery_app import make_celery
    outbox.enqueue(session, "event", {"note": "traced"})
    session.commit()
    settings = config.Settings(instance_dir=instance_dir, database_url=db_url)
    app = make_celery(settings)
    token = logs.bind_request_id("req-follow-me-42")
    try:
        with app.producer_or_acquire() as producer:
            app.send_task("engine.jobs.deliver_outbox", producer=producer)
    finally:
        logs.reset_request_id(token)
        app.close()
    # The message on the broker carries the id and the time it was queued.
    import sqlalchemy as sa
    broker = sa.create_engine(settings.broker_url.removeprefix("sqla+"))
    with broker.connect() as conn:
        payload = json.loads(conn.execute(text("SELECT payload FROM kombu_message")).scalar_one())
    broker.dispose()
    assert payload["headers"][logs.REQUEST_ID_HEADER] == "req-follow-me-42"
    assert abs(payload["headers"][logs.SENT_AT_HEADER] - time.time()) < 60
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(instance_dir)}
    with Workers(tmp_path / "logs") as workers:
        worker = workers.start(env)
        worker.wait_until(lambda: "event " in worker.log_path.read_text(errors="replace")
                          and "traced" in worker.log_path.read_text(errors="replace"), 60, what="the job's log line")
        line = next(line for line in worker.log_path.read_text(errors="replace").splitlines() if "traced" in line)
    assert "[req-follow-me-42]" in line, line



def test_log_settings_are_checked_and_foreign_handlers_get_the_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_LOG_LEVEL", "LOUD")
    with pytest.raises(ValueError, match="JZFLOW_LOG_LEVEL"):
        logs.configure()
    monkeypatch.setenv("JZFLOW_LOG_LEVEL", "INFO")
    monkeypatch.setenv("JZFLOW_LOG_FORMAT", "text")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))  # as Celery sets up its own
    logger = logging.getLogger("jzt.foreign." + uuid.uuid4().hex)
    logger.addHandler(handler)
    logger.propagate = False
    logs.adopt(logger)
    token = logs.bind_request_id("rid-9")
    try:
        logger.warning("inside")
    finally:
        logs.reset_request_id(token)
    logger.warning("outside")
    assert stream.getvalue().splitlines() == ["[WARNING] [rid-9] inside", "[WARNING] [-] outside"]


@pytest.mark.parametrize(("level", "spiff_shown"), [("INFO", False), ("WARNING", False), ("DEBUG", True)])
def test_the_engine_library_s_state_changes_are_logged_at_debug_only(level: str, spiff_shown: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """SpiffWorkflow logs every task's change of state at INFO (a dozen lines a completion): at INFO they cost a
    completion more than its request line, so they show only when the operator asks for DEBUG; ours still show."""
    root, spiff = logging.getLogger(), logging.getLogger("spiff")
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if not getattr(h, "_jzflow_handler", False)])
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(spiff, "level", spiff.level)
    monkeypatch.setattr(logging.getLogger("alembic.runtime.migration"), "level", logging.NOTSET)
    logs.configure(level)
    logging.Logger.manager._clear_cache()  # levels changed under the loggers' cached answers
    try:
        assert logging.getLogger("spiff.task").isEnabledFor(logging.INFO) is spiff_shown
        assert logging.getLogger("spiff.task").isEnabledFor(logging.WARNING)  # its warnings and errors stay
        assert logging.getLogger("jzflow.web.request").isEnabledFor(logging.INFO) is (level != "WARNING")
    finally:
        logging.Logger.manager._clear_cache()


def test_gunicorn_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One shared listening socket unless JZFLOW_WEB_REUSE_PORT=1 (docs/operations.md has the trade)."""
    conf = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("JZFLOW_WEB_REUSE_PORT", raising=False)
    defaults = runpy.run_path(str(conf))
    assert defaults["reuse_port"] is False and defaults["worker_class"] == "gthread"
    monkeypatch.setenv("JZFLOW_WEB_REUSE_PORT", "1")
    monkeypatch.setenv("JZFLOW_WEB_THREADS", "2")
    chosen = runpy.run_path(str(conf))
    assert chosen["reuse_port"] is True and chosen["threads"] == 2
